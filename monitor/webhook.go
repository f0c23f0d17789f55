package monitor

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mairust/mairust/controlplane/access"
	"github.com/mairust/mairust/controlplane/accounts"
	monitorv1 "github.com/mairust/mairust/proto/mairust/monitor/v1"
)

// Bounds of a webhook.
const (
	maxURLLen       = 2048 // bytes
	minSecretLen    = 16   // bytes
	maxSecretLen    = 256  // bytes
	lookupTimeout   = 5 * time.Second
	allowPrivateKey = "controlplane.monitor_webhook_allow_private"
)

// SetAlertWebhook sets the tenant's webhook, or removes it when the URL is
// empty, for its admins and owners; the secret is answered only here.
func (s *Service) SetAlertWebhook(ctx context.Context, req *connect.Request[monitorv1.SetAlertWebhookRequest]) (*connect.Response[monitorv1.SetAlertWebhookResponse], error) {
	if !s.cfg.Enabled {
		return nil, errDisabled
	}
	m := req.Msg
	resp := &monitorv1.SetAlertWebhookResponse{}
	q, args := `DELETE FROM monitor_webhooks WHERE tenant_id = $1`, []any{m.TenantId}
	if m.Url != "" {
		u, err := s.checkURL(ctx, m.Url)
		if err != nil {
			return nil, accounts.InvalidArgument("url", err)
		}
		secret, err := checkSecret(m.Secret)
		if err != nil {
			return nil, accounts.InvalidArgument("secret", err)
		}
		now := s.now().Truncate(time.Microsecond) // as PostgreSQL keeps it
		resp.Webhook, resp.Secret = &monitorv1.AlertWebhook{Url: u, UpdatedAt: timestamppb.New(now)}, secret
		q = `INSERT INTO monitor_webhooks (tenant_id, url, secret, updated_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (tenant_id) DO UPDATE SET url = excluded.url, secret = excluded.secret, updated_at = excluded.updated_at`
		args = append(args, u, secret, now)
	}
	err := access.InTenant(ctx, s.st, m.TenantId, "admin", func(tx pgx.Tx, _ string) error {
		_, err := tx.Exec(ctx, q, args...)
		return err
	})
	if err != nil {
		return nil, accounts.Fault(err)
	}
	return connect.NewResponse(resp), nil
}

// GetAlertWebhook returns the tenant's webhook, if any, without its secret,
// to its members.
func (s *Service) GetAlertWebhook(ctx context.Context, req *connect.Request[monitorv1.GetAlertWebhookRequest]) (*connect.Response[monitorv1.GetAlertWebhookResponse], error) {
	if !s.cfg.Enabled {
		return nil, errDisabled
	}
	resp := &monitorv1.GetAlertWebhookResponse{}
	err := access.InTenant(ctx, s.st, req.Msg.TenantId, "viewer", func(tx pgx.Tx, _ string) error {
		var u string
		var at time.Time
		err := tx.QueryRow(ctx, `SELECT url, updated_at FROM monitor_webhooks WHERE tenant_id = $1`, req.Msg.TenantId).Scan(&u, &at)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		resp.Webhook = &monitorv1.AlertWebhook{Url: u, UpdatedAt: timestamppb.New(at)}
		return err
	})
	if err != nil {
		return nil, accounts.Fault(err)
	}
	return connect.NewResponse(resp), nil
}

// checkURL checks a webhook URL and returns it as stored: http or https,
// with a host, no user:password, and unless the operator allows private
// webhooks, a host that is and resolves to public addresses only.
func (s *Service) checkURL(ctx context.Context, raw string) (string, error) {
	if len(raw) > maxURLLen {
		return "", fmt.Errorf("%d bytes: give at most %d", len(raw), maxURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", errors.New("not a valid URL: give an http:// or https:// URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("scheme %q: give an http:// or https:// URL", u.Scheme)
	case u.Hostname() == "":
		return "", errors.New("no host: give an http:// or https:// URL with a host")
	case u.User != nil:
		return "", errors.New("has a user:password part: leave it out, the secret signs the requests")
	}
	if s.cfg.AllowPrivateWebhooks {
		return u.String(), nil
	}
	host := u.Hostname()
	addrs, err := resolve(ctx, host)
	if err != nil {
		return "", fmt.Errorf("host %s does not resolve: %w", host, err)
	}
	for _, a := range addrs {
		kind := forbidden(a)
		if kind == "" {
			continue
		}
		what := host + " is"
		if a.String() != host {
			what = fmt.Sprintf("%s resolves to %s,", host, a.Unmap())
		}
		return "", fmt.Errorf("%s %s address: give a publicly reachable receiver (or the operator sets %s)", what, kind, allowPrivateKey)
	}
	return u.String(), nil
}

// resolve returns the addresses of host, an IP address or a name.
func resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// checkSecret returns the secret given, checked, or a new one when empty.
func checkSecret(secret string) (string, error) {
	switch {
	case secret == "":
		b := make([]byte, 32)
		rand.Read(b)
		return base64.RawURLEncoding.EncodeToString(b), nil
	case len(secret) < minSecretLen || len(secret) > maxSecretLen:
		return "", fmt.Errorf("%d bytes: give %d to %d, or none to have one generated", len(secret), minSecretLen, maxSecretLen)
	case strings.ContainsRune(secret, 0):
		return "", errors.New("contains a NUL character")
	}
	return secret, nil
}

// forbidden returns what kind of address a is, as "a loopback", when a
// webhook may not reach it; empty when it may.
func forbidden(a netip.Addr) string {
	a = a.Unmap()
	switch {
	case a.IsLoopback():
		return "a loopback"
	case a.IsPrivate():
		return "a private"
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast():
		return "a link-local"
	case a.IsUnspecified():
		return "an unspecified"
	case a.IsMulticast():
		return "a multicast"
	}
	return ""
}

// refuseForbidden is the webhook dialer's Control: it refuses to connect
// to a forbidden address once the host is resolved, so that a host
// resolving to another address when the alert is sent is refused too.
func refuseForbidden(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("webhook address %s: %w", address, err)
	}
	if kind := forbidden(ap.Addr()); kind != "" {
		return fmt.Errorf("refused to connect to %s, %s address (%s allows it)", ap.Addr(), kind, allowPrivateKey)
	}
	return nil
}

// webhookClient is the client alerts are POSTed with: it follows no
// redirect and, unless allowPrivate, connects to public addresses only,
// directly (no proxy, whose address would be the only one checked).
func webhookClient(allowPrivate bool) *http.Client {
	c := &http.Client{Timeout: webhookTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if !allowPrivate {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil
		t.DialContext = (&net.Dialer{Timeout: webhookTimeout, Control: refuseForbidden}).DialContext
		c.Transport = t
	}
	return c
}
