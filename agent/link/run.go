package link

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protojson"

	agentsv1 "github.com/mairust/mairust/proto/mairust/agents/v1"
	"github.com/mairust/mairust/proto/mairust/agents/v1/agentsv1connect"
	tenantsv1 "github.com/mairust/mairust/proto/mairust/tenants/v1"
)

// Pacing of the link's loops.
const (
	// defaultHeartbeat is the heartbeat interval until the control plane
	// gives its own.
	defaultHeartbeat = 30 * time.Second
	// minRetry and maxRetry bound the backoff after failures (±20 %).
	minRetry = time.Second
	maxRetry = time.Minute
	// logEvery is the most often a failing loop logs.
	logEvery = time.Minute
	// callTimeout bounds each unary call.
	callTimeout = 30 * time.Second
	// streamIdle is how long the config stream may stay silent (the
	// control plane sends keepalives every 15 s) before it is reopened.
	streamIdle = 2 * time.Minute
	// defaultReportInterval is how often Collect is called.
	defaultReportInterval = time.Minute
)

var (
	failuresTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mairust", Subsystem: "link", Name: "failures_total",
		Help: "Failed exchanges with the control plane, by loop (heartbeat, report, config).",
	}, []string{"loop"})
	droppedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mairust", Subsystem: "link", Name: "reports_dropped_total",
		Help: "Reports dropped undelivered, by reason (outbox_full, rejected, reenrolled).",
	}, []string{"reason"})
	configVersion = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "mairust", Subsystem: "link", Name: "config_version",
		Help: "The control plane's configuration version the agent applied last.",
	})
)

// Collectors returns the package's metrics for registration.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{failuresTotal, droppedTotal, configVersion}
}

// RunConfig is what Run needs from the agent.
type RunConfig struct {
	Identity Identity // from Link.Identity
	// Source keeps the credential; nil: Link.Source(Identity). Pass the
	// one the agent's other calls to the control plane use, so that one
	// credential is renewed for all.
	Source  *Source
	Pool    *pgxpool.Pool // the agent's database, migrated
	Outbox  *Outbox       // where reports wait; nil: NewOutbox(Pool, 0, Log)
	Log     *slog.Logger  // nil: slog.Default()
	Version string        // the agent's version, for heartbeats
	// StartedAt is when the agent started, for the uptime; zero: when Run
	// starts.
	StartedAt time.Time
	// Health returns the agent's components' health for each heartbeat;
	// nil: none.
	Health func(context.Context) []*agentsv1.ComponentHealth
	// DKIMKeys returns the public DKIM keys the agent signs with, sent with
	// each heartbeat for the DNS records the console shows; nil: none.
	DKIMKeys func(context.Context) []*agentsv1.DKIMKey
	// ApplySettings takes the control plane's settings (never nil) into
	// the agent: at start, those applied last; then each snapshot's, in
	// the transaction applying the snapshot, which its error rolls back.
	// nil: settings are ignored.
	ApplySettings func(context.Context, *tenantsv1.Settings) error
	// ApplyHold is told the tenant's outbound hold ("": none): at start,
	// the one applied last; then each snapshot's, once it is committed.
	// nil: holds are ignored.
	ApplyHold func(reason string)
	// ApplyPlugins is given the marketplace part of the configuration (a
	// Snapshot with only plugins, marketplace_keys and recalls set): at
	// start, the one applied last; then each snapshot's, once committed.
	// It must not block: installing is its own work. nil: ignored.
	ApplyPlugins func(*agentsv1.Snapshot)
	// Collect returns the report to enqueue every ReportInterval (counters
	// since the previous one, usage); nil: none, the agent enqueues its
	// reports itself.
	Collect        func(context.Context) (*agentsv1.ReportRequest, error)
	ReportInterval time.Duration // 0: one minute
}

// runner is a running link.
type runner struct {
	RunConfig
	client agentsv1connect.AgentsServiceClient
}

