package api

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mairust/mairust/internal/config"
)

func TestLoginRefreshLogout(t *testing.T) {
	e := newEnv(t)
	var tr tokenResponse
	e.call("POST", "/api/v1/auth/login", "", loginRequest{Address: " Alice@Example.test", Password: "pw-alice@example.test"}, &tr)
	if tr.TokenType != "Bearer" || tr.ExpiresIn != 900 || !strings.HasPrefix(tr.RefreshToken, refreshPrefix) {
		t.Fatalf("token response %+v", tr)
	}
	var me map[string]any
	if resp := e.call("GET", "/api/v1/me", tr.AccessToken, nil, &me); resp.StatusCode != 200 || me["address"] != "alice@example.test" || me["admin"] != false {
		t.Fatalf("me: %d %v", resp.StatusCode, me)
	}
	// The refresh token works once: it is rotated.
	var next tokenResponse
	if resp := e.call("POST", "/api/v1/auth/refresh", "", refreshRequest{tr.RefreshToken}, &next); resp.StatusCode != 200 || next.RefreshToken == tr.RefreshToken {
		t.Fatalf("refresh: %d %+v", resp.StatusCode, next)
	}
	var p Problem
	if resp := e.call("POST", "/api/v1/auth/refresh", "", refreshRequest{tr.RefreshToken}, &p); resp.StatusCode != 401 || p.Field != "refresh_token" {
		t.Fatalf("reused refresh token: %d %+v", resp.StatusCode, p)
	}
	// Logout revokes the current one.
	if resp := e.call("POST", "/api/v1/auth/logout", "", refreshRequest{next.RefreshToken}, nil); resp.StatusCode != 204 {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if resp := e.call("POST", "/api/v1/auth/refresh", "", refreshRequest{next.RefreshToken}, nil); resp.StatusCode != 401 {
		t.Fatalf("refresh after logout: %d", resp.StatusCode)
	}
	// Refresh tokens are stored hashed.
	var n int
	e.pool.QueryRow(t.Context(), `SELECT count(*) FROM refresh_tokens WHERE token_hash = convert_to($1, 'UTF8')`, tr.RefreshToken).Scan(&n)
	if n != 0 {
		t.Fatal("a refresh token is stored in clear")
	}
}

func TestLoginFailures(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		body   any
		status int
		field  string
	}{
		{loginRequest{Address: "alice@example.test", Password: "wrong"}, 401, "password"},
		{loginRequest{Address: "nobody@example.test", Password: "x"}, 401, "password"},
		{loginRequest{Address: "", Password: "x"}, 400, "address"},
		{loginRequest{Address: "alice@example.test"}, 400, "password"},
		{map[string]any{"address": 5}, 400, "address"},
		{map[string]any{"adress": "a@b"}, 400, "adress"},
	}
	for _, tc := range tests {
		var p Problem
		resp := e.call("POST", "/api/v1/auth/login", "", tc.body, &p)
		if resp.StatusCode != tc.status || p.Field != tc.field || p.Status != tc.status || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%v: %d %+v, want %d field %q", tc.body, resp.StatusCode, p, tc.status, tc.field)
		}
	}
	var kinds int
	e.pool.QueryRow(t.Context(), `SELECT count(*) FROM events WHERE kind = 'auth.login' AND detail->>'ok' = 'false'`).Scan(&kinds)
	if kinds != 2 {
		t.Errorf("%d failed logins recorded, want 2", kinds)
	}
}

func TestAccessTokenChecks(t *testing.T) {
	e := newEnv(t)
	tr := e.login("alice@example.test")
	// Expired: move the clock past the lifetime.
	e.srv.now = func() time.Time { return time.Now().Add(16 * time.Minute) }
	if resp := e.call("GET", "/api/v1/me", tr.AccessToken, nil, nil); resp.StatusCode != 401 {
		t.Fatalf("expired token: %d", resp.StatusCode)
	}
	e.srv.now = time.Now
	// Tampered, missing, and signed by a key that is not configured.
	for _, tok := range []string{tr.AccessToken + "x", "", "not.a.jwt"} {
		if resp := e.call("GET", "/api/v1/me", tok, nil, nil); resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("token %q: %d", tok, resp.StatusCode)
		}
	}
	// Rotation: a new key signs, the old one still verifies while listed.
	old := e.srv.settings.Load().JWTKey
	if old == "" {
		old, _ = e.srv.storedKey()
	}
	rotated := config.Default().API
	rotated.JWTKey = "k9:" + strings.Repeat("QUJD", 11)
	rotated.JWTPreviousKeys = old
	if err := e.srv.Apply(rotated); err != nil {
		t.Fatal(err)
	}
	if resp := e.call("GET", "/api/v1/me", tr.AccessToken, nil, nil); resp.StatusCode != 200 {
		t.Fatalf("token of the previous key: %d", resp.StatusCode)
	}
	rotated.JWTPreviousKeys = ""
	e.srv.Apply(rotated)
	if resp := e.call("GET", "/api/v1/me", tr.AccessToken, nil, nil); resp.StatusCode != 401 {
		t.Fatalf("token of a dropped key: %d", resp.StatusCode)
	}
	if resp := e.call("GET", "/api/v1/me", e.login("alice@example.test").AccessToken, nil, nil); resp.StatusCode != 200 {
		t.Fatalf("token of the new key: %d", resp.StatusCode)
	}
}

