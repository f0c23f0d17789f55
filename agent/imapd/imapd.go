// Package imapd is the agent's read-only IMAP server (go-imap v2): mail
// users sign in with their password and read their folders; every command
// that would change something answers NO [CANNOT] and points to the web UI
// and the API. UIDs and UIDVALIDITY are the ones mailstore keeps in
// PostgreSQL, so they stay the same across restarts and agents.
package imapd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/agent/blobstore"
	"github.com/mairust/mairust/agent/mailstore"
	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/connlimit"
	"github.com/mairust/mairust/internal/ratelimit"
)

var (
	sessionsActive = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "mairust", Subsystem: "imap", Name: "sessions_active",
		Help: "IMAP connections open now.",
	})
	logins = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mairust", Subsystem: "imap", Name: "logins_total",
		Help: "IMAP sign-in attempts by result: ok, failed, limited.",
	}, []string{"result"})
	refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mairust", Subsystem: "imap", Name: "connections_refused_total",
		Help: "IMAP connections refused before the greeting, by reason.",
	}, []string{"reason"})
)

// Collectors returns the package's metrics for registration.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{sessionsActive, logins, refused}
}

// Server serves IMAP on any number of listeners.
type Server struct {
	cfg      config.IMAP
	accounts *accounts.Accounts
	store    *mailstore.Store
	blobs    blobstore.Store
	log      *slog.Logger
	imap     *imapserver.Server
	tls      *tls.Config
	watch    *watcher
	logins   *ratelimit.Limiter
	maxPerIP atomic.Int64

	conns connlimit.Counter
}

// New returns a server. tlsCfg is used for STARTTLS and for listeners
// served with ServeTLS. Close it to stop the watcher and every session.
func New(cfg config.IMAP, tlsCfg *tls.Config, acc *accounts.Accounts, store *mailstore.Store, blobs blobstore.Store, log *slog.Logger) *Server {
	s := &Server{
		cfg: cfg, accounts: acc, store: store, blobs: blobs, tls: tlsCfg,
		log:    log.With("component", "imap"),
		logins: ratelimit.New(cfg.LoginsPerIPMinute),
	}
	s.maxPerIP.Store(int64(cfg.MaxConnectionsPerIP))
	s.watch = newWatcher(store, cfg.IdlePoll, s.log)
	s.imap = imapserver.New(&imapserver.Options{
		NewSession: s.newSession,
		Caps: imap.CapSet{
			imap.CapIMAP4rev1: {},
			imap.CapIdle:      {},
			imap.CapUnselect:  {},
			imap.CapESearch:   {},
			// SPECIAL-USE: LIST marks Sent, Junk and Trash.
			imap.CapSpecialUse: {},
		},
		Logger:       logAdapter{s.log},
		TLSConfig:    tlsCfg,
		InsecureAuth: cfg.PlaintextAuth,
	})
	return s
}

// Apply takes the settings that change live.
func (s *Server) Apply(cfg config.IMAP) {
	s.maxPerIP.Store(int64(cfg.MaxConnectionsPerIP))
	s.logins.SetLimit(cfg.LoginsPerIPMinute)
}

// Serve answers IMAP on l (STARTTLS offered) until Close.
func (s *Server) Serve(l net.Listener) error {
	return s.serve(s.limited(l))
}

// ServeTLS answers IMAPS on l: TLS from the first byte.
func (s *Server) ServeTLS(l net.Listener) error {
	return s.serve(tls.NewListener(s.limited(l), s.tls))
}

func (s *Server) serve(l net.Listener) error {
	err := s.imap.Serve(l)
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Close closes the listeners and every connection, and stops the watcher.
func (s *Server) Close() error {
	s.watch.stop()
	return s.imap.Close()
}

// limited is l refusing a connection over the server-wide or per-IP limit
// with a BYE before the greeting.
func (s *Server) limited(l net.Listener) net.Listener {
	return &connlimit.Listener{Listener: l, Counter: &s.conns,
		Limits: func() (int, int) { return s.cfg.MaxConnections, int(s.maxPerIP.Load()) },
		Refusal: func(full bool) string {
			if full {
				refused.WithLabelValues("server_full").Inc()
				return "* BYE Too many connections, try again later\r\n"
			}
			refused.WithLabelValues("per_ip").Inc()
			return "* BYE Too many connections from your address, try again later\r\n"
		},
		Opened: func(*connlimit.Conn) { sessionsActive.Inc() },
		Closed: func(*connlimit.Conn) { sessionsActive.Dec() },
	}
}

// logAdapter sends go-imap's own messages to the agent's log: panics as
// errors, the rest (clients that hang up, fail TLS or send garbage) at
// debug level.
type logAdapter struct{ log *slog.Logger }

func (l logAdapter) Printf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	level := slog.LevelDebug
	if strings.Contains(msg, "panic") {
		level = slog.LevelError
	}
	l.log.Log(context.Background(), level, "imap: "+msg)
}
