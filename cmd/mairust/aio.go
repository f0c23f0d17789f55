package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mairust/mairust/agent"
	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/embeddedpg"
	"github.com/mairust/mairust/internal/password"
	"github.com/mairust/mairust/web/console"
)

func init() {
	c := &command{name: "aio", summary: "run everything on this machine: an embedded PostgreSQL (system binaries, own data dir), the agent and the control plane with its console"}
	var (
		rf                                 runFlags
		dataDir, smtpListen, httpListen    string
		apiListen, imapListen, imapsListen string
		subListen, subsListen, cpListen    string
		publishDir                         string
		domain, admin, adminPW, hostname   string
		noCP                               bool
	)
	c.run = func(args []string) error {
		fs := flags(c)
		rf.register(fs, "")
		fs.StringVar(&dataDir, "data-dir", "", "state directory (PostgreSQL in db/, mail in mail/); overrides data_dir (default /var/lib/mairust)")
		fs.StringVar(&smtpListen, "smtp-listen", "", "SMTP address; overrides smtp.listen (without --config: 127.0.0.1:2525)")
		fs.StringVar(&httpListen, "http-listen", "", "management HTTP address; overrides http.listen")
		fs.StringVar(&apiListen, "api-listen", "", "REST API address; overrides api.listen")
		fs.StringVar(&imapListen, "imap-listen", "", "IMAP (STARTTLS) address; overrides imap.listen (without --config: 127.0.0.1:1143)")
		fs.StringVar(&imapsListen, "imaps-listen", "", "IMAPS address; overrides imap.tls_listen (without --config: 127.0.0.1:1993)")
		fs.StringVar(&subListen, "submission-listen", "", "submission (STARTTLS) address; overrides submission.listen (without --config: 127.0.0.1:1587)")
		fs.StringVar(&subsListen, "submissions-listen", "", "submission with implicit TLS address; overrides submission.tls_listen (without --config: 127.0.0.1:1465)")
		fs.StringVar(&cpListen, "controlplane-listen", "", "control plane (console, agent enrollment) address; overrides controlplane.listen (default 127.0.0.1:8090)")
		fs.BoolVar(&noCP, "no-controlplane", false, "run the agent alone, without the control plane and its console")
		fs.StringVar(&publishDir, "publish-plugins", "", "publish each plugin directory in this folder (e.g. agent/plugins/examples, binaries built) to the all-in-one's marketplace, approved, so that the storefront offers them")
		fs.StringVar(&hostname, "hostname", "", "SMTP host name; overrides smtp.hostname")
		fs.StringVar(&domain, "domain", "example.test", "first mail domain, created on first start")
		fs.StringVar(&admin, "admin", "", "first (admin) mail user, created on first start (default admin@<domain>)")
		fs.StringVar(&adminPW, "admin-password", "", "its password (default: generated and printed once)")
		if err := parse(fs, args); err != nil {
			return err
		}
		cfg, log, lv, err := rf.load()
		if err != nil {
			return err
		}
		// override puts the command line over the file, at start and on reload.
		var dbURL, cpDBURL string
		override := func(c *config.Config) {
			rf.override(c)
			if rf.config == "" {
				c.SMTP.Listen = "127.0.0.1:2525"
				c.IMAP.Listen, c.IMAP.TLSListen = "127.0.0.1:1143", "127.0.0.1:1993"
				c.Submission.Listen, c.Submission.TLSListen = "127.0.0.1:1587", "127.0.0.1:1465"
			}
			for _, o := range []struct{ flag, field *string }{{&dataDir, &c.DataDir}, {&smtpListen, &c.SMTP.Listen}, {&httpListen, &c.HTTP.Listen}, {&apiListen, &c.API.Listen}, {&imapListen, &c.IMAP.Listen}, {&imapsListen, &c.IMAP.TLSListen}, {&subListen, &c.Submission.Listen}, {&subsListen, &c.Submission.TLSListen}, {&hostname, &c.SMTP.Hostname}, {&dbURL, &c.Database.URL}, {&cpListen, &c.ControlPlane.Listen}, {&cpDBURL, &c.ControlPlane.DatabaseURL}} {
				if *o.flag != "" {
					*o.field = *o.flag
				}
			}
			if abs, err := filepath.Abs(c.DataDir); err == nil {
				c.DataDir = abs
			}
			// The control plane's mail goes through this agent.
			if c.ControlPlane.SMTPRelay == config.Default().ControlPlane.SMTPRelay {
				c.ControlPlane.SMTPRelay = c.SMTP.Listen
			}
			// Its marketplace signs with a key of its own, and its admin reviews.
			if c.Marketplace.SigningKeyFile == "" && os.Getenv("MAIRUST_MARKETPLACE_KEY") == "" {
				c.Marketplace.SigningKeyFile = filepath.Join(c.DataDir, "marketplace.key")
			}
			if len(c.Marketplace.Reviewers) == 0 {
				c.Marketplace.Reviewers = []string{admin}
			}
		}
		if admin == "" {
			admin = "admin@" + domain
		}
		override(&cfg)
		// Traversable, so that the unprivileged embedded PostgreSQL reaches db/.
		ctx, release, err := claim(cfg.DataDir, 0o711)
		if err != nil {
			return err
		}
		defer release()
		embedded := cfg.Database.URL == ""
		if embedded {
			fmt.Fprintln(os.Stderr, "starting the embedded PostgreSQL in", filepath.Join(cfg.DataDir, "db"), "...")
			pg, err := embeddedpg.Start(ctx, embeddedpg.Options{DataDir: filepath.Join(cfg.DataDir, "db"), Logger: log})
			if err != nil {
				return err
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				pg.Stop(ctx)
			}()
			dbURL = pg.URL()
			if !noCP && cfg.ControlPlane.DatabaseURL == "" {
				if cpDBURL, err = pg.Database(ctx, cpDatabase); err != nil {
					return err
				}
			}
			override(&cfg)
		}
		var cp *aioControlPlane
		if !noCP {
			if cfg.ControlPlane.DatabaseURL == "" {
				return errors.New("controlplane.database_url is not set: with an external database.url, give the control plane its own database, or run with --no-controlplane")
			}
			if err := ensureMarketplaceKey(cfg.Marketplace.SigningKeyFile); err != nil {
				return err
			}
			cp = startControlPlane(ctx, cfg, log)
			defer cp.stop()
		}
		created := false
		return agent.Run(ctx, agent.Options{
			Config: cfg, ConfigPath: rf.config, Override: override, Log: log, Level: lv,
			Prepare: func(ctx context.Context, pool *pgxpool.Pool) error {
				tenant, ok, err := bootstrap(ctx, pool, domain, admin, &adminPW)
				if err != nil {
					log.Error("could not create the first domain and user", "component", "aio", "error", err)
				}
				created = ok
				if cp == nil || err != nil {
					return nil
				}
				if err := cp.enroll(ctx, cfg, pool, tenant, admin, log); err != nil {
					return err
				}
				if publishDir != "" {
					go publishPlugins(ctx, cfg, publishDir, admin, log) // packing takes seconds: mail need not wait
				}
				return nil
			},
			Ready: func(info agent.Info) {
				banner(info, cfg.DataDir, embedded, created, admin, adminPW, cp, log)
			},
		})
	}
	register(c)
}

