// Package cptest sets up what the tests of the control plane's services
// share: a fresh database, signing keys, a configuration, and the control
// plane's HTTP server on loopback. It is used only by tests.
package cptest

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mairust/mairust/controlplane/auth"
	"github.com/mairust/mairust/controlplane/server"
	"github.com/mairust/mairust/controlplane/store"
	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/pgtest"
)

// PublicURL is the control plane's public URL in an Env's Config.
const PublicURL = "https://cp.example.test"

// Env is what a service under test runs on. URL is set by Serve.
type Env struct {
	URL      string        // the server's base URL
	Store    *store.Store  // as the service's role, under row-level security
	Owner    *pgxpool.Pool // as the tables' owner, to set what the service would not
	Keys     *auth.Keys
	Config   config.ControlPlane // the defaults, with PublicURL
	Log      *slog.Logger        // to t's output
	Registry *prometheus.Registry
}

// New makes an Env on a fresh database whose name starts with prefix,
// closed when t ends.
func New(t testing.TB, prefix string) *Env {
	t.Helper()
	url := pgtest.NewDatabase(t, prefix)
	st, err := store.Open(t.Context(), url, "", 8)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Pool.Close)
	owner, err := pgxpool.New(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(owner.Close)
	keys, err := auth.NewKeys("", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default().ControlPlane
	cfg.PublicURL = PublicURL
	return &Env{Store: st, Owner: owner, Keys: keys, Config: cfg,
		Log:      slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registry: prometheus.NewRegistry()}
}

// Options are the handler options the server gives its services.
func (e *Env) Options() []connect.HandlerOption {
	return server.Options(e.Config, e.Registry, e.Log)
}

// Serve runs the control plane's server with services and check on
// loopback (HTTP/1.1 and cleartext HTTP/2) until t ends, and sets URL.
func (e *Env) Serve(t testing.TB, services []server.Service, check auth.Checker) {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = server.HTTPServer(server.New(services, e.Keys, check, e.Registry))
	srv.Start()
	t.Cleanup(srv.Close)
	e.URL = srv.URL
}

// Exec runs one statement scoped to the tenant (none: ""), as the
// services' role does.
func (e *Env) Exec(t testing.TB, tenantID, q string, args ...any) {
	t.Helper()
	err := e.Store.Tx(t.Context(), store.Scope{TenantID: tenantID}, func(tx pgx.Tx) error {
		_, err := tx.Exec(t.Context(), q, args...)
		return err
	})
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// Auth returns a request of msg with the bearer token.
func Auth[T any](msg *T, token string) *connect.Request[T] {
	r := connect.NewRequest(msg)
	r.Header().Set("Authorization", "Bearer "+token)
	return r
}

// Bearer is a client option sending the bearer token (none: "") with
// each unary call.
func Bearer(token string) connect.ClientOption {
	return connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if token != "" {
				req.Header().Set("Authorization", "Bearer "+token)
			}
			return next(ctx, req)
		}
	}))
}

// WantCode reports an error unless err has code and its message contains
// text.
func WantCode(t testing.TB, what string, err error, code connect.Code, text string) {
	t.Helper()
	if connect.CodeOf(err) != code || err == nil || !strings.Contains(err.Error(), text) {
		t.Errorf("%s: %v; want %v containing %q", what, err, code, text)
	}
}

// UUID returns a random (version 4) UUID.
func UUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
