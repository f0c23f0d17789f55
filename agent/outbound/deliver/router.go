// Package deliver owns the network half of outbound mail: deciding where a
// recipient domain's mail goes (Router: static routes, a smarthost, or MX
// lookup through a configurable resolver), talking SMTP to those hosts
// (Client: opportunistic STARTTLS, per-recipient outcomes), capping
// connections per destination (Limiter) and the retry schedule for
// temporary failures (Schedule.Next).
//
// It does not own the queue, persistence, DKIM signing or bounce generation:
// the queue worker calls Client.Deliver for one domain's recipients, stores
// the Result, reschedules TempFail recipients with Schedule.Next and asks the dsn
// package for a bounce on PermFail or expiry.
package deliver

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Resolver is the DNS used for routing. *net.Resolver satisfies it.
type Resolver interface {
	LookupMX(ctx context.Context, domain string) ([]*net.MX, error)
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// NewResolver returns a resolver using server ("ip:port" or "ip", port 53
// implied) for every query, or the system resolver when server is empty.
func NewResolver(server string) Resolver {
	if server == "" {
		return net.DefaultResolver
	}
	if _, _, err := net.SplitHostPort(server); err != nil {
		server = net.JoinHostPort(server, "53")
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, server)
		},
	}
}

// Smarthost relays all mail through one host, e.g. a provider's relay or a
// test sink.
type Smarthost struct {
	Addr string // host:port
	// Username and Password enable AUTH PLAIN when Username is set.
	Username, Password string
	// RequireTLS refuses to talk (or authenticate) without TLS; the
	// certificate is then verified (see Client TLS settings).
	RequireTLS bool
	// ImplicitTLS connects with TLS from the start (port 465 style).
	ImplicitTLS bool
}

// Hop is one host to try, with its resolved addresses.
type Hop struct {
	Host       string   // name as found (MX target, static or smarthost host); used for SNI
	Addrs      []string // ip:port, in dialing order
	Preference uint16   // MX preference, 0 for static routes and smarthosts
	// Relay settings, set for smarthosts only.
	Username, Password string
	RequireTLS         bool
	ImplicitTLS        bool
}

// Route is where a domain's mail goes: the hops in the order to try.
type Route struct {
	Domain string
	// Key names the destination for concurrency limits: the domain for
	// MX routing, "static:<domain>" or "smarthost:<addr>".
	Key  string
	Hops []Hop
}

// RouteError is a routing failure. Permanent ones (no such domain, null
// MX) bounce; temporary ones (DNS trouble) are retried.
type RouteError struct {
	Domain    string
	Permanent bool
	// Status is the enhanced status code to report (e.g. "5.1.2").
	Status string
	Msg    string
	Err    error
}

func (e *RouteError) Error() string {
	s := fmt.Sprintf("route %s: %s", e.Domain, e.Msg)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *RouteError) Unwrap() error { return e.Err }

// Router decides where a recipient domain goes. Precedence: a static
// route for the domain, then the smarthost, then MX lookup.
type Router struct {
	// Resolver for MX and address lookups; nil means the system resolver.
	Resolver Resolver
	// Static maps a domain (case-insensitive) to host:port entries tried
	// in order.
	Static map[string][]string
	// Smarthost, when set, receives all mail not statically routed.
	Smarthost *Smarthost
	// Port for MX hosts and the A/AAAA fallback; 0 means 25.
	Port int
	// Shuffle reorders equal-preference MX hosts; nil means math/rand.
	Shuffle func(n int, swap func(i, j int))
}

func (r *Router) resolver() Resolver {
	if r.Resolver == nil {
		return net.DefaultResolver
	}
	return r.Resolver
}

func (r *Router) port() string {
	if r.Port == 0 {
		return "25"
	}
	return strconv.Itoa(r.Port)
}

