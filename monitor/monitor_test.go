package monitor

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mairust/mairust/agent/plugins/sdk"
	"github.com/mairust/mairust/controlplane/auth"
	"github.com/mairust/mairust/controlplane/cptest"
	"github.com/mairust/mairust/controlplane/mailer"
	"github.com/mairust/mairust/controlplane/server"
	monitorv1 "github.com/mairust/mairust/proto/mairust/monitor/v1"
	"github.com/mairust/mairust/proto/mairust/monitor/v1/monitorv1connect"
)

// clock is the service's clock in tests, moved by hand.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }

// env is the service with its alert sender on a fresh database behind the
// control plane's server on loopback.
type env struct {
	*cptest.Env
	svc   *Service
	mail  *mailer.Recorder
	clock *clock
}

func start(t *testing.T, cfg Config) *env {
	t.Helper()
	e := &env{Env: cptest.New(t, "monitor"), mail: &mailer.Recorder{}, clock: &clock{}}
	e.clock.ns.Store(time.Now().Truncate(time.Second).UnixNano())
	svc, err := New(e.Store, cfg, e.mail, e.Registry, e.Log)
	if err != nil {
		t.Fatal(err)
	}
	svc.now, svc.poll = e.clock.now, 20*time.Millisecond
	e.svc = svc
	e.Serve(t, []server.Service{svc.Service(e.Options()...)}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

// tenant is a tenant with an agent and members of each role.
type tenant struct {
	id, agent  string
	agentToken string
	sessions   map[string]string // by role
}

func (e *env) tenant(t *testing.T, domain string) tenant {
	t.Helper()
	tn := tenant{id: cptest.UUID(), agent: cptest.UUID(), sessions: map[string]string{}}
	e.Exec(t, tn.id, `INSERT INTO tenants(id, name) VALUES ($1, $2)`, tn.id, domain)
	for _, role := range []string{"owner", "admin", "viewer"} {
		account := cptest.UUID()
		e.Exec(t, tn.id, `INSERT INTO accounts(id, email, password_hash, email_verified_at) VALUES ($1, $2, 'x', now())`, account, role+"@"+domain)
		e.Exec(t, tn.id, `INSERT INTO memberships(tenant_id, account_id, role) VALUES ($1, $2, $3)`, tn.id, account, role)
		tn.sessions[role] = e.issue(t, auth.Principal{Kind: auth.KindSession, AccountID: account})
	}
	key := make([]byte, 32)
	rand.Read(key)
	e.Exec(t, tn.id, `INSERT INTO agents(id, tenant_id, public_key, hostname, version) VALUES ($1, $2, $3, 'mx.`+domain+`', 'test')`, tn.agent, tn.id, key)
	tn.agentToken = e.issue(t, auth.Principal{Kind: auth.KindAgent, AgentID: tn.agent, TenantID: tn.id})
	return tn
}

func (e *env) issue(t *testing.T, p auth.Principal) string {
	t.Helper()
	tok, _, err := e.Keys.Issue(p, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (e *env) client(token string) monitorv1connect.MonitorServiceClient {
	return monitorv1connect.NewMonitorServiceClient(http.DefaultClient, e.URL, cptest.Bearer(token))
}

// notice is a valid warning of account, decided now by the test's clock.
func (e *env) notice(account string) *monitorv1.Notice {
	return &monitorv1.Notice{Account: account, Kind: monitorv1.NoticeKind_NOTICE_KIND_WARN, Score: 0.8,
		Factors: map[string]float64{"rate": 0.9, "content": 0.1, "history": 0.25}, Reason: "120 messages in 10 minutes",
		At: timestamppb.New(e.clock.now())}
}

func (e *env) notify(t *testing.T, token string, n *monitorv1.Notice) (monitorv1.Outcome, error) {
	t.Helper()
	resp, err := e.client(token).Notify(t.Context(), connect.NewRequest(&monitorv1.NotifyRequest{Notice: n}))
	if err != nil {
		return 0, err
	}
	return resp.Msg.Outcome, nil
}

// want fails t unless the notice gets the outcome.
func (e *env) want(t *testing.T, token string, n *monitorv1.Notice, outcome monitorv1.Outcome) {
	t.Helper()
	got, err := e.notify(t, token, n)
	if err != nil || got != outcome {
		t.Fatalf("Notify %s at %s (clock %s): %v, %v; want %v", n.Account, n.At.AsTime(), e.clock.now(), got, err, outcome)
	}
}

func (e *env) list(t *testing.T, session string, req *monitorv1.ListNoticesRequest) []*monitorv1.Notice {
	t.Helper()
	resp, err := e.client(session).ListNotices(t.Context(), connect.NewRequest(req))
	if err != nil {
		t.Fatalf("ListNotices: %v", err)
	}
	return resp.Msg.Notices
}

func (e *env) count(label string) float64 {
	return testutil.ToFloat64(e.svc.m.notices.WithLabelValues(label))
}

// eventually waits up to 10 seconds for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s", what)
		}
	}
}

func TestNotifyStoresOnceAndLists(t *testing.T) {
	e := start(t, Config{Enabled: true})
	a := e.tenant(t, "a.example")
	first := e.notice("Jo@A.example")
	e.want(t, a.agentToken, first, monitorv1.Outcome_OUTCOME_STORED)
	e.want(t, a.agentToken, first, monitorv1.Outcome_OUTCOME_DUPLICATE)
	e.clock.add(time.Minute)
	other := e.notice("kim@a.example")
	other.Kind, other.Score = monitorv1.NoticeKind_NOTICE_KIND_SUSPEND, 0.97
	e.want(t, a.agentToken, other, monitorv1.Outcome_OUTCOME_STORED)
	if e.count("stored") != 2 || e.count("duplicate") != 1 {
		t.Errorf("metrics: stored %v, duplicate %v; want 2, 1", e.count("stored"), e.count("duplicate"))
	}

	all := e.list(t, a.sessions["viewer"], &monitorv1.ListNoticesRequest{TenantId: a.id})
	if len(all) != 2 || all[0].Account != "kim@a.example" || all[1].Account != "jo@a.example" {
		t.Fatalf("ListNotices: %v; want kim's then jo's", all)
	}
	got := all[1]
	if got.TenantId != a.id || got.AgentId != a.agent || got.Kind != first.Kind || got.Score != first.Score ||
		got.Reason != first.Reason || !got.At.AsTime().Equal(first.At.AsTime()) || len(got.Factors) != 3 || got.Factors["history"] != 0.25 {
		t.Errorf("stored notice %v; sent %v", got, first)
	}
	if all[0].Kind != monitorv1.NoticeKind_NOTICE_KIND_SUSPEND {
		t.Errorf("kind %v; want SUSPEND", all[0].Kind)
	}
	if got := e.list(t, a.sessions["owner"], &monitorv1.ListNoticesRequest{TenantId: a.id, Limit: 1}); len(got) != 1 || got[0].Account != "kim@a.example" {
		t.Errorf("limit 1: %v; want the newest", got)
	}
	if got := e.list(t, a.sessions["owner"], &monitorv1.ListNoticesRequest{TenantId: a.id, Account: "JO@a.example"}); len(got) != 1 || got[0].Account != "jo@a.example" {
		t.Errorf("account filter: %v; want jo's only", got)
	}
	for _, limit := range []int32{-1, 501} {
		_, err := e.client(a.sessions["owner"]).ListNotices(t.Context(), connect.NewRequest(&monitorv1.ListNoticesRequest{TenantId: a.id, Limit: limit}))
		cptest.WantCode(t, "limit", err, connect.CodeInvalidArgument, "limit")
	}
}

func TestAccountSpacing(t *testing.T) {
	e := start(t, Config{Enabled: true})
	a := e.tenant(t, "a.example")
	e.want(t, a.agentToken, e.notice("jo@a.example"), monitorv1.Outcome_OUTCOME_STORED)
	e.clock.add(accountGap - time.Second)
	e.want(t, a.agentToken, e.notice("jo@a.example"), monitorv1.Outcome_OUTCOME_RATE_LIMITED)
	e.want(t, a.agentToken, e.notice("kim@a.example"), monitorv1.Outcome_OUTCOME_STORED) // another account
	e.clock.add(time.Second)
	e.want(t, a.agentToken, e.notice("jo@a.example"), monitorv1.Outcome_OUTCOME_STORED)
	if n := e.count(string(limitedSpacing)); n != 1 {
		t.Errorf("spacing refusals counted %v; want 1", n)
	}
	if got := e.list(t, a.sessions["owner"], &monitorv1.ListNoticesRequest{TenantId: a.id, Account: "jo@a.example"}); len(got) != 2 {
		t.Errorf("jo has %d notices stored; want 2 (the refused one rolled back)", len(got))
	}
}

func TestDailyCap(t *testing.T) {
	e := start(t, Config{Enabled: true})
	a := e.tenant(t, "a.example")
	first := e.clock.now()
	for range accountDay {
		e.want(t, a.agentToken, e.notice("jo@a.example"), monitorv1.Outcome_OUTCOME_STORED)
		e.clock.add(accountGap)
	}
	e.want(t, a.agentToken, e.notice("jo@a.example"), monitorv1.Outcome_OUTCOME_RATE_LIMITED)
	if n := e.count(string(limitedDaily)); n != 1 {
		t.Errorf("daily refusals counted %v; want 1", n)
	}
	e.clock.add(first.Add(24 * time.Hour).Sub(e.clock.now())) // the first leaves the window
	e.want(t, a.agentToken, e.notice("jo@a.example"), monitorv1.Outcome_OUTCOME_STORED)
}

func TestGlobalLimit(t *testing.T) {
	e := start(t, Config{Enabled: true, GlobalPerSecond: 3})
	a := e.tenant(t, "a.example")
	for _, who := range []string{"a", "b", "c"} {
		e.want(t, a.agentToken, e.notice(who+"@a.example"), monitorv1.Outcome_OUTCOME_STORED)
	}
	e.want(t, a.agentToken, e.notice("d@a.example"), monitorv1.Outcome_OUTCOME_RATE_LIMITED)
	if n := e.count(string(limitedGlobal)); n != 1 {
		t.Errorf("global refusals counted %v; want 1", n)
	}
	e.clock.add(time.Second)
	e.want(t, a.agentToken, e.notice("d@a.example"), monitorv1.Outcome_OUTCOME_STORED)
}

// TestReplicasShareAccountLimits races notices of one account through two
// services on one database, as two replicas would be: one is stored.
func TestReplicasShareAccountLimits(t *testing.T) {
	e := start(t, Config{Enabled: true})
	a := e.tenant(t, "a.example")
	other, err := New(e.Store, Config{Enabled: true}, e.mail, prometheus.NewRegistry(), e.Log)
	if err != nil {
		t.Fatal(err)
	}
	other.now = e.clock.now
	ctx := auth.With(t.Context(), auth.Principal{Kind: auth.KindAgent, AgentID: a.agent, TenantID: a.id})
	var stored atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		svc := []*Service{e.svc, other}[i%2]
		n := e.notice("jo@a.example")
		n.At = timestamppb.New(e.clock.now().Add(time.Duration(i) * time.Millisecond))
		wg.Go(func() {
			resp, err := svc.Notify(ctx, connect.NewRequest(&monitorv1.NotifyRequest{Notice: n}))
			if err != nil {
				t.Error(err)
				return
			}
			if resp.Msg.Outcome == monitorv1.Outcome_OUTCOME_STORED {
				stored.Add(1)
			}
		})
	}
	wg.Wait()
	if n := stored.Load(); n != 1 {
		t.Errorf("%d of 8 racing notices of one account stored; want 1", n)
	}
}

