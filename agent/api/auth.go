package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mairust/mairust/agent/accounts"
)

// principal is who a request acts for.
type principal struct {
	accounts.User
	TokenID int64 // the API token used, 0 for an access JWT
}

type principalKey struct{}

// caller returns the request's principal; authed guarantees there is one.
func caller(r *http.Request) principal {
	p, _ := r.Context().Value(principalKey{}).(principal)
	return p
}

// authed wraps h so that it runs only with a valid access JWT or API token.
func (s *Server) authed(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		p, err := s.authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mairust"`)
			return err
		}
		return s.rate.user(h)(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

func (s *Server) authenticate(r *http.Request) (principal, error) {
	h := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || token == "" {
		return principal{}, problem(http.StatusUnauthorized, "Authorization", "send Authorization: Bearer <access token or API token>; get one from POST /api/v1/auth/login")
	}
	if strings.HasPrefix(token, apiTokenPrefix) {
		return s.apiTokenPrincipal(r.Context(), token)
	}
	c, err := s.keys.Load().verify(token, s.now())
	if err != nil {
		return principal{}, problem(http.StatusUnauthorized, "Authorization", "the access token is invalid or expired; refresh it with POST /api/v1/auth/refresh")
	}
	id, err := strconv.ParseInt(c.Subject, 10, 64)
	if err != nil {
		return principal{}, problem(http.StatusUnauthorized, "Authorization", "the access token names no user")
	}
	return principal{User: accounts.User{ID: id, TenantID: c.Tenant, Address: c.Address, Admin: c.Admin}}, nil
}

// apiTokenPrincipal looks the token up by its hash; the user must still be enabled.
func (s *Server) apiTokenPrincipal(ctx context.Context, token string) (principal, error) {
	var p principal
	err := s.pool.QueryRow(ctx, `
		UPDATE api_tokens t SET last_used_at = now()
		FROM mail_users u JOIN domains d ON d.id = u.domain_id
		WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())
			AND u.id = t.user_id AND NOT u.disabled AND NOT d.disabled
		RETURNING t.id, u.id, u.tenant_id::text, u.address, u.is_admin`, hashOpaque(token)).
		Scan(&p.TokenID, &p.ID, &p.TenantID, &p.Address, &p.Admin)
	if errors.Is(err, pgx.ErrNoRows) {
		return principal{}, problem(http.StatusUnauthorized, "Authorization", "the API token is unknown, revoked or expired")
	}
	return p, err
}

type loginRequest struct {
	Address  string `json:"address"`
	Password string `json:"password"`
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	var req loginRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	switch {
	case req.Address == "":
		return problem(http.StatusBadRequest, "address", "address is required")
	case req.Password == "":
		return problem(http.StatusBadRequest, "password", "password is required")
	}
	u, err := s.accounts.Authenticate(r.Context(), req.Address, req.Password)
	s.event(r, u.TenantID, "auth.login", req.Address, map[string]any{"ok": err == nil})
	if errors.Is(err, accounts.ErrBadCredentials) {
		return problem(http.StatusUnauthorized, "password", "invalid address or password")
	}
	if err != nil {
		return err
	}
	return s.issue(w, r, u)
}

// issue answers with a new access token and a new refresh token for u.
func (s *Server) issue(w http.ResponseWriter, r *http.Request, u accounts.User) error {
	cfg := s.settings.Load()
	now := s.now()
	access, err := s.keys.Load().sign(u, now, cfg.AccessTokenTTL)
	if err != nil {
		return err
	}
	refresh, hash := newOpaque(refreshPrefix)
	if _, err := s.pool.Exec(r.Context(), `INSERT INTO refresh_tokens(user_id, token_hash, expires_at) VALUES($1, $2, $3)`,
		u.ID, hash, now.Add(cfg.RefreshTokenTTL)); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tokenResponse{AccessToken: access, TokenType: "Bearer", ExpiresIn: int(cfg.AccessTokenTTL.Seconds()), RefreshToken: refresh})
	return nil
}

type refreshRequest struct {
	RefreshToken string `json:"refresh_token"`
}

