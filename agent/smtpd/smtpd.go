// Package smtpd is the receiving SMTP server (RFC 5321) built on go-smtp:
// connection and rate limits, recipient checks, the Received header, the
// answer to the spam verdict (refuse, or deliver to Junk), and the rule that
// 250 is sent only after the mail store has made the message durable. It
// does not store or scan anything itself.
package smtpd

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/agent/mailstore"
	"github.com/mairust/mairust/agent/spam"
	"github.com/mairust/mairust/internal/clientip"
	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/ratelimit"
	"github.com/mairust/mairust/internal/smtputil"
)

// Recipients resolves RCPT TO addresses.
type Recipients interface {
	Lookup(ctx context.Context, addr string) (accounts.Recipient, error)
}

// Deliverer stores an accepted message durably.
type Deliverer interface {
	Deliver(ctx context.Context, d mailstore.Delivery) ([]int64, error)
}

// Scanner judges a message before it is stored.
type Scanner interface {
	Scan(ctx context.Context, env spam.Envelope, msg []byte) (spam.Verdict, error)
}

// storeTimeout bounds a delivery; past it the client gets 451 and retries.
const storeTimeout = 60 * time.Second

// Server is one SMTP listener with its sessions.
type Server struct {
	cfg      config.SMTP
	log      *slog.Logger
	rcpts    Recipients
	store    Deliverer
	scanner  atomic.Pointer[Scanner]
	maxPerIP atomic.Int64
	rate     *ratelimit.Limiter
	srv      *smtp.Server
	ln       *listener
}

// New returns a server; tlsConfig nil disables STARTTLS.
func New(cfg config.SMTP, tlsConfig *tls.Config, rcpts Recipients, store Deliverer, log *slog.Logger) *Server {
	s := &Server{cfg: cfg, log: log.With("component", "smtpd"), rcpts: rcpts, store: store, rate: ratelimit.New(cfg.MessagesPerIPMinute)}
	s.maxPerIP.Store(int64(cfg.MaxConnectionsPerIP))
	srv := smtp.NewServer(backend{s})
	srv.Domain = cfg.Hostname
	srv.MaxMessageBytes = cfg.MaxMessageBytes
	srv.MaxRecipients = cfg.MaxRecipients
	srv.ReadTimeout = cfg.ReadTimeout
	srv.WriteTimeout = cfg.WriteTimeout
	srv.TLSConfig = tlsConfig
	srv.EnableSMTPUTF8 = true
	srv.ErrorLog = smtputil.ErrorLog{Log: s.log}
	s.srv = srv
	return s
}

// SetScanner makes every later message go through sc; without one messages
// are stored unscanned.
func (s *Server) SetScanner(sc Scanner) { s.scanner.Store(&sc) }

// Apply takes the live-reloadable settings of cfg.
func (s *Server) Apply(cfg config.SMTP) {
	s.maxPerIP.Store(int64(cfg.MaxConnectionsPerIP))
	s.rate.SetLimit(cfg.MessagesPerIPMinute)
}

// Serve accepts connections on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	s.ln = &listener{Listener: l, srv: s, conns: map[*conn]struct{}{}}
	err := s.srv.Serve(s.ln)
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, lets transactions under way finish (idle
// sessions get 421 at once) and closes whatever is still open when ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- s.srv.Shutdown(ctx) }()
	if s.ln != nil {
		s.ln.drain()
	}
	err := <-done
	if err != nil {
		s.log.Warn("sessions still open at the end of the shutdown timeout; closing them", "error", err)
		s.srv.Close()
	}
	return err
}

type backend struct{ s *Server }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	sessionsTotal.Inc()
	id := newID()
	tc, _ := underlying(c.Conn()).(*conn)
	ss := &session{s: b.s, c: c, tc: tc, id: id, ip: clientip.Of(c.Conn().RemoteAddr())}
	ss.log = b.s.log.With("request_id", id, "client_ip", ss.ip, "helo", c.Hostname())
	return ss, nil
}

// underlying unwraps a TLS connection.
func underlying(c net.Conn) net.Conn {
	if t, ok := c.(*tls.Conn); ok {
		return t.NetConn()
	}
	return c
}

func newID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}