func TestAPITokens(t *testing.T) {
	e := newEnv(t)
	alice := e.login("alice@example.test").AccessToken
	bob := e.login("bob@example.test").AccessToken
	var created apiToken
	if resp := e.call("POST", "/api/v1/tokens", alice, createTokenRequest{Name: "backup script"}, &created); resp.StatusCode != 201 || !strings.HasPrefix(created.Token, apiTokenPrefix) {
		t.Fatalf("create: %d %+v", resp.StatusCode, created)
	}
	var me map[string]any
	if resp := e.call("GET", "/api/v1/me", created.Token, nil, &me); resp.StatusCode != 200 || me["address"] != "alice@example.test" {
		t.Fatalf("API token as credential: %d %v", resp.StatusCode, me)
	}
	var list struct{ Tokens []apiToken }
	e.call("GET", "/api/v1/tokens", alice, nil, &list)
	if len(list.Tokens) != 1 || list.Tokens[0].Token != "" || list.Tokens[0].LastUsedAt == nil {
		t.Fatalf("list shows %+v; want one token, secret not shown, last use recorded", list.Tokens)
	}
	// Bob can neither see nor revoke alice's token.
	e.call("GET", "/api/v1/tokens", bob, nil, &list)
	if len(list.Tokens) != 0 {
		t.Fatalf("bob sees %d tokens of alice", len(list.Tokens))
	}
	if resp := e.call("DELETE", fmt.Sprintf("/api/v1/tokens/%d", created.ID), bob, nil, nil); resp.StatusCode != 404 {
		t.Fatalf("bob revoking alice's token: %d", resp.StatusCode)
	}
	if resp := e.call("DELETE", fmt.Sprintf("/api/v1/tokens/%d", created.ID), alice, nil, nil); resp.StatusCode != 204 {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	if resp := e.call("GET", "/api/v1/me", created.Token, nil, nil); resp.StatusCode != 401 {
		t.Fatalf("revoked token still works: %d", resp.StatusCode)
	}
	// Expired tokens are refused; validation names the field.
	var p Problem
	if resp := e.call("POST", "/api/v1/tokens", alice, createTokenRequest{Name: ""}, &p); resp.StatusCode != 400 || p.Field != "name" {
		t.Fatalf("empty name: %d %+v", resp.StatusCode, p)
	}
	e.call("POST", "/api/v1/tokens", alice, createTokenRequest{Name: "short", ExpiresInDays: 1}, &created)
	e.pool.Exec(t.Context(), `UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = $1`, created.ID)
	if resp := e.call("GET", "/api/v1/me", created.Token, nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("expired API token: %d", resp.StatusCode)
	}
	// Disabling the user stops its tokens.
	e.call("POST", "/api/v1/tokens", alice, createTokenRequest{Name: "again"}, &created)
	e.pool.Exec(t.Context(), `UPDATE mail_users SET disabled = true WHERE address = 'alice@example.test'`)
	if resp := e.call("GET", "/api/v1/me", created.Token, nil, nil); resp.StatusCode != 401 {
		t.Fatalf("token of a disabled user: %d", resp.StatusCode)
	}
}

func TestUnknownEndpointIsProblem(t *testing.T) {
	e := newEnv(t)
	var p Problem
	if resp := e.call("GET", "/api/v1/nothing", "", nil, &p); resp.StatusCode != 404 || p.Status != 404 || p.Detail == "" {
		t.Fatalf("%d %+v", resp.StatusCode, p)
	}
}
