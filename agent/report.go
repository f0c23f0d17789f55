package agent

import (
	"context"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

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
	mu     sync.Mutex
	last   *agentsv1.Counters
}

// collect returns the report of what was counted since the last call.
func (c *counters) collect(context.Context) (*agentsv1.ReportRequest, error) {
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
