// Package agentstest runs the control plane's AgentsService on loopback
// HTTP over a fresh database, for the tests of the service and of its
// clients.
package agentstest

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/mairust/mairust/controlplane/agents"
	"github.com/mairust/mairust/controlplane/auth"
	"github.com/mairust/mairust/controlplane/cptest"
	"github.com/mairust/mairust/controlplane/server"
	agentsv1 "github.com/mairust/mairust/proto/mairust/agents/v1"
	"github.com/mairust/mairust/proto/mairust/agents/v1/agentsv1connect"
)

// Env is a running control plane with the AgentsService.
type Env struct {
	*cptest.Env
	Service *agents.Service
	// Client calls without credentials; give them per request with
	// cptest.Auth.
	Client agentsv1connect.AgentsServiceClient
}

// Start runs an Env until t ends: the service and its Run loops behind the
// control plane's server, on loopback. keepalive is its config streams'
// keepalive interval; they re-read the configuration only when notified
// or at the service's default recheck (minutes).
func Start(t testing.TB, keepalive time.Duration) *Env {
	t.Helper()
	return StartRecheck(t, keepalive, 0)
}

// StartRecheck is Start with the streams' recheck interval (0: the
// default).
func StartRecheck(t testing.TB, keepalive, recheck time.Duration) *Env {
	t.Helper()
	ce := cptest.New(t, "cpagents")
	svc, err := agents.New(ce.Store, ce.Keys, ce.Config, ce.Log)
	if err != nil {
		t.Fatal(err)
	}
	svc.Keepalive = keepalive
	if recheck > 0 {
		svc.Recheck = recheck
	}
	ce.Serve(t, []server.Service{svc.Service(ce.Options()...)}, svc.Check)
	running, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { svc.Run(running); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &Env{Env: ce, Service: svc, Client: agentsv1connect.NewAgentsServiceClient(http.DefaultClient, ce.URL)}
}

// Tenant is a tenant with its owner's account and console session.
type Tenant struct {
	ID, Account, Session string
}

// Tenant makes a tenant owning domain, with an owner.
func (e *Env) Tenant(t testing.TB, domain string) Tenant {
	t.Helper()
	tn := Tenant{ID: cptest.UUID()}
	e.Exec(t, tn.ID, `INSERT INTO tenants(id, name) VALUES ($1, $2)`, tn.ID, domain)
	tn.Account, tn.Session = e.Member(t, tn.ID, "owner")
	e.AddDomain(t, tn.ID, domain)
	return tn
}

// Member makes an account with role in the tenant and returns it and its
// console session.
func (e *Env) Member(t testing.TB, tenantID, role string) (account, session string) {
	t.Helper()
	account = cptest.UUID()
	e.Exec(t, tenantID, `INSERT INTO accounts(id, email, password_hash) VALUES ($1, $2, 'x')`, account, account+"@example.com")
	e.Exec(t, tenantID, `INSERT INTO memberships(tenant_id, account_id, role) VALUES ($1, $2, $3)`, tenantID, account, role)
	session, _, err := e.Keys.Issue(auth.Principal{Kind: auth.KindSession, AccountID: account}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return account, session
}

// AddDomain adds a domain to the tenant, as the console would.
func (e *Env) AddDomain(t testing.TB, tenantID, name string) {
	t.Helper()
	e.Exec(t, tenantID, `INSERT INTO domains(tenant_id, name) VALUES ($1, $2)`, tenantID, name)
}

// EnrollmentToken makes an enrollment token of the tenant through the
// console call.
func (e *Env) EnrollmentToken(t testing.TB, tn Tenant) string {
	t.Helper()
	resp, err := e.Client.CreateEnrollmentToken(t.Context(), cptest.Auth(&agentsv1.CreateEnrollmentTokenRequest{TenantId: tn.ID}, tn.Session))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Msg.Token
}
