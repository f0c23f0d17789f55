package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mairust/mairust/controlplane/accounts"
	"github.com/mairust/mairust/controlplane/agents"
	"github.com/mairust/mairust/controlplane/auth"
	"github.com/mairust/mairust/controlplane/billing"
	"github.com/mairust/mairust/controlplane/mailer"
	"github.com/mairust/mairust/controlplane/server"
	"github.com/mairust/mairust/controlplane/store"
	"github.com/mairust/mairust/controlplane/tenants"
	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/database"
	"github.com/mairust/mairust/marketplace/catalog"
	"github.com/mairust/mairust/monitor"
	"github.com/mairust/mairust/web/console"
)

// Run serves the control plane configured by cfg.ControlPlane (its signing
// key kept in cfg.DataDir unless set) until ctx ends; then it ends the
// calls under way, streams included (agents reconnect, to another replica
// if there is one), and waits up to 10 seconds for their connections to
// close. ready, if set, is told the listener's address once it serves.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger, ready func(addr string)) error {
	c := cfg.ControlPlane
	if c.DatabaseURL == "" {
		return errors.New("controlplane.database_url is not set: give the control plane its own PostgreSQL database (not the agent's), e.g. postgres://mairust@127.0.0.1:5432/mairust_cp")
	}
	st, err := store.Open(ctx, c.DatabaseURL, c.AppDatabaseURL, int32(max(cfg.Database.MaxConns, 8)))
	if err != nil {
		return err
	}
	defer st.Pool.Close()
	keys, err := auth.NewKeys(c.JWTKey, cfg.DataDir)
	if err != nil {
		return err
	}
	mail, err := mailer.NewSMTP(c)
	if err != nil {
		return err
	}
	log = log.With("component", "controlplane")
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), database.NewPoolCollector(st.Pool))
	opts := server.Options(c, reg, log)
	ag, err := agents.New(st, keys, c, log)
	if err != nil {
		return err
	}
	// Served even when disabled: its calls then say so instead of 404.
	mon, err := monitor.New(st, monitor.Config{Enabled: c.MonitorEnabled, GlobalPerSecond: c.MonitorPerSecond, ConsoleURL: c.URL() + console.Prefix, AllowPrivateWebhooks: c.MonitorHookPrivate}, mail, reg, log)
	if err != nil {
		return err
	}
	bill := billing.New(st, cfg.Billing, c.URL()+console.Prefix, mail, log)
	cat, err := catalog.New(st, keys, cfg.Marketplace, c.URL(), mail, log)
	if err != nil {
		return err
	}
	if ag.MarketplaceKeys, err = cat.Keys(); err != nil {
		return err
	}
	ten := tenants.New(st, c, mail, log)
	ten.Limits, ag.Limits = bill, bill
	acc := accounts.New(st, keys, c, mail, log)
	keys.APITokens = acc.LookupAPIToken
	services := []server.Service{
		acc.Service(opts...),
		ten.Service(opts...),
		ag.Service(opts...),
		mon.Service(opts...),
		bill.Service(opts...), // says when billing is off
		cat.Service(opts...),
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("controlplane.listen %s: %w", c.Listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", server.New(services, keys, ag.Check, reg))
	mux.Handle(console.Prefix, console.Handler())      // the hosted console's pages, outside authentication
	mux.Handle(catalog.UploadPath, cat.Upload())       // authenticated by the session it carries
	mux.Handle(catalog.DownloadPrefix, cat.Download()) // approved packages, for anyone
	if bill.Enabled() {
		mux.Handle(billing.WebhookPath, bill.Webhook()) // authenticated by Stripe's signature
	}
	srv := server.HTTPServer(mux)
	var wg sync.WaitGroup
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	srv.BaseContext = func(net.Listener) context.Context { return runCtx }
	wg.Go(func() { ag.Run(runCtx) })
	wg.Go(func() { mon.Run(runCtx) })
	wg.Go(func() { runRetention(runCtx, st, c, log) })
	wg.Go(func() { bill.Run(runCtx) })
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("control plane started", "listen", ln.Addr().String(), "url", c.URL())
	if ready != nil {
		ready(ln.Addr().String())
	}
	select {
	case err = <-errc:
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stop()
		err = srv.Shutdown(sctx)
	}
	stop()
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	log.Info("control plane stopped")
	return err
}