func TestNotifyValidation(t *testing.T) {
	e := start(t, Config{Enabled: true})
	a := e.tenant(t, "a.example")
	now := e.clock.now()
	tests := []struct {
		field  string
		change func(n *monitorv1.Notice)
	}{
		{"notice.account", func(n *monitorv1.Notice) { n.Account = "" }},
		{"notice.account", func(n *monitorv1.Notice) { n.Account = "Jo <jo@a.example>" }},
		{"notice.account", func(n *monitorv1.Notice) { n.Account = strings.Repeat("j", 250) + "@a.example" }},
		{"notice.kind", func(n *monitorv1.Notice) { n.Kind = monitorv1.NoticeKind_NOTICE_KIND_UNSPECIFIED }},
		{"notice.kind", func(n *monitorv1.Notice) { n.Kind = 7 }},
		{"notice.score", func(n *monitorv1.Notice) { n.Score = 1.01 }},
		{"notice.score", func(n *monitorv1.Notice) { n.Score = -0.1 }},
		{"notice.score", func(n *monitorv1.Notice) { n.Score = math.NaN() }},
		{"notice.factors", func(n *monitorv1.Notice) { n.Factors["rate"] = 2 }},
		{"notice.factors", func(n *monitorv1.Notice) { n.Factors[""] = 0.5 }},
		{"notice.factors", func(n *monitorv1.Notice) {
			for _, k := range []string{"a", "b", "c", "d", "e", "f"} {
				n.Factors[k] = 0.1
			}
		}},
		{"notice.reason", func(n *monitorv1.Notice) { n.Reason = strings.Repeat("x", maxReasonLen+1) }},
		{"notice.reason", func(n *monitorv1.Notice) { n.Reason = "a\x00b" }},
		{"notice.at", func(n *monitorv1.Notice) { n.At = nil }},
		{"notice.at", func(n *monitorv1.Notice) { n.At = timestamppb.New(now.Add(-maxAge - time.Second)) }},
		{"notice.at", func(n *monitorv1.Notice) { n.At = timestamppb.New(now.Add(maxAhead + time.Second)) }},
	}
	for _, tt := range tests {
		n := e.notice("jo@a.example")
		tt.change(n)
		_, err := e.notify(t, a.agentToken, n)
		cptest.WantCode(t, tt.field, err, connect.CodeInvalidArgument, tt.field+":")
	}
	_, err := e.notify(t, a.agentToken, nil)
	cptest.WantCode(t, "no notice", err, connect.CodeInvalidArgument, "notice:")
	if got := e.list(t, a.sessions["owner"], &monitorv1.ListNoticesRequest{TenantId: a.id}); len(got) != 0 {
		t.Errorf("invalid notices stored: %v", got)
	}
	// The edges are taken.
	n := e.notice("jo@a.example")
	n.Score, n.Reason, n.At = 1, strings.Repeat("x", maxReasonLen), timestamppb.New(now.Add(maxAhead))
	e.want(t, a.agentToken, n, monitorv1.Outcome_OUTCOME_STORED)
}

