// Package agent wires the data plane together: database, blob store, SMTP
// server, background jobs and the management HTTP listener (metrics, health,
// reload), and runs them until the context ends, then shuts down gracefully.
package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/riverqueue/river"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/agent/api"
	"github.com/mairust/mairust/agent/blobstore"
	"github.com/mairust/mairust/agent/hooks"
	"github.com/mairust/mairust/agent/hooks/health"
	"github.com/mairust/mairust/agent/imapd"
	"github.com/mairust/mairust/agent/link"
	"github.com/mairust/mairust/agent/mailstore"
	"github.com/mairust/mairust/agent/outbound/alerts"
	"github.com/mairust/mairust/agent/outbound/monitor"
	"github.com/mairust/mairust/agent/outbound/queue"
	"github.com/mairust/mairust/agent/policy"
	"github.com/mairust/mairust/agent/retention"
	"github.com/mairust/mairust/agent/smtpd"
	"github.com/mairust/mairust/agent/spam"
	"github.com/mairust/mairust/agent/spamlearn"
	"github.com/mairust/mairust/agent/submission"
	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/database"
	"github.com/mairust/mairust/internal/groupcommit"
	"github.com/mairust/mairust/internal/jobs"
	"github.com/mairust/mairust/internal/logging"
	"github.com/mairust/mairust/internal/ratelimit"
	"github.com/mairust/mairust/internal/tlsconfig"
	"github.com/mairust/mairust/web"
)

// Options starts an agent.
type Options struct {
	Config     config.Config
	ConfigPath string // re-read on reload; empty: reload only re-applies Config
	// Override, when set, is applied to every configuration read on reload,
	// as it was to Config: the command line's settings over the file's.
	Override func(*config.Config)
	Log      *slog.Logger
	Level    *slog.LevelVar
	// Prepare, when set, runs once the database is migrated and before the
	// agent serves or links to its control plane; an error stops the start.
	Prepare func(ctx context.Context, pool *pgxpool.Pool) error
	// Ready is called once every listener is up, with their addresses.
	Ready func(Info)
}

// Info tells where the running agent listens.
type Info struct {
	SMTPAddr  string
	HTTPAddr  string
	APIAddr   string
	IMAPAddr  string // "" when imap.listen is empty
	IMAPSAddr string // "" when imap.tls_listen is empty
	// Submission listeners: "" when not listening.
	SubmissionAddr, SubmissionsAddr string
	Pool                            *pgxpool.Pool
}

// Agent is a running data plane.
type Agent struct {
	opts      Options
	log       *slog.Logger
	mu        sync.Mutex // serialises reloads
	cfg       atomic.Pointer[config.Config]
	smtp      *smtpd.Server
	spam      *spam.Scanner
	api       *api.Server
	imap      *imapd.Server
	hooks     *hooks.Manager
	out       *outbound
	pool      *pgxpool.Pool
	startedAt time.Time
	managed   managed
}

