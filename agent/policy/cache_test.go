package policy

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// engine returns another engine on w's database and clock, whose cache
// runs on tick and has no refresher: the test calls its steps.
func (w *world) engine(tick func() time.Time) *Engine {
	w.t.Helper()
	e, err := newEngine(w.pool, w.e.Settings(), w.clk.now, tick, 0)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { e.Close(context.Background()) })
	return e
}

func evaluate(t *testing.T, e *Engine, account string, rcpts ...string) Decision {
	t.Helper()
	d, err := e.Evaluate(context.Background(), Submission{Account: account, TenantID: "t1", Recipients: rcpts})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// dump returns the rows of the outbound tables, ids left out.
func (w *world) dump() string {
	w.t.Helper()
	w.flush()
	var out strings.Builder
	for _, q := range []string{
		`SELECT account, tenant_id, state, soft_until, suspended_at, reason, changed_by, updated_at FROM outbound_accounts ORDER BY 1`,
		`SELECT account, at, kind, from_state, to_state, actor, reason, score, factors::text FROM outbound_events ORDER BY id`,
		`SELECT account, tenant_id, at, recipients, new_recipients, score, decision, counted FROM outbound_messages ORDER BY 3, 1, 2, 4, 5, 6, 7, 8`,
		`SELECT account, recipient, first_at, last_at FROM outbound_recipients ORDER BY 1, 2`,
		`SELECT account, hour, messages FROM outbound_hourly ORDER BY 1, 2`,
		`SELECT * FROM outbound_daily ORDER BY 1, 2`,
		`SELECT account, at, kind FROM outbound_feedback ORDER BY id`,
	} {
		rows, err := w.pool.Query(context.Background(), q)
		if err != nil {
			w.t.Fatal(err)
		}
		for rows.Next() {
			v, err := rows.Values()
			if err != nil {
				w.t.Fatal(err)
			}
			fmt.Fprintln(&out, v...)
		}
		if err := rows.Err(); err != nil {
			w.t.Fatal(err)
		}
	}
	return out.String()
}

// TestRestartDecidesTheSame sends the same random submissions, with
// feedback, suspensions and releases, to an engine that lives throughout and
// to one restarted every 20 messages (so that it rebuilds its cache from the
// tables), each on its own database: their decisions and records are the
// same.
func TestRestartDecidesTheSame(t *testing.T) {
	s := DefaultSettings()
	s.Whitelist = []Profile{{ID: "alerts", Accounts: []string{"p@example.test"}, MaxRate: "20 msgs/minute"}}
	steady, restarted := newWorld(t, s), newWorld(t, s)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	accounts := []string{"a@example.test", "b@example.test", "p@example.test"}
	seen := map[Action]int{}
	for i := range 700 {
		if i%20 == 0 {
			if err := restarted.e.Close(ctx); err != nil {
				t.Fatal(err)
			}
			e, err := New(restarted.pool, s, restarted.clk.now)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { e.Close(ctx) })
			restarted.e = e
		}
		sub := Submission{Account: accounts[rng.IntN(len(accounts))], TenantID: "t1", SpamReject: 15,
			SpamScore: []float64{0, 0, 4, 9, 15}[rng.IntN(5)]}
		n := rng.IntN(4)
		if rng.IntN(40) == 0 {
			n, sub.SpamScore = 100, 15 // enough to suspend
		}
		for j := range n {
			sub.Recipients = append(sub.Recipients, fmt.Sprintf("r%d@dest.test", rng.IntN(30)), fmt.Sprintf("n%d-%d@dest.test", i, j))
		}
		step := []time.Duration{0, time.Second, 30 * time.Second, 5 * time.Minute, 50 * time.Minute}[rng.IntN(5)]
		feedback := []Feedback{"", Bounce, Complaint}[max(0, rng.IntN(30)-27)]
		release := rng.IntN(10) == 0
		var got [2]Decision
		for k, w := range []*world{steady, restarted} {
			w.clk.add(step)
			if feedback != "" {
				if err := w.e.RecordFeedback(ctx, sub.Account, feedback); err != nil {
					t.Fatal(err)
				}
			}
			if release {
				if err := w.e.Release(ctx, sub.Account, "admin", "test"); err != nil && !errors.Is(err, ErrNotSuspended) {
					t.Fatal(err)
				}
			}
			d, err := w.e.Evaluate(ctx, sub)
			if err != nil {
				t.Fatal(err)
			}
			got[k] = d
		}
		if !reflect.DeepEqual(got[0], got[1]) {
			t.Fatalf("message %d: %+v\nafter restarts: %+v", i, got[0], got[1])
		}
		seen[got[0].Action]++
	}
	for _, a := range []Action{Allow, Warn, Suspend, Refuse} {
		if seen[a] == 0 {
			t.Fatalf("no %s among %v", a, seen)
		}
	}
	if a, b := steady.dump(), restarted.dump(); a != b {
		t.Fatalf("tables differ:\n%s\nafter restarts:\n%s", a, b)
	}
}