func TestSessionCannotNotify(t *testing.T) {
	e := start(t, Config{Enabled: true})
	a := e.tenant(t, "a.example")
	_, err := e.notify(t, a.sessions["owner"], e.notice("jo@a.example"))
	cptest.WantCode(t, "a session's Notify", err, connect.CodePermissionDenied, "agent credential")
	_, err = e.client(a.agentToken).ListNotices(t.Context(), connect.NewRequest(&monitorv1.ListNoticesRequest{TenantId: a.id}))
	cptest.WantCode(t, "an agent's ListNotices", err, connect.CodeUnauthenticated, "console session")
}

func TestTenantsApart(t *testing.T) {
	e := start(t, Config{Enabled: true})
	a, b := e.tenant(t, "a.example"), e.tenant(t, "b.example")
	n := e.notice("jo@b.example")
	n.TenantId, n.AgentId, n.Id = b.id, b.agent, cptest.UUID() // ignored: the credential says A
	e.want(t, a.agentToken, n, monitorv1.Outcome_OUTCOME_STORED)
	if got := e.list(t, b.sessions["owner"], &monitorv1.ListNoticesRequest{TenantId: b.id}); len(got) != 0 {
		t.Errorf("B sees %v; want nothing", got)
	}
	if got := e.list(t, a.sessions["owner"], &monitorv1.ListNoticesRequest{TenantId: a.id}); len(got) != 1 || got[0].TenantId != a.id || got[0].AgentId != a.agent {
		t.Errorf("A sees %v; want the notice under A and its agent", got)
	}
	_, err := e.client(a.sessions["owner"]).ListNotices(t.Context(), connect.NewRequest(&monitorv1.ListNoticesRequest{TenantId: b.id}))
	cptest.WantCode(t, "A's owner listing B", err, connect.CodeNotFound, b.id)
}