// Run starts the agent and blocks until ctx ends (the caller ties it to
// SIGTERM/SIGINT), then shuts down gracefully; SIGHUP reloads the
// configuration.
func Run(ctx context.Context, opts Options) (err error) {
	cfg := opts.Config
	a := &Agent{opts: opts, log: opts.Log, startedAt: time.Now()}
	a.cfg.Store(&cfg)
	if cfg.Database.URL == "" {
		return errors.New("database.url is empty: set it (or MAIRUST_DATABASE_URL), or run mairust aio for the embedded PostgreSQL")
	}
	pool, err := database.Open(ctx, cfg.Database.URL, cfg.Database.MaxConns)
	if err != nil {
		return err
	}
	defer pool.Close()
	a.pool = pool
	applied, err := database.Migrate(ctx, pool)
	if err != nil {
		return err
	}
	if len(applied) > 0 {
		a.log.Info("database schema migrated", "component", "database", "applied", applied)
	}
	if err := jobs.Migrate(ctx, pool); err != nil {
		return err
	}
	blobs, err := openBlobs(ctx, cfg)
	if err != nil {
		return err
	}
	defer blobs.Close()
	tlsCfg, err := loadTLS(cfg)
	if err != nil {
		return err
	}
	store := mailstore.New(pool, blobs)
	defer store.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), database.NewPoolCollector(pool))
	for _, cs := range [][]prometheus.Collector{smtpd.Collectors(), imapd.Collectors(), hooks.Collectors(), health.Collectors(), spam.Collectors(), blobstore.Collectors(), mailstore.Collectors(), groupcommit.Collectors(), ratelimit.Collectors(),
		submission.Collectors(), queue.Collectors(), monitor.Collectors(), alerts.Collectors(), link.Collectors()} {
		reg.MustRegister(cs...)
	}

	if a.spam, err = spam.New(cfg.Spam, a.log); err != nil {
		return err
	}
	a.smtp = smtpd.New(cfg.SMTP, tlsCfg, accounts.New(pool), store, a.log)
	a.smtp.SetScanner(a.spam)
	if a.api, err = api.New(cfg, pool, store, blobs, a.log); err != nil {
		return err
	}
	a.imap = imapd.New(cfg.IMAP, tlsCfg, accounts.New(pool), store, blobs, a.log)
	defer a.imap.Close()
	front := http.NewServeMux()
	front.Handle("/api/", a.api.Handler())
	front.Handle("/", web.Handler())
	apiSrv := &http.Server{Handler: front, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}
	httpSrv := &http.Server{Handler: a.routes(reg), ReadHeaderTimeout: 10 * time.Second}

	// Listeners opened so far are closed if a later step fails; once
	// serving, the servers close them.
	var opened []net.Listener
	defer func() {
		if err != nil {
			for _, l := range opened {
				l.Close()
			}
		}
	}()
	listen := func(key, addr, hint string) (net.Listener, error) {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w%s", key, addr, err, hint)
		}
		opened = append(opened, l)
		return l, nil
	}
	smtpLn, err := listen("smtp.listen", cfg.SMTP.Listen, " (is another mail server running there? a port below 1024 needs root)")
	if err != nil {
		return err
	}
	httpLn, err := listen("http.listen", cfg.HTTP.Listen, "")
	if err != nil {
		return err
	}
	apiLn, err := listen("api.listen", cfg.API.Listen, "")
	if err != nil {
		return err
	}
	// IMAP and submission listeners are optional: an empty address opens none.
	var imapLn, imapsLn, subLn, subsLn net.Listener
	for _, l := range []struct {
		key, addr, what string
		ln              *net.Listener
	}{{"imap.listen", cfg.IMAP.Listen, "IMAP", &imapLn}, {"imap.tls_listen", cfg.IMAP.TLSListen, "IMAP", &imapsLn},
		{"submission.listen", cfg.Submission.Listen, "mail", &subLn}, {"submission.tls_listen", cfg.Submission.TLSListen, "mail", &subsLn}} {
		if l.addr == "" {
			continue
		}
		if *l.ln, err = listen(l.key, l.addr, " (is another "+l.what+" server running there? a port below 1024 needs root)"); err != nil {
			return err
		}
	}

	workers := river.NewWorkers()
	river.AddWorker(workers, &retention.Worker{Store: store, Log: a.log, Settings: func() config.Retention { return a.cfg.Load().Retention }})
	river.AddWorker(workers, &spamlearn.Worker{Pool: pool, Store: store, Blobs: blobs, Scanner: a.spam})
	if a.out, err = newOutbound(cfg, func() config.OutboundAlerts { return a.cfg.Load().OutboundAlerts }, pool, store, a.spam, tlsCfg, workers, a.log); err != nil {
		return err
	}
	a.out.submit.Hold = a.holdReason
	a.api.SetSending(a.out.submit, outboundAdmin{a.out.policy, a.out.queue})
	a.hooks = hooks.New(pluginSettings(cfg), pool, store, blobs, a.log)
	if err := a.hooks.Load(ctx); err != nil {
		return err
	}
	a.hooks.Register(workers)
	defer a.hooks.Close()
	a.api.SetPlugins(a.hooks)
	jobClient, err := jobs.Start(ctx, pool, workers, []*river.PeriodicJob{retention.Periodic(cfg.Retention.CleanupInterval), policy.PurgePeriodic(time.Hour)},
		jobs.Options{Queues: map[string]int{hooks.Queue: cfg.Plugins.Workers, queue.QueueName: cfg.Outbound.Workers}, RescueAfter: cfg.Jobs.RescueAfter}, a.log)
	if err != nil {
		return err
	}
	// Set before the API serves its first move and SMTP its first message.
	store.OnJunkMove(spamlearn.Enqueue(jobClient, a.spam))
	a.hooks.Start(jobClient)
	go a.hooks.RunHealth(ctx)
	go a.out.alerts.Run(ctx, alertScanInterval)
	if a.opts.Prepare != nil {
		if err := a.opts.Prepare(ctx, pool); err != nil {
			return err
		}
	}
	if err := a.startLink(ctx, reg); err != nil {
		return err
	}

	errc := make(chan error, 7)
	go func() { errc <- a.smtp.Serve(smtpLn) }()
	info := Info{SMTPAddr: smtpLn.Addr().String(), HTTPAddr: httpLn.Addr().String(), APIAddr: apiLn.Addr().String(), Pool: pool}
	if imapLn != nil {
		info.IMAPAddr = imapLn.Addr().String()
		go func() { errc <- a.imap.Serve(imapLn) }()
	}
	if imapsLn != nil {
		info.IMAPSAddr = imapsLn.Addr().String()
		go func() { errc <- a.imap.ServeTLS(imapsLn) }()
	}
	if subLn != nil {
		info.SubmissionAddr = subLn.Addr().String()
		go func() { errc <- a.out.server.Serve587(subLn) }()
	}
	if subsLn != nil {
		info.SubmissionsAddr = subsLn.Addr().String()
		go func() { errc <- a.out.server.ServeTLS465(subsLn) }()
	}
	for _, hs := range []struct {
		srv *http.Server
		ln  net.Listener
	}{{httpSrv, httpLn}, {apiSrv, apiLn}} {
		go func() {
			if err := hs.srv.Serve(hs.ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	a.log.Info("agent started", "component", "agent", "smtp", info.SMTPAddr, "http", info.HTTPAddr, "api", info.APIAddr,
		"imap", info.IMAPAddr, "imaps", info.IMAPSAddr, "submission", info.SubmissionAddr, "submissions", info.SubmissionsAddr, "storage", cfg.Storage.Backend)
	if opts.Ready != nil {
		opts.Ready(info)
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			a.log.Info("shutting down", "component", "agent")
			break loop
		case err := <-errc:
			runErr = err
			break loop
		case <-hup:
			a.Reload()
		}
	}
	a.shutdown(jobClient, httpSrv, apiSrv)
	return runErr
}

// shutdown stops taking connections, lets SMTP transactions finish within
// smtp.shutdown_timeout, then stops jobs and the HTTP listener.
func (a *Agent) shutdown(jobClient *jobs.Client, httpSrvs ...*http.Server) {
	cfg := a.cfg.Load()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.SMTP.ShutdownTimeout)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	wg.Go(func() { a.smtp.Shutdown(ctx) })
	wg.Go(func() { a.out.server.Shutdown(ctx) })
	wg.Wait()
	a.log.Info("smtp sessions finished", "component", "agent", "duration_ms", time.Since(start).Milliseconds())
	jctx, jcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer jcancel()
	if err := jobClient.Stop(jctx); err != nil {
		a.log.Warn("jobs did not stop in time", "component", "agent", "error", err)
	}
	for _, hs := range httpSrvs {
		hs.Shutdown(jctx)
	}
	// Nothing evaluates any more: write the policy's pending records.
	if err := a.out.policy.Close(jctx); err != nil {
		a.log.Error("outbound policy records not all written", "component", "agent", "error", err)
	}
	a.out.monitor.Close()
	a.log.Info("agent stopped", "component", "agent")
}

