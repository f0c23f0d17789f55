package agents_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mairust/mairust/controlplane/agents/agentstest"
	"github.com/mairust/mairust/controlplane/agents/proof"
	"github.com/mairust/mairust/controlplane/cptest"
	"github.com/mairust/mairust/controlplane/store"
	agentsv1 "github.com/mairust/mairust/proto/mairust/agents/v1"
)

// long keeps config streams from re-reading on their own: what they get
// then comes from the notifications.
const long = time.Hour

// agent is an enrolled agent.
type agent struct {
	ID, TenantID string
	Key          ed25519.PrivateKey
	Credential   string
}

// enroll enrolls a new key with token.
func enroll(t *testing.T, e *agentstest.Env, token string) (agent, error) {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return enrollKey(t, e, token, key, ed25519.Sign(key, proof.Enroll(token, pub)))
}

func enrollKey(t *testing.T, e *agentstest.Env, token string, key ed25519.PrivateKey, sig []byte) (agent, error) {
	t.Helper()
	resp, err := e.Client.Enroll(t.Context(), connect.NewRequest(&agentsv1.EnrollRequest{Token: token,
		PublicKey: key.Public().(ed25519.PublicKey), Signature: sig, Hostname: "mx1.example", Version: "1.2.3"}))
	if err != nil {
		return agent{}, err
	}
	return agent{ID: resp.Msg.AgentId, TenantID: resp.Msg.TenantId, Key: key, Credential: resp.Msg.Credential.Token}, nil
}

func mustEnroll(t *testing.T, e *agentstest.Env, tn agentstest.Tenant) agent {
	t.Helper()
	a, err := enroll(t, e, e.EnrollmentToken(t, tn))
	if err != nil {
		t.Fatal(err)
	}
	if a.TenantID != tn.ID {
		t.Fatalf("enrolled into tenant %s, want %s", a.TenantID, tn.ID)
	}
	return a
}

// wantCode fails unless err is a Connect error with code whose message
// contains text.
func wantCode(t *testing.T, what string, err error, code connect.Code, text string) {
	t.Helper()
	if connect.CodeOf(err) != code || !strings.Contains(err.Error(), text) {
		t.Fatalf("%s: got %v, want %s mentioning %q", what, err, code, text)
	}
}

func heartbeat(t *testing.T, e *agentstest.Env, a agent) (*agentsv1.HeartbeatResponse, error) {
	t.Helper()
	resp, err := e.Client.Heartbeat(t.Context(), cptest.Auth(&agentsv1.HeartbeatRequest{Version: "1.2.4", UptimeSeconds: 42}, a.Credential))
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

func listAgents(t *testing.T, e *agentstest.Env, tn agentstest.Tenant) map[string]*agentsv1.Agent {
	t.Helper()
	resp, err := e.Client.ListAgents(t.Context(), cptest.Auth(&agentsv1.ListAgentsRequest{TenantId: tn.ID}, tn.Session))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]*agentsv1.Agent{}
	for _, a := range resp.Msg.Agents {
		m[a.Id] = a
	}
	return m
}

