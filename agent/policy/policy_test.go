package policy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mairust/mairust/agent/accounts/accountstest"
	"github.com/mairust/mairust/internal/pgtest"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type world struct {
	t    *testing.T
	pool *pgxpool.Pool
	clk  *clock
	e    *Engine
	seq  int
}

func newWorld(t *testing.T, s Settings) *world {
	t.Helper()
	pool, err := accountstest.Open(context.Background(), pgtest.NewDatabase(t, "policy"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	clk := &clock{t: time.Date(2030, 3, 4, 10, 0, 0, 0, time.UTC)}
	e, err := New(pool, s, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return &world{t: t, pool: pool, clk: clk, e: e}
}

// flush waits until the evaluations are written.
func (w *world) flush() {
	w.t.Helper()
	if err := w.e.Flush(context.Background()); err != nil {
		w.t.Fatal(err)
	}
}

// send submits one message to n fresh recipients with the given spam score
// (reject threshold 15).
func (w *world) send(account string, n int, spam float64) Decision {
	w.t.Helper()
	var rcpts []string
	for i := 0; i < n; i++ {
		w.seq++
		rcpts = append(rcpts, fmt.Sprintf("r%d@dest.test", w.seq))
	}
	d, err := w.e.Evaluate(context.Background(), Submission{Account: account, TenantID: "t1", Recipients: rcpts, SpamScore: spam, SpamReject: 15})
	if err != nil {
		w.t.Fatal(err)
	}
	return d
}

func (w *world) status(account string) Status {
	w.t.Helper()
	st, err := w.e.Status(context.Background(), account)
	if err != nil {
		w.t.Fatal(err)
	}
	return st
}

func (w *world) events(account string) []string {
	w.t.Helper()
	rows, err := w.pool.Query(context.Background(), `SELECT kind || ':' || actor FROM outbound_events WHERE account=$1 ORDER BY id`, account)
	if err != nil {
		w.t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			w.t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		w.t.Fatal(err)
	}
	return out
}

func TestNormalSenderAllowed(t *testing.T) {
	w := newWorld(t, DefaultSettings())
	for i := 0; i < 30; i++ {
		d := w.send("Alice@Example.test", 2, 1)
		if d.Action != Allow || !d.Sent() || d.Message != "" {
			t.Fatalf("message %d: %+v", i, d)
		}
		w.clk.add(20 * time.Minute)
	}
	if st := w.status("alice@example.test"); st.State != Allowed {
		t.Fatalf("status %+v", st)
	}
	if ev := w.events("alice@example.test"); len(ev) != 0 {
		t.Fatalf("events %v", ev)
	}
}

func TestBurstWarnsThenRefusesPastSoftCap(t *testing.T) {
	w := newWorld(t, DefaultSettings())
	// Mildly spammy mail (content 0.4) in a burst from a fresh account.
	var warnedAt int
	for i := 1; i <= 200 && warnedAt == 0; i++ {
		d := w.send("mallory@example.test", 0, 6) // no recipients: the spike term governs
		switch d.Action {
		case Allow:
		case Warn:
			warnedAt = i
			if d.Score < 0.5 || d.Score >= 0.8 || d.Counts.Hour != i {
				t.Fatalf("warn decision %+v", d)
			}
		default:
			t.Fatalf("message %d: %+v", i, d)
		}
	}
	// spike = (h/10 − 1)/9 must reach (0.5 − 0.16)/0.4 = 0.85: h ≥ 87.
	if warnedAt != 87 {
		t.Fatalf("warned at message %d, want 87", warnedAt)
	}
	st := w.status("mallory@example.test")
	if st.State != SoftLimited || !st.SoftUntil.Equal(w.clk.now().Add(24*time.Hour)) || st.By != "policy" {
		t.Fatalf("status %+v", st)
	}
	// Already past the soft cap (20 % of 200 = 40 an hour): refused, temporarily.
	d := w.send("mallory@example.test", 1, 0)
	if d.Action != Refuse || d.SMTPCode != 450 || d.Message != RateLimitedText || !strings.Contains(d.Reason, "soft limit of 40") {
		t.Fatalf("past soft cap: %+v", d)
	}
	// An hour later the window is empty: 40 more get through, then refused.
	w.clk.add(61 * time.Minute)
	for i := 1; i <= 40; i++ {
		if d := w.send("mallory@example.test", 1, 0); !d.Sent() {
			t.Fatalf("soft-limited message %d: %+v", i, d)
		}
	}
	if d := w.send("mallory@example.test", 1, 0); d.Action != Refuse || d.SMTPCode != 450 {
		t.Fatalf("41st: %+v", d)
	}
	// After the soft limit period the account is allowed again.
	w.clk.add(24 * time.Hour)
	if st := w.status("mallory@example.test"); st.State != Allowed {
		t.Fatalf("after period: %+v", st)
	}
	if got, want := strings.Join(w.events("mallory@example.test"), ","), "warn:policy,soft_limit_end:system"; got != want {
		t.Fatalf("events %s, want %s", got, want)
	}
}

func TestBaselineLowersSpike(t *testing.T) {
	w := newWorld(t, DefaultSettings())
	// An account that sends 50 an hour for three hours.
	for h := 0; h < 3; h++ {
		for i := 0; i < 50; i++ {
			if d := w.send("bulk@example.test", 0, 0); !d.Sent() {
				t.Fatalf("%+v", d)
			}
		}
		w.clk.add(time.Hour)
	}
	w.clk.add(time.Hour)
	var regular, fresh Decision
	for i := 0; i < 100; i++ {
		regular = w.send("bulk@example.test", 0, 0)
		fresh = w.send("fresh@example.test", 0, 0)
	}
	if regular.Counts.Baseline != 50 || fresh.Counts.Baseline != 10 {
		t.Fatalf("baselines %v %v", regular.Counts.Baseline, fresh.Counts.Baseline)
	}
	// regular: usage 100/200 = 0.5, spike (2−1)/9; fresh: spike (10−1)/9 = 1.
	if regular.Factors.Rate != 0.5 || fresh.Factors.Rate != 1 {
		t.Fatalf("rates %v %v", regular.Factors.Rate, fresh.Factors.Rate)
	}
	// Clean mail: rate alone stays under the warn threshold.
	if fresh.Action != Allow || fresh.Score != 0.4 {
		t.Fatalf("fresh %+v", fresh)
	}
}

func TestHardLimits(t *testing.T) {
	s := DefaultSettings()
	s.MaxPerHour, s.MaxPerDay = 5, 8
	w := newWorld(t, s)
	for i := 0; i < 5; i++ {
		w.send("a@example.test", 0, 0)
	}
	if d := w.send("a@example.test", 0, 0); d.Action != Refuse || d.SMTPCode != 450 || d.Reason != "hourly limit reached" {
		t.Fatalf("%+v", d)
	}
	w.clk.add(time.Hour)
	for i := 0; i < 3; i++ {
		w.send("a@example.test", 0, 0)
	}
	if d := w.send("a@example.test", 0, 0); d.Action != Refuse || d.Reason != "daily limit reached" {
		t.Fatalf("%+v", d)
	}
}

func suspend(t *testing.T, w *world, account string) Decision {
	t.Helper()
	// 100 new recipients saturate the rate factor (0.4); content at the
	// reject threshold adds 0.4: 0.8 suspends.
	d := w.send(account, 100, 15)
	if d.Action != Suspend || d.Sent() || d.SMTPCode != 550 || d.Message != SuspendedText || d.Score != 0.8 {
		t.Fatalf("suspend: %+v", d)
	}
	return d
}

func TestSpamSuspendsThenRefusesUntilRelease(t *testing.T) {
	w := newWorld(t, DefaultSettings())
	// The same volume of clean mail is allowed.
	if d := w.send("clean@example.test", 100, 0); d.Action != Allow || d.Score != 0.4 {
		t.Fatalf("clean: %+v", d)
	}
	suspend(t, w, "spam@example.test")
	const exact = "Sending from this account is temporarily suspended. Please contact your administrator."
	if SuspendedText != exact {
		t.Fatal("SuspendedText changed")
	}
	for i := 0; i < 3; i++ {
		d := w.send("spam@example.test", 1, 0)
		if d.Action != Refuse || d.Message != exact || d.SMTPCode != 550 {
			t.Fatalf("while suspended: %+v", d)
		}
		w.clk.add(10 * time.Hour)
	}
	st := w.status("spam@example.test")
	if st.State != Suspended || st.By != "policy" || st.SuspendedAt.IsZero() {
		t.Fatalf("status %+v", st)
	}
	if err := w.e.Release(context.Background(), "clean@example.test", "admin@example.test", "x"); !errors.Is(err, ErrNotSuspended) {
		t.Fatalf("release of an allowed account: %v", err)
	}
	if err := w.e.Release(context.Background(), "spam@example.test", "admin@example.test", "password reset"); err != nil {
		t.Fatal(err)
	}
	st = w.status("spam@example.test")
	if st.State != Allowed || st.By != "admin@example.test" || st.Reason != "password reset" {
		t.Fatalf("after release %+v", st)
	}
	d := w.send("spam@example.test", 1, 0)
	if !d.Sent() || d.Counts.Suspensions30d != 1 || d.Factors.History != 1 {
		t.Fatalf("after release: %+v", d)
	}
	if got := strings.Join(w.events("spam@example.test"), ","); got != "suspend:policy,release:admin@example.test" {
		t.Fatalf("events %s", got)
	}
	w.flush()
	var refused, suspended int
	if err := w.pool.QueryRow(context.Background(), `SELECT sum(refused), sum(suspended) FROM outbound_daily WHERE account='spam@example.test'`).Scan(&refused, &suspended); err != nil {
		t.Fatal(err)
	}
	if refused != 4 || suspended != 1 {
		t.Fatalf("daily refused %d suspended %d", refused, suspended)
	}
}

// A release starts the rate windows afresh: the burst that caused the
// suspension no longer counts, the suspension still weighs in history,
// and a restarted engine (reading released_at) decides the same.
func TestReleaseRestartsRateWindows(t *testing.T) {
	s := DefaultSettings()
	s.Weights = Weights{Rate: 1}
	s.MaxPerHour, s.SoftLimitFraction = 10, 1
	w := newWorld(t, s)
	const a = "burst@example.test"
	sent := 0
	for ; sent < 20 && w.send(a, 1, 0).Sent(); sent++ {
		w.clk.add(time.Second)
	}
	if st := w.status(a); st.State != Suspended || sent != 7 {
		t.Fatalf("after %d messages: %+v", sent, st)
	}
	w.clk.add(time.Minute)
	if err := w.e.Release(context.Background(), a, "admin@example.test", "password reset"); err != nil {
		t.Fatal(err)
	}
	w.clk.add(time.Second)
	d := w.send(a, 1, 0)
	if d.Action != Allow || d.Counts.Hour != 1 || d.Counts.Day != 1 || d.Counts.Suspensions30d != 1 {
		t.Fatalf("first message after the release: %+v", d)
	}
	// The same after a restart, from the table.
	e2, err := New(w.pool, s, w.clk.now)
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close(context.Background())
	if err := w.e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.clk.add(time.Second)
	d, err = e2.Evaluate(context.Background(), Submission{Account: a, TenantID: "t1", Recipients: []string{"x@dest.test"}})
	if err != nil || d.Action != Allow || d.Counts.Hour != 2 {
		t.Fatalf("after a restart: %+v, %v", d, err)
	}
}

func TestAutoReenable(t *testing.T) {
	s := DefaultSettings()
	s.AutoReenableAfterHours = 2
	w := newWorld(t, s)
	suspend(t, w, "x@example.test")
	w.clk.add(2*time.Hour - time.Second)
	if d := w.send("x@example.test", 1, 0); d.Action != Refuse || d.Message != SuspendedText {
		t.Fatalf("before: %+v", d)
	}
	w.clk.add(time.Second)
	st := w.status("x@example.test")
	if st.State != SoftLimited || st.By != "system" || !st.SoftUntil.Equal(w.clk.now().Add(24*time.Hour)) {
		t.Fatalf("after: %+v", st)
	}
	if d := w.send("x@example.test", 1, 0); !d.Sent() {
		t.Fatalf("after: %+v", d)
	}
	if got := strings.Join(w.events("x@example.test"), ","); got != "suspend:policy,auto_reenable:system" {
		t.Fatalf("events %s", got)
	}
}

func TestWhitelistProfile(t *testing.T) {
	s := DefaultSettings()
	s.Whitelist = []Profile{
		{ID: "newsletter", Accounts: []string{"News@Company.test"}, MaxRate: "5000 msgs/hour", Description: "Official newsletter"},
		{ID: "alerts", Accounts: []string{"alerts@company.test"}, MaxRate: "10 msgs/minute"},
	}
	w := newWorld(t, s)
	for i := 1; i <= 2000; i++ {
		d := w.send("news@company.test", 1, 1)
		if d.Action != Allow || d.Profile != "newsletter" {
			t.Fatalf("newsletter message %d: %+v", i, d)
		}
		if i%100 == 0 {
			w.clk.add(time.Minute)
		}
	}
	if d := w.send("news@company.test", 1, 1); d.Counts.Window != 2001 || d.Factors.Rate != 2001.0/5000 {
		t.Fatalf("%+v", d)
	}
	// The same traffic from an ordinary account stops at its hourly limit.
	for i := 0; i < 200; i++ {
		w.send("plain@company.test", 0, 0)
	}
	if d := w.send("plain@company.test", 0, 0); d.Action != Refuse {
		t.Fatalf("plain: %+v", d)
	}
	for i := 0; i < 10; i++ {
		if d := w.send("alerts@company.test", 0, 0); !d.Sent() {
			t.Fatalf("alert %d: %+v", i, d)
		}
	}
	if d := w.send("alerts@company.test", 0, 0); d.Action != Refuse || !strings.Contains(d.Reason, "10 msgs/minute of profile alerts") {
		t.Fatalf("11th alert: %+v", d)
	}
	w.clk.add(time.Minute)
	if d := w.send("alerts@company.test", 0, 0); !d.Sent() {
		t.Fatalf("next minute: %+v", d)
	}
}

func TestParseRate(t *testing.T) {
	good := map[string]Rate{
		"5000 msgs/hour":  {5000, time.Hour},
		"100 msgs/minute": {100, time.Minute},
		"20000 msgs/day":  {20000, 24 * time.Hour},
	}
	for s, want := range good {
		if r, err := ParseRate(s); err != nil || r != want || r.String() != s {
			t.Errorf("%q: %v %v", s, r, err)
		}
	}
	bad := map[string]string{
		"":                               "not of the form",
		"5000":                           "not of the form",
		"5000 msgs/week":                 `unit "msgs/week"`,
		"5000 msg/hour":                  `unit "msg/hour"`,
		"5000  msgs/hour":                `unit " msgs/hour"`,
		"+5 msgs/hour":                   "not a positive whole number",
		"1.5 msgs/hour":                  "not a positive whole number",
		"0 msgs/hour":                    "at least 1",
		"99999999999999999999 msgs/hour": "too large",
		"5000 msgs/hour ":                "unit",
	}
	for s, want := range bad {
		if _, err := ParseRate(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", s, err, want)
		}
	}
}

func TestValidate(t *testing.T) {
	if err := DefaultSettings().Validate(); err != nil {
		t.Fatal(err)
	}
	s := DefaultSettings()
	s.Weights.Content = 0.5
	s.SuspendThreshold = 0.4
	s.MaxPerHour = 0
	s.SpikeRatio = 1
	s.AutoReenableAfterHours = -1
	warn := 0.9
	s.Whitelist = []Profile{
		{ID: "newsletter", Accounts: []string{"news@company.test"}, MaxRate: "5000 msgs/hr"},
		{ID: "other", Accounts: []string{"news@company.test"}, MaxRate: "1 msgs/day", WarnThreshold: &warn},
		{Accounts: []string{"x"}, MaxRate: "1 msgs/day"},
	}
	err := s.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"outbound_policy.weights: rate + content + history must be 1",
		"outbound_policy.suspend_threshold: must be above warn_threshold",
		"outbound_policy.max_per_hour",
		"outbound_policy.spike_ratio",
		"outbound_policy.auto_reenable_after_hours",
		`outbound_whitelist[0].max_rate: profile "newsletter": "5000 msgs/hr": unit "msgs/hr" must be msgs/minute, msgs/hour or msgs/day`,
		`outbound_whitelist[1].accounts: profile "other": "news@company.test" is already in profile "newsletter"`,
		`outbound_whitelist[1].suspend_threshold: profile "other": must be above warn_threshold 0.9`,
		"outbound_whitelist[2].id: profile #3: is empty",
		`outbound_whitelist[2].accounts: profile #3: "x" is not an address`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

func TestApplyHotReload(t *testing.T) {
	w := newWorld(t, DefaultSettings())
	bad := DefaultSettings()
	bad.WarnThreshold = 2
	if err := w.e.Apply(bad); err == nil {
		t.Fatal("invalid settings applied")
	}
	if d := w.send("a@example.test", 1, 9); d.Action != Allow { // 0.4·0.6 = 0.24
		t.Fatalf("%+v", d)
	}
	s := DefaultSettings()
	s.WarnThreshold, s.SuspendThreshold = 0.2, 0.9
	if err := w.e.Apply(s); err != nil {
		t.Fatal(err)
	}
	if d := w.send("a@example.test", 1, 9); d.Action != Warn {
		t.Fatalf("%+v", d)
	}
}

func TestHistoryFromFeedback(t *testing.T) {
	w := newWorld(t, DefaultSettings())
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if err := w.e.RecordFeedback(ctx, "a@example.test", Complaint); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.e.RecordFeedback(ctx, "a@example.test", "spam"); err == nil {
		t.Fatal("unknown feedback accepted")
	}
	if d := w.send("a@example.test", 1, 0); d.Factors.History != 1 || d.Counts.Complaints30d != 3 {
		t.Fatalf("%+v", d)
	}
	w.clk.add(31 * 24 * time.Hour)
	if d := w.send("a@example.test", 1, 0); d.Factors.History != 0 {
		t.Fatalf("%+v", d)
	}
}

func TestPurge(t *testing.T) {
	w := newWorld(t, DefaultSettings())
	ctx := context.Background()
	suspend(t, w, "old@example.test") // refused: its 100 recipients are not remembered
	w.send("keep@example.test", 2, 0)
	w.clk.add(20 * 24 * time.Hour)
	w.send("keep@example.test", 1, 0)
	w.clk.add(11 * 24 * time.Hour) // the first records are 31 days old
	p, err := w.e.Purge(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p.Messages != 2 || p.Recipients != 2 || p.Hourly != 1 || p.Daily != 0 || p.Events != 0 {
		t.Fatalf("purged %+v", p)
	}
	w.clk.add(150 * 24 * time.Hour) // 181 days after the first day
	if p, err = w.e.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	if p.Messages != 1 || p.Daily != 2 || p.Events != 1 {
		t.Fatalf("purged %+v", p)
	}
	var n int
	if err := w.pool.QueryRow(ctx, `SELECT count(*) FROM outbound_daily`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("daily rows left %d %v", n, err)
	}
}

func TestConcurrentEvaluateKeepsCounts(t *testing.T) {
	w := newWorld(t, DefaultSettings())
	const per = 25
	hours := make(chan int, 2*per)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				d, err := w.e.Evaluate(context.Background(), Submission{Account: "c@example.test",
					Recipients: []string{fmt.Sprintf("g%d-%d@dest.test", g, i), "shared@dest.test"}})
				if err != nil {
					errs <- err
					return
				}
				hours <- d.Counts.Hour
			}
		}(g)
	}
	wg.Wait()
	close(hours)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for h := range hours {
		seen[h] = true
	}
	for h := 1; h <= 2*per; h++ {
		if !seen[h] {
			t.Fatalf("hour count %d never seen: %v", h, seen)
		}
	}
	w.flush()
	var msgs, newRcpts int
	if err := w.pool.QueryRow(context.Background(), `SELECT messages, new_recipients FROM outbound_daily WHERE account='c@example.test'`).Scan(&msgs, &newRcpts); err != nil {
		t.Fatal(err)
	}
	if msgs != 2*per || newRcpts != 2*per+1 {
		t.Fatalf("daily messages %d new recipients %d", msgs, newRcpts)
	}
}
