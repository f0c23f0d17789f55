package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/mairust/mairust/agent"
	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/embeddedpg"
	"github.com/mairust/mairust/internal/password"
)

func init() {
	c := &command{name: "aio", summary: "run everything on this machine: an embedded PostgreSQL (system binaries, own data dir) and the agent"}
	var (
		rf                                 runFlags
		dataDir, smtpListen, httpListen    string
		apiListen, imapListen, imapsListen string
		subListen, subsListen              string
		domain, admin, adminPW, hostname   string
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
		var dbURL string
		override := func(c *config.Config) {
			rf.override(c)
			if rf.config == "" {
				c.SMTP.Listen = "127.0.0.1:2525"
				c.IMAP.Listen, c.IMAP.TLSListen = "127.0.0.1:1143", "127.0.0.1:1993"
				c.Submission.Listen, c.Submission.TLSListen = "127.0.0.1:1587", "127.0.0.1:1465"
			}
			for _, o := range []struct{ flag, field *string }{{&dataDir, &c.DataDir}, {&smtpListen, &c.SMTP.Listen}, {&httpListen, &c.HTTP.Listen}, {&apiListen, &c.API.Listen}, {&imapListen, &c.IMAP.Listen}, {&imapsListen, &c.IMAP.TLSListen}, {&subListen, &c.Submission.Listen}, {&subsListen, &c.Submission.TLSListen}, {&hostname, &c.SMTP.Hostname}, {&dbURL, &c.Database.URL}} {
				if *o.flag != "" {
					*o.field = *o.flag
				}
			}
			if abs, err := filepath.Abs(c.DataDir); err == nil {
				c.DataDir = abs
			}
		}
		override(&cfg)
		if admin == "" {
			admin = "admin@" + domain
		}
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
			override(&cfg)
		}
		return agent.Run(ctx, agent.Options{
			Config: cfg, ConfigPath: rf.config, Override: override, Log: log, Level: lv,
			Ready: func(info agent.Info) {
				created, err := bootstrap(info, domain, admin, &adminPW)
				if err != nil {
					log.Error("could not create the first domain and user", "component", "aio", "error", err)
				}
				banner(info, cfg.DataDir, embedded, created, admin, adminPW, log)
			},
		})
	}
	register(c)
}

// bootstrap creates the first tenant, domain and admin user when there are
// no users yet; it reports whether it did.
func bootstrap(info agent.Info, domain, admin string, pw *string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	acc := accounts.New(info.Pool)
	if n, err := acc.CountUsers(ctx); err != nil || n > 0 {
		return false, err
	}
	tenant, err := acc.EnsureTenant(ctx, "default")
	if err != nil {
		return false, err
	}
	if err := acc.CreateDomain(ctx, tenant, domain); err != nil {
		return false, err
	}
	if *pw == "" {
		*pw = password.Random(16)
	}
	if err := acc.CreateUser(ctx, admin, *pw, true); err != nil {
		return false, err
	}
	return true, nil
}

// banner tells the operator where to go next.
func banner(info agent.Info, dataDir string, embedded, created bool, admin, pw string, log *slog.Logger) {
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
