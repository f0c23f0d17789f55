package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/dbmove"
)

func init() {
	c := &command{
		name:    "migrate-db",
		summary: "copy the embedded PostgreSQL of mairust aio to a PostgreSQL server (stop the agent first)",
	}
	c.run = func(args []string) error {
		fs := flags(c)
		from := fs.String("from", "embedded", "database to copy; only embedded (the PostgreSQL under <data-dir>/db) is supported")
		to := fs.String("to", "", "connection URL of the empty target database, e.g. postgres://mairust@db.internal/mairust (required)")
		dataDir := fs.String("data-dir", config.Default().DataDir, "data_dir of the mairust whose embedded database is copied")
		if err := parse(fs, args); err != nil {
			return err
		}
		switch {
		case fs.NArg() > 0:
			fmt.Fprintf(os.Stderr, "migrate-db: unexpected argument %q\n", fs.Arg(0))
			fs.Usage()
			return errUsage
		case *from != "embedded":
			return fmt.Errorf("migrate-db: --from=%s: only --from=embedded is supported", *from)
		case *to == "":
			fmt.Fprintln(os.Stderr, "migrate-db: --to is required")
			fs.Usage()
			return errUsage
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		// The server's routine log lines would drown the progress output.
		logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		tables, err := dbmove.FromEmbedded(ctx, dbmove.Options{DataDir: *dataDir, Target: *to, Progress: os.Stdout, Logger: logger})
		if err != nil {
			return err
		}
		var rows int64
		for _, t := range tables {
			rows += t.Rows
		}
		fmt.Printf("\nCopied %d tables, %d rows; the counts match.\n\n", len(tables), rows)
		fmt.Printf("Next, point mairust at the new database in mairust.yaml:\n\n  database:\n    url: %q\n\n", redact(*to))
		if redact(*to) != *to {
			fmt.Println("Replace PASSWORD, or set MAIRUST_DATABASE_URL instead to keep the password out of the file.")
		}
		fmt.Printf("Then start mairust again. The embedded database in %s is left as it was;\nremove it once mairust runs on the new server.\n", filepath.Join(*dataDir, "db"))
		return nil
	}
	register(c)
}

// redact hides the password of a URL.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); !ok {
		return s
	}
	u.User = url.UserPassword(u.User.Username(), "PASSWORD")
	return u.String()
}
