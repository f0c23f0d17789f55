package api

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mairust/mairust/agent/accounts/accountstest"
	"github.com/mairust/mairust/agent/blobstore"
	"github.com/mairust/mairust/agent/mailstore"
	"github.com/mairust/mairust/agent/mailstore/storetest"
	"github.com/mairust/mairust/internal/config"
)

// env is an API server over a fresh database with alice and bob
// (example.test) and an admin, carol (admin.test). Passwords are
// "pw-" + address.
type env struct {
	t     *testing.T
	srv   *Server
	http  *httptest.Server
	pool  *pgxpool.Pool
	store *mailstore.Store
	blobs *blobstore.Local
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pool := accountstest.NewDatabase(t, "api", "alice@example.test", "bob@example.test", "carol@admin.test")
	if _, err := pool.Exec(t.Context(), `UPDATE mail_users SET is_admin = true WHERE address = 'carol@admin.test'`); err != nil {
		t.Fatal(err)
	}
	store, blobs := storetest.New(t, pool)
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.RateLimit.UserPerMinute = 100000 // the tests send many requests from one place
	cfg.RateLimit.AdminIPPerMinute = 100000
	srv, err := New(cfg, pool, store, blobs, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &env{t: t, srv: srv, http: hs, pool: pool, store: store, blobs: blobs}
}

// call sends a request with an optional bearer token and JSON body, and
// decodes a JSON answer into out (when not nil). It returns the response.
func (e *env) call(method, path, token string, body, out any) *http.Response {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.http.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.http.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s %s: %d, body %q: %v", method, path, resp.StatusCode, raw, err)
		}
	}
	return resp
}

// login returns an access token for address.
func (e *env) login(address string) tokenResponse {
	e.t.Helper()
	var tr tokenResponse
	if resp := e.call("POST", "/api/v1/auth/login", "", loginRequest{Address: address, Password: "pw-" + address}, &tr); resp.StatusCode != 200 {
		e.t.Fatalf("login %s: %d", address, resp.StatusCode)
	}
	return tr
}
