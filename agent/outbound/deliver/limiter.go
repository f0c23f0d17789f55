package deliver

import (
	"context"
	"sync"
)

// Limiter caps concurrent connections per destination key (a domain, or a
// Route.Key). The zero value is not usable; use NewLimiter.
type Limiter struct {
	max  int
	mu   sync.Mutex
	keys map[string]*slot
}

type slot struct {
	sem  chan struct{}
	refs int // holders plus waiters
}

// NewLimiter allows at most max (minimum 1) holders per key at once.
func NewLimiter(max int) *Limiter {
	if max < 1 {
		max = 1
	}
	return &Limiter{max: max, keys: map[string]*slot{}}
}

// Acquire waits for a slot for key, or returns ctx's error. The returned
// release must be called exactly once (later calls do nothing).
func (l *Limiter) Acquire(ctx context.Context, key string) (release func(), err error) {
	l.mu.Lock()
	s := l.keys[key]
	if s == nil {
		s = &slot{sem: make(chan struct{}, l.max)}
		l.keys[key] = s
	}
	s.refs++
	l.mu.Unlock()

	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		l.unref(key, s)
		return nil, ctx.Err()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			<-s.sem
			l.unref(key, s)
		})
	}, nil
}

func (l *Limiter) unref(key string, s *slot) {
	l.mu.Lock()
	s.refs--
	if s.refs == 0 {
		delete(l.keys, key)
	}
	l.mu.Unlock()
}

// InUse reports how many slots of key are held (for metrics and tests).
func (l *Limiter) InUse(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.keys[key]; s != nil {
		return len(s.sem)
	}
	return 0
}
