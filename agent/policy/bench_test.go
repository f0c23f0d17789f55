package policy

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/mairust/mairust/agent/accounts/accountstest"
	"github.com/mairust/mairust/internal/pgtest"
)

// Shape of the benchmark's history: light accounts send 100 messages in
// 30 days, heavy ones 100 + 5,000 (about 170 a day).
const (
	benchMessages = 1_000_000
	benchAccounts = 5000
	benchHeavy    = 100
	benchKnown    = 50 // recipients each account has written to
)

// seedBench fills the window tables as if the accounts had sent
// benchMessages messages over the 30 days before now: the per-message
// records, the recipients, the hourly and daily aggregates derived from
// them, a bounce per 100 messages and a warning per heavy account.
func seedBench(ctx context.Context, b *testing.B, e *Engine, now time.Time) {
	half := benchMessages / 2
	steps := []struct {
		sql  string
		args []any
	}{
		// Half spread evenly over all accounts, half over the heavy ones.
		{`INSERT INTO outbound_messages(account, tenant_id, at, recipients, new_recipients, score, decision, counted)
		SELECT 'u' || CASE WHEN g < $2 THEN g % $3 ELSE g % $4 END || '@bench.test', 't1',
			$1::timestamptz - (g % $2) * (interval '30 days' / $2) - interval '1 second', 1, (g % 3 = 0)::int, 0.1, 'allow', true
		FROM generate_series(0, 2 * $2 - 1) g`, []any{now, half, benchAccounts, benchHeavy}},
		{`INSERT INTO outbound_accounts(account, tenant_id, updated_at)
		SELECT 'u' || a || '@bench.test', 't1', $1 FROM generate_series(0, $2 - 1) a`, []any{now, benchAccounts}},
		{`INSERT INTO outbound_recipients(account, recipient, first_at, last_at)
		SELECT 'u' || a || '@bench.test', 'k' || k || '@dest.test', $1::timestamptz - interval '29 days', $1::timestamptz - interval '1 day'
		FROM generate_series(0, $2 - 1) a, generate_series(0, $3 - 1) k`, []any{now, benchAccounts, benchKnown}},
		{`INSERT INTO outbound_hourly(account, hour, messages)
		SELECT account, date_trunc('hour', at, 'UTC'), count(*) FROM outbound_messages GROUP BY 1, 2`, nil},
		{`INSERT INTO outbound_daily(account, day, tenant_id, messages, recipients, new_recipients)
		SELECT account, (at AT TIME ZONE 'UTC')::date, 't1', count(*), count(*), sum(new_recipients) FROM outbound_messages GROUP BY 1, 2`, nil},
		{`INSERT INTO outbound_feedback(account, at, kind) SELECT account, at, 'bounce' FROM outbound_messages WHERE id % 100 = 0`, nil},
		{`INSERT INTO outbound_events(account, at, kind, from_state, to_state, actor)
		SELECT 'u' || a || '@bench.test', $1::timestamptz - interval '20 days', 'warn', 'allowed', 'soft_limited', 'policy'
		FROM generate_series(0, $2 - 1) a`, []any{now, benchHeavy}},
	}
	for _, s := range steps {
		if _, err := e.pool.Exec(ctx, s.sql, s.args...); err != nil {
			b.Fatalf("seed: %v\n%s", err, s.sql)
		}
	}
	if _, err := e.pool.Exec(ctx, `VACUUM ANALYZE`); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkEvaluate measures evaluations against 1,000,000 per-message
// records of 5,000 accounts over the last 30 days, half of them from the
// 100 heavy senders (setup takes under a minute):
//
//	go test ./agent/policy -run xxx -bench 'Evaluate$' -benchtime 5000x
//
// It first evaluates a message of every account, each the account's first
// evaluation by the engine: its cache entry is loaded, in one round trip
// (cold-p50-µs, cold-p99-µs). Then the b.N messages timed (p50-µs, p99-µs)
// are from accounts evaluated in the last few seconds, whose entries are
// warm: no round trip, the records written in the background (flush-ms: the
// wait for the last of them after the loop). Each message goes to one known
// and one new recipient, from a heavy sender every other time; the clock
// advances a second per message.
func BenchmarkEvaluate(b *testing.B) {
	ctx := b.Context()
	pool, err := accountstest.Open(ctx, pgtest.NewDatabase(b, "policybench"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	clk := &clock{t: time.Date(2030, 3, 4, 10, 0, 0, 0, time.UTC)}
	e, err := New(pool, DefaultSettings(), clk.now)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close(context.Background()) })
	seedBench(ctx, b, e, clk.now())
	actions := map[Action]int{}
	send := func(i, a int) time.Duration {
		s := Submission{Account: fmt.Sprintf("u%d@bench.test", a), TenantID: "t1",
			Recipients: []string{fmt.Sprintf("k%d@dest.test", i%benchKnown), fmt.Sprintf("n%d@dest.test", i)}}
		start := time.Now()
		d, err := e.Evaluate(ctx, s)
		took := time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		actions[d.Action]++
		clk.add(time.Second)
		return took
	}
	pct := func(took []time.Duration, p float64) float64 {
		slices.Sort(took)
		return float64(took[int(p*float64(len(took)-1))]) / float64(time.Microsecond)
	}
	var cold []time.Duration
	for a := range benchAccounts {
		cold = append(cold, send(benchAccounts+a, a))
	}
	var took []time.Duration
	for i := 0; b.Loop(); i++ {
		a := i % benchAccounts
		if i%2 == 0 {
			a = i / 2 % benchHeavy
		}
		took = append(took, send(i, a))
	}
	start := time.Now()
	if err := e.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(time.Since(start))/float64(time.Millisecond), "flush-ms")
	b.ReportMetric(pct(took, 0.50), "p50-µs")
	b.ReportMetric(pct(took, 0.99), "p99-µs")
	b.ReportMetric(pct(cold, 0.50), "cold-p50-µs")
	b.ReportMetric(pct(cold, 0.99), "cold-p99-µs")
	if total := len(cold) + len(took); actions[Allow] != total {
		b.Logf("decisions: %v", actions)
	}
}
