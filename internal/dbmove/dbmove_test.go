package dbmove

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mairust/mairust/internal/database"
	"github.com/mairust/mairust/internal/embeddedpg"
	"github.com/mairust/mairust/internal/pgtest"
	"github.com/mairust/mairust/internal/pidlock"
)

// base holds the test data directories; user mairust, which runs the
// embedded server when the tests run as root, must be able to enter it.
var base string

func TestMain(m *testing.M) {
	var err error
	if base, err = os.MkdirTemp("", "dbmove-test-"); err == nil {
		err = os.Chmod(base, 0o711)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(base)
	os.Exit(code)
}

// wantRows are the rows seed writes.
var wantRows = map[string]int64{
	"tenants": 2, "domains": 2, "mail_users": 6, "folders": 6, "blobs": 40, "messages": 240,
}

var seed struct {
	once sync.Once
	dir  string
	err  error
}

// seeded returns a data_dir whose embedded PostgreSQL holds the real schema
// and wantRows, made once per test run and never changed by the tests.
func seeded(t *testing.T) string {
	t.Helper()
	seed.once.Do(func() { seed.dir, seed.err = makeSeed() })
	if seed.err != nil {
		t.Fatalf("seeding an embedded PostgreSQL: %v", seed.err)
	}
	return seed.dir
}

func makeSeed() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := filepath.Join(base, "seeded")
	if err := os.Mkdir(dir, 0o711); err != nil {
		return "", err
	}
	srv, err := embeddedpg.Start(ctx, embeddedpg.Options{DataDir: filepath.Join(dir, "db"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return "", err
	}
	defer srv.Stop(ctx)
	pool, err := database.Open(ctx, srv.URL(), 4)
	if err != nil {
		return "", err
	}
	defer pool.Close()
	if _, err := database.Migrate(ctx, pool); err != nil {
		return "", err
	}
	_, err = pool.Exec(ctx, `
		INSERT INTO tenants(name) VALUES ('one'), ('two');
		INSERT INTO domains(tenant_id, name) SELECT id, name || '.example' FROM tenants;
		INSERT INTO mail_users(tenant_id, domain_id, address, password_hash)
			SELECT d.tenant_id, d.id, 'user' || g || '@' || d.name, 'x' FROM domains d, generate_series(1, 3) g;
		INSERT INTO folders(tenant_id, user_id, name, special) SELECT tenant_id, id, 'INBOX', 'inbox' FROM mail_users;
		INSERT INTO blobs(key, size) SELECT 'blob' || g, g FROM generate_series(1, 40) g;
		INSERT INTO messages(tenant_id, user_id, folder_id, blob_key, size, mail_from, rcpt_to, subject)
			SELECT f.tenant_id, f.user_id, f.id, 'blob' || g, g, 'a@one.example', 'b@two.example', 'hello ' || g
			FROM folders f, generate_series(1, 40) g`)
	if err != nil {
		return "", err
	}
	return dir, srv.Stop(ctx)
}

func TestFromEmbedded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := seeded(t)
	target := pgtest.NewDatabase(t, "dbmove")
	var progress bytes.Buffer
	tables, err := FromEmbedded(ctx, Options{DataDir: dir, Target: target, Progress: &progress, Logger: slog.New(slog.DiscardHandler)})
	t.Log("progress:\n" + progress.String())
	if err != nil {
		t.Fatalf("FromEmbedded: %v", err)
	}
	got := map[string]int64{}
	for _, tb := range tables {
		got[tb.Name] = tb.Rows
	}
	for name, n := range wantRows {
		if got[name] != n {
			t.Errorf("table %s: %d rows reported, want %d", name, got[name], n)
		}
	}
	if got["schema_migrations"] < 1 {
		t.Errorf("schema_migrations not copied: %v", got)
	}
	for _, step := range []string{"dumping", "restoring", fmt.Sprintf("verifying %d tables", len(tables))} {
		if !strings.Contains(progress.String(), step) {
			t.Errorf("progress lacks %q", step)
		}
	}

	// Check the target independently, and that its sequences went along.
	c, err := pgx.Connect(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var messages int64
	if err := c.QueryRow(ctx, "SELECT count(*) FROM messages WHERE subject LIKE 'hello %'").Scan(&messages); err != nil || messages != wantRows["messages"] {
		t.Fatalf("target has %d messages (%v), want %d", messages, err, wantRows["messages"])
	}
	if _, err := c.Exec(ctx, "INSERT INTO domains(tenant_id, name) SELECT id, 'new.example' FROM tenants LIMIT 1"); err != nil {
		t.Fatalf("insert into the target after the move (sequence not restored?): %v", err)
	}

	// The lock is released afterwards.
	l, err := pidlock.Acquire(dir)
	if err != nil {
		t.Fatalf("pidlock after the move: %v", err)
	}
	l.Release()
}

func TestRefusesWhileAgentRuns(t *testing.T) {
	dir := seeded(t)
	l, err := pidlock.Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	_, err = FromEmbedded(context.Background(), Options{DataDir: dir, Target: "postgres://unused@127.0.0.1:1/unused"})
	if !errors.Is(err, pidlock.ErrLocked) || !strings.Contains(err.Error(), "stop the agent first") {
		t.Fatalf("FromEmbedded while the lock is held: %v; want ErrLocked and 'stop the agent first'", err)
	}
}

func TestRefusesTargetWithTables(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := seeded(t)
	target := pgtest.NewDatabase(t, "dbmove")
	c, err := pgx.Connect(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE TABLE leftover (id int)"); err != nil {
		t.Fatal(err)
	}
	_, err = FromEmbedded(ctx, Options{DataDir: dir, Target: target})
	if err == nil || !strings.Contains(err.Error(), "already has 1 tables in schema public (leftover)") {
		t.Fatalf("FromEmbedded into a database with tables: %v; want a refusal naming leftover", err)
	}
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("the refused target has %d tables (%v), want it untouched", n, err)
	}
}

func TestNoEmbeddedDatabase(t *testing.T) {
	_, err := FromEmbedded(context.Background(), Options{DataDir: t.TempDir(), Target: "postgres://unused@127.0.0.1:1/unused"})
	if err == nil || !strings.Contains(err.Error(), "holds no embedded PostgreSQL") {
		t.Fatalf("FromEmbedded without an embedded database: %v", err)
	}
}

func TestLibpqTarget(t *testing.T) {
	dsn, env := libpqTarget("postgres://mairust:s3cret@db.example:5433/mail?sslmode=require")
	if dsn != "postgres://mairust@db.example:5433/mail?sslmode=require" || len(env) != 1 || env[0] != "PGPASSWORD=s3cret" {
		t.Fatalf("libpqTarget = %q, %q", dsn, env)
	}
	if dsn, env := libpqTarget("host=db user=mairust"); dsn != "host=db user=mairust" || env != nil {
		t.Fatalf("keyword/value string changed: %q, %q", dsn, env)
	}
}
