package accounts

import (
	"context"
	"fmt"
	"math"
	"net"
	"strconv"

	"connectrpc.com/connect"

	"github.com/mairust/mairust/internal/ratelimit"
)

// loginsPerAccount limits the log-in attempts on one account, from
// however many addresses.
var loginsPerAccount = ratelimit.Limit{PerMinute: 5, Burst: 10}

// allowPublic takes one call without a session (sign-up, verification,
// log-in) from the client of req, or says when to try again.
func (s *Service) allowPublic(ctx context.Context, req connect.AnyRequest) error {
	ip := req.Peer().Addr
	if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	return s.allow(ctx, "ip:"+ip, ratelimit.Limit{PerMinute: s.cfg.PublicPerMinute}, "calls from your address")
}

// allow takes one event for key under l, or returns ResourceExhausted
// with a Retry-After.
func (s *Service) allow(ctx context.Context, key string, l ratelimit.Limit, what string) error {
	d, _ := s.limits.Allow(ctx, key, l) // in memory: no error
	if d.Allowed {
		return nil
	}
	secs := int(math.Ceil(d.RetryAfter.Seconds()))
	err := connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("too many %s: try again in %d seconds", what, secs))
	err.Meta().Set("Retry-After", strconv.Itoa(secs))
	return err
}
