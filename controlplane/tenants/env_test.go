package tenants_test

import (
	"context"
	"net/http"
	"testing"

	"connectrpc.com/connect"

	"github.com/mairust/mairust/controlplane/accounts"
	"github.com/mairust/mairust/controlplane/cptest"
	"github.com/mairust/mairust/controlplane/mailer"
	"github.com/mairust/mairust/controlplane/server"
	"github.com/mairust/mairust/controlplane/tenants"
	accountsv1 "github.com/mairust/mairust/proto/mairust/accounts/v1"
	"github.com/mairust/mairust/proto/mairust/accounts/v1/accountsv1connect"
	tenantsv1 "github.com/mairust/mairust/proto/mairust/tenants/v1"
	"github.com/mairust/mairust/proto/mairust/tenants/v1/tenantsv1connect"
)

// env is both console services on a real database behind the control
// plane's HTTP server (HTTP/1.1 and cleartext HTTP/2) on loopback.
type env struct {
	*cptest.Env
	t    *testing.T
	mail *mailer.Recorder
}

func start(t *testing.T) *env {
	t.Helper()
	e := &env{Env: cptest.New(t, "cptenants"), t: t, mail: &mailer.Recorder{}}
	opts := e.Options()
	e.Serve(t, []server.Service{
		accounts.New(e.Store, e.Keys, e.Config, e.mail, e.Log).Service(opts...),
		tenants.New(e.Store, e.Config, e.mail, e.Log).Service(opts...),
	}, nil)
	return e
}

// h2c is a client speaking cleartext HTTP/2 only, as gRPC clients do.
var h2c = func() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}}
}()

func (e *env) accounts(token string) accountsv1connect.AccountsServiceClient {
	return accountsv1connect.NewAccountsServiceClient(http.DefaultClient, e.URL, cptest.Bearer(token))
}

// tenants is a Connect client as token; grpc: a gRPC one over h2c.
func (e *env) tenants(token string, grpc bool) tenantsv1connect.TenantsServiceClient {
	if grpc {
		return tenantsv1connect.NewTenantsServiceClient(h2c, e.URL, cptest.Bearer(token), connect.WithGRPC())
	}
	return tenantsv1connect.NewTenantsServiceClient(http.DefaultClient, e.URL, cptest.Bearer(token))
}

// password is every test account's password.
const password = "long enough password"

// person signs up with addr, verifies it from the mail and logs in,
// returning the session token.
func (e *env) person(addr string) string {
	e.t.Helper()
	ctx := context.Background()
	c := e.accounts("")
	ok(c.SignUp(ctx, connect.NewRequest(&accountsv1.SignUpRequest{Email: addr, Password: password})))(e.t)
	tok, err := e.mail.LastToken(addr)
	if err != nil {
		e.t.Fatal(err)
	}
	ok(c.VerifyEmail(ctx, connect.NewRequest(&accountsv1.VerifyEmailRequest{Token: tok})))(e.t)
	return ok(c.LogIn(ctx, connect.NewRequest(&accountsv1.LogInRequest{Email: addr, Password: password})))(e.t).SessionToken
}

// ok returns a call's message, failing t on an error: ok(c.Call(…))(t).
func ok[T any](r *connect.Response[T], err error) func(*testing.T) *T {
	return func(t *testing.T) *T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return r.Msg
	}
}

// tenant creates a tenant and returns its id.
func tenant(t *testing.T, c tenantsv1connect.TenantsServiceClient, name string) string {
	t.Helper()
	return ok(c.CreateTenant(context.Background(), connect.NewRequest(&tenantsv1.CreateTenantRequest{Name: name})))(t).Tenant.Id
}

// domain adds a domain and returns its id.
func domain(t *testing.T, c tenantsv1connect.TenantsServiceClient, tenantID, name string) string {
	t.Helper()
	return ok(c.AddDomain(context.Background(), connect.NewRequest(&tenantsv1.AddDomainRequest{TenantId: tenantID, Name: name})))(t).Domain.Id
}

// mailUser adds a mail user and returns its id.
func mailUser(t *testing.T, c tenantsv1connect.TenantsServiceClient, tenantID, addr string) string {
	t.Helper()
	return ok(c.AddMailUser(context.Background(),
		connect.NewRequest(&tenantsv1.AddMailUserRequest{TenantId: tenantID, Address: addr, Password: password})))(t).User.Id
}

// join invites addr into the tenant with role and accepts as session.
func (e *env) join(c tenantsv1connect.TenantsServiceClient, tenantID, addr, session string, role tenantsv1.Role) {
	e.t.Helper()
	ctx := context.Background()
	ok(c.InviteMember(ctx, connect.NewRequest(&tenantsv1.InviteMemberRequest{TenantId: tenantID, Email: addr, Role: role})))(e.t)
	tok, err := e.mail.LastToken(addr)
	if err != nil {
		e.t.Fatal(err)
	}
	ok(e.accounts(session).AcceptInvitation(ctx, connect.NewRequest(&accountsv1.AcceptInvitationRequest{Token: tok})))(e.t)
}