// Route returns the hops for domain. Errors are *RouteError.
func (r *Router) Route(ctx context.Context, domain string) (Route, error) {
	domain = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(domain)), ".")
	if domain == "" {
		return Route{}, &RouteError{Domain: domain, Permanent: true, Status: "5.1.2", Msg: "empty domain"}
	}
	for d, addrs := range r.Static {
		if strings.EqualFold(strings.TrimSuffix(d, "."), domain) {
			hops, err := r.hostPorts(ctx, domain, addrs)
			if err != nil {
				return Route{}, err
			}
			return Route{Domain: domain, Key: "static:" + domain, Hops: hops}, nil
		}
	}
	if s := r.Smarthost; s != nil {
		hops, err := r.hostPorts(ctx, domain, []string{s.Addr})
		if err != nil {
			return Route{}, err
		}
		for i := range hops {
			hops[i].Username, hops[i].Password = s.Username, s.Password
			hops[i].RequireTLS, hops[i].ImplicitTLS = s.RequireTLS, s.ImplicitTLS
		}
		return Route{Domain: domain, Key: "smarthost:" + s.Addr, Hops: hops}, nil
	}
	return r.mx(ctx, domain)
}

func (r *Router) hostPorts(ctx context.Context, domain string, entries []string) ([]Hop, error) {
	var hops []Hop
	var lastErr error
	for _, e := range entries {
		host, port, err := net.SplitHostPort(e)
		if err != nil {
			return nil, &RouteError{Domain: domain, Permanent: true, Status: "5.3.5", Msg: "bad route " + strconv.Quote(e), Err: err}
		}
		addrs, err := r.addrs(ctx, host, port)
		if err != nil {
			lastErr = err
			continue
		}
		hops = append(hops, Hop{Host: host, Addrs: addrs})
	}
	if len(hops) == 0 {
		return nil, &RouteError{Domain: domain, Status: "4.4.3", Msg: "no route host resolves", Err: lastErr}
	}
	return hops, nil
}

func (r *Router) addrs(ctx context.Context, host, port string) ([]string, error) {
	if ip := net.ParseIP(host); ip != nil {
		return []string{net.JoinHostPort(host, port)}, nil
	}
	ips, err := r.resolver().LookupHost(ctx, host)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("%s: no addresses", host)
	}
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = net.JoinHostPort(ip, port)
	}
	return out, nil
}

func notFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

func (r *Router) mx(ctx context.Context, domain string) (Route, error) {
	res := r.resolver()
	mxs, err := res.LookupMX(ctx, domain)
	if err != nil && !notFound(err) {
		return Route{}, &RouteError{Domain: domain, Status: "4.4.3", Msg: "MX lookup failed", Err: err}
	}
	route := Route{Domain: domain, Key: domain}
	if len(mxs) == 0 {
		// RFC 5321 §5.1: no MX, use the domain's own address records.
		addrs, aerr := r.addrs(ctx, domain, r.port())
		if aerr != nil {
			if notFound(aerr) {
				return Route{}, &RouteError{Domain: domain, Permanent: true, Status: "5.1.2", Msg: "domain not found", Err: aerr}
			}
			return Route{}, &RouteError{Domain: domain, Status: "4.4.3", Msg: "address lookup failed", Err: aerr}
		}
		route.Hops = []Hop{{Host: domain, Addrs: addrs}}
		return route, nil
	}
	// RFC 7505 null MX: a single "." record.
	for _, m := range mxs {
		if m.Host == "." || m.Host == "" {
			return Route{}, &RouteError{Domain: domain, Permanent: true, Status: "5.1.10", Msg: "domain does not accept mail (null MX)"}
		}
	}
	sorted := append([]*net.MX(nil), mxs...)
	shuffle := r.Shuffle
	if shuffle == nil {
		shuffle = rand.Shuffle
	}
	shuffle(len(sorted), func(i, j int) { sorted[i], sorted[j] = sorted[j], sorted[i] })
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Pref < sorted[j].Pref })
	var lastErr error
	for _, m := range sorted {
		host := strings.TrimSuffix(m.Host, ".")
		addrs, aerr := r.addrs(ctx, host, r.port())
		if aerr != nil {
			lastErr = aerr
			continue
		}
		route.Hops = append(route.Hops, Hop{Host: host, Addrs: addrs, Preference: m.Pref})
	}
	if len(route.Hops) == 0 {
		return Route{}, &RouteError{Domain: domain, Status: "4.4.3", Msg: "no MX host resolves", Err: lastErr}
	}
	return route, nil
}
