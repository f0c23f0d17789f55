// Package breaker keeps one circuit breaker per plugin: it decides whether a
// call may go through and learns from each outcome. It does not call plugins.
//
// A breaker is closed (calls go through) until it sees ConsecutiveFailures
// failures in a row, or more than FailureRate of the calls in the last Window
// fail once at least MinCalls calls were made in it. It is then open: calls
// are refused and counted as skipped. After CoolDown one caller gets a trial
// call (half-open); its outcome closes the breaker or opens it again with a
// fresh cool-down.
//
// Usage:
//
//	if ok, _ := set.Allow(id); !ok {
//		// skip the plugin
//	} else {
//		err := call()
//		set.Done(id, err == nil)
//	}
package breaker

import (
	"fmt"
	"sort"
	"sync"
	"time"
)

// State is the state of one breaker.
type State string

const (
	Closed   State = "closed"    // calls go through
	Open     State = "open"      // calls are refused
	HalfOpen State = "half-open" // one trial call is in flight, others are refused
)

// Settings are the thresholds shared by all breakers of a Set. A field that
// is zero or negative takes its default value. A FailureRate of 1 or more
// disables the failure-rate rule.
type Settings struct {
	ConsecutiveFailures int           // open after this many failures in a row
	FailureRate         float64       // open when more than this fraction of calls in Window fail...
	Window              time.Duration // ...over this rolling window...
	MinCalls            int           // ...and the window holds at least this many calls
	CoolDown            time.Duration // time an open breaker waits before a trial call
}

// DefaultSettings returns 10 consecutive failures, 80 % failures in 5
// minutes with at least 20 calls, and a one-minute cool-down.
func DefaultSettings() Settings {
	return Settings{
		ConsecutiveFailures: 10,
		FailureRate:         0.8,
		Window:              5 * time.Minute,
		MinCalls:            20,
		CoolDown:            time.Minute,
	}
}

func (s Settings) normalized() Settings {
	d := DefaultSettings()
	if s.ConsecutiveFailures <= 0 {
		s.ConsecutiveFailures = d.ConsecutiveFailures
	}
	if s.FailureRate <= 0 {
		s.FailureRate = d.FailureRate
	}
	if s.Window <= 0 {
		s.Window = d.Window
	}
	if s.MinCalls <= 0 {
		s.MinCalls = d.MinCalls
	}
	if s.CoolDown <= 0 {
		s.CoolDown = d.CoolDown
	}
	return s
}

// Status is a snapshot of one breaker, for the admin API and for logging.
type Status struct {
	ID                  string    `json:"id"`
	State               State     `json:"state"`
	Reason              string    `json:"reason,omitempty"` // why it opened; empty when closed
	OpenedAt            time.Time `json:"opened_at,omitzero"`
	ConsecutiveFailures int       `json:"consecutive_failures"`
	WindowCalls         int       `json:"window_calls"`
	WindowFailures      int       `json:"window_failures"`
	Skipped             int64     `json:"skipped"` // calls refused while open or half-open, since creation
}

// Set holds the breakers of all plugins. It is safe for concurrent use.
type Set struct {
	mu       sync.Mutex
	now      func() time.Time
	settings Settings
	onChange func(Status)
	m        map[string]*breaker
}

type breaker struct {
	state    State
	reason   string
	openedAt time.Time
	trialAt  time.Time // when the half-open trial was handed out
	consec   int
	skipped  int64
	win      window
}

// New returns an empty Set. now is the clock; nil means time.Now.
func New(s Settings, now func() time.Time) *Set {
	if now == nil {
		now = time.Now
	}
	return &Set{now: now, settings: s.normalized(), m: make(map[string]*breaker)}
}

// OnChange registers fn to be called after every state change (closed→open,
// open→half-open, half-open→closed or open, and changes made by Reset and
// Trip). fn runs outside the Set's lock, so it may call the Set.
func (s *Set) OnChange(fn func(Status)) {
	s.mu.Lock()
	s.onChange = fn
	s.mu.Unlock()
}

// Settings returns the thresholds in use.
func (s *Set) Settings() Settings {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.settings
}

// Apply replaces the thresholds. Existing breakers keep their state and
// counts; the new thresholds apply from their next call or outcome. If the
// Window changes, the rolling window counts start afresh.
func (s *Set) Apply(settings Settings) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settings = settings.normalized()
	w := bucketWidth(s.settings.Window)
	for _, b := range s.m {
		if b.win.width != w {
			b.win = window{width: w}
		}
	}
}

// Allow reports whether a call to plugin id may go through, and the
// breaker's state. A caller that gets ok must report the outcome with Done.
// When an open breaker's cool-down has passed, exactly one caller gets ok
// with state HalfOpen (the trial); the others are refused until it reports.
// A trial that does not report within another CoolDown is handed out again.
func (s *Set) Allow(id string) (ok bool, state State) {
	var ev *Status
	s.mu.Lock()
	defer func() { s.unlock(ev) }()
	now := s.now()
	b := s.get(id)
	switch b.state {
	case Closed:
		return true, Closed
	case Open:
		if !now.Before(b.openedAt.Add(s.settings.CoolDown)) {
			b.state = HalfOpen
			b.trialAt = now
			ev = s.event(id, b, now)
			return true, HalfOpen
		}
	case HalfOpen:
		if !now.Before(b.trialAt.Add(s.settings.CoolDown)) {
			b.trialAt = now // the previous trial never reported
			return true, HalfOpen
		}
	}
	b.skipped++
	return false, b.state
}

