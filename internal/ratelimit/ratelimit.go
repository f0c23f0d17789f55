// Package ratelimit keeps in-memory token buckets keyed by a string (a client
// IP, a user). Limits can change while running.
package ratelimit

import (
	"sync"
	"time"
)

// maxKeys bounds the memory one limiter uses; beyond it, idle buckets are dropped.
const maxKeys = 100000

// Limiter allows about perMinute events a minute per key, with bursts of up
// to perMinute.
type Limiter struct {
	mu        sync.Mutex
	perMinute int
	buckets   map[string]*bucket
	now       func() time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// New returns a limiter; perMinute 0 allows everything.
func New(perMinute int) *Limiter {
	return &Limiter{perMinute: perMinute, buckets: map[string]*bucket{}, now: time.Now}
}

// SetLimit changes the limit for every key.
func (l *Limiter) SetLimit(perMinute int) {
	l.mu.Lock()
	l.perMinute = perMinute
	l.mu.Unlock()
}

// Allow takes one token for key. When none is left it returns false and how
// long until one is.
func (l *Limiter) Allow(key string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perMinute <= 0 {
		return true, 0
	}
	now := l.now()
	rate := float64(l.perMinute) / 60 // tokens a second
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxKeys {
			l.evict(now, rate)
		}
		b = &bucket{tokens: float64(l.perMinute), last: now}
		l.buckets[key] = b
	}
	b.tokens = min(float64(l.perMinute), b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) / rate * float64(time.Second))
	}
	b.tokens--
	return true, 0
}

// evict drops buckets that have refilled completely: forgetting them changes nothing.
func (l *Limiter) evict(now time.Time, rate float64) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*rate >= float64(l.perMinute) {
			delete(l.buckets, k)
		}
	}
}
