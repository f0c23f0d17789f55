package breaker

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a fake clock, safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// call runs one allowed call with the given outcome, failing the test if it
// is refused.
func call(t *testing.T, s *Set, id string, success bool) {
	t.Helper()
	if ok, st := s.Allow(id); !ok {
		t.Fatalf("Allow(%q) refused, state %s", id, st)
	}
	s.Done(id, success)
}

func calls(t *testing.T, s *Set, id string, n int, success bool) {
	t.Helper()
	for range n {
		call(t, s, id, success)
	}
}

// recorder collects OnChange events.
type recorder struct {
	mu     sync.Mutex
	events []Status
}

func (r *recorder) add(st Status) {
	r.mu.Lock()
	r.events = append(r.events, st)
	r.mu.Unlock()
}

func (r *recorder) states() []State {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []State
	for _, e := range r.events {
		out = append(out, e.State)
	}
	return out
}

func equalStates(a, b []State) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDefaults(t *testing.T) {
	d := DefaultSettings()
	want := Settings{ConsecutiveFailures: 10, FailureRate: 0.8, Window: 5 * time.Minute, MinCalls: 20, CoolDown: time.Minute}
	if d != want {
		t.Fatalf("DefaultSettings() = %+v", d)
	}
	if got := New(Settings{}, nil).Settings(); got != want {
		t.Fatalf("zero Settings normalized to %+v", got)
	}
}

func TestConsecutiveFailures(t *testing.T) {
	c := newClock()
	s := New(DefaultSettings(), c.Now)
	var r recorder
	s.OnChange(r.add)

	calls(t, s, "p", 9, false)
	call(t, s, "p", true) // a success breaks the run
	calls(t, s, "p", 9, false)
	if st := s.Status("p"); st.State != Closed || st.ConsecutiveFailures != 9 {
		t.Fatalf("after 9 failures: %+v", st)
	}
	call(t, s, "p", false)
	st := s.Status("p")
	if st.State != Open || st.Reason != "10 consecutive failures" || !st.OpenedAt.Equal(c.Now()) {
		t.Fatalf("after 10 failures: %+v", st)
	}
	if ok, state := s.Allow("p"); ok || state != Open {
		t.Fatalf("Allow while open = %v, %s", ok, state)
	}
	if got := r.states(); !equalStates(got, []State{Open}) {
		t.Fatalf("OnChange states = %v", got)
	}
	if r.events[0].ID != "p" || r.events[0].Reason != "10 consecutive failures" {
		t.Fatalf("OnChange event = %+v", r.events[0])
	}
}

func TestRateTripNeedsMinCalls(t *testing.T) {
	c := newClock()
	cfg := DefaultSettings()
	cfg.ConsecutiveFailures = 1000 // only the rate rule
	s := New(cfg, c.Now)

	// Below MinCalls: 19 failures out of 19 do not trip.
	calls(t, s, "a", 19, false)
	if st := s.Status("a"); st.State != Closed || st.WindowCalls != 19 || st.WindowFailures != 19 {
		t.Fatalf("below MinCalls: %+v", st)
	}
	call(t, s, "a", false)
	if st := s.Status("a"); st.State != Open || st.Reason != "100% of 20 calls failed in 5m0s" {
		t.Fatalf("at MinCalls: %+v", st)
	}

	// Exactly 80 % is not over the rate; one more failure is.
	for range 4 {
		calls(t, s, "b", 4, false)
		call(t, s, "b", true)
	}
	if st := s.Status("b"); st.State != Closed || st.WindowCalls != 20 || st.WindowFailures != 16 {
		t.Fatalf("at 80%%: %+v", st)
	}
	call(t, s, "b", false)
	if st := s.Status("b"); st.State != Open || st.Reason != "81% of 21 calls failed in 5m0s" {
		t.Fatalf("over 80%%: %+v", st)
	}
}

func TestWindowExpiry(t *testing.T) {
	c := newClock()
	cfg := DefaultSettings()
	cfg.ConsecutiveFailures = 1000
	s := New(cfg, c.Now)

	calls(t, s, "p", 15, false)
	c.Advance(3 * time.Minute)
	calls(t, s, "p", 4, false)
	if st := s.Status("p"); st.WindowCalls != 19 {
		t.Fatalf("within window: %+v", st)
	}
	// The first 15 fall out; the 4 recent ones stay.
	c.Advance(2*time.Minute + cfg.Window/buckets)
	if st := s.Status("p"); st.State != Closed || st.WindowCalls != 4 || st.WindowFailures != 4 {
		t.Fatalf("after expiry: %+v", st)
	}
	calls(t, s, "p", 15, false) // 19 in window: still below MinCalls
	if st := s.Status("p"); st.State != Closed || st.WindowCalls != 19 {
		t.Fatalf("old failures counted: %+v", st)
	}
	c.Advance(time.Hour)
	if st := s.Status("p"); st.WindowCalls != 0 || st.ConsecutiveFailures != 34 {
		t.Fatalf("after an hour: %+v", st)
	}
}

