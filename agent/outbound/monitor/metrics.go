package monitor

import "github.com/prometheus/client_golang/prometheus"

var notifications = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "mairust", Subsystem: "monitor", Name: "notifications_total",
	Help: "Notices of outbound-policy warnings and suspensions for the monitor service, by result: sent, failed (no answer in time, an error, or not 2xx), dropped_rate (over a rate limit), dropped_full (the queue was full).",
}, []string{"result"})

// Collectors returns the package's metrics for registration.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{notifications}
}
