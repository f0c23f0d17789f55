package policy

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// TestDayWindowSlides checks the 24-hour count, read from the hourly
// aggregates and the records of its first, partial hour, at minute
// precision: also for a profile counted per day.
func TestDayWindowSlides(t *testing.T) {
	s := DefaultSettings()
	s.Whitelist = []Profile{{ID: "daily", Accounts: []string{"p@example.test"}, MaxRate: "100 msgs/day"}}
	w := newWorld(t, s) // 10:00
	for _, step := range []time.Duration{20 * time.Minute, 20 * time.Minute, 30 * time.Minute, 0} {
		w.clk.add(step) // 10:20, 10:40, 11:10, 11:10
		w.send("a@example.test", 1, 0)
		w.send("p@example.test", 1, 0)
	}
	for _, c := range []struct {
		step time.Duration
		day  int
	}{
		{23*time.Hour + 5*time.Minute, 5}, // 10:15 the next day: the four, and this one
		{10 * time.Minute, 5},             // 10:25: three of them, 10:15, this one
		{10 * time.Minute, 6},             // 10:35: 10:40, 11:10 twice, 10:15, 10:25, this one
		{10 * time.Minute, 6},             // 10:45: 11:10 twice, and four today
		{30 * time.Minute, 5},             // 11:15: four today, this one
	} {
		w.clk.add(c.step)
		a, p := w.send("a@example.test", 1, 0), w.send("p@example.test", 1, 0)
		if a.Counts.Day != c.day || p.Counts.Window != c.day {
			t.Fatalf("%s: day %d, profile window %d; want %d", w.clk.now().Format("15:04"), a.Counts.Day, p.Counts.Window, c.day)
		}
	}
}

