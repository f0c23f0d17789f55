// Package retention is the periodic cleanup job of the deletion lifecycle:
// it asks the mail store to remove what has outlived
// retention.deleted_messages_days and blobs orphaned by crashes.
package retention

import (
	"context"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"github.com/mairust/mairust/agent/mailstore"
	"github.com/mairust/mairust/internal/config"
)

// CleanupArgs is the job; it carries nothing, the settings are read when it runs.
type CleanupArgs struct{}

// Kind implements river.JobArgs.
func (CleanupArgs) Kind() string { return "retention_cleanup" }

// Worker runs CleanupArgs jobs.
type Worker struct {
	river.WorkerDefaults[CleanupArgs]
	Store    *mailstore.Store
	Settings func() config.Retention // current, live-reloaded values
	Log      *slog.Logger
}

// Work implements river.Worker.
func (w *Worker) Work(ctx context.Context, _ *river.Job[CleanupArgs]) error {
	s := w.Settings()
	now := time.Now()
	_, err := w.Store.Purge(ctx, now.AddDate(0, 0, -s.DeletedMessagesDays), now.Add(-s.OrphanBlobGrace), w.Log.With("component", "retention"))
	return err
}

// Periodic schedules the job every interval, and once at start.
func Periodic(interval time.Duration) *river.PeriodicJob {
	return river.NewPeriodicJob(river.PeriodicInterval(interval), func() (river.JobArgs, *river.InsertOpts) {
		return CleanupArgs{}, nil
	}, &river.PeriodicJobOpts{ID: "retention_cleanup", RunOnStart: true})
}
