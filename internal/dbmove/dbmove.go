// Package dbmove moves the embedded PostgreSQL database of a data directory
// to another PostgreSQL server, for mairust migrate-db: pg_dump and
// pg_restore do the copy, exact row counts of every table prove it.
package dbmove

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mairust/mairust/internal/embeddedpg"
	"github.com/mairust/mairust/internal/pidlock"
)

// stopTimeout bounds the shutdown of the embedded server at the end.
const stopTimeout = time.Minute

// Options say what to move where.
type Options struct {
	DataDir  string       // mairust's data_dir; the embedded PostgreSQL is in DataDir/db
	Target   string       // connection URL of the destination database, which must be empty
	Progress io.Writer    // receives a line per step; nil: discarded
	Logger   *slog.Logger // receives the embedded server's log; nil: slog.Default()
}

// Table is one table of schema public with its row count, equal on both
// sides.
type Table struct {
	Name string
	Rows int64
}

// FromEmbedded copies the embedded database of o.DataDir to o.Target. It
// holds the data directory's pidlock throughout, so it refuses to run
// beside the agent and the agent cannot start meanwhile. The embedded data is
// left as it was.
func FromEmbedded(ctx context.Context, o Options) (tables []Table, err error) {
	out := o.Progress
	if out == nil {
		out = io.Discard
	}
	lock, err := pidlock.Acquire(o.DataDir)
	if errors.Is(err, pidlock.ErrLocked) {
		return nil, fmt.Errorf("dbmove: %w: mairust is running on %s; stop the agent first", err, o.DataDir)
	}
	if err != nil {
		return nil, fmt.Errorf("dbmove: data directory %s: %w", o.DataDir, err)
	}
	defer lock.Release()
	dbDir := filepath.Join(o.DataDir, "db")
	if !embeddedpg.Initialized(dbDir) {
		return nil, fmt.Errorf("dbmove: %s holds no embedded PostgreSQL: nothing to migrate (check --data-dir)", dbDir)
	}

	fmt.Fprintln(out, "checking the target database")
	target, err := pgx.Connect(ctx, o.Target)
	if err != nil {
		return nil, fmt.Errorf("dbmove: target database: %w", err)
	}
	defer target.Close(context.WithoutCancel(ctx))
	existing, err := publicTables(ctx, target)
	if err != nil {
		return nil, fmt.Errorf("dbmove: target database: %w", err)
	}
	if len(existing) > 0 {
		return nil, fmt.Errorf("dbmove: the target database already has %d tables in schema public (%s): migrate into a new, empty database (CREATE DATABASE ...), or drop those tables first", len(existing), summary(existing))
	}

	fmt.Fprintf(out, "starting the embedded PostgreSQL in %s\n", dbDir)
	srv, err := embeddedpg.Start(ctx, embeddedpg.Options{DataDir: dbDir, Logger: o.Logger})
	if err != nil {
		return nil, fmt.Errorf("dbmove: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
		defer cancel()
		if serr := srv.Stop(sctx); serr != nil && err == nil {
			err = fmt.Errorf("dbmove: %w", serr)
		}
	}()
	source, err := pgx.Connect(ctx, srv.URL())
	if err != nil {
		return nil, fmt.Errorf("dbmove: embedded database: %w", err)
	}
	defer source.Close(context.WithoutCancel(ctx))
	names, err := publicTables(ctx, source)
	if err != nil {
		return nil, fmt.Errorf("dbmove: embedded database: %w", err)
	}

	tmp, err := os.MkdirTemp(o.DataDir, "migrate-db-")
	if err != nil {
		return nil, fmt.Errorf("dbmove: %w", err)
	}
	defer os.RemoveAll(tmp)
	dump := filepath.Join(tmp, "mairust.dump")
	fmt.Fprintf(out, "dumping the embedded database (%d tables) with pg_dump\n", len(names))
	if err := run(ctx, nil, filepath.Join(srv.BinDir(), "pg_dump"), "--format=custom", "--file="+dump, "--dbname="+srv.URL()); err != nil {
		return nil, err
	}
	if fi, err := os.Stat(dump); err == nil {
		fmt.Fprintf(out, "  %d bytes dumped\n", fi.Size())
	}

	fmt.Fprintln(out, "restoring into the target with pg_restore")
	dsn, env := libpqTarget(o.Target)
	if err := run(ctx, env, filepath.Join(srv.BinDir(), "pg_restore"), "--no-owner", "--no-privileges",
		"--exit-on-error", "--single-transaction", "--dbname="+dsn, dump); err != nil {
		return nil, fmt.Errorf("%w\n(the restore ran in one transaction: the target database was left unchanged)", err)
	}
	if len(names) > 0 {
		fmt.Fprintln(out, "analyzing the restored tables")
		if _, err := target.Exec(ctx, "ANALYZE "+identList(names)); err != nil {
			return nil, fmt.Errorf("dbmove: target database: analyze: %w", err)
		}
	}

	fmt.Fprintf(out, "verifying %d tables\n", len(names))
	return verify(ctx, out, source, target, names)
}

// verify compares the exact row count of every table on both sides.
func verify(ctx context.Context, out io.Writer, source, target *pgx.Conn, names []string) ([]Table, error) {
	restored, err := publicTables(ctx, target)
	if err != nil {
		return nil, fmt.Errorf("dbmove: target database: %w", err)
	}
	var missing []string
	for _, n := range names {
		if !slices.Contains(restored, n) {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("dbmove: after the restore the target lacks %d tables (%s)", len(missing), summary(missing))
	}
	var tables []Table
	var differ []string
	for _, n := range names {
		src, err := count(ctx, source, n)
		if err != nil {
			return nil, fmt.Errorf("dbmove: embedded database: %w", err)
		}
		dst, err := count(ctx, target, n)
		if err != nil {
			return nil, fmt.Errorf("dbmove: target database: %w", err)
		}
		if src != dst {
			fmt.Fprintf(out, "  %-32s %12d rows, target %d: MISMATCH\n", n, src, dst)
			differ = append(differ, n)
			continue
		}
		fmt.Fprintf(out, "  %-32s %12d rows  ok\n", n, src)
		tables = append(tables, Table{Name: n, Rows: src})
	}
	if len(differ) > 0 {
		return nil, fmt.Errorf("dbmove: row counts differ in %d tables (%s): the target is not a faithful copy; drop its tables and run migrate-db again", len(differ), summary(differ))
	}
	return tables, nil
}

// publicTables lists the tables of schema public by name.
func publicTables(ctx context.Context, c *pgx.Conn) ([]string, error) {
	rows, err := c.Query(ctx, `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func count(ctx context.Context, c *pgx.Conn, table string) (int64, error) {
	var n int64
	err := c.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{"public", table}.Sanitize()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count rows of %s: %w", table, err)
	}
	return n, nil
}

func identList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = pgx.Identifier{"public", n}.Sanitize()
	}
	return strings.Join(q, ", ")
}

// summary names the first few of names.
func summary(names []string) string {
	if len(names) > 5 {
		return strings.Join(names[:5], ", ") + ", ..."
	}
	return strings.Join(names, ", ")
}

// libpqTarget moves the password of a URL into PGPASSWORD, out of the
// command line that other users can read.
func libpqTarget(target string) (dsn string, env []string) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.User == nil {
		return target, nil
	}
	pw, ok := u.User.Password()
	if !ok {
		return target, nil
	}
	u.User = url.User(u.User.Username())
	return u.String(), []string{"PGPASSWORD=" + pw}
}

// run runs a PostgreSQL client program, returning its output on failure.
func run(ctx context.Context, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("dbmove: %s: %v\n%s", filepath.Base(name), err, strings.TrimSpace(string(out)))
	}
	return nil
}
