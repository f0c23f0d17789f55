package link_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/agent/accounts/accountstest"
	"github.com/mairust/mairust/agent/link"
	"github.com/mairust/mairust/controlplane/agents/agentstest"
	agentsv1 "github.com/mairust/mairust/proto/mairust/agents/v1"
	"github.com/mairust/mairust/proto/mairust/agents/v1/agentsv1connect"
	tenantsv1 "github.com/mairust/mairust/proto/mairust/tenants/v1"
)

// proxy forwards loopback connections to the control plane while up; down
// closes its listener and cuts its connections, as if the control plane
// were gone.
type proxy struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        map[net.Conn]bool
}

func newProxy(t *testing.T, targetURL string) *proxy {
	p := &proxy{target: strings.TrimPrefix(targetURL, "http://"), conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.down)
	return p
}

func (p *proxy) URL() string { return "http://" + p.addr }

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.forward(c)
		}
	}()
}

func (p *proxy) forward(c net.Conn) {
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[s] = true, true
	p.mu.Unlock()
	go func() { io.Copy(s, c); s.Close() }()
	io.Copy(c, s)
	c.Close()
}

func (p *proxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *proxy) up(t *testing.T) {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	p.serve(ln)
}

// recorder notes the known_version of each WatchConfig call and counts
// the Report calls the control plane answered.
type recorder struct {
	mu      sync.Mutex
	known   []int64
	reports atomic.Int32
}

func (r *recorder) Do(req *http.Request) (*http.Response, error) {
	if req.URL.Path == agentsv1connect.AgentsServiceWatchConfigProcedure {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(b))
		m := &agentsv1.WatchConfigRequest{}
		if len(b) < 5 || proto.Unmarshal(b[5:], m) != nil { // the message's envelope: flags and length
			return nil, errors.New("recorder: unreadable WatchConfig request")
		}
		r.mu.Lock()
		r.known = append(r.known, m.KnownVersion)
		r.mu.Unlock()
	}
	resp, err := http.DefaultClient.Do(req)
	if err == nil && resp.StatusCode == http.StatusOK && req.URL.Path == agentsv1connect.AgentsServiceReportProcedure {
		r.reports.Add(1)
	}
	return resp, err
}

func (r *recorder) lastKnown() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.known) == 0 {
		return -1
	}
	return r.known[len(r.known)-1]
}

