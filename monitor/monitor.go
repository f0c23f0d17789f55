package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mairust/mairust/controlplane/access"
	"github.com/mairust/mairust/controlplane/accounts"
	"github.com/mairust/mairust/controlplane/auth"
	"github.com/mairust/mairust/controlplane/mailer"
	"github.com/mairust/mairust/controlplane/server"
	"github.com/mairust/mairust/controlplane/store"
	monitorv1 "github.com/mairust/mairust/proto/mairust/monitor/v1"
	"github.com/mairust/mairust/proto/mairust/monitor/v1/monitorv1connect"
)

// Limits of the notices one account may have stored, as the agents apply
// them on their side.
const (
	accountGap = 10 * time.Minute // between two notices of an account
	accountDay = 24               // notices of an account in 24 hours
)

// DefaultGlobalPerSecond is the global limit when Config leaves it 0.
const DefaultGlobalPerSecond = 50

// Limits of ListNotices.
const (
	defaultList = 100
	maxList     = 500
)

// Config is the operator's choice.
type Config struct {
	// Enabled serves the service (controlplane.monitor_enabled); off,
	// its procedures answer Unimplemented and Run does nothing.
	Enabled bool
	// GlobalPerSecond is how many notices this process stores a second
	// from all agents together (controlplane.monitor_global_per_second;
	// 0: DefaultGlobalPerSecond).
	GlobalPerSecond int
	// ConsoleURL is linked in the alert mail (controlplane.public_url;
	// empty: no link).
	ConsoleURL string
	// AllowPrivateWebhooks lets webhooks reach loopback, private,
	// link-local, unspecified and multicast addresses
	// (controlplane.monitor_webhook_allow_private). Unset, they are
	// refused when a webhook is set and when it is sent, and webhooks are
	// sent directly, not through the environment's proxy.
	AllowPrivateWebhooks bool
}

// Service implements MonitorService and sends its alerts.
type Service struct {
	st     *store.Store
	cfg    Config
	mail   mailer.Mailer
	log    *slog.Logger
	client *http.Client
	global *bucket
	wake   chan struct{} // a stored notice has alerts to send
	now    func() time.Time
	poll   time.Duration // between two looks for due alerts
	m      metrics
}

// New returns the service; its metrics are registered with reg.
func New(st *store.Store, cfg Config, m mailer.Mailer, reg prometheus.Registerer, log *slog.Logger) (*Service, error) {
	if cfg.GlobalPerSecond < 0 {
		return nil, fmt.Errorf("controlplane.monitor_global_per_second is %d: give 1 or more (0: %d)", cfg.GlobalPerSecond, DefaultGlobalPerSecond)
	}
	if cfg.GlobalPerSecond == 0 {
		cfg.GlobalPerSecond = DefaultGlobalPerSecond
	}
	s := &Service{st: st, cfg: cfg, mail: m, log: log.With("component", "monitor"), now: time.Now, poll: pollInterval,
		client: webhookClient(cfg.AllowPrivateWebhooks),
		global: &bucket{size: float64(cfg.GlobalPerSecond), tokens: float64(cfg.GlobalPerSecond)},
		wake:   make(chan struct{}, 1), m: newMetrics()}
	for _, c := range []prometheus.Collector{s.m.notices, s.m.alerts} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("monitor: metrics: %w", err)
		}
	}
	return s, nil
}

// Service returns the handler to give server.New: Notify needs an agent
// credential, the other procedures a console session.
func (s *Service) Service(opts ...connect.HandlerOption) server.Service {
	path, h := monitorv1connect.NewMonitorServiceHandler(s, opts...)
	return server.Service{Name: monitorv1connect.MonitorServiceName, Path: path, Handler: h}
}

// errDisabled is every procedure's answer when the operator has not
// enabled the service.
var errDisabled = connect.NewError(connect.CodeUnimplemented,
	errors.New("the monitor service is disabled on this control plane (controlplane.monitor_enabled)"))

// limited is why a notice over a rate limit was dropped; also its outcome
// label.
type limited string

func (l limited) Error() string { return "rate limited: " + string(l) }

const (
	limitedSpacing limited = "rate_limited_spacing"
	limitedDaily   limited = "rate_limited_daily"
	limitedGlobal  limited = "rate_limited_global"
)

