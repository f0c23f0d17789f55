package policy

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river"

	"github.com/mairust/mairust/internal/jobs"
)

// TestPurgeJob runs the periodic purge through River: scheduled at start,
// it deletes the records past their retention and logs the counts.
func TestPurgeJob(t *testing.T) {
	w := newWorld(t, DefaultSettings())
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // the wait for the job
	defer cancel()
	w.send("old@example.test", 2, 0)
	w.clk.add(31 * 24 * time.Hour)
	w.send("new@example.test", 1, 0)
	if err := jobs.Migrate(ctx, w.pool); err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	workers := river.NewWorkers()
	var before time.Time // what the delivery records were purged before
	records := func(_ context.Context, b time.Time) (int64, error) { before = b; return 7, nil }
	river.AddWorker(workers, &PurgeWorker{Engine: w.e, Log: slog.New(slog.NewTextHandler(&logged, nil)), Records: records})
	client, err := jobs.Start(ctx, w.pool, workers, []*river.PeriodicJob{PurgePeriodic(time.Hour)}, jobs.Options{},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var state string
	for state != "completed" {
		err := w.pool.QueryRow(ctx, `SELECT coalesce(max(state::text), '') FROM river_job WHERE kind = $1`, PurgeArgs{}.Kind()).Scan(&state)
		if err != nil {
			t.Fatal(err)
		}
		if state == "retryable" || state == "discarded" {
			t.Fatalf("purge job %s", state)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := client.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	var left []string
	rows, err := w.pool.Query(ctx, `SELECT account FROM outbound_messages UNION ALL SELECT account FROM outbound_recipients ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			t.Fatal(err)
		}
		left = append(left, a)
	}
	if rows.Err() != nil || strings.Join(left, ",") != "new@example.test,new@example.test" {
		t.Fatalf("left %v %v", left, rows.Err())
	}
	if want := w.clk.now().AddDate(0, 0, -30); !before.Equal(want) {
		t.Errorf("delivery records purged before %v, want %v (record_retention_days before the engine's now)", before, want)
	}
	for _, want := range []string{`msg="outbound policy records purged"`, "component=policy", "messages=1 recipients=2 hourly=1", "delivery_records=7"} {
		if !strings.Contains(logged.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logged.String())
		}
	}
}
