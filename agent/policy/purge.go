package policy

import (
	"context"
	"log/slog"
	"time"

	"github.com/riverqueue/river"
)

// PurgeArgs is the job that deletes the outbound records past their
// retention (Purge); it carries nothing.
type PurgeArgs struct{}

// Kind implements river.JobArgs.
func (PurgeArgs) Kind() string { return "outbound_policy_purge" }

// PurgeWorker runs PurgeArgs jobs.
type PurgeWorker struct {
	river.WorkerDefaults[PurgeArgs]
	Engine *Engine
	Log    *slog.Logger
	// Records, if set, purges other per-message outbound records (the
	// delivery queue's log) kept as long as the engine's own:
	// record_retention_days.
	Records func(ctx context.Context, before time.Time) (int64, error)
}

// Work implements river.Worker.
func (w *PurgeWorker) Work(ctx context.Context, _ *river.Job[PurgeArgs]) error {
	p, err := w.Engine.Purge(ctx)
	if err != nil {
		return err
	}
	var delivery int64
	if w.Records != nil {
		days := w.Engine.Settings().RecordRetentionDays
		if delivery, err = w.Records(ctx, w.Engine.now().AddDate(0, 0, -days)); err != nil {
			return err
		}
	}
	w.Log.Info("outbound policy records purged", "component", "policy", "messages", p.Messages, "recipients", p.Recipients,
		"hourly", p.Hourly, "feedback", p.Feedback, "events", p.Events, "daily", p.Daily, "delivery_records", delivery)
	return nil
}

// PurgePeriodic schedules the purge every interval, and once at start.
func PurgePeriodic(interval time.Duration) *river.PeriodicJob {
	return river.NewPeriodicJob(river.PeriodicInterval(interval), func() (river.JobArgs, *river.InsertOpts) {
		return PurgeArgs{}, nil
	}, &river.PeriodicJobOpts{ID: "outbound_policy_purge", RunOnStart: true})
}
