package api

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/ratelimit"
)

// redisKeyPrefix starts the API's keys in a Redis shared with other agents.
const redisKeyPrefix = "mairust:api:ratelimit:"

// rateLimits holds the API's request limits (config.RateLimit) and wraps
// handlers with them: per user on every authenticated endpoint, per client
// IP on sign-in and the admin endpoints, and per user with an endpoint's own
// limit on expensive ones. Counters live in memory or, with
// ratelimit.redis_url, in a Redis the agents share; when Redis fails,
// requests pass (see ratelimit.Redis). Answers carry RateLimit-Limit,
// RateLimit-Remaining and RateLimit-Reset of the tightest limit passed; a
// refusal is a 429 problem with Retry-After.
type rateLimits struct {
	store ratelimit.Store
	cfg   atomic.Pointer[config.RateLimit]
}

// newRateLimits keeps the counters where c says, with c's limits.
func newRateLimits(c config.RateLimit, log *slog.Logger) (*rateLimits, error) {
	rl := &rateLimits{store: ratelimit.NewMemory()}
	if c.RedisURL != "" {
		r, err := ratelimit.NewRedis(c.RedisURL, redisKeyPrefix, log)
		if err != nil {
			return nil, fmt.Errorf("ratelimit.redis_url: %w", err)
		}
		rl.store = r
	}
	rl.apply(c)
	return rl, nil
}

// apply takes new limits for the next requests; what a client used so far
// still counts. The Redis URL needs a restart.
func (rl *rateLimits) apply(c config.RateLimit) { rl.cfg.Store(&c) }

// user limits h, an authenticated handler, per user (per API token when one
// was used) to ratelimit.user_per_minute.
func (rl *rateLimits) user(h func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		l := ratelimit.Limit{PerMinute: rl.cfg.Load().UserPerMinute}
		if err := rl.take(w, r, "user/"+callerKey(r), l, "for this user"); err != nil {
			return err
		}
		return h(w, r)
	}
}

// endpoint limits h, an expensive authenticated handler, per user to l, on
// top of the user limit; name keeps its counters apart from other endpoints'.
func (rl *rateLimits) endpoint(name string, l ratelimit.Limit, h func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := rl.take(w, r, name+"/"+callerKey(r), l, "to this endpoint"); err != nil {
			return err
		}
		return h(w, r)
	}
}

// clientIP limits h per client address to ratelimit.admin_ip_per_minute
// with a strict burst, twenty seconds' worth (10 at the default 30, enough
// for the admin pages' few parallel calls): for sign-in and the admin
// endpoints.
func (rl *rateLimits) clientIP(h func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		perMinute := rl.cfg.Load().AdminIPPerMinute
		l := ratelimit.Limit{PerMinute: perMinute, Burst: max(1, perMinute/3)}
		if err := rl.take(w, r, "ip/"+clientNet(r), l, "from this address"); err != nil {
			return err
		}
		return h(w, r)
	}
}

// take passes the request through l for key. It sets the RateLimit headers
// unless a tighter limit already did, and refuses with 429 and Retry-After.
func (rl *rateLimits) take(w http.ResponseWriter, r *http.Request, key string, l ratelimit.Limit, whose string) error {
	// A store error allows the request; the store logs and counts it.
	d, _ := rl.store.Allow(r.Context(), key, l)
	if d.Limit == 0 {
		return nil
	}
	h := w.Header()
	if prev, err := strconv.Atoi(h.Get("RateLimit-Remaining")); err != nil || d.Remaining <= prev {
		h.Set("RateLimit-Limit", strconv.Itoa(d.Limit))
		h.Set("RateLimit-Remaining", strconv.Itoa(d.Remaining))
		h.Set("RateLimit-Reset", seconds(d.ResetAfter))
	}
	if d.Allowed {
		return nil
	}
	h.Set("Retry-After", seconds(d.RetryAfter))
	return problem(http.StatusTooManyRequests, "", "too many requests %s (at most %d a minute, %d at once); retry in %s s",
		whose, l.PerMinute, d.Limit, seconds(d.RetryAfter))
}

// seconds rounds d up to whole seconds, as the headers count.
func seconds(d time.Duration) string {
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
}

// callerKey names the request's principal: its API token, else its user.
func callerKey(r *http.Request) string {
	p := caller(r)
	if p.TokenID != 0 {
		return "token:" + strconv.FormatInt(p.TokenID, 10)
	}
	return "user:" + strconv.FormatInt(p.ID, 10)
}

// clientNet is the client's address from the connection (no forwarding
// headers are trusted). IPv6 clients count per /64, the block one
// subscriber usually holds.
func clientNet(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	if a = a.Unmap(); a.Is4() {
		return a.String()
	}
	p, _ := a.WithZone("").Prefix(64)
	return p.String()
}