// Notify stores one notice of the calling agent's tenant, unless it is a
// duplicate or over a rate limit; stored, its alerts are queued.
func (s *Service) Notify(ctx context.Context, req *connect.Request[monitorv1.NotifyRequest]) (*connect.Response[monitorv1.NotifyResponse], error) {
	if !s.cfg.Enabled {
		return nil, errDisabled
	}
	p, ok := auth.From(ctx)
	if !ok || p.Kind != auth.KindAgent {
		return nil, connect.NewError(connect.CodePermissionDenied,
			errors.New("Notify takes an agent credential (from enrollment); a console session cannot report notices"))
	}
	now := s.now()
	n, err := parseNotice(req.Msg.Notice, now)
	if err != nil {
		return nil, err
	}
	outcome, label := monitorv1.Outcome_OUTCOME_RATE_LIMITED, string(limitedGlobal)
	if s.global.take(now) {
		if outcome, label, err = s.insert(ctx, p, n, now); err != nil {
			return nil, accounts.Fault(fmt.Errorf("monitor: store the notice: %w", err))
		}
	}
	s.m.notices.WithLabelValues(label).Inc()
	if outcome == monitorv1.Outcome_OUTCOME_STORED {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return connect.NewResponse(&monitorv1.NotifyResponse{Outcome: outcome}), nil
}

// insert stores n for the agent p, received at now, with its alerts, in
// one transaction that holds the account's advisory lock, so that the
// per-account limits hold across replicas. The unique key (tenant,
// account, kind, at) finds duplicates; a notice over a limit is rolled
// back. It returns the outcome and its metric label.
func (s *Service) insert(ctx context.Context, p auth.Principal, n notice, now time.Time) (monitorv1.Outcome, string, error) {
	outcome, label := monitorv1.Outcome_OUTCOME_STORED, "stored"
	err := s.st.Tx(ctx, store.Scope{TenantID: p.TenantID}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('monitor/' || $1 || '/' || $2, 0))`, p.TenantID, n.account); err != nil {
			return err
		}
		var id string
		err := tx.QueryRow(ctx, `INSERT INTO notices (tenant_id, agent_id, account, kind, score, factors, reason, at, received_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (tenant_id, account, kind, at) DO NOTHING RETURNING id`,
			p.TenantID, p.AgentID, n.account, n.kind, n.score, n.factors, n.reason, n.at, now).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			outcome, label = monitorv1.Outcome_OUTCOME_DUPLICATE, "duplicate"
			return nil
		}
		if err != nil {
			return err
		}
		var count int
		var last *time.Time
		if err := tx.QueryRow(ctx, `SELECT count(*), max(received_at) FROM notices
			WHERE tenant_id = $1 AND account = $2 AND id <> $3 AND received_at > $4`,
			p.TenantID, n.account, id, now.Add(-24*time.Hour)).Scan(&count, &last); err != nil {
			return err
		}
		if last != nil && last.After(now.Add(-accountGap)) {
			return limitedSpacing
		}
		if count >= accountDay {
			return limitedDaily
		}
		_, err = tx.Exec(ctx, `INSERT INTO monitor_alerts (tenant_id, notice_id, channel, target)
			SELECT $1::uuid, $2::uuid, 'mail', a.email FROM memberships m JOIN accounts a ON a.id = m.account_id
				WHERE m.tenant_id = $1 AND m.role IN ('owner', 'admin') AND a.email_verified_at IS NOT NULL
			UNION ALL
			SELECT $1::uuid, $2::uuid, 'webhook', '' FROM monitor_webhooks WHERE tenant_id = $1`, p.TenantID, id)
		return err
	})
	var l limited
	if errors.As(err, &l) {
		return monitorv1.Outcome_OUTCOME_RATE_LIMITED, string(l), nil
	}
	return outcome, label, err
}

// ListNotices lists a tenant's notices, newest first, to its members.
func (s *Service) ListNotices(ctx context.Context, req *connect.Request[monitorv1.ListNoticesRequest]) (*connect.Response[monitorv1.ListNoticesResponse], error) {
	if !s.cfg.Enabled {
		return nil, errDisabled
	}
	m := req.Msg
	limit := int(m.Limit)
	if limit == 0 {
		limit = defaultList
	}
	if limit < 1 || limit > maxList {
		return nil, accounts.InvalidArgument("limit", fmt.Errorf("%d: give 1 to %d (0: %d)", m.Limit, maxList, defaultList))
	}
	account := ""
	if m.Account != "" {
		a, err := mailer.Address(m.Account)
		if err != nil {
			return nil, accounts.InvalidArgument("account", err)
		}
		account = a
	}
	resp := &monitorv1.ListNoticesResponse{}
	err := access.InTenant(ctx, s.st, m.TenantId, "viewer", func(tx pgx.Tx, _ string) error {
		rows, err := tx.Query(ctx, `SELECT `+noticeColumns+` FROM notices
			WHERE tenant_id = $1 AND ($2 = '' OR account = $2) ORDER BY at DESC, received_at DESC LIMIT $3`, m.TenantId, account, limit)
		if err != nil {
			return err
		}
		resp.Notices, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*monitorv1.Notice, error) { return scanNotice(r) })
		return err
	})
	if err != nil {
		return nil, accounts.Fault(err)
	}
	return connect.NewResponse(resp), nil
}

// bucket is a token bucket refilled at size tokens a second, holding at
// most size; safe for concurrent use.
type bucket struct {
	mu     sync.Mutex
	size   float64
	tokens float64
	last   time.Time
}

// take takes a token at now, when there is one.
func (b *bucket) take(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.After(b.last) {
		if !b.last.IsZero() {
			b.tokens = min(b.size, b.tokens+now.Sub(b.last).Seconds()*b.size)
		}
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

type metrics struct {
	notices *prometheus.CounterVec
	alerts  *prometheus.CounterVec
}

func newMetrics() metrics {
	return metrics{
		notices: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "mairust", Subsystem: "monitor", Name: "notices_received_total",
			Help: "Notices the agents reported, by outcome: stored, duplicate, rate_limited_spacing (under 10 minutes after the account's last), rate_limited_daily (24 in 24 hours), rate_limited_global (over controlplane.monitor_global_per_second in this process)."},
			[]string{"outcome"}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "mairust", Subsystem: "monitor", Name: "alerts_total",
			Help: "Alerts of stored notices to tenant admins, by channel (mail, webhook) and result: sent, failed (retried later), given_up (after the last attempt), dropped (the webhook was removed)."},
			[]string{"channel", "result"}),
	}
}
