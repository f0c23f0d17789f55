// Package ratelimit decides whether one more event (a request, a message)
// for a key (a user, a client IP) fits its limit. Buckets live in memory
// (Memory, Limiter) or in a Redis shared by several agents (Redis); both
// apply the same GCRA token bucket. It knows nothing of HTTP or SMTP.
package ratelimit

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Limit is a token bucket: PerMinute events a minute sustained, up to Burst
// at once. PerMinute 0 or less allows everything; Burst 0 or less means
// PerMinute.
type Limit struct {
	PerMinute int
	Burst     int
}

// burst is the bucket's size.
func (l Limit) burst() int {
	if l.Burst > 0 {
		return l.Burst
	}
	return l.PerMinute
}

// interval is the time one token takes to refill.
func (l Limit) interval() time.Duration { return time.Minute / time.Duration(l.PerMinute) }

// Decision is the answer for one event. Limit 0 means no limit applied
// (unlimited, or the store failed open) and the other counts mean nothing.
type Decision struct {
	Allowed    bool
	Limit      int           // the bucket's size
	Remaining  int           // events allowed right now, after this one
	RetryAfter time.Duration // when refused: until the next event is allowed
	ResetAfter time.Duration // until the bucket is full again
}

// Store takes one event for key under l. A changed l applies from the next
// call; what the key used so far carries over. On an error the decision
// allows the event (fail open): the error is for the caller to report.
type Store interface {
	Allow(ctx context.Context, key string, l Limit) (Decision, error)
}

// maxKeys bounds the memory one Memory uses; beyond it, full buckets are dropped.
const maxKeys = 100000

// Memory keeps buckets in this process.
type Memory struct {
	mu  sync.Mutex
	tat map[string]time.Time // when each key's bucket is full again
	now func() time.Time
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{tat: map[string]time.Time{}, now: time.Now}
}

// Allow takes one token of key's bucket; it never fails.
func (m *Memory) Allow(_ context.Context, key string, l Limit) (Decision, error) {
	if l.PerMinute <= 0 {
		return Decision{Allowed: true}, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	tat, ok := m.tat[key]
	if !ok && len(m.tat) >= maxKeys {
		m.evict(now)
	}
	// GCRA: the bucket is full at tat; one event moves tat one interval on,
	// and is allowed while tat stays within burst intervals of now.
	tat = later(tat, now)
	next := tat.Add(l.interval())
	allowAt := next.Add(-time.Duration(l.burst()) * l.interval())
	if now.Before(allowAt) {
		return Decision{Limit: l.burst(), RetryAfter: allowAt.Sub(now), ResetAfter: tat.Sub(now)}, nil
	}
	m.tat[key] = next
	return Decision{Allowed: true, Limit: l.burst(), Remaining: int(now.Sub(allowAt) / l.interval()), ResetAfter: next.Sub(now)}, nil
}

// evict drops buckets that are full: forgetting them changes nothing.
func (m *Memory) evict(now time.Time) {
	for k, tat := range m.tat {
		if !tat.After(now) {
			delete(m.tat, k)
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Limiter is a Memory with one limit for every key, bursts of up to the
// per-minute rate.
type Limiter struct {
	mem       *Memory
	perMinute atomic.Int64
}

// New returns a limiter; perMinute 0 allows everything.
func New(perMinute int) *Limiter {
	l := &Limiter{mem: NewMemory()}
	l.SetLimit(perMinute)
	return l
}

// SetLimit changes the limit for every key.
func (l *Limiter) SetLimit(perMinute int) { l.perMinute.Store(int64(perMinute)) }

// Allow takes one token for key. When none is left it returns false and how
// long until one is.
func (l *Limiter) Allow(key string) (bool, time.Duration) {
	d, _ := l.mem.Allow(context.Background(), key, Limit{PerMinute: int(l.perMinute.Load())})
	return d.Allowed, d.RetryAfter
}