// TestStateChangedElsewhere: a release made through another engine counts
// at the next evaluation; a suspension by an operator's UPDATE once the
// cached state row is stateTTL old, or once the refresher has polled.
func TestStateChangedElsewhere(t *testing.T) {
	w := newWorld(t, DefaultSettings())
	ctx := context.Background()
	tick := &clock{t: time.Unix(1_000_000, 0)}
	e := w.engine(tick.now)
	var rcpts []string
	for i := range 100 {
		rcpts = append(rcpts, fmt.Sprintf("r%d@dest.test", i))
	}
	d, err := e.Evaluate(ctx, Submission{Account: "x@example.test", Recipients: rcpts, SpamScore: 15, SpamReject: 15})
	if err != nil || d.Action != Suspend {
		t.Fatalf("%+v %v", d, err)
	}
	if d := evaluate(t, e, "x@example.test", "a@dest.test"); d.Action != Refuse {
		t.Fatalf("while suspended: %+v", d)
	}
	if err := w.e.Release(ctx, "x@example.test", "admin@example.test", "checked"); err != nil {
		t.Fatal(err)
	}
	if d := evaluate(t, e, "x@example.test", "a@dest.test"); !d.Sent() {
		t.Fatalf("after a release elsewhere: %+v", d)
	}

	for _, a := range []string{"y@example.test", "z@example.test"} {
		if d := evaluate(t, e, a, "a@dest.test"); d.Action != Allow {
			t.Fatalf("%+v", d)
		}
	}
	if err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	suspend := func(account string) {
		t.Helper()
		if _, err := w.pool.Exec(ctx, `UPDATE outbound_accounts SET state='suspended', suspended_at=now(), reason='by hand'
			WHERE account=$1`, account); err != nil {
			t.Fatal(err)
		}
	}
	suspend("y@example.test")
	tick.add(time.Second) // the poll comes after the load
	if err := e.pollStates(ctx); err != nil {
		t.Fatal(err)
	}
	if d := evaluate(t, e, "y@example.test", "a@dest.test"); d.Action != Refuse || d.SMTPCode != 550 || d.Reason != "account suspended: by hand" {
		t.Fatalf("after an UPDATE and a poll: %+v", d)
	}
	suspend("z@example.test")
	tick.add(stateTTL + time.Second)
	if d := evaluate(t, e, "z@example.test", "a@dest.test"); d.Action != Refuse || d.SMTPCode != 550 {
		t.Fatalf("after an UPDATE, stateTTL later: %+v", d)
	}
}

