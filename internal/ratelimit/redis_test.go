package ratelimit_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/mairust/mairust/internal/ratelimit"
	"github.com/mairust/mairust/internal/ratelimit/ratelimittest"
)

// TestRedisLikeMemory checks that memory and Redis decide alike. The windows are
// long (a token every 10s), so the real clocks move nothing.
func TestRedisLikeMemory(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) ratelimit.Store{
		"memory": func(*testing.T) ratelimit.Store { return ratelimit.NewMemory() },
		"redis":  func(t *testing.T) ratelimit.Store { return ratelimittest.Open(t, ratelimittest.Prefix(t)) },
	} {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			l := ratelimit.Limit{PerMinute: 6, Burst: 3}
			for i := range 3 {
				d := allow(t, s, "a", l)
				if !d.Allowed || d.Limit != 3 || d.Remaining != 2-i || d.RetryAfter != 0 {
					t.Fatalf("event %d: %+v, want allowed, limit 3, %d remaining", i, d, 2-i)
				}
			}
			d := allow(t, s, "a", l)
			if d.Allowed || d.Remaining != 0 || d.RetryAfter <= 9*time.Second || d.RetryAfter > 10*time.Second ||
				d.ResetAfter <= 29*time.Second || d.ResetAfter > 30*time.Second {
				t.Fatalf("4th event: %+v, want refused, retry in 10s, full in 30s", d)
			}
			if d := allow(t, s, "b", l); !d.Allowed || d.Remaining != 2 {
				t.Fatalf("another key: %+v, want its own bucket", d)
			}
			if d := allow(t, s, "a", ratelimit.Limit{}); !d.Allowed || d.Limit != 0 {
				t.Fatalf("no limit: %+v, want allowed with limit 0", d)
			}
			if d := allow(t, s, "c", ratelimit.Limit{PerMinute: 6}); !d.Allowed || d.Limit != 6 || d.Remaining != 5 {
				t.Fatalf("no burst: %+v, want a bucket of PerMinute", d)
			}
		})
	}
}

// allow takes one event, failing t on an error.
func allow(t *testing.T, s ratelimit.Store, key string, l ratelimit.Limit) ratelimit.Decision {
	t.Helper()
	d, err := s.Allow(t.Context(), key, l)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestRedisSharedByAgents(t *testing.T) {
	prefix := ratelimittest.Prefix(t)
	a, b := ratelimittest.Open(t, prefix), ratelimittest.Open(t, prefix)
	l := ratelimit.Limit{PerMinute: 1, Burst: 3}
	allow(t, a, "user:1", l)
	allow(t, a, "user:1", l)
	if d := allow(t, b, "user:1", l); !d.Allowed || d.Remaining != 0 {
		t.Fatalf("second agent: %+v, want the last token", d)
	}
	if d := allow(t, a, "user:1", l); d.Allowed || d.RetryAfter <= 0 {
		t.Fatalf("first agent after the second took the last token: %+v, want refused", d)
	}
	if d := allow(t, ratelimittest.Open(t, ratelimittest.Prefix(t)), "user:1", l); !d.Allowed {
		t.Fatalf("another prefix: %+v, want its own buckets", d)
	}
}

func TestRedisRefillAndExpiry(t *testing.T) {
	prefix := ratelimittest.Prefix(t)
	s := ratelimittest.Open(t, prefix)
	l := ratelimit.Limit{PerMinute: 600, Burst: 2} // a token every 100ms
	var d ratelimit.Decision
	for i := 0; ; i++ {
		if d = allow(t, s, "k", l); !d.Allowed {
			break
		}
		if i == 100 {
			t.Fatal("100 events in a row allowed under a limit of 2")
		}
	}
	if d.RetryAfter <= 0 || d.RetryAfter > 100*time.Millisecond {
		t.Fatalf("refused with RetryAfter %v, want within one interval", d.RetryAfter)
	}
	time.Sleep(d.RetryAfter)
	if d := allow(t, s, "k", l); !d.Allowed {
		t.Fatalf("after RetryAfter: %+v, want allowed", d)
	}

	allow(t, s, "slow", ratelimit.Limit{PerMinute: 1, Burst: 2})
	opt, _ := redis.ParseURL(ratelimittest.URL)
	c := redis.NewClient(opt)
	defer c.Close()
	ttl, err := c.PTTL(t.Context(), prefix+"slow").Result()
	if err != nil || ttl <= 0 || ttl > time.Minute {
		t.Fatalf("the key's TTL is %v (%v), want until the bucket is full again, 1 minute", ttl, err)
	}
}

func TestRedisDownFailsOpen(t *testing.T) {
	var logs bytes.Buffer
	s, err := ratelimit.NewRedis("redis://127.0.0.1:1", "mairust-test:", slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := testutil.ToFloat64(ratelimit.RedisErrors)
	for range 2 {
		d, err := s.Allow(t.Context(), "k", ratelimit.Limit{PerMinute: 1})
		if err == nil || !d.Allowed || d.Limit != 0 {
			t.Fatalf("redis down: %+v, %v; want allowed, limit 0 and the error", d, err)
		}
	}
	if n := testutil.ToFloat64(ratelimit.RedisErrors) - before; n != 2 {
		t.Fatalf("%v failures counted, want 2", n)
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Fatalf("%d warnings logged, want 1 for the outage:\n%s", n, logs.String())
	}
	if _, err := ratelimit.NewRedis("http://127.0.0.1:6379", "", slog.Default()); err == nil {
		t.Fatal("an http:// URL was taken")
	}
}
