package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/agent/link"
	"github.com/mairust/mairust/controlplane"
	"github.com/mairust/mairust/controlplane/seed"
	"github.com/mairust/mairust/controlplane/store"
	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/version"
	"github.com/mairust/mairust/marketplace/catalog"
	"github.com/mairust/mairust/marketplace/pack"
)

// cpDatabase is the control plane's database in the embedded PostgreSQL.
const cpDatabase = "mairust_cp"

// aioControlPlane is the all-in-one's control plane, run beside its agent.
type aioControlPlane struct {
	url      string        // where it is reached
	ready    chan struct{} // closed once it serves, or has stopped
	done     chan struct{} // closed once it has stopped
	err      error         // why it stopped, set before done is closed
	cancel   context.CancelFunc
	enrolled bool // the agent is linked to it (set by enroll)
}

// startControlPlane runs the control plane of cfg until ctx ends or stop.
func startControlPlane(ctx context.Context, cfg config.Config, log *slog.Logger) *aioControlPlane {
	ctx, cancel := context.WithCancel(ctx)
	cp := &aioControlPlane{url: cfg.ControlPlane.URL(), ready: make(chan struct{}), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(cp.done)
		served := false
		cp.err = controlplane.Run(ctx, cfg, log, func(string) { served = true; close(cp.ready) })
		if !served {
			close(cp.ready)
		}
		if cp.err != nil && served {
			log.Error("the control plane stopped; mail is not affected, restart to get the console back", "component", "aio", "error", cp.err)
		}
	}()
	return cp
}

// stop ends the control plane and waits for it.
func (cp *aioControlPlane) stop() {
	cp.cancel()
	<-cp.done
}

// enroll links the agent to the control plane once: its tenant is
// imported (same id, domains, mail users with their password hashes, and
// a console account of the admin user with the same password), and the
// agent enrolls with a token made for it. An enrolled agent is left as is.
func (cp *aioControlPlane) enroll(ctx context.Context, cfg config.Config, pool *pgxpool.Pool, tenant, admin string, log *slog.Logger) error {
	select {
	case <-cp.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-cp.done:
		return fmt.Errorf("the control plane did not start: %w (or run with --no-controlplane)", cp.err)
	default:
	}
	lk := link.Link{DataDir: cfg.DataDir}
	if _, err := lk.Identity(); !errors.Is(err, link.ErrNotEnrolled) {
		cp.enrolled = err == nil
		return err
	}
	domains, users, err := accounts.New(pool).Export(ctx, tenant)
	if err != nil {
		return err
	}
	t := seed.Tenant{ID: tenant, Name: "default", Domains: domains}
	for _, u := range users {
		t.Users = append(t.Users, seed.User(u))
		if strings.EqualFold(u.Address, admin) || t.Owner.Email == "" && u.Admin {
			t.Owner = seed.Owner{Email: u.Address, PasswordHash: u.PasswordHash}
		}
	}
	if t.Owner.Email == "" {
		return errors.New("no admin mail user to own the tenant in the control plane: add one with mairust admin user add --admin, or run with --no-controlplane")
	}
	st, err := store.Open(ctx, cfg.ControlPlane.DatabaseURL, cfg.ControlPlane.AppDatabaseURL, 2)
	if err != nil {
		return err
	}
	defer st.Pool.Close()
	token, err := seed.Import(ctx, st, t)
	if err != nil {
		return err
	}
	id, err := lk.Enroll(ctx, cp.url, token, cfg.SMTP.Hostname, version.String())
	if err != nil {
		return fmt.Errorf("enroll into the all-in-one's control plane: %w", err)
	}
	log.Info("enrolled into the all-in-one's control plane", "component", "aio", "agent_id", id.AgentID, "tenant_id", id.TenantID,
		"domains", len(domains), "users", len(users), "owner", t.Owner.Email)
	cp.enrolled = true
	return nil
}

// ensureMarketplaceKey makes the marketplace's Ed25519 key at path when
// there is none (path empty: the key comes from the environment).
func ensureMarketplaceKey(path string) error {
	if path == "" {
		return nil
	}
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	k, err := pack.GenerateKey("ed25519")
	if err != nil {
		return err
	}
	pem, err := k.MarshalPEM()
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem, 0o600)
}

// publishPlugins packs each plugin directory in dir and publishes it in
// the all-in-one's marketplace as admin, approved; a plugin that cannot be
// packed (say, its binary is not built) is skipped with a log line.
func publishPlugins(ctx context.Context, cfg config.Config, dir, admin string, log *slog.Logger) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		log.Error("plugins not published", "component", "aio", "dir", dir, "error", err)
		return
	}
	st, err := store.Open(ctx, cfg.ControlPlane.DatabaseURL, cfg.ControlPlane.AppDatabaseURL, 2)
	if err != nil {
		log.Error("plugins not published", "component", "aio", "error", err)
		return
	}
	defer st.Pool.Close()
	market, err := catalog.New(st, nil, cfg.Marketplace, cfg.ControlPlane.URL(), nil, log)
	if err != nil {
		log.Error("plugins not published", "component", "aio", "error", err)
		return
	}
	var account string
	if err := st.Pool.QueryRow(ctx, `SELECT id FROM accounts WHERE email = lower($1)`, admin).Scan(&account); err != nil {
		log.Error("plugins not published: no console account for the admin", "component", "aio", "admin", admin, "error", err)
		return
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		var pkg bytes.Buffer
		m, err := pack.Pack(filepath.Join(dir, e.Name()), &pkg, nil)
		if err != nil {
			log.Warn("plugin not published: it cannot be packed", "component", "aio", "dir", filepath.Join(dir, e.Name()), "error", err)
			continue
		}
		added, err := market.Publish(ctx, account, pkg.Bytes())
		if err != nil {
			log.Error("plugin not published", "component", "aio", "plugin", m.ID, "error", err)
		} else if added {
			log.Info("plugin published in the marketplace", "component", "aio", "plugin", m.ID, "version", m.Version)
		}
	}
}