// TestOtherReplicaCounts: the messages another engine (a replica) records
// count once the history is reloaded: by the evaluation when older than
// historyTTL, by the refresher when half as old and used since.
func TestOtherReplicaCounts(t *testing.T) {
	s := DefaultSettings()
	s.MaxPerHour = 5
	w := newWorld(t, s)
	ctx := context.Background()
	tick := &clock{t: time.Unix(1_000_000, 0)}
	e := w.engine(tick.now)
	evaluate(t, e, "z@example.test")
	for range 3 {
		evaluate(t, w.e, "z@example.test")
	}
	w.flush()
	tick.add(historyTTL + time.Second)
	if d := evaluate(t, e, "z@example.test"); d.Counts.Hour != 5 || !d.Sent() {
		t.Fatalf("%+v", d)
	}
	if d := evaluate(t, e, "z@example.test"); d.Action != Refuse {
		t.Fatalf("past the cap: %+v", d)
	}

	evaluate(t, e, "q@example.test")
	tick.add(time.Second)
	evaluate(t, e, "q@example.test")
	for range 2 {
		evaluate(t, w.e, "q@example.test")
	}
	w.flush()
	tick.add(historyTTL / 2)
	e.reloadDue(ctx, time.Minute)
	if d := evaluate(t, e, "q@example.test"); d.Counts.Hour != 5 {
		t.Fatalf("%+v", d)
	}
}

// TestConcurrentSubmissionsRespectCap: of 20 concurrent submissions of one
// account, exactly the hourly limit get through.
func TestConcurrentSubmissionsRespectCap(t *testing.T) {
	s := DefaultSettings()
	s.MaxPerHour = 5
	w := newWorld(t, s)
	evaluate(t, w.e, "other@example.test") // the engine is ready
	var mu sync.Mutex
	hours := map[int]bool{}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			d, err := w.e.Evaluate(context.Background(), Submission{Account: "c@example.test"})
			if err != nil {
				t.Error(err)
				return
			}
			if d.Sent() {
				mu.Lock()
				hours[d.Counts.Hour] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(hours) != 5 || !hours[1] || !hours[5] {
		t.Fatalf("hour counts of the messages sent: %v", hours)
	}
}

// TestCacheBounded: the cache keeps at most maxAccounts entries and drops
// those unused for historyTTL; an account dropped is read again.
func TestCacheBounded(t *testing.T) {
	w := newWorld(t, DefaultSettings())
	tick := &clock{t: time.Unix(1_000_000, 0)}
	e := w.engine(tick.now)
	e.maxAccounts = 4
	for i := range 10 {
		evaluate(t, e, fmt.Sprintf("a%d@example.test", i))
		if err := e.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		tick.add(time.Second)
	}
	if n := len(e.cached()); n > 4 {
		t.Fatalf("%d entries", n)
	}
	if e.cached()["a0@example.test"] != nil {
		t.Fatal("the least recently used account is kept")
	}
	if d := evaluate(t, e, "a0@example.test"); d.Counts.Hour != 2 {
		t.Fatalf("%+v", d)
	}
	if err := e.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	tick.add(historyTTL + time.Second)
	e.mu.Lock()
	e.evictLocked(e.maxAccounts)
	e.mu.Unlock()
	if n := len(e.cached()); n != 0 {
		t.Fatalf("%d entries left unused", n)
	}
}

// TestFeedbackAndPurgeUpdateCache: feedback recorded and recipients purged
// through the engine count at once for an account it has cached.
func TestFeedbackAndPurgeUpdateCache(t *testing.T) {
	w := newWorld(t, DefaultSettings())
	ctx := context.Background()
	evaluate(t, w.e, "a@example.test", "x@dest.test")
	for range 3 {
		if err := w.e.RecordFeedback(ctx, "a@example.test", Complaint); err != nil {
			t.Fatal(err)
		}
	}
	if d := evaluate(t, w.e, "a@example.test", "x@dest.test"); d.Counts.Complaints30d != 3 || d.Counts.NewRecipientsHour != 1 {
		t.Fatalf("%+v", d)
	}
	w.clk.add(31 * 24 * time.Hour)
	if _, err := w.e.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	if d := evaluate(t, w.e, "a@example.test", "x@dest.test"); d.Counts.NewRecipientsHour != 1 || d.Counts.Complaints30d != 0 {
		t.Fatalf("after the purge, x@dest.test is new again: %+v", d)
	}
}