// pendingAlerts returns the last errors of the alerts still to send.
func (e *env) pendingAlerts(t *testing.T) []string {
	t.Helper()
	rows, err := e.Owner.Query(t.Context(), `SELECT last_error FROM monitor_alerts`)
	if err != nil {
		t.Fatal(err)
	}
	var errs []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		errs = append(errs, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return errs
}

// recipients returns the sorted addresses the recorder mailed.
func (e *env) recipients() []string {
	var to []string
	for _, m := range e.mail.Mails() {
		to = append(to, m.To)
	}
	slices.Sort(to)
	return to
}

func TestAlertsReachAdmins(t *testing.T) {
	e := start(t, Config{Enabled: true, ConsoleURL: cptest.PublicURL, AllowPrivateWebhooks: true})
	a, b := e.tenant(t, "a.example"), e.tenant(t, "b.example")
	type delivery struct {
		header http.Header
		body   []byte
	}
	got := make(chan delivery, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- delivery{r.Header.Clone(), body}
	}))
	t.Cleanup(hook.Close)
	set, err := e.setHook(t, a.sessions["admin"], &monitorv1.SetAlertWebhookRequest{TenantId: a.id, Url: hook.URL + "/monitor"})
	if err != nil {
		t.Fatalf("SetAlertWebhook: %v", err)
	}
	secret := set.Secret

	n := e.notice("jo@a.example")
	n.Kind = monitorv1.NoticeKind_NOTICE_KIND_SUSPEND
	e.want(t, a.agentToken, n, monitorv1.Outcome_OUTCOME_STORED)
	eventually(t, "no alert left", func() bool { return len(e.pendingAlerts(t)) == 0 })
	if to, want := e.recipients(), []string{"admin@a.example", "owner@a.example"}; !slices.Equal(to, want) {
		t.Errorf("mailed %v; want %v (not the viewer, nobody of B)", to, want)
	}
	m := e.mail.Mails()[0]
	if !strings.Contains(m.Subject, "jo@a.example suspended") || !strings.Contains(m.Body, n.Reason) || !strings.Contains(m.Body, cptest.PublicURL) {
		t.Errorf("mail %q:\n%s", m.Subject, m.Body)
	}

	var d delivery
	select {
	case d = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook POST")
	}
	if err := sdk.Verify(d.header, d.body, SignerID, []byte(secret), e.clock.now()); err != nil {
		t.Errorf("webhook signature: %v", err)
	}
	if err := sdk.Verify(d.header, d.body, SignerID, []byte("another secret"), e.clock.now()); !errors.Is(err, sdk.ErrBadSignature) {
		t.Errorf("verified with the wrong secret: %v", err)
	}
	var posted monitorv1.Notice
	if err := protojson.Unmarshal(d.body, &posted); err != nil || posted.Account != "jo@a.example" || posted.TenantId != a.id || posted.Kind != n.Kind {
		t.Errorf("webhook body %s: %v", d.body, err)
	}

	// B has no webhook: mail only, to B's admins.
	e.want(t, b.agentToken, e.notice("jo@b.example"), monitorv1.Outcome_OUTCOME_STORED)
	eventually(t, "B's alerts sent", func() bool { return len(e.pendingAlerts(t)) == 0 })
	select {
	case d := <-got:
		t.Errorf("a webhook POST for B: %s", d.body)
	default:
	}
	if to, want := e.recipients(), []string{"admin@a.example", "admin@b.example", "owner@a.example", "owner@b.example"}; !slices.Equal(to, want) {
		t.Errorf("mailed %v; want %v", to, want)
	}
}