// refresh swaps a refresh token for a new pair; the old one is revoked.
func (s *Server) refresh(w http.ResponseWriter, r *http.Request) error {
	var req refreshRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	var uid int64
	err := s.pool.QueryRow(r.Context(), `
		UPDATE refresh_tokens SET revoked_at = now()
		WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > now()
		RETURNING user_id`, hashOpaque(req.RefreshToken)).Scan(&uid)
	if errors.Is(err, pgx.ErrNoRows) {
		return problem(http.StatusUnauthorized, "refresh_token", "the refresh token is unknown, revoked or expired; log in again")
	}
	if err != nil {
		return err
	}
	u, err := s.accounts.UserByID(r.Context(), uid)
	if errors.Is(err, accounts.ErrBadCredentials) {
		return problem(http.StatusUnauthorized, "refresh_token", "the account is disabled")
	}
	if err != nil {
		return err
	}
	return s.issue(w, r, u)
}

// logout revokes a refresh token.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) error {
	var req refreshRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if _, err := s.pool.Exec(r.Context(), `UPDATE refresh_tokens SET revoked_at = now() WHERE token_hash = $1 AND revoked_at IS NULL`, hashOpaque(req.RefreshToken)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// meResponse is the signed-in user.
type meResponse struct {
	Address string `json:"address"`
	Admin   bool   `json:"admin"`
	ID      int64  `json:"id"`
}

func (s *Server) me(w http.ResponseWriter, r *http.Request) error {
	p := caller(r)
	writeJSON(w, http.StatusOK, meResponse{ID: p.ID, Address: p.Address, Admin: p.Admin})
	return nil
}

// maxTokenName bounds an API token's name.
const maxTokenName = 100

type createTokenRequest struct {
	Name          string `json:"name"`
	ExpiresInDays int    `json:"expires_in_days,omitempty"` // 0: never
}

type apiToken struct {
	ID         int64      `json:"id"`
	Name       string     `json:"name"`
	Token      string     `json:"token,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) error {
	var req createTokenRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	switch {
	case strings.TrimSpace(req.Name) == "" || len(req.Name) > maxTokenName:
		return problem(http.StatusBadRequest, "name", "name is required, at most %d bytes", maxTokenName)
	case req.ExpiresInDays < 0 || req.ExpiresInDays > 3650:
		return problem(http.StatusBadRequest, "expires_in_days", "expires_in_days must be between 0 (never) and 3650")
	}
	var expires *time.Time
	if req.ExpiresInDays > 0 {
		t := s.now().AddDate(0, 0, req.ExpiresInDays)
		expires = &t
	}
	token, hash := newOpaque(apiTokenPrefix)
	t := apiToken{Name: req.Name, Token: token, ExpiresAt: expires}
	err := s.pool.QueryRow(r.Context(), `INSERT INTO api_tokens(user_id, name, token_hash, expires_at) VALUES($1, $2, $3, $4) RETURNING id, created_at`,
		caller(r).ID, req.Name, hash, expires).Scan(&t.ID, &t.CreatedAt)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, t)
	return nil
}

// tokenList is the caller's API tokens, without their secrets.
type tokenList struct {
	Tokens []apiToken `json:"tokens"`
}

// maxTokensListed bounds the tokens one listing returns.
const maxTokensListed = 1000

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) error {
	rows, err := s.pool.Query(r.Context(), `
		SELECT id, name, created_at, expires_at, last_used_at FROM api_tokens
		WHERE user_id = $1 AND revoked_at IS NULL ORDER BY id LIMIT $2`, caller(r).ID, maxTokensListed)
	if err != nil {
		return err
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (apiToken, error) {
		var t apiToken
		err := row.Scan(&t.ID, &t.Name, &t.CreatedAt, &t.ExpiresAt, &t.LastUsedAt)
		return t, err
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tokenList{list})
	return nil
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) error {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return problem(http.StatusBadRequest, "id", "id must be a number")
	}
	tag, err := s.pool.Exec(r.Context(), `UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL`, id, caller(r).ID)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return problem(http.StatusNotFound, "id", "no API token %d of yours", id)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// event records an entry for the admin log; failures are logged, not fatal.
func (s *Server) event(r *http.Request, tenant, kind, actor string, detail map[string]any) {
	ip, _, _ := net.SplitHostPort(r.RemoteAddr)
	detail["ip"] = ip
	if err := s.accounts.RecordEvent(r.Context(), tenant, kind, actor, detail); err != nil {
		s.log.Warn("could not record event", "kind", kind, "error", err)
	}
}
