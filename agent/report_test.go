package agent

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestStorageSampledHourly: the storage used goes with the first report
// of each hour only.
func TestStorageSampledHourly(t *testing.T) {
	c := &counters{gather: prometheus.NewRegistry(), storage: func(context.Context) (int64, error) { return 12345, nil }}
	usage := func() []string {
		r, err := c.collect(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, u := range r.Usage {
			got = append(got, u.Metric)
			if u.Metric == "storage_bytes" && u.Quantity != 12345 {
				t.Fatalf("storage_bytes %d, want 12345", u.Quantity)
			}
		}
		return got
	}
	if got := usage(); len(got) != 1 || got[0] != "storage_bytes" {
		t.Fatalf("first report's usage %v, want storage_bytes", got)
	}
	if got := usage(); len(got) != 0 {
		t.Fatalf("second report in the hour has usage %v, want none", got)
	}
	c.sampled = c.sampled.Add(-time.Hour)
	if got := usage(); len(got) != 1 {
		t.Fatalf("first report of a new hour has usage %v, want storage_bytes", got)
	}
}
