// Package jobs runs background work on River, whose queue lives in the same
// PostgreSQL as everything else: its schema migrations and the client.
// Workers belong to the packages that own the work.
package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// migrateLockID serialises River's migrations between agents starting at once.
const migrateLockID = 0x6d61697275737402

// Migrate brings River's tables up to date.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("jobs: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(migrateLockID)); err != nil {
		return fmt.Errorf("jobs: migration lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(migrateLockID))
	m, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	if err != nil {
		return fmt.Errorf("jobs: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("jobs: migrate River schema: %w", err)
	}
	return nil
}

// Client is the River client used by the agent.
type Client = river.Client[pgx.Tx]

// Options tune a client.
type Options struct {
	Queues map[string]int // queues worked besides the default one (4 at once): name to most jobs at once
	// RescueAfter is how long a job may stay running before it is run
	// again (its agent died meanwhile); 0: River's default, 1 h.
	RescueAfter time.Duration
}

// Start starts a River client working the default queue and opts.Queues
// with workers, and scheduling periodic (only the elected leader among
// agents schedules).
func Start(ctx context.Context, pool *pgxpool.Pool, workers *river.Workers, periodic []*river.PeriodicJob, opts Options, log *slog.Logger) (*Client, error) {
	qs := map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 4}}
	for name, n := range opts.Queues {
		qs[name] = river.QueueConfig{MaxWorkers: n}
	}
	cfg := &river.Config{
		Logger:       log.With("component", "jobs"),
		Queues:       qs,
		Workers:      workers,
		PeriodicJobs: periodic,
	}
	if opts.RescueAfter > 0 {
		// River wants the default job timeout within the rescue time.
		cfg.RescueStuckJobsAfter = opts.RescueAfter
		cfg.JobTimeout = min(river.JobTimeoutDefault, opts.RescueAfter)
	}
	c, err := river.NewClient(riverpgxv5.New(pool), cfg)
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	if err := c.Start(ctx); err != nil {
		return nil, fmt.Errorf("jobs: start: %w", err)
	}
	return c, nil
}