// setHook calls SetAlertWebhook with the session.
func (e *env) setHook(t *testing.T, session string, req *monitorv1.SetAlertWebhookRequest) (*monitorv1.SetAlertWebhookResponse, error) {
	t.Helper()
	resp, err := e.client(session).SetAlertWebhook(t.Context(), connect.NewRequest(req))
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

// getHook returns the tenant's webhook as GetAlertWebhook answers it to the
// session, marshalled to JSON to show it all.
func (e *env) getHook(t *testing.T, session, tenantID string) string {
	t.Helper()
	resp, err := e.client(session).GetAlertWebhook(t.Context(), connect.NewRequest(&monitorv1.GetAlertWebhookRequest{TenantId: tenantID}))
	if err != nil {
		t.Fatalf("GetAlertWebhook: %v", err)
	}
	return protojson.Format(resp.Msg)
}

func TestSetAlertWebhook(t *testing.T) {
	e := start(t, Config{Enabled: true, AllowPrivateWebhooks: true})
	a, b := e.tenant(t, "a.example"), e.tenant(t, "b.example")
	if got := e.getHook(t, a.sessions["viewer"], a.id); got != "{}" {
		t.Errorf("no webhook yet: %s; want {}", got)
	}
	const url = "http://127.0.0.1:9/hook"
	set, err := e.setHook(t, a.sessions["admin"], &monitorv1.SetAlertWebhookRequest{TenantId: a.id, Url: url})
	if err != nil {
		t.Fatalf("SetAlertWebhook: %v", err)
	}
	if key, err := base64.RawURLEncoding.DecodeString(set.Secret); err != nil || len(key) != 32 {
		t.Errorf("generated secret %q: %v; want 32 bytes in base64url", set.Secret, err)
	}
	if set.Webhook.GetUrl() != url || !set.Webhook.GetUpdatedAt().AsTime().Equal(e.clock.now()) {
		t.Errorf("set %v; want %s at %s", set.Webhook, url, e.clock.now())
	}
	got := e.getHook(t, a.sessions["viewer"], a.id)
	if !strings.Contains(got, url) || !strings.Contains(got, e.clock.now().Format(time.RFC3339)) || strings.Contains(got, set.Secret) {
		t.Errorf("GetAlertWebhook: %s; want the URL and time, not the secret", got)
	}

	e.clock.add(time.Minute)
	const secret = "sixteen bytes ok"
	again, err := e.setHook(t, a.sessions["owner"], &monitorv1.SetAlertWebhookRequest{TenantId: a.id, Url: url + "2", Secret: secret})
	if err != nil || again.Secret != secret || again.Webhook.GetUrl() != url+"2" {
		t.Fatalf("SetAlertWebhook again: %v, %v; want the new URL and the secret given", again, err)
	}
	if got := e.getHook(t, a.sessions["viewer"], a.id); !strings.Contains(got, url+"2") || !strings.Contains(got, e.clock.now().Format(time.RFC3339)) {
		t.Errorf("after replacing: %s", got)
	}

	req := &monitorv1.SetAlertWebhookRequest{TenantId: a.id, Url: url}
	_, err = e.setHook(t, a.sessions["viewer"], req)
	cptest.WantCode(t, "a viewer's SetAlertWebhook", err, connect.CodePermissionDenied, "admin")
	_, err = e.setHook(t, b.sessions["admin"], req)
	cptest.WantCode(t, "B's admin setting A's", err, connect.CodeNotFound, a.id)
	_, err = e.client(b.sessions["owner"]).GetAlertWebhook(t.Context(), connect.NewRequest(&monitorv1.GetAlertWebhookRequest{TenantId: a.id}))
	cptest.WantCode(t, "B's owner reading A's", err, connect.CodeNotFound, a.id)
	for _, s := range []string{"fifteen bytes!!", strings.Repeat("s", maxSecretLen+1), "sixteen\x00bytes ok"} {
		_, err = e.setHook(t, a.sessions["admin"], &monitorv1.SetAlertWebhookRequest{TenantId: a.id, Url: url, Secret: s})
		cptest.WantCode(t, fmt.Sprintf("secret of %d bytes", len(s)), err, connect.CodeInvalidArgument, "secret:")
	}
	if got := e.getHook(t, a.sessions["viewer"], a.id); !strings.Contains(got, url+"2") {
		t.Errorf("refused calls changed the webhook: %s", got)
	}

	for range 2 { // removing none is fine too
		gone, err := e.setHook(t, a.sessions["admin"], &monitorv1.SetAlertWebhookRequest{TenantId: a.id})
		if err != nil || gone.Webhook != nil || gone.Secret != "" {
			t.Fatalf("removing: %v, %v; want an empty answer", gone, err)
		}
	}
	if got := e.getHook(t, a.sessions["viewer"], a.id); got != "{}" {
		t.Errorf("after removing: %s; want {}", got)
	}
}

func TestWebhookURLRefused(t *testing.T) {
	e := start(t, Config{Enabled: true})
	a := e.tenant(t, "a.example")
	for _, url := range []string{
		"ftp://hooks.example/monitor",
		"hooks.example/monitor",
		"http:///monitor",
		"https://:443/monitor",
		"https://198.51.100.7/" + strings.Repeat("x", maxURLLen),
		"https://user:pass@198.51.100.7/monitor",
	} {
		_, err := e.setHook(t, a.sessions["admin"], &monitorv1.SetAlertWebhookRequest{TenantId: a.id, Url: url})
		cptest.WantCode(t, url, err, connect.CodeInvalidArgument, "url:")
	}
	for _, url := range []string{
		"http://127.0.0.1/monitor",
		"http://10.1.2.3/monitor",
		"http://172.16.0.1/monitor",
		"http://192.168.1.1/monitor",
		"http://[::1]:8080/monitor",
		"http://[fd00::1]/monitor",
		"http://[::ffff:127.0.0.1]/monitor",
		"http://169.254.169.254/latest/meta-data/",
		"http://[fe80::1%25eth0]/monitor",
		"http://0.0.0.0/monitor",
		"http://224.0.0.1/monitor",
		"http://localhost:8080/monitor",
	} {
		_, err := e.setHook(t, a.sessions["admin"], &monitorv1.SetAlertWebhookRequest{TenantId: a.id, Url: url})
		cptest.WantCode(t, url, err, connect.CodeInvalidArgument, "url: ")
		if err != nil && !strings.Contains(err.Error(), "address: give a publicly reachable receiver") {
			t.Errorf("%s: %v; want it refused for its address", url, err)
		}
	}
	if got := e.getHook(t, a.sessions["viewer"], a.id); got != "{}" {
		t.Errorf("a refused URL stored: %s", got)
	}
	const public = "https://198.51.100.7/monitor"
	if set, err := e.setHook(t, a.sessions["admin"], &monitorv1.SetAlertWebhookRequest{TenantId: a.id, Url: public}); err != nil || set.Webhook.GetUrl() != public {
		t.Errorf("a public address: %v, %v; want it taken", set, err)
	}
}

// TestWebhookClientRefusesPrivate checks the guard at connect time, which
// a host resolving to another address after SetAlertWebhook meets.
func TestWebhookClientRefusesPrivate(t *testing.T) {
	hook := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(hook.Close)
	if _, err := webhookClient(false).Get(hook.URL); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("guarded client to %s: %v; want refused as loopback", hook.URL, err)
	}
	resp, err := webhookClient(true).Get(hook.URL)
	if err != nil {
		t.Fatalf("client allowing private addresses: %v", err)
	}
	resp.Body.Close()
}