// count runs a count query scoped to the tenant.
func count(t *testing.T, e *agentstest.Env, tenantID, q string, args ...any) int {
	t.Helper()
	var n int
	err := e.Store.Tx(t.Context(), store.Scope{TenantID: tenantID}, func(tx pgx.Tx) error { return tx.QueryRow(t.Context(), q, args...).Scan(&n) })
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// ownerExec runs a statement as the tables' owner.
func ownerExec(t *testing.T, e *agentstest.Env, q string, args ...any) {
	t.Helper()
	if _, err := e.Owner.Exec(t.Context(), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func TestEnrollHeartbeatReport(t *testing.T) {
	t.Parallel()
	e := agentstest.Start(t, long)
	tn := e.Tenant(t, "a.example")
	a := mustEnroll(t, e, tn)

	hb, err := e.Client.Heartbeat(t.Context(), cptest.Auth(&agentsv1.HeartbeatRequest{Version: "1.2.4", UptimeSeconds: 42,
		Health:   []*agentsv1.ComponentHealth{{Name: "smtp", Status: agentsv1.HealthStatus_HEALTH_STATUS_DEGRADED, Detail: "slow"}},
		DkimKeys: []*agentsv1.DKIMKey{{Domain: "A.example.", Selector: "s1", Txt: "v=DKIM1; k=ed25519; p=abc"}}}, a.Credential))
	if err != nil {
		t.Fatal(err)
	}
	if hb.Msg.IntervalSeconds != 30 || hb.Msg.Credential.GetToken() == "" {
		t.Fatalf("heartbeat response %v", hb.Msg)
	}
	// The fresh credential works too.
	a.Credential = hb.Msg.Credential.Token
	if _, err := heartbeat(t, e, a); err != nil {
		t.Fatal(err)
	}
	got := listAgents(t, e, tn)[a.ID]
	if got == nil || got.Status != agentsv1.AgentStatus_AGENT_STATUS_UP || got.Hostname != "mx1.example" || got.Version != "1.2.4" ||
		got.UptimeSeconds != 42 || got.LastHeartbeatAt == nil {
		t.Fatalf("listed agent %v", got)
	}
	if n := count(t, e, tn.ID, `SELECT count(*) FROM dkim_keys WHERE domain = 'a.example' AND selector = 's1' AND agent_id = $1`, a.ID); n != 1 {
		t.Fatalf("%d DKIM keys recorded", n)
	}

	report := &agentsv1.ReportRequest{Sequence: 7, At: timestamppb.Now(), Counters: &agentsv1.Counters{MessagesIn: 3, MessagesOut: 2},
		Breakers: []*agentsv1.BreakerState{{PluginId: "p", State: "open"}},
		Usage: []*agentsv1.UsageRecord{{Metric: "messages_out", Quantity: 2, PeriodStart: timestamppb.New(time.Unix(1e9, 0)),
			PeriodEnd: timestamppb.New(time.Unix(1e9+3600, 0))}}}
	for i, wantDup := range []bool{false, true} {
		resp, err := e.Client.Report(t.Context(), cptest.Auth(report, a.Credential))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Msg.Duplicate != wantDup {
			t.Fatalf("report %d: duplicate=%v", i+1, resp.Msg.Duplicate)
		}
	}
	if n := count(t, e, tn.ID, `SELECT count(*) FROM agent_reports WHERE agent_id = $1 AND messages_in = 3`, a.ID); n != 1 {
		t.Fatalf("%d reports stored", n)
	}
	if n := count(t, e, tn.ID, `SELECT count(*) FROM usage_records WHERE agent_id = $1`, a.ID); n != 1 {
		t.Fatalf("%d usage records stored", n)
	}
	_, err = e.Client.Report(t.Context(), cptest.Auth(&agentsv1.ReportRequest{Sequence: 0, At: timestamppb.Now()}, a.Credential))
	wantCode(t, "report sequence 0", err, connect.CodeInvalidArgument, "sequence")

	if _, err := e.Client.AckConfig(t.Context(), cptest.Auth(&agentsv1.AckConfigRequest{Version: 5, Error: "disk full"}, a.Credential)); err != nil {
		t.Fatal(err)
	}
	if got := listAgents(t, e, tn)[a.ID]; got.ConfigVersion != 5 {
		t.Fatalf("config version %d after the ack", got.ConfigVersion)
	}
	if n := count(t, e, tn.ID, `SELECT count(*) FROM agents WHERE config_error = 'disk full'`); n != 1 {
		t.Fatal("config error not recorded")
	}
}

func TestEnrollRefusals(t *testing.T) {
	t.Parallel()
	e := agentstest.Start(t, long)
	tn := e.Tenant(t, "a.example")

	token := e.EnrollmentToken(t, tn)
	if !strings.HasPrefix(token, "mre_") {
		t.Fatalf("token %q lacks its prefix", token)
	}
	hash := sha256.Sum256([]byte(token))
	if n := count(t, e, tn.ID, `SELECT count(*) FROM enrollment_tokens WHERE token_hash = $1 AND expires_at - created_at = interval '1 hour'`, hash[:]); n != 1 {
		t.Fatal("the token is not stored hashed with a lifetime of one hour")
	}

	// A bad proof is refused and leaves the token usable.
	pub, key, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	_, err := enrollKey(t, e, token, key, ed25519.Sign(other, proof.Enroll(token, pub)))
	wantCode(t, "bad proof", err, connect.CodeUnauthenticated, "signature")
	a, err := enrollKey(t, e, token, key, ed25519.Sign(key, proof.Enroll(token, pub)))
	if err != nil {
		t.Fatalf("enrolling after a bad proof: %v", err)
	}

	_, err = enroll(t, e, token)
	wantCode(t, "the token again", err, connect.CodeFailedPrecondition, "this enrollment token was used already: create a new one in the console")

	// The same key again is refused, and the token it came with is kept.
	token = e.EnrollmentToken(t, tn)
	_, err = enrollKey(t, e, token, a.Key, ed25519.Sign(a.Key, proof.Enroll(token, pub)))
	wantCode(t, "the same key again", err, connect.CodeAlreadyExists, "enrolled already")
	if _, err := enroll(t, e, token); err != nil {
		t.Fatalf("the token of a refused enrollment: %v", err)
	}

	token = e.EnrollmentToken(t, tn)
	hash = sha256.Sum256([]byte(token))
	ownerExec(t, e, `UPDATE enrollment_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = $1`, hash[:])
	_, err = enroll(t, e, token)
	wantCode(t, "expired token", err, connect.CodeFailedPrecondition, "expired")

	_, err = enroll(t, e, "mre_"+strings.Repeat("A", 43))
	wantCode(t, "unknown token", err, connect.CodeNotFound, "not known")
	_, err = enroll(t, e, "hunter2")
	wantCode(t, "not a token", err, connect.CodeInvalidArgument, "mre_")
}

func TestCreateEnrollmentToken(t *testing.T) {
	t.Parallel()
	e := agentstest.Start(t, long)
	tn := e.Tenant(t, "a.example")
	for _, ttl := range []int64{59, 7*24*3600 + 1, -1} {
		_, err := e.Client.CreateEnrollmentToken(t.Context(), cptest.Auth(&agentsv1.CreateEnrollmentTokenRequest{TenantId: tn.ID, TtlSeconds: ttl}, tn.Session))
		wantCode(t, "a token's lifetime out of range", err, connect.CodeInvalidArgument, "ttl_seconds")
	}
	_, viewer := e.Member(t, tn.ID, "viewer")
	_, err := e.Client.CreateEnrollmentToken(t.Context(), cptest.Auth(&agentsv1.CreateEnrollmentTokenRequest{TenantId: tn.ID}, viewer))
	wantCode(t, "a viewer's token", err, connect.CodePermissionDenied, "admin")
	if _, err := e.Client.ListAgents(t.Context(), cptest.Auth(&agentsv1.ListAgentsRequest{TenantId: tn.ID}, viewer)); err != nil {
		t.Fatalf("a viewer lists agents: %v", err)
	}
}

// watch opens a config stream of a.
func watch(t *testing.T, e *agentstest.Env, a agent, known int64) *connect.ServerStreamForClient[agentsv1.WatchConfigResponse] {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	s, err := e.Client.WatchConfig(ctx, cptest.Auth(&agentsv1.WatchConfigRequest{KnownVersion: known}, a.Credential))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// nextSnapshot returns the stream's next snapshot, skipping keepalives.
func nextSnapshot(t *testing.T, s *connect.ServerStreamForClient[agentsv1.WatchConfigResponse]) *agentsv1.Snapshot {
	t.Helper()
	for s.Receive() {
		if snap := s.Msg().GetSnapshot(); snap != nil {
			return snap
		}
	}
	t.Fatalf("the stream ended without a snapshot: %v", s.Err())
	return nil
}

func domains(s *agentsv1.Snapshot) []string {
	var names []string
	for _, d := range s.Domains {
		names = append(names, d.Name)
	}
	return names
}

// A change of the tenant's configuration reaches each of its agents'
// streams, and nothing of another tenant does.
func TestWatchConfig(t *testing.T) {
	t.Parallel()
	e := agentstest.Start(t, long)
	a := e.Tenant(t, "a.example")
	b := e.Tenant(t, "b.example")
	e.Exec(t, a.ID, `INSERT INTO mail_users(tenant_id, domain_id, address, password_hash) SELECT $1, id, 'u@a.example', '$argon2id$x' FROM domains WHERE name = 'a.example'`, a.ID)
	e.Exec(t, a.ID, `INSERT INTO tenant_settings(tenant_id, settings) VALUES ($1, '{"unknownField": 1}')`, a.ID)
	agents := []agent{mustEnroll(t, e, a), mustEnroll(t, e, a)}
	streams := make([]*connect.ServerStreamForClient[agentsv1.WatchConfigResponse], len(agents))
	var version int64
	for i, ag := range agents {
		streams[i] = watch(t, e, ag, 0)
		snap := nextSnapshot(t, streams[i])
		if !slices.Equal(domains(snap), []string{"a.example"}) || len(snap.Users) != 1 || snap.Users[0].PasswordHash != "$argon2id$x" ||
			snap.Users[0].User.Address != "u@a.example" || snap.Settings == nil || snap.Version < 1 {
			t.Fatalf("first snapshot %v", snap)
		}
		version = snap.Version
	}

	e.AddDomain(t, b.ID, "b2.example")
	e.AddDomain(t, a.ID, "a2.example")
	changed := time.Now()
	for i, s := range streams {
		snap := nextSnapshot(t, s)
		t.Logf("stream %d: the change reached the agent %s after its commit", i, time.Since(changed))
		if !slices.Equal(domains(snap), []string{"a.example", "a2.example"}) || snap.Version <= version {
			t.Fatalf("snapshot after the change: version %d (was %d), domains %v", snap.Version, version, domains(snap))
		}
	}
}

// A stream opened with the current version gets no snapshot, but
// keepalives.
func TestWatchConfigKnownVersion(t *testing.T) {
	t.Parallel()
	e := agentstest.Start(t, 50*time.Millisecond)
	tn := e.Tenant(t, "a.example")
	a := mustEnroll(t, e, tn)
	s := watch(t, e, a, 0)
	version := nextSnapshot(t, s).Version
	s.Close()
	s = watch(t, e, a, version)
	for range 2 {
		if !s.Receive() {
			t.Fatalf("the stream ended: %v", s.Err())
		}
		if s.Msg().GetKeepalive() == nil {
			t.Fatalf("got %v, want a keepalive", s.Msg())
		}
	}
}

// After the listener's connection is lost, it reconnects and the streams
// catch up with what changed meanwhile.
func TestWatchConfigListenerReconnects(t *testing.T) {
	t.Parallel()
	e := agentstest.Start(t, long)
	tn := e.Tenant(t, "a.example")
	s := watch(t, e, mustEnroll(t, e, tn), 0)
	nextSnapshot(t, s)
	for {
		var n int
		if err := e.Owner.QueryRow(t.Context(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE application_name = 'mairust-controlplane-listener' AND datname = current_database()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond) // not connected yet
	}
	e.AddDomain(t, tn.ID, "a2.example")
	if snap := nextSnapshot(t, s); !slices.Contains(domains(snap), "a2.example") {
		t.Fatalf("snapshot after the reconnection: %v", domains(snap))
	}
}

// A change whose notification was lost reaches the stream at the next
// recheck; keepalives alone read nothing.
func TestWatchConfigRecheck(t *testing.T) {
	t.Parallel()
	e := agentstest.StartRecheck(t, 50*time.Millisecond, 500*time.Millisecond)
	tn := e.Tenant(t, "a.example")
	s := watch(t, e, mustEnroll(t, e, tn), 0)
	first := nextSnapshot(t, s)
	stop := time.AfterFunc(30*time.Second, func() { s.Close() }) // a recheck that never comes fails the test
	defer stop.Stop()
	// A version raised without a notification (no trigger on the table).
	if _, err := e.Owner.Exec(t.Context(), `UPDATE config_versions SET version = version + 1 WHERE tenant_id = $1`, tn.ID); err != nil {
		t.Fatal(err)
	}
	if snap := nextSnapshot(t, s); snap.Version != first.Version+1 {
		t.Fatalf("after the recheck: version %d, want %d", snap.Version, first.Version+1)
	}
}

func TestRevokeAgent(t *testing.T) {
	t.Parallel()
	e := agentstest.Start(t, long)
	tn := e.Tenant(t, "a.example")
	a, other := mustEnroll(t, e, tn), mustEnroll(t, e, tn)
	s := watch(t, e, a, 0)
	nextSnapshot(t, s)

	if _, err := e.Client.RevokeAgent(t.Context(), cptest.Auth(&agentsv1.RevokeAgentRequest{TenantId: tn.ID, AgentId: a.ID}, tn.Session)); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	for s.Receive() {
		if s.Msg().GetSnapshot() != nil {
			t.Fatal("a snapshot after the revocation")
		}
	}
	wantCode(t, "the revoked agent's stream", s.Err(), connect.CodePermissionDenied, "revoked")
	t.Logf("the stream ended %s after the revocation", time.Since(revoked))

	_, err := heartbeat(t, e, a)
	wantCode(t, "the revoked agent's heartbeat", err, connect.CodePermissionDenied, "revoked")
	_, err = renew(t, e, a, a.Key, time.Now().Unix())
	wantCode(t, "the revoked agent's renewal", err, connect.CodePermissionDenied, "revoked")
	if _, err := heartbeat(t, e, other); err != nil {
		t.Fatalf("another agent of the tenant: %v", err)
	}
	if got := listAgents(t, e, tn)[a.ID].Status; got != agentsv1.AgentStatus_AGENT_STATUS_REVOKED {
		t.Fatalf("status %v after the revocation", got)
	}
}

func renew(t *testing.T, e *agentstest.Env, a agent, key ed25519.PrivateKey, ts int64) (*agentsv1.Credential, error) {
	t.Helper()
	resp, err := e.Client.RenewCredential(t.Context(), connect.NewRequest(&agentsv1.RenewCredentialRequest{AgentId: a.ID, Timestamp: ts,
		Signature: ed25519.Sign(key, proof.Renew(a.ID, ts))}))
	if err != nil {
		return nil, err
	}
	return resp.Msg.Credential, nil
}

func TestRenewCredential(t *testing.T) {
	t.Parallel()
	e := agentstest.Start(t, long)
	a := mustEnroll(t, e, e.Tenant(t, "a.example"))
	cred, err := renew(t, e, a, a.Key, time.Now().Unix())
	if err != nil {
		t.Fatal(err)
	}
	a.Credential = cred.Token
	if _, err := heartbeat(t, e, a); err != nil {
		t.Fatalf("heartbeat with the renewed credential: %v", err)
	}

	_, other, _ := ed25519.GenerateKey(nil)
	_, err = renew(t, e, a, other, time.Now().Unix())
	wantCode(t, "another key's signature", err, connect.CodeUnauthenticated, "signature")
	_, err = renew(t, e, a, a.Key, time.Now().Add(-time.Hour).Unix())
	wantCode(t, "an old timestamp", err, connect.CodeInvalidArgument, "clock")
	a.ID = "00000000-0000-4000-8000-000000000000"
	_, err = renew(t, e, a, a.Key, time.Now().Unix())
	wantCode(t, "an unknown agent", err, connect.CodeNotFound, "not enrolled")
}

func TestMarkDown(t *testing.T) {
	t.Parallel()
	e := agentstest.Start(t, long)
	tn := e.Tenant(t, "a.example")
	stale, fresh := mustEnroll(t, e, tn), mustEnroll(t, e, tn)
	for _, a := range []agent{stale, fresh} {
		if _, err := heartbeat(t, e, a); err != nil {
			t.Fatal(err)
		}
	}
	after := e.Config.AgentDownAfter
	// Past the threshold plus any jitter; short of the threshold alone.
	ownerExec(t, e, `UPDATE agents SET last_heartbeat_at = now() - make_interval(secs => $2) WHERE id = $1`, stale.ID, (after * 12 / 10).Seconds())
	ownerExec(t, e, `UPDATE agents SET last_heartbeat_at = now() - make_interval(secs => $2) WHERE id = $1`, fresh.ID, (after * 99 / 100).Seconds())
	n, err := e.Service.MarkDown(t.Context())
	if err != nil || n != 1 {
		t.Fatalf("marked %d down, %v; want 1", n, err)
	}
	list := listAgents(t, e, tn)
	if list[stale.ID].Status != agentsv1.AgentStatus_AGENT_STATUS_DOWN || list[fresh.ID].Status != agentsv1.AgentStatus_AGENT_STATUS_UP {
		t.Fatalf("statuses %v and %v, want down and up", list[stale.ID].Status, list[fresh.ID].Status)
	}
	if _, err := heartbeat(t, e, stale); err != nil {
		t.Fatal(err)
	}
	if got := listAgents(t, e, tn)[stale.ID].Status; got != agentsv1.AgentStatus_AGENT_STATUS_UP {
		t.Fatalf("status %v after a heartbeat, want up", got)
	}
}

// An account of tenant A finds nothing of tenant B, and an agent's
// credential is not a session nor the reverse.
func TestCrossTenant(t *testing.T) {
	t.Parallel()
	e := agentstest.Start(t, long)
	a, b := e.Tenant(t, "a.example"), e.Tenant(t, "b.example")
	agentA, agentB := mustEnroll(t, e, a), mustEnroll(t, e, b)
	ctx := t.Context()

	_, err := e.Client.ListAgents(ctx, cptest.Auth(&agentsv1.ListAgentsRequest{TenantId: b.ID}, a.Session))
	wantCode(t, "listing B's agents", err, connect.CodeNotFound, "not found")
	_, err = e.Client.CreateEnrollmentToken(ctx, cptest.Auth(&agentsv1.CreateEnrollmentTokenRequest{TenantId: b.ID}, a.Session))
	wantCode(t, "a token of B", err, connect.CodeNotFound, "not found")
	for _, tenant := range []string{b.ID, a.ID} {
		_, err = e.Client.RevokeAgent(ctx, cptest.Auth(&agentsv1.RevokeAgentRequest{TenantId: tenant, AgentId: agentB.ID}, a.Session))
		wantCode(t, "revoking B's agent", err, connect.CodeNotFound, "not found")
	}
	if _, err := heartbeat(t, e, agentB); err != nil {
		t.Fatalf("B's agent after A's attempts: %v", err)
	}

	_, err = e.Client.ListAgents(ctx, cptest.Auth(&agentsv1.ListAgentsRequest{TenantId: a.ID}, agentA.Credential))
	wantCode(t, "an agent's console call", err, connect.CodeUnauthenticated, "session")
	_, err = e.Client.Heartbeat(ctx, cptest.Auth(&agentsv1.HeartbeatRequest{}, a.Session))
	wantCode(t, "a session's heartbeat", err, connect.CodeUnauthenticated, "agent credential")

	if got := domains(nextSnapshot(t, watch(t, e, agentA, 0))); !slices.Equal(got, []string{"a.example"}) {
		t.Fatalf("A's agent got domains %v", got)
	}
}