// sqlFigures reads f with the per-message query the engine ran before it
// had a cache: the reference for what the cache computes.
func sqlFigures(t *testing.T, w *world, c *compiled, pf *profile, account string, rcpts []string, now time.Time) figures {
	t.Helper()
	window := time.Duration(0)
	if pf != nil {
		window = min(pf.rate.Window, time.Hour)
	}
	dayAgo := now.Add(-24 * time.Hour)
	var f figures
	h := &f.history
	err := w.pool.QueryRow(context.Background(), `SELECT m.hour, m.win, m.new_hour, p.n + h.day, r.known, h.baseline, h.week,
			fb.bounces, fb.complaints, ev.warnings, ev.suspensions
		FROM (SELECT count(*) AS hour, count(*) FILTER (WHERE at > $3) AS win, coalesce(sum(new_recipients), 0) AS new_hour
			FROM outbound_messages WHERE account=$1 AND counted AND at > $2) m,
		(SELECT count(*) AS n FROM outbound_messages WHERE account=$1 AND counted AND at > $4 AND at < $5) p,
		(SELECT coalesce(sum(messages) FILTER (WHERE hour >= $5), 0) AS day,
			percentile_cont(0.5) WITHIN GROUP (ORDER BY messages) FILTER (WHERE hour >= $7 AND hour < $8 AND messages > 0) AS baseline,
			coalesce(sum(messages) FILTER (WHERE hour >= $9), 0) AS week
			FROM outbound_hourly WHERE account=$1 AND hour >= least($5, $7, $9)) h,
		(SELECT count(*) AS known FROM outbound_recipients WHERE account=$1 AND recipient = ANY($6)) r,
		(SELECT count(*) FILTER (WHERE kind='bounce' AND at > $9) AS bounces, count(*) FILTER (WHERE kind='complaint') AS complaints
			FROM outbound_feedback WHERE account=$1 AND at > $10) fb,
		(SELECT count(*) FILTER (WHERE kind='warn' AND at > $9) AS warnings, count(*) FILTER (WHERE kind='suspend') AS suspensions
			FROM outbound_events WHERE account=$1 AND kind IN ('warn', 'suspend') AND at > $10) ev`,
		account, now.Add(-time.Hour), now.Add(-window), dayAgo, dayAgo.Truncate(time.Hour).Add(time.Hour), rcpts,
		now.Add(-time.Duration(c.BaselineDays)*24*time.Hour), now.Truncate(time.Hour),
		now.Add(-7*24*time.Hour), now.Add(-30*24*time.Hour)).Scan(&f.hour, &f.window, &f.newHour, &f.day, &f.known, &f.baseline,
		&h.Sent7d, &h.Bounces7d, &h.Complaints30d, &h.Warnings7d, &h.Suspensions30d)
	if err != nil {
		t.Fatal(err)
	}
	// After a release the rate windows start at it: count them from the
	// per-message records.
	var rel *time.Time
	if err := w.pool.QueryRow(context.Background(), `SELECT max(released_at) FROM outbound_accounts WHERE account=$1`, account).Scan(&rel); err != nil {
		t.Fatal(err)
	}
	if rel != nil {
		cut := func(t time.Time) time.Time {
			if rel.After(t) {
				return *rel
			}
			return t
		}
		err = w.pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE at > $2), count(*) FILTER (WHERE at > $3),
				coalesce(sum(new_recipients) FILTER (WHERE at > $2), 0), count(*) FILTER (WHERE at > $4)
			FROM outbound_messages WHERE account=$1 AND counted`,
			account, cut(now.Add(-time.Hour)), cut(now.Add(-window)), cut(dayAgo)).Scan(&f.hour, &f.window, &f.newHour, &f.day)
		if err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// step advances a random history's clock: mostly bursts, sometimes to the
// next hour or by exactly an hour, a day or a week, so that messages fall
// on the windows' bounds.
func step(rng *rand.Rand, now time.Time) time.Duration {
	switch n := rng.IntN(100); {
	case n < 25:
		return 0
	case n < 45:
		return time.Second
	case n < 65:
		return time.Minute
	case n < 80:
		return 10 * time.Minute
	case n < 90:
		return now.Truncate(time.Hour).Add(time.Hour).Sub(now)
	case n < 96:
		return time.Hour
	case n < 99:
		return 24 * time.Hour
	}
	return 7 * 24 * time.Hour
}

// TestFiguresMatchSQL compares, before each message of a random history
// (bursts, gaps of hours and days, feedback, suspensions, purges, a hot
// reload), the figures the cache gives with those the former query reads
// from the tables.
func TestFiguresMatchSQL(t *testing.T) {
	s := DefaultSettings()
	s.BaselineDays = 3
	s.RecordRetentionDays, s.StatsRetentionDays = 10, 20 // so that purges matter
	s.Whitelist = []Profile{{ID: "minute", Accounts: []string{"m@example.test"}, MaxRate: "10 msgs/minute"},
		{ID: "day", Accounts: []string{"d@example.test"}, MaxRate: "50 msgs/day"}}
	w := newWorld(t, s)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	accounts := []string{"a@example.test", "b@example.test", "m@example.test", "d@example.test"}
	for i := range 1500 {
		account := accounts[rng.IntN(len(accounts))]
		sub := Submission{Account: account, SpamReject: 15, SpamScore: []float64{0, 0, 6, 15}[rng.IntN(4)]}
		n := rng.IntN(4)
		if rng.IntN(50) == 0 {
			n, sub.SpamScore = 100, 15 // enough to suspend
		}
		for j := range n {
			sub.Recipients = append(sub.Recipients, fmt.Sprintf("r%d@dest.test", rng.IntN(20)), fmt.Sprintf("n%d-%d@dest.test", i, j))
		}
		w.clk.add(step(rng, w.clk.now()))
		switch rng.IntN(60) {
		case 0, 1:
			if err := w.e.RecordFeedback(ctx, account, []Feedback{Bounce, Complaint}[rng.IntN(2)]); err != nil {
				t.Fatal(err)
			}
		case 2:
			if err := w.e.Release(ctx, account, "admin", "test"); err != nil && !errors.Is(err, ErrNotSuspended) {
				t.Fatal(err)
			}
		case 3:
			if _, err := w.e.Purge(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if i == 1000 {
			s.BaselineDays = 10 // more than the entries hold
			if err := w.e.Apply(s); err != nil {
				t.Fatal(err)
			}
		}
		c := w.e.settings.Load()
		pf := c.byAccount[account]
		rcpts := uniqueRecipients(sub.Recipients)
		w.flush()
		en := w.e.acquire(account) // as Evaluate does
		if err := w.e.ready(ctx, c, en, account); err != nil {
			t.Fatal(err)
		}
		got, want := en.figures(c, pf, rcpts, w.clk.now(), en.row.releasedAt), sqlFigures(t, w, c, pf, account, rcpts, w.clk.now())
		en.mu.Unlock()
		if pf == nil {
			want.window = got.window // not read
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("message %d of %s: cache %+v (baseline %v)\nSQL %+v (baseline %v)", i, account, got, deref(got.baseline), want, deref(want.baseline))
		}
		if _, err := w.e.Evaluate(ctx, sub); err != nil {
			t.Fatal(err)
		}
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}