// Reload re-reads the configuration file and applies what can change live.
func (a *Agent) Reload() (config.Changes, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.cfg.Load()
	next := *old
	if a.opts.ConfigPath != "" {
		var err error
		next, err = config.Load(a.opts.ConfigPath)
		if err != nil {
			a.log.Error("reload refused; still running with the previous configuration", "component", "agent", "error", err)
			return config.Changes{}, err
		}
		if a.opts.Override != nil {
			a.opts.Override(&next)
		}
	}
	// Keys that need a restart keep their running values.
	applied, ch := config.Merge(*old, next)
	if lv, err := logging.ParseLevel(applied.Log.Level); err == nil && a.opts.Level != nil {
		a.opts.Level.Set(lv)
	}
	a.smtp.Apply(applied.SMTP)
	if err := a.spam.Apply(applied.Spam); err != nil {
		a.log.Error("spam settings not applied; the previous ones stay", "component", "agent", "error", err)
	}
	if err := a.api.Apply(applied.API); err != nil {
		a.log.Error("api settings not applied", "component", "agent", "error", err)
	}
	a.api.ApplyLimits(applied.RateLimit)
	a.imap.Apply(applied.IMAP)
	if err := a.out.policy.Apply(a.policySettings(applied)); err != nil {
		a.log.Error("outbound policy settings not applied; the previous ones stay", "component", "agent", "error", err)
	}
	a.out.monitor.Apply(applied.Monitor)
	a.hooks.Apply(pluginSettings(applied))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.hooks.Load(ctx); err != nil {
		a.log.Error("plugins not reloaded; the previous ones stay", "component", "agent", "error", err)
	}
	a.cfg.Store(&applied)
	a.log.Info("configuration reloaded: "+ch.String(), "component", "agent", "applied", ch.Live, "restart_required", ch.Restart)
	return ch, nil
}

// pluginSettings are cfg's plugins settings with their paths resolved.
func pluginSettings(cfg config.Config) config.Plugins {
	p := cfg.Plugins
	p.Dir, p.WorkDir, p.LogDir = cfg.PluginPaths()
	return p
}

func openBlobs(ctx context.Context, cfg config.Config) (blobstore.Store, error) {
	if cfg.Storage.Backend == "s3" {
		return blobstore.OpenS3(ctx, cfg.S3)
	}
	return blobstore.OpenLocal(StoragePath(cfg))
}

// StoragePath is where the local backend keeps blobs.
func StoragePath(cfg config.Config) string {
	if cfg.Storage.Path != "" {
		return cfg.Storage.Path
	}
	return filepath.Join(cfg.DataDir, "mail")
}

// loadTLS returns the STARTTLS certificate: the configured one, or a
// self-signed one kept under data_dir/tls.
func loadTLS(cfg config.Config) (*tls.Config, error) {
	if cfg.SMTP.TLSCert != "" {
		return tlsconfig.Load(cfg.SMTP.TLSCert, cfg.SMTP.TLSKey)
	}
	return tlsconfig.SelfSigned(filepath.Join(cfg.DataDir, "tls"), cfg.SMTP.Hostname)
}
