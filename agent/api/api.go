// Package api serves the agent's REST API under /api/v1: sign-in (access
// JWTs, refresh tokens, API tokens), the owner's messages and folders,
// sending mail and its outbound state, and the admin's users, domains,
// logs, plugins and outbound suspensions. Errors are RFC 9457 problem JSON.
// It reads and changes mail through the account and mail stores and sends
// through a Sender; it does not speak SMTP.
package api

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/agent/blobstore"
	"github.com/mairust/mairust/agent/mailstore"
	"github.com/mairust/mairust/internal/config"
)

// Server is the REST API of one agent.
type Server struct {
	pool     *pgxpool.Pool
	accounts *accounts.Accounts
	store    *mailstore.Store
	blobs    blobstore.Store
	log      *slog.Logger
	dataDir  string
	keys     atomic.Pointer[keyring]
	settings atomic.Pointer[config.API]
	rate     *rateLimits
	plugins  PluginAdmin   // nil: no plugin endpoints
	sender   Sender        // nil: no sending
	outbound OutboundAdmin // nil: no outbound endpoints
	now      func() time.Time
}

// New returns the API over the agent's stores, configured by cfg.
func New(cfg config.Config, pool *pgxpool.Pool, store *mailstore.Store, blobs blobstore.Store, log *slog.Logger) (*Server, error) {
	s := &Server{pool: pool, accounts: accounts.New(pool), store: store, blobs: blobs, log: log.With("component", "api"), dataDir: cfg.DataDir, now: time.Now}
	var err error
	if s.rate, err = newRateLimits(cfg.RateLimit, s.log); err != nil {
		return nil, err
	}
	if err := s.Apply(cfg.API); err != nil {
		return nil, err
	}
	return s, nil
}

// Apply takes the live settings: signing keys and token lifetimes.
func (s *Server) Apply(c config.API) error {
	key := c.JWTKey
	if key == "" {
		var err error
		if key, err = s.storedKey(); err != nil {
			return err
		}
	}
	k, err := newKeyring(key, c.JWTPreviousKeys)
	if err != nil {
		return err
	}
	s.keys.Store(k)
	s.settings.Store(&c)
	return nil
}

// ApplyLimits takes new request limits; a changed Redis URL needs a restart.
func (s *Server) ApplyLimits(c config.RateLimit) { s.rate.apply(c) }

// storedKey reads data_dir/api-jwt.key, generating it on first use.
func (s *Server) storedKey() (string, error) {
	path := filepath.Join(s.dataDir, "api-jwt.key")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key := generateJWTKey()
		if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("api: keep the generated signing key: %w (or set api.jwt_key)", err)
		}
		return key, nil
	}
	if err != nil {
		return "", fmt.Errorf("api: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Handler routes /api/v1 by the route table (routes).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		mux.HandleFunc(rt.method+" "+rt.path, s.wrap(rt))
	}
	mux.HandleFunc("/api/", s.handle(func(w http.ResponseWriter, r *http.Request) error {
		return problem(http.StatusNotFound, "", "no such endpoint: %s %s", r.Method, r.URL.Path)
	}))
	return mux
}

// handle adapts a handler that returns an error (answered as a problem).
func (s *Server) handle(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		r = r.WithContext(ctx)
		if err := h(w, r); err != nil {
			s.writeProblem(w, r, err)
		}
	}
}
