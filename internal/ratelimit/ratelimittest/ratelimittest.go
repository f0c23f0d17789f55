// Package ratelimittest gives tests stores over the machine's Redis
// (127.0.0.1:6379), each test under its own key prefix, removed when the
// test ends. A test fails, not skips, when Redis is not answering.
package ratelimittest

import (
	"context"
	"crypto/rand"
	"log/slog"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/mairust/mairust/internal/ratelimit"
)

// URL is the test Redis.
const URL = "redis://127.0.0.1:6379"

// Prefix returns a key prefix of t's own; its keys are deleted when t ends.
func Prefix(t testing.TB) string {
	t.Helper()
	opt, err := redis.ParseURL(URL)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	if err := c.Ping(t.Context()).Err(); err != nil {
		c.Close()
		t.Fatalf("Redis is not answering on 127.0.0.1:6379 (%v); start it with scripts/deps.sh test, or: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no", err)
	}
	prefix := "mairust-test:" + rand.Text() + ":"
	t.Cleanup(func() {
		defer c.Close()
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("removing the test keys %s*: %v", prefix, err)
		}
	})
	return prefix
}

// Open returns a store over the test Redis with keys under prefix, closed
// when t ends.
func Open(t testing.TB, prefix string) *ratelimit.Redis {
	t.Helper()
	r, err := ratelimit.NewRedis(URL, prefix, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}
