// Package auth authenticates calls to the control plane: console sessions
// (an account) and agent credentials (an agent of a tenant), both JWTs
// signed with the control plane's key, checked in HTTP middleware so that
// server streams are covered as well as unary calls. It knows nothing of
// the database: whether an agent has been revoked is asked of a Checker.
package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/golang-jwt/jwt/v5"

	"github.com/mairust/mairust/internal/config"
)

const issuer = "mairust-controlplane"

// Kinds of principal, the tokens' "knd" claim.
const (
	KindSession = "session"
	KindAgent   = "agent"
)

// Principal is who makes a call.
type Principal struct {
	Kind      string // KindSession or KindAgent
	AccountID string // a session's account
	AgentID   string // an agent's id
	TenantID  string // an agent's tenant
}

type claims struct {
	jwt.RegisteredClaims
	Kind   string `json:"knd"`
	Tenant string `json:"tid,omitempty"`
}

// APITokenPrefix starts the tokens for automation (accounts'
// CreateAPIToken), which are looked up rather than verified.
const APITokenPrefix = "mrt_"

// Keys signs and verifies tokens with one key.
type Keys struct {
	// APITokens, when set, resolves a token for automation to the account
	// it acts as (a session principal), or says why not; set it before
	// serving.
	APITokens func(ctx context.Context, token string) (Principal, error)

	key config.JWTKey
	now func() time.Time
}

// NewKeys takes the key as kid:base64 (controlplane.jwt_key); empty: the
// one kept in dataDir/controlplane-jwt.key, made on first use.
func NewKeys(key, dataDir string) (*Keys, error) {
	if key == "" {
		var err error
		if key, err = storedKey(filepath.Join(dataDir, "controlplane-jwt.key")); err != nil {
			return nil, err
		}
	}
	ks, err := config.ParseJWTKeys(key)
	if err != nil {
		return nil, fmt.Errorf("controlplane.jwt_key: %w", err)
	}
	return &Keys{key: ks[0], now: time.Now}, nil
}

func storedKey(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("auth: %w", err)
	}
	s := make([]byte, 32)
	rand.Read(s)
	key := "k" + strconv.FormatInt(time.Now().Unix(), 36) + ":" + base64.StdEncoding.EncodeToString(s)
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("auth: keep the generated signing key: %w (or set controlplane.jwt_key)", err)
	}
	return key, nil
}

// Issue signs a token for p valid for ttl.
func (k *Keys) Issue(p Principal, ttl time.Duration) (string, time.Time, error) {
	now := k.now()
	exp := now.Add(ttl)
	sub := p.AccountID
	if p.Kind == KindAgent {
		sub = p.AgentID
	}
	c := claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: issuer, Subject: sub, IssuedAt: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(exp)}, Kind: p.Kind, Tenant: p.TenantID}
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
	t.Header["kid"] = k.key.ID
	s, err := t.SignedString(k.key.Secret)
	return s, exp, err
}

// Parse verifies a token and returns its principal.
func (k *Keys) Parse(token string) (Principal, error) {
	var c claims
	_, err := jwt.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		if kid, _ := t.Header["kid"].(string); kid != k.key.ID {
			return nil, errors.New("signed with an unknown key")
		}
		return k.key.Secret, nil
	}, jwt.WithValidMethods([]string{"HS256"}), jwt.WithIssuer(issuer), jwt.WithExpirationRequired(), jwt.WithTimeFunc(k.now))
	if err != nil {
		return Principal{}, err
	}
	switch c.Kind {
	case KindSession:
		return Principal{Kind: KindSession, AccountID: c.Subject}, nil
	case KindAgent:
		return Principal{Kind: KindAgent, AgentID: c.Subject, TenantID: c.Tenant}, nil
	}
	return Principal{}, fmt.Errorf("unknown token kind %q", c.Kind)
}

type ctxKey struct{}

// From returns the caller; ok is false for a public procedure called
// without a token.
func From(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}

// With returns ctx carrying p (for tests of handlers).
func With(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// Checker says whether an agent principal may still call (not revoked):
// nil, a refusal, or a *connect.Error whose code is kept (Unavailable when
// it cannot tell).
type Checker func(ctx context.Context, p Principal) error

// Middleware authenticates each call: a procedure in public may come
// without a token; every other needs a valid one, and an agent's must
// pass check. Refusals are Connect errors in the caller's protocol.
func Middleware(k *Keys, public map[string]bool, check Checker, next http.Handler) http.Handler {
	errs := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fail := func(code connect.Code, err error) { errs.Write(w, r, connect.NewError(code, err)) }
		h := r.Header.Get("Authorization")
		if h == "" {
			if public[r.URL.Path] {
				next.ServeHTTP(w, r)
				return
			}
			fail(connect.CodeUnauthenticated, errors.New("log in first: this call needs Authorization: Bearer <session token or agent credential>"))
			return
		}
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			fail(connect.CodeUnauthenticated, errors.New("the Authorization header must be Bearer <token>"))
			return
		}
		var p Principal
		var err error
		if strings.HasPrefix(tok, APITokenPrefix) && k.APITokens != nil {
			if p, err = k.APITokens(r.Context(), tok); err != nil {
				var ce *connect.Error
				if !errors.As(err, &ce) {
					ce = connect.NewError(connect.CodeUnauthenticated, err)
				}
				errs.Write(w, r, ce)
				return
			}
		} else if p, err = k.Parse(tok); err != nil {
			fail(connect.CodeUnauthenticated, fmt.Errorf("token refused: %w; log in again (an agent renews its credential)", err))
			return
		}
		if p.Kind == KindAgent && check != nil {
			if err := check(r.Context(), p); err != nil {
				// A Connect error keeps its code (Unavailable when the
				// check could not be made); any other is a refusal.
				var ce *connect.Error
				if errors.As(err, &ce) {
					errs.Write(w, r, ce)
					return
				}
				fail(connect.CodePermissionDenied, err)
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(With(r.Context(), p)))
	})
}