func TestAlertRetried(t *testing.T) {
	e := start(t, Config{Enabled: true})
	a := e.tenant(t, "a.example")
	e.mail.FailWith(errors.New("relay down"))
	e.want(t, a.agentToken, e.notice("jo@a.example"), monitorv1.Outcome_OUTCOME_STORED)
	eventually(t, "the failures recorded", func() bool {
		errs := e.pendingAlerts(t)
		return len(errs) == 2 && strings.Contains(errs[0], "relay down") && strings.Contains(errs[1], "relay down")
	})
	e.mail.FailWith(nil)
	eventually(t, "the mail sent on retry", func() bool { return len(e.mail.Mails()) == 2 && len(e.pendingAlerts(t)) == 0 })
	if n := testutil.ToFloat64(e.svc.m.alerts.WithLabelValues("mail", "failed")); n < 2 {
		t.Errorf("failed alerts counted %v; want 2 or more", n)
	}
}

func TestDisabled(t *testing.T) {
	e := start(t, Config{})
	a := e.tenant(t, "a.example")
	_, err := e.notify(t, a.agentToken, e.notice("jo@a.example"))
	cptest.WantCode(t, "Notify", err, connect.CodeUnimplemented, "controlplane.monitor_enabled")
	_, err = e.client(a.sessions["owner"]).ListNotices(t.Context(), connect.NewRequest(&monitorv1.ListNoticesRequest{TenantId: a.id}))
	cptest.WantCode(t, "ListNotices", err, connect.CodeUnimplemented, "disabled")
	_, err = e.setHook(t, a.sessions["owner"], &monitorv1.SetAlertWebhookRequest{TenantId: a.id, Url: "https://198.51.100.7/monitor"})
	cptest.WantCode(t, "SetAlertWebhook", err, connect.CodeUnimplemented, "disabled")
	_, err = e.client(a.sessions["owner"]).GetAlertWebhook(t.Context(), connect.NewRequest(&monitorv1.GetAlertWebhookRequest{TenantId: a.id}))
	cptest.WantCode(t, "GetAlertWebhook", err, connect.CodeUnimplemented, "disabled")
}