// Run keeps the agent linked to the control plane until ctx ends: it sends
// heartbeats, delivers the outbox's reports and applies the configuration
// the control plane streams. Failures are logged and retried with backoff;
// none stops it, and none holds up mail. It returns an error only when it
// cannot start (a missing key, an unreachable database).
func (l Link) Run(ctx context.Context, cfg RunConfig) error {
	if cfg.Pool == nil {
		return errors.New("link: Run needs the agent's database pool")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	cfg.Log = cfg.Log.With("component", "link", "agent_id", cfg.Identity.AgentID)
	if cfg.Outbox == nil {
		cfg.Outbox = NewOutbox(cfg.Pool, 0, cfg.Log)
	}
	if cfg.StartedAt.IsZero() {
		cfg.StartedAt = time.Now()
	}
	if cfg.ReportInterval <= 0 {
		cfg.ReportInterval = defaultReportInterval
	}
	if cfg.Source == nil {
		var err error
		if cfg.Source, err = l.Source(cfg.Identity); err != nil {
			return err
		}
	}
	r := &runner{RunConfig: cfg, client: cfg.Source.Client()}
	if err := r.start(ctx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	wg.Go(func() { r.heartbeats(ctx) })
	wg.Go(func() { r.send(ctx) })
	wg.Go(func() { r.watch(ctx) })
	if r.Collect != nil {
		wg.Go(func() { r.collect(ctx) })
	}
	wg.Wait()
	return nil
}

// start binds the link's state to this enrollment, forgetting that of a
// former one (its configuration version and its undelivered reports, which
// were another agent's), and re-applies the settings applied last.
func (r *runner) start(ctx context.Context) error {
	var (
		version  int64
		settings []byte
		hold     *string
		plugins  []byte
		dropped  int64
	)
	err := pgx.BeginFunc(ctx, r.Pool, func(tx pgx.Tx) error {
		var owner string
		if err := tx.QueryRow(ctx, `SELECT agent_id, config_version, settings, outbound_hold, plugins FROM link_state FOR UPDATE`).Scan(&owner, &version, &settings, &hold, &plugins); err != nil {
			return err
		}
		if owner == r.Identity.AgentID {
			return nil
		}
		version, settings, hold, plugins = 0, nil, nil, nil
		if owner != "" {
			tag, err := tx.Exec(ctx, `DELETE FROM link_reports`)
			if err != nil {
				return err
			}
			dropped = tag.RowsAffected()
		}
		_, err := tx.Exec(ctx, `UPDATE link_state SET agent_id = $1, config_version = 0, acked_version = 0, settings = NULL, outbound_hold = NULL, plugins = NULL, recall_version = 0`, r.Identity.AgentID)
		return err
	})
	if err != nil {
		return fmt.Errorf("link: read the link's state (is the database migrated?): %w", err)
	}
	if dropped > 0 {
		droppedTotal.WithLabelValues("reenrolled").Add(float64(dropped))
		r.Log.Warn("the agent enrolled anew: the former enrollment's undelivered reports are dropped", "reports", dropped)
	}
	configVersion.Set(float64(version))
	r.applyHold(hold)
	if plugins != nil && r.ApplyPlugins != nil {
		m := &agentsv1.Snapshot{}
		if err := protojson.Unmarshal(plugins, m); err != nil {
			return fmt.Errorf("link: the plugins kept in link_state: %w", err)
		}
		r.ApplyPlugins(m)
	}
	if settings == nil || r.ApplySettings == nil {
		return nil
	}
	s := &tenantsv1.Settings{}
	if err := protojson.Unmarshal(settings, s); err != nil {
		return fmt.Errorf("link: the settings kept in link_state: %w", err)
	}
	if err := r.ApplySettings(ctx, s); err != nil {
		r.Log.Error("cannot re-apply the control plane's settings; they apply again with the next configuration", "version", version, "error", err)
	}
	return nil
}

// heartbeats sends a heartbeat at the interval the control plane asks for.
// The credential it returns is taken by the Source.
func (r *runner) heartbeats(ctx context.Context) {
	interval := defaultHeartbeat
	rt := r.retrier("heartbeat")
	for {
		req := &agentsv1.HeartbeatRequest{Version: r.Version, UptimeSeconds: int64(time.Since(r.StartedAt) / time.Second)}
		if r.Health != nil {
			req.Health = r.Health(ctx)
		}
		if r.DKIMKeys != nil {
			req.DkimKeys = r.DKIMKeys(ctx)
		}
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		resp, err := r.client.Heartbeat(cctx, connect.NewRequest(req))
		cancel()
		if err != nil {
			if !rt.fail(ctx, err) {
				return
			}
			continue
		}
		rt.ok()
		if s := resp.Msg.IntervalSeconds; s > 0 {
			interval = time.Duration(s) * time.Second
		}
		if !sleep(ctx, interval) {
			return
		}
	}
}

// collect enqueues the report Collect returns every ReportInterval.
func (r *runner) collect(ctx context.Context) {
	t := time.NewTicker(r.ReportInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rep, err := r.Collect(ctx)
		if err == nil {
			_, err = r.Outbox.Enqueue(ctx, rep)
		}
		if err != nil && ctx.Err() == nil {
			r.Log.Warn("cannot make a report for the control plane; its counts go with the next one only if the collector keeps them", "error", err)
		}
	}
}

// retrier paces a loop after failures: jittered exponential backoff, and
// at most one log line a minute.
type retrier struct {
	log      *slog.Logger
	loop     string
	delay    time.Duration
	failures int
	logged   time.Time
}

func (r *runner) retrier(loop string) *retrier { return &retrier{log: r.Log, loop: loop} }

// fail counts a failure, logs it (throttled) and waits before the retry;
// false: ctx ended.
func (rt *retrier) fail(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	failuresTotal.WithLabelValues(rt.loop).Inc()
	rt.delay = min(max(2*rt.delay, minRetry), maxRetry)
	d := jitter(rt.delay)
	rt.failures++
	if time.Since(rt.logged) >= logEvery {
		rt.log.Warn("the control plane link failed; mail keeps flowing, retrying", "loop", rt.loop, "error", err,
			"failures", rt.failures, "retry_in", d.Round(time.Millisecond).String())
		rt.logged = time.Now()
	}
	return sleep(ctx, d)
}

// ok ends a run of failures.
func (rt *retrier) ok() {
	if rt.failures > 0 {
		rt.log.Info("the control plane link works again", "loop", rt.loop, "failures", rt.failures)
	}
	*rt = retrier{log: rt.log, loop: rt.loop}
}

// jitter spreads d by ±20 %.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// sleep waits d; false: ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