func TestHalfOpenSingleTrial(t *testing.T) {
	c := newClock()
	s := New(DefaultSettings(), c.Now)
	var r recorder
	s.OnChange(r.add)
	s.Trip("p", "health check")

	c.Advance(time.Minute - time.Second)
	if ok, _ := s.Allow("p"); ok {
		t.Fatal("allowed before cool-down")
	}
	c.Advance(time.Second)

	const n = 100
	var granted atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if ok, st := s.Allow("p"); ok {
				if st != HalfOpen {
					t.Errorf("trial state = %s", st)
				}
				granted.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if g := granted.Load(); g != 1 {
		t.Fatalf("%d callers got the trial, want 1", g)
	}
	st := s.Status("p")
	if st.State != HalfOpen || st.Skipped != 1+n-1 {
		t.Fatalf("during trial: %+v", st)
	}

	s.Done("p", true)
	st = s.Status("p")
	if st.State != Closed || st.Reason != "" || !st.OpenedAt.IsZero() || st.ConsecutiveFailures != 0 || st.WindowCalls != 0 {
		t.Fatalf("after successful trial: %+v", st)
	}
	if ok, state := s.Allow("p"); !ok || state != Closed {
		t.Fatalf("Allow after close = %v, %s", ok, state)
	}
	if got := r.states(); !equalStates(got, []State{Open, HalfOpen, Closed}) {
		t.Fatalf("OnChange states = %v", got)
	}
}

func TestHalfOpenFailureReopens(t *testing.T) {
	c := newClock()
	s := New(DefaultSettings(), c.Now)
	calls(t, s, "p", 10, false)
	c.Advance(time.Minute)
	if ok, st := s.Allow("p"); !ok || st != HalfOpen {
		t.Fatalf("trial = %v, %s", ok, st)
	}
	c.Advance(10 * time.Second)
	s.Done("p", false)
	st := s.Status("p")
	if st.State != Open || st.Reason != "trial call failed" || !st.OpenedAt.Equal(c.Now()) {
		t.Fatalf("after failed trial: %+v", st)
	}
	c.Advance(time.Minute - time.Second)
	if ok, _ := s.Allow("p"); ok {
		t.Fatal("allowed before the fresh cool-down")
	}
	c.Advance(time.Second)
	if ok, st := s.Allow("p"); !ok || st != HalfOpen {
		t.Fatalf("second trial = %v, %s", ok, st)
	}
}

func TestLostTrialIsReissued(t *testing.T) {
	c := newClock()
	s := New(DefaultSettings(), c.Now)
	s.Trip("p", "admin")
	c.Advance(time.Minute)
	if ok, _ := s.Allow("p"); !ok {
		t.Fatal("no trial")
	}
	// The trial never reports.
	c.Advance(time.Minute - time.Second)
	if ok, _ := s.Allow("p"); ok {
		t.Fatal("second trial too early")
	}
	c.Advance(time.Second)
	if ok, st := s.Allow("p"); !ok || st != HalfOpen {
		t.Fatalf("reissued trial = %v, %s", ok, st)
	}
}

func TestLateOutcomeWhileOpenIgnored(t *testing.T) {
	c := newClock()
	s := New(DefaultSettings(), c.Now)
	if ok, _ := s.Allow("p"); !ok {
		t.Fatal("refused")
	}
	s.Trip("p", "health check")
	s.Done("p", true) // the call let through before Trip
	if st := s.Status("p"); st.State != Open {
		t.Fatalf("late outcome changed state: %+v", st)
	}
}

func TestReset(t *testing.T) {
	c := newClock()
	s := New(DefaultSettings(), c.Now)
	var r recorder
	s.OnChange(r.add)
	calls(t, s, "p", 10, false)
	s.Allow("p")
	s.Reset("p")
	st := s.Status("p")
	if st.State != Closed || st.Reason != "" || st.ConsecutiveFailures != 0 || st.WindowCalls != 0 || st.Skipped != 1 {
		t.Fatalf("after Reset: %+v", st)
	}
	if ok, _ := s.Allow("p"); !ok {
		t.Fatal("refused after Reset")
	}
	s.Reset("p") // already closed: no event
	if got := r.states(); !equalStates(got, []State{Open, Closed}) {
		t.Fatalf("OnChange states = %v", got)
	}
}

func TestTrip(t *testing.T) {
	c := newClock()
	s := New(DefaultSettings(), c.Now)
	var r recorder
	s.OnChange(r.add)
	call(t, s, "p", true)
	s.Trip("p", "health check")
	st := s.Status("p")
	if st.State != Open || st.Reason != "health check" || !st.OpenedAt.Equal(c.Now()) {
		t.Fatalf("after Trip: %+v", st)
	}
	// Tripping again restarts the cool-down.
	c.Advance(50 * time.Second)
	s.Trip("p", "admin")
	c.Advance(50 * time.Second)
	if ok, _ := s.Allow("p"); ok {
		t.Fatal("allowed before the restarted cool-down")
	}
	if st := s.Status("p"); st.Reason != "admin" {
		t.Fatalf("reason = %q", st.Reason)
	}
	// Trip works from half-open too.
	c.Advance(10 * time.Second)
	if ok, _ := s.Allow("p"); !ok {
		t.Fatal("no trial")
	}
	s.Trip("p", "health check")
	if st := s.Status("p"); st.State != Open {
		t.Fatalf("Trip from half-open: %+v", st)
	}
	if got := r.states(); !equalStates(got, []State{Open, HalfOpen, Open}) {
		t.Fatalf("OnChange states = %v", got)
	}
}

func TestApplyChangesThresholdsLive(t *testing.T) {
	c := newClock()
	s := New(DefaultSettings(), c.Now)
	calls(t, s, "p", 2, false)
	calls(t, s, "q", 10, false) // open

	cfg := DefaultSettings()
	cfg.ConsecutiveFailures = 3
	cfg.CoolDown = 10 * time.Second
	s.Apply(cfg)
	if got := s.Settings(); got != cfg {
		t.Fatalf("Settings() = %+v", got)
	}
	if st := s.Status("p"); st.State != Closed || st.ConsecutiveFailures != 2 || st.WindowCalls != 2 {
		t.Fatalf("Apply reset p: %+v", st)
	}
	if st := s.Status("q"); st.State != Open {
		t.Fatalf("Apply reset q: %+v", st)
	}
	call(t, s, "p", false)
	if st := s.Status("p"); st.State != Open || st.Reason != "3 consecutive failures" {
		t.Fatalf("new threshold not applied: %+v", st)
	}
	// The shorter cool-down applies to the breaker opened before Apply.
	c.Advance(10 * time.Second)
	if ok, st := s.Allow("q"); !ok || st != HalfOpen {
		t.Fatalf("new cool-down not applied: %v, %s", ok, st)
	}

	// A new window restarts the window counts but not the state.
	cfg.ConsecutiveFailures = 100
	s.Apply(cfg)
	calls(t, s, "r", 5, false)
	cfg.Window = time.Minute
	s.Apply(cfg)
	if st := s.Status("r"); st.WindowCalls != 0 || st.ConsecutiveFailures != 5 || st.State != Closed {
		t.Fatalf("after window change: %+v", st)
	}
	if st := s.Status("p"); st.State != Open {
		t.Fatalf("window change reset state: %+v", st)
	}
}

func TestSkipped(t *testing.T) {
	c := newClock()
	s := New(DefaultSettings(), c.Now)
	s.Trip("p", "admin")
	for range 7 {
		if ok, st := s.Allow("p"); ok || st != Open {
			t.Fatalf("Allow = %v, %s", ok, st)
		}
	}
	if st := s.Status("p"); st.Skipped != 7 {
		t.Fatalf("Skipped = %d", st.Skipped)
	}
	c.Advance(time.Minute)
	s.Allow("p") // trial: not skipped
	s.Allow("p") // refused while half-open: skipped
	if st := s.Status("p"); st.Skipped != 8 {
		t.Fatalf("Skipped = %d", st.Skipped)
	}
}

func TestAllAndRemove(t *testing.T) {
	s := New(DefaultSettings(), newClock().Now)
	s.Allow("c")
	s.Trip("a", "admin")
	s.Allow("b")
	all := s.All()
	if len(all) != 3 || all[0].ID != "a" || all[1].ID != "b" || all[2].ID != "c" || all[0].State != Open {
		t.Fatalf("All() = %+v", all)
	}
	s.Remove("a")
	if st := s.Status("a"); st.State != Closed || st.Reason != "" {
		t.Fatalf("removed breaker: %+v", st)
	}
	if n := len(s.All()); n != 2 {
		t.Fatalf("len(All()) = %d", n)
	}
}

func TestOnChangeMayCallSet(t *testing.T) {
	s := New(DefaultSettings(), newClock().Now)
	var got Status
	s.OnChange(func(Status) { got = s.Status("p") }) // would deadlock under the lock
	s.Trip("p", "admin")
	if got.State != Open {
		t.Fatalf("callback saw %+v", got)
	}
}

func TestConcurrentUse(t *testing.T) {
	c := newClock()
	s := New(DefaultSettings(), c.Now)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 500 {
				id := []string{"a", "b", "c"}[j%3]
				if ok, _ := s.Allow(id); ok {
					s.Done(id, (i+j)%4 == 0)
				}
				if j%50 == 0 {
					c.Advance(time.Second)
					s.All()
					s.Apply(DefaultSettings())
				}
				if j%97 == 0 {
					s.Reset(id)
				}
			}
		}()
	}
	wg.Wait()
}
