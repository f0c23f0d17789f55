package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/ratelimit"
	"github.com/mairust/mairust/internal/ratelimit/ratelimittest"
)

// limitCase runs handlers wrapped in rate limits, with windows long enough
// that the real clocks refill nothing during a test.
type limitCase struct {
	t   *testing.T
	srv *Server
	rl  *rateLimits
}

func newLimitCase(t *testing.T, store ratelimit.Store, c config.RateLimit) *limitCase {
	rl := &rateLimits{store: store}
	rl.apply(c)
	return &limitCase{t: t, srv: &Server{log: slog.New(slog.DiscardHandler)}, rl: rl}
}

// serve answers one request to h from addr, on behalf of p.
func (lc *limitCase) serve(h func(http.ResponseWriter, *http.Request) error, addr string, p principal) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "/api/v1/test", nil)
	req.RemoteAddr = addr
	req = req.WithContext(context.WithValue(req.Context(), principalKey{}, p))
	rec := httptest.NewRecorder()
	lc.srv.handle(h)(rec, req)
	return rec
}

// want checks an answer's status and RateLimit headers ("" for absent).
func (lc *limitCase) want(what string, rec *httptest.ResponseRecorder, status int, limit, remaining string) {
	lc.t.Helper()
	h := rec.Header()
	if rec.Code != status || h.Get("RateLimit-Limit") != limit || h.Get("RateLimit-Remaining") != remaining {
		lc.t.Fatalf("%s: %d limit %q remaining %q, want %d limit %q remaining %q: %s",
			what, rec.Code, h.Get("RateLimit-Limit"), h.Get("RateLimit-Remaining"), status, limit, remaining, rec.Body)
	}
	if limit != "" && h.Get("RateLimit-Reset") == "" {
		lc.t.Fatalf("%s: no RateLimit-Reset", what)
	}
}

// wantRefused checks a 429 problem whose detail has whose and whose
// Retry-After is between 1 and most seconds.
func (lc *limitCase) wantRefused(what string, rec *httptest.ResponseRecorder, limit, whose string, most int) {
	lc.t.Helper()
	lc.want(what, rec, http.StatusTooManyRequests, limit, "0")
	var p Problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || rec.Header().Get("Content-Type") != "application/problem+json" ||
		p.Status != http.StatusTooManyRequests || !strings.Contains(p.Detail, whose) {
		lc.t.Fatalf("%s: %s %s, want a 429 problem %s", what, rec.Header().Get("Content-Type"), rec.Body, whose)
	}
	if s, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || s < 1 || s > most {
		lc.t.Fatalf("%s: Retry-After %q, want 1 to %d seconds", what, rec.Header().Get("Retry-After"), most)
	}
}

func ok(w http.ResponseWriter, _ *http.Request) error {
	w.WriteHeader(http.StatusNoContent)
	return nil
}

var (
	alice      = principal{User: accounts.User{ID: 1}}
	aliceToken = principal{User: accounts.User{ID: 1}, TokenID: 9}
	bob        = principal{User: accounts.User{ID: 2}}
)

func TestRateLimit(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) ratelimit.Store{
		"memory": func(*testing.T) ratelimit.Store { return ratelimit.NewMemory() },
		"redis":  func(t *testing.T) ratelimit.Store { return ratelimittest.Open(t, ratelimittest.Prefix(t)) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Run("user", func(t *testing.T) { testUserLimit(t, open(t)) })
			t.Run("admin IP", func(t *testing.T) { testAdminIPLimit(t, open(t)) })
			t.Run("endpoint", func(t *testing.T) { testEndpointLimit(t, open(t)) })
			t.Run("hot change", func(t *testing.T) { testLimitChange(t, open(t)) })
		})
	}
}

func testUserLimit(t *testing.T, store ratelimit.Store) {
	lc := newLimitCase(t, store, config.RateLimit{UserPerMinute: 3, AdminIPPerMinute: 30})
	h := lc.rl.user(ok)
	for i := range 3 {
		lc.want("alice", lc.serve(h, "192.0.2.1:1", alice), http.StatusNoContent, "3", strconv.Itoa(2-i))
	}
	lc.wantRefused("alice's 4th", lc.serve(h, "192.0.2.1:1", alice), "3", "for this user", 20)
	lc.want("bob", lc.serve(h, "192.0.2.1:1", bob), http.StatusNoContent, "3", "2")
	lc.want("alice's API token", lc.serve(h, "192.0.2.1:1", aliceToken), http.StatusNoContent, "3", "2")
}