// Done records the outcome of a call that Allow let through. In the closed
// state it updates the counts and may open the breaker; in the half-open
// state success closes the breaker and clears its counts, failure opens it
// again with a fresh cool-down. Outcomes that arrive while open (calls let
// through before it opened) are ignored; one that arrives while half-open is
// taken as the trial's, as the Set cannot tell calls apart.
func (s *Set) Done(id string, success bool) {
	var ev *Status
	s.mu.Lock()
	defer func() { s.unlock(ev) }()
	now := s.now()
	b := s.get(id)
	cfg := s.settings
	switch b.state {
	case Open:
		return
	case HalfOpen:
		if success {
			b.close()
		} else {
			b.open(now, "trial call failed")
		}
		ev = s.event(id, b, now)
		return
	}
	b.win.add(now, !success)
	if success {
		b.consec = 0
		return
	}
	b.consec++
	if b.consec >= cfg.ConsecutiveFailures {
		b.open(now, fmt.Sprintf("%d consecutive failures", b.consec))
		ev = s.event(id, b, now)
		return
	}
	calls, fails := b.win.counts(now)
	if calls >= cfg.MinCalls && float64(fails) > cfg.FailureRate*float64(calls) {
		pct := 100 * float64(fails) / float64(calls)
		b.open(now, fmt.Sprintf("%.0f%% of %d calls failed in %s", pct, calls, cfg.Window))
		ev = s.event(id, b, now)
	}
}

// Reset closes the breaker of plugin id and clears its counts (an admin
// re-enabling the plugin). The Skipped total is kept.
func (s *Set) Reset(id string) {
	var ev *Status
	s.mu.Lock()
	defer func() { s.unlock(ev) }()
	b := s.get(id)
	was := b.state
	b.close()
	if was != Closed {
		ev = s.event(id, b, s.now())
	}
}

// Trip opens the breaker of plugin id for reason (for example "health
// check" or "admin"), starting a fresh cool-down even if it was open.
func (s *Set) Trip(id, reason string) {
	var ev *Status
	s.mu.Lock()
	defer func() { s.unlock(ev) }()
	now := s.now()
	b := s.get(id)
	was := b.state
	b.open(now, reason)
	if was != Open {
		ev = s.event(id, b, now)
	}
}

// Remove forgets the breaker of plugin id.
func (s *Set) Remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// Status returns a snapshot of plugin id's breaker; an unknown id is closed.
func (s *Set) Status(id string) Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.m[id]
	if !ok {
		return Status{ID: id, State: Closed}
	}
	return s.status(id, b, s.now())
}

// All returns a snapshot of every breaker, sorted by id.
func (s *Set) All() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	out := make([]Status, 0, len(s.m))
	for id, b := range s.m {
		out = append(out, s.status(id, b, now))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// unlock releases the lock, then reports ev (if any) to the callback.
func (s *Set) unlock(ev *Status) {
	fn := s.onChange
	s.mu.Unlock()
	if ev != nil && fn != nil {
		fn(*ev)
	}
}

func (s *Set) get(id string) *breaker {
	b, ok := s.m[id]
	if !ok {
		b = &breaker{state: Closed, win: window{width: bucketWidth(s.settings.Window)}}
		s.m[id] = b
	}
	return b
}

func (s *Set) status(id string, b *breaker, now time.Time) Status {
	calls, fails := b.win.counts(now)
	return Status{
		ID:                  id,
		State:               b.state,
		Reason:              b.reason,
		OpenedAt:            b.openedAt,
		ConsecutiveFailures: b.consec,
		WindowCalls:         calls,
		WindowFailures:      fails,
		Skipped:             b.skipped,
	}
}

func (b *breaker) open(now time.Time, reason string) {
	b.state = Open
	b.reason = reason
	b.openedAt = now
	b.trialAt = time.Time{}
}

func (b *breaker) close() {
	b.state = Closed
	b.reason = ""
	b.openedAt = time.Time{}
	b.trialAt = time.Time{}
	b.consec = 0
	b.win = window{width: b.win.width}
}

// buckets is the number of time buckets in a rolling window; memory per
// breaker is fixed whatever the call volume.
const buckets = 10

// window counts calls and failures over roughly the last buckets*width:
// time is cut into buckets of width, and a bucket is reused (cleared) once
// it falls out of the window.
type window struct {
	width time.Duration
	slots [buckets]slot
}

type slot struct {
	epoch           int64 // which bucket of time this slot counts
	calls, failures int
}

func bucketWidth(w time.Duration) time.Duration {
	return max(w/buckets, 1)
}

func (w *window) epoch(now time.Time) int64 {
	return now.UnixNano() / int64(w.width)
}

func (w *window) add(now time.Time, failed bool) {
	e := w.epoch(now)
	s := &w.slots[((e%buckets)+buckets)%buckets]
	if s.epoch != e || s.calls == 0 {
		*s = slot{epoch: e}
	}
	s.calls++
	if failed {
		s.failures++
	}
}

func (w *window) counts(now time.Time) (calls, failures int) {
	e := w.epoch(now)
	for _, s := range w.slots {
		if s.calls > 0 && s.epoch > e-buckets && s.epoch <= e {
			calls += s.calls
			failures += s.failures
		}
	}
	return calls, failures
}

func (s *Set) event(id string, b *breaker, now time.Time) *Status {
	st := s.status(id, b, now)
	return &st
}