// waitFor polls cond for up to a generous minute and returns how long it
// took.
func waitFor(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > time.Minute {
			t.Fatalf("waited a minute for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	d := time.Since(start)
	t.Logf("%s after %v", what, d.Round(time.Millisecond))
	return d
}

// count runs a count query on pool.
func count(t *testing.T, pool *pgxpool.Pool, q string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func testLog(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(t.Output(), nil)) }

// setup is a control plane behind a proxy, an enrolled agent whose link
// goes through it, and the agent's database, with a local user.
type setup struct {
	e     *agentstest.Env
	tn    agentstest.Tenant
	proxy *proxy
	rec   *recorder
	l     link.Link
	id    link.Identity
	pool  *pgxpool.Pool
}

func newSetup(t *testing.T) *setup {
	e := agentstest.Start(t, time.Hour)
	s := &setup{e: e, tn: e.Tenant(t, "a.example"), proxy: newProxy(t, e.URL), rec: &recorder{},
		pool: accountstest.NewDatabase(t, "link", "local@local.example")}
	s.l = link.Link{DataDir: t.TempDir(), HTTPClient: s.rec}
	var err error
	if s.id, err = s.l.Enroll(t.Context(), e.URL, e.EnrollmentToken(t, s.tn), "mx1.example", "1.0"); err != nil {
		t.Fatal(err)
	}
	s.id.ControlPlaneURL = s.proxy.URL()
	return s
}

// run runs the link until the returned function is called.
func (s *setup) run(t *testing.T, cfg link.RunConfig) (stop func()) {
	cfg.Identity, cfg.Pool, cfg.Version, cfg.Log = s.id, s.pool, "1.0", testLog(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.l.Run(ctx, cfg) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

// cpVersion is the tenant's configuration version on the control plane.
func (s *setup) cpVersion(t *testing.T) int64 {
	var v int64
	if err := s.e.Owner.QueryRow(t.Context(), `SELECT version FROM config_versions WHERE tenant_id = $1`, s.tn.ID).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// agentVersion is the version the agent recorded as applied.
func (s *setup) agentVersion(t *testing.T) int64 {
	return int64(count(t, s.pool, `SELECT config_version FROM link_state`))
}

// ackedOnCP says whether the control plane recorded the agent at its
// current version without an error.
func (s *setup) ackedOnCP(t *testing.T) bool {
	return count(t, s.e.Owner, `SELECT count(*) FROM agents a JOIN config_versions c USING (tenant_id)
		WHERE a.id = $1 AND a.config_version = c.version AND a.config_error = ''`, s.id.AgentID) == 1
}

func TestConfigSync(t *testing.T) {
	s := newSetup(t)
	ctx := t.Context()
	acc := accounts.New(s.pool)
	var (
		applies atomic.Int32
		failing atomic.Bool
		last    atomic.Pointer[tenantsv1.Settings]
		hold    atomic.Pointer[string]
	)
	cfg := link.RunConfig{ApplySettings: func(_ context.Context, st *tenantsv1.Settings) error {
		if failing.Load() {
			return errors.New("the policy engine refuses these settings")
		}
		applies.Add(1)
		last.Store(st)
		return nil
	}, ApplyHold: func(reason string) { hold.Store(&reason) }}
	holding := func(reason string) func() bool {
		return func() bool { h := hold.Load(); return h != nil && *h == reason }
	}
	stop := s.run(t, cfg)

	// The control plane's domain appears, in the agent tenant of the
	// control plane's tenant id.
	waitFor(t, "the first snapshot", func() bool {
		return count(t, s.pool, `SELECT count(*) FROM domains WHERE name = 'a.example' AND tenant_id = $1 AND managed_by_controlplane`, s.tn.ID) == 1
	})
	waitFor(t, "the first ack on the control plane", func() bool { return s.ackedOnCP(t) })
	mine, err := acc.AddDomain(ctx, s.tn.ID, "mine.example") // local, in the managed tenant
	if err != nil {
		t.Fatal(err)
	}

	// A new domain and mail user, and settings.
	s.e.AddDomain(t, s.tn.ID, "b.example")
	s.e.Exec(t, s.tn.ID, `INSERT INTO mail_users(tenant_id, domain_id, address, password_hash, quota_bytes)
		SELECT $1, id, 'u@b.example', 'hash-1', 1000 FROM domains WHERE name = 'b.example'`, s.tn.ID)
	s.e.Exec(t, s.tn.ID, `INSERT INTO tenant_settings(tenant_id, settings) VALUES ($1, '{"outboundPolicy": {"maxPerHour": 42}}')`, s.tn.ID)
	waitFor(t, "a new domain, user and settings", func() bool {
		return count(t, s.pool, `SELECT count(*) FROM mail_users u JOIN domains d ON d.id = u.domain_id WHERE u.address = 'u@b.example'
			AND u.password_hash = 'hash-1' AND u.quota_bytes = 1000 AND u.managed_by_controlplane AND d.managed_by_controlplane AND u.tenant_id = $1`, s.tn.ID) == 1 &&
			last.Load().GetOutboundPolicy().GetMaxPerHour() == 42
	})
	if !holding("")() {
		t.Errorf("outbound hold %q before any, want none", *hold.Load())
	}
	const unpaid = "Sending is paused: the bill is unpaid"
	s.e.Exec(t, s.tn.ID, `INSERT INTO tenant_billing(tenant_id, plan, state, hold_reason) VALUES ($1, 'free', 'restricted', $2)`, s.tn.ID, unpaid)
	waitFor(t, "the outbound hold", holding(unpaid))
	uid := int64(count(t, s.pool, `SELECT id FROM mail_users WHERE address = 'u@b.example'`))
	if n := count(t, s.pool, `SELECT count(*) FROM folders WHERE user_id = $1`, uid); n != len(accounts.StandardFolders) {
		t.Errorf("the new user has %d folders, want %d", n, len(accounts.StandardFolders))
	}
	if err := link.CheckLocal(ctx, s.pool, link.KindMailUser, uid); !errors.Is(err, link.ErrManaged) {
		t.Errorf("CheckLocal of a managed user: %v", err)
	}
	if err := link.CheckLocal(ctx, s.pool, link.KindDomain, mine.ID); err != nil {
		t.Errorf("CheckLocal of a local domain: %v", err)
	}

	// A password change.
	s.e.Exec(t, s.tn.ID, `UPDATE mail_users SET password_hash = 'hash-2', admin = true WHERE address = 'u@b.example'`)
	waitFor(t, "a password change", func() bool {
		return count(t, s.pool, `SELECT count(*) FROM mail_users WHERE id = $1 AND password_hash = 'hash-2' AND is_admin`, uid) == 1
	})

	// A settings callback's error is acknowledged, and the version is
	// applied once the callback takes it.
	before := s.agentVersion(t)
	failing.Store(true)
	s.e.Exec(t, s.tn.ID, `UPDATE mail_users SET quota_bytes = 2000 WHERE address = 'u@b.example'`)
	waitFor(t, "an error acknowledged", func() bool {
		return count(t, s.e.Owner, `SELECT count(*) FROM agents WHERE id = $1 AND config_error LIKE '%refuses these settings%'`, s.id.AgentID) == 1
	})
	if v := s.agentVersion(t); v != before || count(t, s.pool, `SELECT quota_bytes FROM mail_users WHERE id = $1`, uid) != 1000 {
		t.Errorf("a failed snapshot left version %d (want %d) or its changes", v, before)
	}
	failing.Store(false)
	waitFor(t, "the failed version applied on retry", func() bool { return s.ackedOnCP(t) })

	// Reconnection after the control plane is gone for a while: the stream
	// asks for what is new since the version applied, and gets it.
	applied := s.agentVersion(t)
	s.proxy.down()
	time.Sleep(1500 * time.Millisecond)
	s.proxy.up(t)
	s.e.Exec(t, s.tn.ID, `UPDATE mail_users SET disabled = true WHERE address = 'u@b.example'`)
	waitFor(t, "a change after reconnecting", func() bool {
		return count(t, s.pool, `SELECT count(*) FROM mail_users WHERE id = $1 AND disabled`, uid) == 1
	})
	if k := s.rec.lastKnown(); k != applied {
		t.Errorf("reconnected with known_version %d, want %d", k, applied)
	}

	// A restart asks for what is new since the version applied, and
	// re-applies the settings kept.
	stop()
	applied, calls := s.agentVersion(t), applies.Load()
	last.Store(nil)
	hold.Store(nil)
	stop = s.run(t, cfg)
	defer func() { stop() }()
	waitFor(t, "the settings re-applied at start", func() bool { return last.Load().GetOutboundPolicy().GetMaxPerHour() == 42 })
	waitFor(t, "the hold re-applied at start", holding(unpaid))
	waitFor(t, "the stream reopened", func() bool { return s.rec.lastKnown() == applied && applies.Load() == calls+1 })
	s.e.Exec(t, s.tn.ID, `UPDATE tenant_billing SET state = 'active', hold_reason = NULL WHERE tenant_id = $1`, s.tn.ID)
	waitFor(t, "the hold lifted", holding(""))

	// A deletion: the user (with a message in its mailbox) and its domain.
	var folder int64
	if err := s.pool.QueryRow(ctx, `SELECT id FROM folders WHERE user_id = $1 AND special = 'inbox'`, uid).Scan(&folder); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO blobs(key, size) VALUES ('k1', 10)`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO messages(tenant_id, user_id, folder_id, blob_key, size, mail_from, rcpt_to)
		SELECT tenant_id, id, $2, 'k1', 10, 'x@y.example', address FROM mail_users WHERE id = $1`, uid, folder); err != nil {
		t.Fatal(err)
	}
	s.e.Exec(t, s.tn.ID, `DELETE FROM mail_users WHERE address = 'u@b.example'`)
	s.e.Exec(t, s.tn.ID, `DELETE FROM domains WHERE name = 'b.example'`)
	waitFor(t, "a deletion", func() bool {
		return count(t, s.pool, `SELECT count(*) FROM domains WHERE name = 'b.example'`) == 0 &&
			count(t, s.pool, `SELECT count(*) FROM mail_users WHERE address = 'u@b.example'`) == 0
	})
	if n := count(t, s.pool, `SELECT count(*) FROM events WHERE kind = 'controlplane.user.delete' AND detail->>'address' = 'u@b.example' AND (detail->>'messages')::int = 1`); n != 1 {
		t.Errorf("%d events record the deleted user and its message, want 1", n)
	}
	waitFor(t, "the last ack on the control plane", func() bool { return s.ackedOnCP(t) })

	// Local objects survive; no version was applied twice.
	for _, q := range []string{`SELECT count(*) FROM domains WHERE name IN ('local.example', 'mine.example') AND NOT managed_by_controlplane`,
		`SELECT count(*) FROM mail_users WHERE address = 'local@local.example'`} {
		if n := count(t, s.pool, q); n == 0 {
			t.Errorf("a local object is gone: %s", q)
		}
	}
	if n := count(t, s.pool, `SELECT count(*) - count(DISTINCT detail->>'version') FROM events WHERE kind = 'controlplane.config.apply'`); n != 0 {
		t.Errorf("%d versions applied more than once", n)
	}
	if v := s.agentVersion(t); v != s.cpVersion(t) {
		t.Errorf("the agent is at version %d, the control plane at %d", v, s.cpVersion(t))
	}
}

// droppedFull reads mairust_link_reports_dropped_total{reason="outbox_full"}.
func droppedFull(t *testing.T) float64 {
	reg := prometheus.NewRegistry()
	reg.MustRegister(link.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == "mairust_link_reports_dropped_total" && m.GetLabel()[0].GetValue() == "outbox_full" {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestReports(t *testing.T) {
	s := newSetup(t)
	ctx := t.Context()
	report := func(i int64) *agentsv1.ReportRequest {
		now := timestamppb.Now()
		return &agentsv1.ReportRequest{Counters: &agentsv1.Counters{MessagesIn: i},
			Usage: []*agentsv1.UsageRecord{{Metric: "messages_out", Quantity: i, PeriodStart: now, PeriodEnd: now}}}
	}

	// Made while the control plane is unreachable, reports wait; the
	// oldest go when there are more than the bound.
	s.proxy.down()
	out := link.NewOutbox(s.pool, 4, testLog(t))
	full := droppedFull(t)
	for i := int64(1); i <= 5; i++ {
		if seq, err := out.Enqueue(ctx, report(i)); err != nil || seq != i {
			t.Fatalf("Enqueue: sequence %d, %v; want %d", seq, err, i)
		}
	}
	if d := droppedFull(t) - full; d != 1 {
		t.Errorf("%v reports counted as dropped, want 1", d)
	}
	stop := s.run(t, link.RunConfig{Outbox: out})
	defer stop()
	time.Sleep(1500 * time.Millisecond) // a failed attempt or two
	if _, err := out.Enqueue(ctx, report(6)); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s.pool, `SELECT count(*) FROM link_reports`); n != 4 {
		t.Fatalf("the outbox holds %d reports, want its bound, 4", n)
	}

	// Once the control plane is back, they arrive once each, in order.
	s.proxy.up(t)
	waitFor(t, "the buffered reports delivered", func() bool { return count(t, s.pool, `SELECT count(*) FROM link_reports`) == 0 })
	rows, err := s.e.Owner.Query(ctx, `SELECT sequence, messages_in FROM agent_reports WHERE agent_id = $1 ORDER BY at, sequence`, s.id.AgentID)
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	var seq, in int64
	if _, err := pgx.ForEachRow(rows, []any{&seq, &in}, func() error {
		if seq != in {
			t.Errorf("report %d carries the counters of report %d", seq, in)
		}
		got = append(got, seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := []int64{3, 4, 5, 6}; !slices.Equal(got, want) {
		t.Errorf("the control plane has reports %v, want %v", got, want)
	}
	if n := s.rec.reports.Load(); n != 4 {
		t.Errorf("%d reports delivered, want 4 (once each)", n)
	}
	if n := count(t, s.e.Owner, `SELECT count(*) FROM usage_records WHERE agent_id = $1`, s.id.AgentID); n != 4 {
		t.Errorf("%d usage records, want 4", n)
	}

	// A report made while it is up is delivered at once.
	if _, err := out.Enqueue(ctx, report(7)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a report delivered", func() bool {
		return count(t, s.e.Owner, `SELECT count(*) FROM agent_reports WHERE agent_id = $1 AND sequence = 7`, s.id.AgentID) == 1
	})
}

// Collect's reports are enqueued at each interval and delivered.
func TestCollect(t *testing.T) {
	s := newSetup(t)
	var calls atomic.Int64
	stop := s.run(t, link.RunConfig{ReportInterval: 50 * time.Millisecond, Collect: func(context.Context) (*agentsv1.ReportRequest, error) {
		return &agentsv1.ReportRequest{Counters: &agentsv1.Counters{MessagesOut: calls.Add(1)}}, nil
	}})
	defer stop()
	waitFor(t, "collected reports delivered", func() bool {
		return count(t, s.e.Owner, `SELECT count(*) FROM agent_reports WHERE agent_id = $1 AND messages_out = sequence AND sequence <= 3`, s.id.AgentID) == 3
	})
}