// bootstrap creates the first tenant, domain and admin user when there are
// no users yet, and reports whether it did. It returns the id of that
// tenant, "default".
func bootstrap(ctx context.Context, pool *pgxpool.Pool, domain, admin string, pw *string) (tenant string, created bool, err error) {
	acc := accounts.New(pool)
	tenant, err = acc.EnsureTenant(ctx, "default")
	if err != nil {
		return "", false, err
	}
	if n, err := acc.CountUsers(ctx); err != nil || n > 0 {
		return tenant, false, err
	}
	if err := acc.CreateDomain(ctx, tenant, domain); err != nil {
		return "", false, err
	}
	if *pw == "" {
		*pw = password.Random(16)
	}
	if err := acc.CreateUser(ctx, admin, *pw, true); err != nil {
		return "", false, err
	}
	return tenant, true, nil
}

// banner tells the operator where to go next.
func banner(info agent.Info, dataDir string, embedded, created bool, admin, pw string, cp *aioControlPlane, log *slog.Logger) {
	db := "external PostgreSQL (database.url)"
	if embedded {
		db = "embedded PostgreSQL in " + filepath.Join(dataDir, "db")
	}
	fmt.Printf("\nMaiRust all-in-one is running.\n")
	fmt.Printf("  SMTP      %s (STARTTLS available)\n", info.SMTPAddr)
	fmt.Printf("  Webmail   http://%s/   (REST API under /api/v1)\n", info.APIAddr)
	if info.IMAPAddr != "" || info.IMAPSAddr != "" {
		fmt.Printf("  IMAP      %s (STARTTLS)   IMAPS %s   (read-only)\n", orNone(info.IMAPAddr), orNone(info.IMAPSAddr))
	}
	if info.SubmissionAddr != "" || info.SubmissionsAddr != "" {
		fmt.Printf("  Submit    %s (STARTTLS, AUTH)   %s (TLS)\n", orNone(info.SubmissionAddr), orNone(info.SubmissionsAddr))
	}
	fmt.Printf("  Metrics   http://%s/metrics   Health: http://%s/health\n", info.HTTPAddr, info.HTTPAddr)
	fmt.Printf("  Data      %s (mail in mail/, %s)\n", dataDir, db)
	if created {
		fmt.Printf("  User      %s   password: %s   (shown once, stored hashed)\n", admin, pw)
	}
	if cp != nil {
		fmt.Printf("  Console   %s%s   (log in as %s with the mail password)\n", cp.url, console.Prefix, admin)
		if cp.enrolled {
			fmt.Printf("  Agents    this one is enrolled; another enrolls with a token from the console:\n")
			fmt.Printf("            mairust agent enroll --control-plane %s --token mre_…\n", cp.url)
		}
	}
	fmt.Printf("\nSend a test message:\n  swaks --to %s --server %s\n", admin, info.SMTPAddr)
	fmt.Printf("Stop with Ctrl-C (running sessions are let finish).\n\n")
	log.Info("all-in-one ready", "component", "aio", "smtp", info.SMTPAddr)
}

// orNone shows an address, or that there is no listener.
func orNone(addr string) string {
	if addr == "" {
		return "(none)"
	}
	return addr
}