func TestNewRefusesNegativeLimit(t *testing.T) {
	_, err := New(nil, Config{Enabled: true, GlobalPerSecond: -1}, nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "controlplane.monitor_global_per_second") {
		t.Errorf("New: %v; want an error naming the key", err)
	}
}

func FuzzNotice(f *testing.F) {
	f.Add("jo@a.example", int32(1), 0.5, "rate", 0.9, "too fast", int64(0))
	f.Add("JO@A.EXAMPLE", int32(2), 1.0, "", 0.0, "", int64(-7*24*3600))
	f.Add("jo@a.example", int32(1), 0.0, "content", 1.0, strings.Repeat("é", 500), int64(300))
	f.Add("Jo <jo@a.example>", int32(0), math.NaN(), "x\x00", -1.0, "a\x00", int64(301))
	f.Add("", int32(3), math.Inf(1), strings.Repeat("k", 65), math.Inf(-1), "", int64(math.MaxInt64))
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, account string, kind int32, score float64, factor string, value float64, reason string, offset int64) {
		m := &monitorv1.Notice{Account: account, Kind: monitorv1.NoticeKind(kind), Score: score,
			Factors: map[string]float64{factor: value, "rate": score}, Reason: reason,
			At: &timestamppb.Timestamp{Seconds: now.Unix() + offset%(20*24*3600)}}
		n, err := parseNotice(m, now)
		if err != nil {
			if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "notice.") {
				t.Fatalf("error %v: want InvalidArgument naming the field", err)
			}
			return
		}
		if len(n.account) > mailer.MaxAddressLen || n.account != strings.ToLower(n.account) || !strings.Contains(n.account, "@") {
			t.Errorf("account %q taken", n.account)
		}
		if n.kind != "warn" && n.kind != "suspend" {
			t.Errorf("kind %q taken", n.kind)
		}
		if !unit(n.score) || len(n.factors) > maxFactors {
			t.Errorf("score %v, factors %v taken", n.score, n.factors)
		}
		for name, v := range n.factors {
			if name == "" || len(name) > maxFactorLen || strings.ContainsRune(name, 0) || !unit(v) {
				t.Errorf("factor %q = %v taken", name, v)
			}
		}
		if len(n.reason) > maxReasonLen || strings.ContainsRune(n.reason, 0) {
			t.Errorf("reason of %d bytes taken", len(n.reason))
		}
		if n.at.Before(now.Add(-maxAge)) || n.at.After(now.Add(maxAhead)) {
			t.Errorf("at %v taken (now %v)", n.at, now)
		}
	})
}
