package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

var redisErrors = prometheus.NewCounter(prometheus.CounterOpts{
	Namespace: "mairust", Subsystem: "ratelimit", Name: "redis_errors_total",
	Help: "Rate-limit decisions Redis failed to make; each such event was allowed.",
})

// The client's own messages go to the default logger at debug level: Redis
// logs failures itself, once per outage.
func init() { redis.SetLogger(clientLog{}) }

type clientLog struct{}

func (clientLog) Printf(ctx context.Context, format string, v ...any) {
	slog.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "ratelimit")
}

// Collectors returns the package's metrics for registration.
func Collectors() []prometheus.Collector { return []prometheus.Collector{redisErrors} }

// gcra is Memory.Allow in one atomic step on the Redis server's clock, so
// agents with skewed clocks agree. KEYS[1] holds when the bucket is full
// again (µs); it expires then. ARGV: the interval (µs), the burst.
// It returns {allowed, remaining, retry after µs, reset after µs}.
var gcra = redis.NewScript(`
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = math.max(tonumber(redis.call('GET', KEYS[1])) or now, now)
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
	return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, math.floor((now - allow_at) / interval), 0, new_tat - now}
`)

// Redis keeps buckets in a Redis that several agents share, one key per
// bucket under a prefix, each decision one EVALSHA.
//
// A failing Redis never blocks: Allow then allows the event and returns the
// error (fail open). Every failure counts in
// mairust_ratelimit_redis_errors_total; the first after a success is logged
// as a warning and the recovery as info, so an outage logs twice, not once
// per request. Timeouts are short (1s to connect, 500ms to answer, no
// retries) unless the URL sets them.
type Redis struct {
	client  *redis.Client
	prefix  string
	log     *slog.Logger
	failing atomic.Bool
}

// NewRedis returns a store over the Redis at url (redis:// or rediss://)
// whose keys start with prefix. It does not connect yet: Redis may be down
// when the agent starts.
func NewRedis(url, prefix string, log *slog.Logger) (*Redis, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: %w", err)
	}
	if opt.DialTimeout == 0 {
		opt.DialTimeout = time.Second
	}
	if opt.ReadTimeout == 0 {
		opt.ReadTimeout = 500 * time.Millisecond
	}
	if opt.MaxRetries == 0 {
		opt.MaxRetries = -1
	}
	opt.DialerRetries = 1
	return &Redis{client: redis.NewClient(opt), prefix: prefix, log: log}, nil
}

// Close closes the connections.
func (r *Redis) Close() error { return r.client.Close() }

// Allow takes one token of key's bucket.
func (r *Redis) Allow(ctx context.Context, key string, l Limit) (Decision, error) {
	if l.PerMinute <= 0 {
		return Decision{Allowed: true}, nil
	}
	v, err := gcra.Run(ctx, r.client, []string{r.prefix + key}, l.interval().Microseconds(), l.burst()).Int64Slice()
	if err == nil && len(v) != 4 {
		err = fmt.Errorf("the script answered %d values, want 4", len(v))
	}
	if err != nil {
		redisErrors.Inc()
		if !r.failing.Swap(true) {
			r.log.Warn("redis failed: rate limits are not enforced until it answers", "component", "ratelimit", "error", err)
		}
		return Decision{Allowed: true}, fmt.Errorf("ratelimit: redis: %w", err)
	}
	if r.failing.Swap(false) {
		r.log.Info("redis answers again: rate limits are enforced", "component", "ratelimit")
	}
	return Decision{
		Allowed:    v[0] == 1,
		Limit:      l.burst(),
		Remaining:  int(v[1]),
		RetryAfter: time.Duration(v[2]) * time.Microsecond,
		ResetAfter: time.Duration(v[3]) * time.Microsecond,
	}, nil
}