func testAdminIPLimit(t *testing.T, store ratelimit.Store) {
	lc := newLimitCase(t, store, config.RateLimit{UserPerMinute: 60, AdminIPPerMinute: 30})
	h := lc.rl.clientIP(ok)
	for i := range 10 {
		lc.want("burst", lc.serve(h, "192.0.2.1:"+strconv.Itoa(1000+i), alice), http.StatusNoContent, "10", strconv.Itoa(9-i))
	}
	lc.wantRefused("past the burst", lc.serve(h, "192.0.2.1:2000", bob), "10", "from this address", 2)
	lc.wantRefused("the same IPv4 mapped", lc.serve(h, "[::ffff:192.0.2.1]:1", bob), "10", "from this address", 2)
	lc.want("another IP", lc.serve(h, "192.0.2.2:1000", alice), http.StatusNoContent, "10", "9")

	for range 10 {
		lc.serve(h, "[2001:db8::1]:1", alice)
	}
	lc.wantRefused("the same /64", lc.serve(h, "[2001:db8::2]:1", alice), "10", "from this address", 2)
	lc.want("another /64", lc.serve(h, "[2001:db8:0:1::1]:1", alice), http.StatusNoContent, "10", "9")
}

func testEndpointLimit(t *testing.T, store ratelimit.Store) {
	lc := newLimitCase(t, store, config.RateLimit{UserPerMinute: 60, AdminIPPerMinute: 30})
	raw := lc.rl.user(lc.rl.endpoint("raw", ratelimit.Limit{PerMinute: 2}, ok))
	lc.want("raw", lc.serve(raw, "192.0.2.1:1", alice), http.StatusNoContent, "2", "1")
	lc.want("raw", lc.serve(raw, "192.0.2.1:1", alice), http.StatusNoContent, "2", "0")
	lc.wantRefused("raw, 3rd", lc.serve(raw, "192.0.2.1:1", alice), "2", "to this endpoint", 30)
	lc.want("another endpoint", lc.serve(lc.rl.user(ok), "192.0.2.1:1", alice), http.StatusNoContent, "60", "56")
	lc.want("raw for bob", lc.serve(raw, "192.0.2.1:1", bob), http.StatusNoContent, "2", "1")
}

func testLimitChange(t *testing.T, store ratelimit.Store) {
	lc := newLimitCase(t, store, config.RateLimit{UserPerMinute: 100, AdminIPPerMinute: 30})
	user, ip := lc.rl.user(ok), lc.rl.clientIP(ok)
	lc.want("before", lc.serve(user, "192.0.2.1:1", alice), http.StatusNoContent, "100", "99")
	lc.want("before", lc.serve(ip, "192.0.2.1:1", alice), http.StatusNoContent, "10", "9")

	lc.rl.apply(config.RateLimit{UserPerMinute: 2, AdminIPPerMinute: 18})
	lc.want("lowered", lc.serve(user, "192.0.2.1:1", alice), http.StatusNoContent, "2", "0")
	lc.wantRefused("lowered, 2nd", lc.serve(user, "192.0.2.1:1", alice), "2", "for this user", 30)
	lc.want("admin lowered", lc.serve(ip, "192.0.2.1:1", alice), http.StatusNoContent, "6", "4")

	lc.rl.apply(config.RateLimit{UserPerMinute: 1000, AdminIPPerMinute: 30})
	if rec := lc.serve(user, "192.0.2.1:1", alice); rec.Code != http.StatusNoContent || rec.Header().Get("RateLimit-Limit") != "1000" {
		lc.t.Fatalf("raised: %d limit %q, want 204 under 1000", rec.Code, rec.Header().Get("RateLimit-Limit"))
	}
}

func TestRateLimitRedisDownAllows(t *testing.T) {
	store, err := ratelimit.NewRedis("redis://127.0.0.1:1", "mairust-test:", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	lc := newLimitCase(t, store, config.RateLimit{UserPerMinute: 1, AdminIPPerMinute: 1})
	for range 3 {
		lc.want("redis down", lc.serve(lc.rl.user(lc.rl.clientIP(ok)), "192.0.2.1:1", alice), http.StatusNoContent, "", "")
	}
}

func TestNewRateLimits(t *testing.T) {
	c := config.Default().RateLimit
	rl, err := newRateLimits(c, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, isMemory := rl.store.(*ratelimit.Memory); !isMemory || rl.cfg.Load().UserPerMinute != 60 {
		t.Fatalf("default: %T, %+v; want memory with the default limits", rl.store, rl.cfg.Load())
	}
	c.RedisURL = ratelimittest.URL
	if rl, err = newRateLimits(c, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	r, isRedis := rl.store.(*ratelimit.Redis)
	if !isRedis {
		t.Fatalf("with a redis URL: %T, want redis", rl.store)
	}
	r.Close()
	c.RedisURL = "redis://127.0.0.1:port"
	if _, err := newRateLimits(c, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "ratelimit.redis_url") {
		t.Fatalf("bad URL: %v, want an error naming ratelimit.redis_url", err)
	}
}
