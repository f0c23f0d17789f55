package agent

import (
	"context"
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/agent/dkim"
	"github.com/mairust/mairust/agent/mailstore"
	"github.com/mairust/mairust/agent/outbound/alerts"
	"github.com/mairust/mairust/agent/outbound/deliver"
	"github.com/mairust/mairust/agent/outbound/monitor"
	"github.com/mairust/mairust/agent/outbound/queue"
	"github.com/mairust/mairust/agent/outbound/submit"
	"github.com/mairust/mairust/agent/policy"
	"github.com/mairust/mairust/agent/spam"
	"github.com/mairust/mairust/agent/submission"
	"github.com/mairust/mairust/internal/config"
)

// alertScanInterval is how often the policy's transitions are looked for
// to alert them.
const alertScanInterval = 5 * time.Second

// outbound is the sending side: the policy engine, the delivery queue and
// the submission server that feeds them.
type outbound struct {
	policy  *policy.Engine
	queue   *queue.Queue
	server  *submission.Server
	submit  *submit.Submitter
	monitor *monitor.Notifier
	alerts  *alerts.Alerter
	dkim    *dkim.Store
}

// outboundAdmin joins the policy engine's sending states and the queue's
// delivery log for the API (api.OutboundAdmin).
type outboundAdmin struct {
	*policy.Engine
	queue *queue.Queue
}

func (o outboundAdmin) Log(ctx context.Context, tenantID string, userID int64, limit, offset int) ([]queue.LogEntry, error) {
	return o.queue.Log(ctx, tenantID, userID, limit, offset)
}

// newOutbound builds the sending side and registers the delivery workers;
// alertSettings gives the outbound_alerts in force.
func newOutbound(cfg config.Config, alertSettings func() config.OutboundAlerts, pool *pgxpool.Pool, store *mailstore.Store, scanner *spam.Scanner, tlsCfg *tls.Config, workers *river.Workers, log *slog.Logger) (*outbound, error) {
	o := &outbound{}
	var err error
	if o.policy, err = policy.New(pool, cfg.PolicySettings(), nil); err != nil {
		return nil, err
	}
	keys, err := dkim.Open(pool, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	o.dkim = keys
	client := &deliver.Client{Router: router(cfg.Outbound), Limiter: deliver.NewLimiter(cfg.Outbound.MaxPerDestination),
		HeloName: cfg.SMTP.Hostname, PlainFallback: cfg.Outbound.PlainFallback}
	waits, err := config.ParseBackoff(cfg.Outbound.RetrySchedule) // validated with the file
	if err != nil {
		return nil, err
	}
	if o.queue, err = queue.New(pool, queue.Config{Client: client, Store: store, Hostname: cfg.SMTP.Hostname,
		Lifetime: cfg.Outbound.Lifetime, NextRetry: deliver.Schedule(waits).Next, Log: log}); err != nil {
		return nil, err
	}
	o.queue.Register(workers)
	if o.alerts, err = alerts.New(pool, o.queue, alertSettings, cfg.SMTP.Hostname, log); err != nil {
		return nil, err
	}
	o.alerts.Register(workers)
	river.AddWorker(workers, &policy.PurgeWorker{Engine: o.policy, Log: log, Records: o.queue.PurgeBefore})
	// Made even when disabled, so that a reload can turn it on.
	o.monitor = monitor.New(cfg.Monitor, cfg.SMTP.Hostname, log)
	acc := accounts.New(pool)
	sub := &submit.Submitter{Pool: pool, Accounts: acc, Store: store, Queue: o.queue, Policy: o.policy,
		Signer: dkim.NewSigner(keys), Scanner: scanner, Notifier: o.monitor, Log: log.With("component", "submit")}
	o.submit = sub
	s := cfg.Submission
	o.server, err = submission.New(submission.Config{Hostname: cfg.SMTP.Hostname, TLSConfig: tlsCfg,
		MaxMessageBytes: cfg.SMTP.MaxMessageBytes, MaxRecipients: cfg.SMTP.MaxRecipients,
		MaxConnections: s.MaxConnections, MaxConnectionsPerIP: s.MaxConnectionsPerIP, LoginsPerIPPerMinute: s.LoginsPerIPMinute,
		ReadTimeout: cfg.SMTP.ReadTimeout, WriteTimeout: cfg.SMTP.WriteTimeout, Log: log}, acc, sub)
	if err != nil {
		return nil, err
	}
	return o, nil
}

// router routes deliveries as outbound configures: static routes, then
// the smarthost, then MX.
func router(c config.Outbound) *deliver.Router {
	r := &deliver.Router{Port: c.Port, Static: map[string][]string{}}
	if c.DNSServer != "" {
		r.Resolver = deliver.NewResolver(c.DNSServer)
	}
	for _, route := range c.Routes {
		domain, hosts, _ := config.ParseRoute(route) // validated with the file
		r.Static[domain] = hosts
	}
	if c.Smarthost != "" {
		r.Smarthost = &deliver.Smarthost{Addr: c.Smarthost, Username: c.SmarthostUsername, Password: c.SmarthostPassword,
			RequireTLS: c.SmarthostTLS != "none", ImplicitTLS: c.SmarthostTLS == "implicit"}
	}
	return r
}
