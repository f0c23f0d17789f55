package database

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// PoolCollector exports pgxpool statistics as Prometheus metrics.
type PoolCollector struct {
	pool                                *pgxpool.Pool
	total, idle, inUse, max             *prometheus.Desc
	acquires, emptyAcquires, acquireDur *prometheus.Desc
}

// NewPoolCollector describes pool's statistics.
func NewPoolCollector(pool *pgxpool.Pool) *PoolCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("mairust_db_pool_"+name, help, nil, nil)
	}
	return &PoolCollector{
		pool:          pool,
		total:         d("connections", "Connections open in the pool."),
		idle:          d("idle_connections", "Idle connections in the pool."),
		inUse:         d("acquired_connections", "Connections currently in use."),
		max:           d("max_connections", "Largest pool size allowed."),
		acquires:      d("acquires_total", "Connections acquired from the pool."),
		emptyAcquires: d("empty_acquires_total", "Acquires that had to wait for a connection."),
		acquireDur:    d("acquire_wait_seconds_total", "Time spent waiting for a connection."),
	}
}

// Describe implements prometheus.Collector.
func (c *PoolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.total, c.idle, c.inUse, c.max, c.acquires, c.emptyAcquires, c.acquireDur} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *PoolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	k := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	g(c.total, float64(s.TotalConns()))
	g(c.idle, float64(s.IdleConns()))
	g(c.inUse, float64(s.AcquiredConns()))
	g(c.max, float64(s.MaxConns()))
	k(c.acquires, float64(s.AcquireCount()))
	k(c.emptyAcquires, float64(s.EmptyAcquireCount()))
	k(c.acquireDur, s.AcquireDuration().Seconds())
}
