package agent

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentsv1 "github.com/mairust/mairust/proto/mairust/agents/v1"
)

// counted says which series of the agent's metrics make each counter of
// the reports to the control plane: a metric family and, for labelled
// ones, the label's name and the values that count.
var counted = []struct {
	field  func(*agentsv1.Counters) *int64
	family string
	label  string
	values []string
}{
	{func(c *agentsv1.Counters) *int64 { return &c.MessagesIn }, "mairust_smtp_messages_total", "result", []string{"accepted"}},
	{func(c *agentsv1.Counters) *int64 { return &c.MessagesOut }, "mairust_outbound_recipient_attempts_total", "result", []string{"delivered"}},
	{func(c *agentsv1.Counters) *int64 { return &c.Spam }, "mairust_spam_scans_total", "action", []string{"reject", "soft_reject", "add_header", "rewrite_subject"}},
	{func(c *agentsv1.Counters) *int64 { return &c.BytesStored }, "mairust_smtp_received_bytes_total", "", nil},
}

// counters makes the reports' counters from the agent's metrics: each
// report carries what was counted since the previous one (since the start
// for the first; a restart starts again from zero, which loses nothing
// already reported).
type counters struct {
	gather prometheus.Gatherer
	// storage, when set, returns the bytes the tenant's mailboxes hold,
	// reported once an hour as the usage record storage_bytes (billing's
	// GB-months).
	storage func(context.Context) (int64, error)
	mu      sync.Mutex
	last    *agentsv1.Counters
	sampled time.Time // the hour storage was last reported
}

// storageOf returns the bytes of the messages (not deleted) of tenant.
func storageOf(pool *pgxpool.Pool, tenant string) func(context.Context) (int64, error) {
	return func(ctx context.Context) (int64, error) {
		var n int64
		err := pool.QueryRow(ctx, `SELECT coalesce(sum(size), 0) FROM messages WHERE tenant_id = $1 AND deleted_at IS NULL`, tenant).Scan(&n)
		return n, err
	}
}

// collect returns the report of what was counted since the last call,
// with the storage used when the hour changed since the last sample.
func (c *counters) collect(ctx context.Context) (*agentsv1.ReportRequest, error) {
	r, err := c.count()
	if err != nil || c.storage == nil {
		return r, err
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if hour := now.Truncate(time.Hour); hour.After(c.sampled) {
		n, err := c.storage(ctx)
		if err != nil {
			return r, nil // sampled with the next report; the counters go now
		}
		c.sampled = hour
		r.Usage = append(r.Usage, &agentsv1.UsageRecord{Metric: "storage_bytes", Quantity: n, PeriodStart: timestamppb.New(now), PeriodEnd: timestamppb.New(now)})
	}
	return r, nil
}

// count returns the counters counted since the last call.
func (c *counters) count() (*agentsv1.ReportRequest, error) {
	families, err := c.gather.Gather()
	if err != nil {
		return nil, err
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range families {
		byName[f.GetName()] = f
	}
	now := &agentsv1.Counters{}
	for _, k := range counted {
		f := byName[k.family]
		if f == nil {
			continue
		}
		for _, m := range f.GetMetric() {
			if k.label == "" || matches(m, k.label, k.values) {
				*k.field(now) += int64(m.GetCounter().GetValue())
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil {
		c.last = &agentsv1.Counters{}
	}
	delta := &agentsv1.Counters{}
	for _, k := range counted {
		*k.field(delta) = *k.field(now) - *k.field(c.last)
	}
	c.last = now
	return &agentsv1.ReportRequest{Counters: delta}, nil
}

// matches reports whether m's label has one of values.
func matches(m *dto.Metric, label string, values []string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == label {
			for _, v := range values {
				if l.GetValue() == v {
					return true
				}
			}
		}
	}
	return false
}
