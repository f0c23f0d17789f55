package database

import (
	"context"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mairust/mairust/internal/pgtest"
)

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func openPool(t *testing.T, ctx context.Context, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := Open(ctx, url, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// migrationNames lists the .sql files in the migrations directory on disk,
// independently of the embed, sorted by name (they are NNNN_ prefixed).
func migrationNames(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".sql") {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		t.Fatal("no migrations found in migrations/")
	}
	sort.Strings(names)
	return names
}

type migrationRow struct {
	version int
	name    string
}

func appliedRows(t *testing.T, ctx context.Context, pool *pgxpool.Pool) []migrationRow {
	t.Helper()
	rows, err := pool.Query(ctx, "SELECT version, name FROM schema_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []migrationRow
	for rows.Next() {
		var r migrationRow
		if err := rows.Scan(&r.version, &r.name); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func checkOneRowPerMigration(t *testing.T, ctx context.Context, pool *pgxpool.Pool, want []string) {
	t.Helper()
	rows := appliedRows(t, ctx, pool)
	var got []string
	for _, r := range rows {
		got = append(got, r.name)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("schema_migrations names = %v, want %v", got, want)
	}
	for _, r := range rows {
		num, _, _ := strings.Cut(r.name, "_")
		if v, err := strconv.Atoi(num); err != nil || v != r.version {
			t.Errorf("schema_migrations row %+v: version does not match the name's prefix", r)
		}
	}
}

func TestMigrateFreshThenNoop(t *testing.T) {
	ctx := testContext(t)
	pool := openPool(t, ctx, pgtest.NewDatabase(t, "dbmig"))
	want := migrationNames(t)

	applied, err := Migrate(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(applied, want) {
		t.Fatalf("first Migrate applied %v, want every migration %v in order", applied, want)
	}
	checkOneRowPerMigration(t, ctx, pool, want)

	// The schema is really there.
	for _, table := range []string{"tenants", "domains", "mail_users", "folders", "blobs", "messages"} {
		var exists bool
		if err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", "public."+table).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if !exists {
			t.Errorf("table %s missing after Migrate", table)
		}
	}

	again, err := Migrate(ctx, pool)
	if err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	if len(again) != 0 {
		t.Fatalf("second Migrate applied %v, want nothing", again)
	}
	checkOneRowPerMigration(t, ctx, pool, want)

	// The advisory lock was released: another session can take it at once.
	var got bool
	if err := pool.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", int64(migrateLockID)).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if !got {
		t.Fatal("migration advisory lock still held after Migrate returned")
	}
}

func TestMigrateConcurrentPools(t *testing.T) {
	want := migrationNames(t)
	// A few rounds, each on a fresh database, to give the race a real chance.
	for round := 0; round < 3; round++ {
		ctx := testContext(t)
		url := pgtest.NewDatabase(t, "dbconc")
		pools := []*pgxpool.Pool{openPool(t, ctx, url), openPool(t, ctx, url)}
		// Warm a connection in each pool so both calls reach the lock together.
		for _, p := range pools {
			if err := p.Ping(ctx); err != nil {
				t.Fatal(err)
			}
		}
		var (
			wg      sync.WaitGroup
			start   = make(chan struct{})
			applied = make([][]string, len(pools))
			errs    = make([]error, len(pools))
		)
		for i, p := range pools {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				applied[i], errs[i] = Migrate(ctx, p)
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: concurrent Migrate %d: %v", round, i, err)
			}
		}
		// Between them the two calls applied each migration exactly once.
		all := append(slices.Clone(applied[0]), applied[1]...)
		sort.Strings(all)
		if !slices.Equal(all, want) {
			t.Fatalf("round %d: concurrent Migrate applied %v and %v; want each of %v exactly once", round, applied[0], applied[1], want)
		}
		checkOneRowPerMigration(t, ctx, pools[0], want)
	}
}

func TestOpenBadURL(t *testing.T) {
	ctx := testContext(t)
	for _, url := range []string{
		"postgres://postgres@127.0.0.1:notaport/postgres",
		"postgres://postgres@127.0.0.1:5432/postgres?sslmode=bogus",
	} {
		pool, err := Open(ctx, url, 2)
		if err == nil {
			pool.Close()
			t.Fatalf("Open(%q) succeeded", url)
		}
		if !strings.Contains(err.Error(), "database.url") {
			t.Errorf("Open(%q) error %q does not name database.url", url, err)
		}
	}
}

func TestOpenUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := Open(ctx, "postgres://mairust@127.0.0.1:1/maildb?sslmode=disable&connect_timeout=5", 2)
	if err == nil {
		pool.Close()
		t.Fatal("Open of 127.0.0.1:1 succeeded")
	}
	msg := err.Error()
	for _, want := range []string{"cannot reach PostgreSQL", "127.0.0.1:1", "mairust", "maildb", "check database.url", "server is running"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
}

func TestPoolCollector(t *testing.T) {
	ctx := testContext(t)
	pool, err := Open(ctx, pgtest.NewDatabase(t, "dbstat"), 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	var one int
	if err := pool.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatal(err)
	}

	c := NewPoolCollector(pool)
	names := []string{
		"mairust_db_pool_connections",
		"mairust_db_pool_idle_connections",
		"mairust_db_pool_acquired_connections",
		"mairust_db_pool_max_connections",
		"mairust_db_pool_acquires_total",
		"mairust_db_pool_empty_acquires_total",
		"mairust_db_pool_acquire_wait_seconds_total",
	}
	// prometheus/testutil is not usable here (it would add
	// github.com/kylelemons/godebug to go.mod), so count by hand.
	ch := make(chan prometheus.Metric, 2*len(names))
	c.Collect(ch)
	close(ch)
	if n := len(ch); n != len(names) {
		t.Fatalf("Collect sent %d metrics, want %d", n, len(names))
	}

	// A pedantic registry checks that Describe and Collect agree.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]float64{}
	for _, mf := range mfs {
		if len(mf.GetMetric()) != 1 {
			t.Fatalf("%s has %d series, want 1", mf.GetName(), len(mf.GetMetric()))
		}
		m := mf.GetMetric()[0]
		switch {
		case m.GetGauge() != nil:
			values[mf.GetName()] = m.GetGauge().GetValue()
		case m.GetCounter() != nil:
			values[mf.GetName()] = m.GetCounter().GetValue()
		default:
			t.Fatalf("%s is neither gauge nor counter", mf.GetName())
		}
	}
	for _, n := range names {
		if _, ok := values[n]; !ok {
			t.Errorf("metric %s not gathered", n)
		}
	}
	if v := values["mairust_db_pool_max_connections"]; v != 3 {
		t.Errorf("max_connections = %v, want 3", v)
	}
	if v := values["mairust_db_pool_acquires_total"]; v < 2 { // Ping in Open + the SELECT
		t.Errorf("acquires_total = %v, want at least 2", v)
	}
	if v := values["mairust_db_pool_connections"]; v < 1 {
		t.Errorf("connections = %v, want at least 1", v)
	}
	if v := values["mairust_db_pool_acquired_connections"]; v != 0 {
		t.Errorf("acquired_connections = %v, want 0 with nothing held", v)
	}
}
