// Package submission is the authenticated SMTP submission server (RFC 6409)
// built on go-smtp: port 587 with STARTTLS required before AUTH and MAIL,
// port 465 with implicit TLS (RFC 8314), AUTH PLAIN and LOGIN against the
// mail users with a per-IP limit on attempts, the rule that the envelope
// sender is the authenticated user's own address or one of its aliases,
// and the Received header.
// It hands each message to a Submitter and answers 250 only once the
// Submitter has returned nil. It does not evaluate the outbound policy,
// sign, queue or store anything itself.
package submission

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/internal/connlimit"
	"github.com/mairust/mairust/internal/ratelimit"
	"github.com/mairust/mairust/internal/smtputil"
)

// Authenticator checks mail users' passwords, knows their aliases and
// keeps the admin log of sign-ins; *accounts.Accounts is one.
type Authenticator interface {
	// Authenticate returns accounts.ErrBadCredentials for a wrong address
	// or password.
	Authenticate(ctx context.Context, addr, pw string) (accounts.User, error)
	// Owns reports whether address (normalized) is the user's own or one
	// of its aliases.
	Owns(ctx context.Context, userID int64, address string) (bool, error)
	RecordLogin(ctx context.Context, tenant, actor string, ok bool, ip, via string) error
}

// Submission is one message an authenticated user sends.
type Submission struct {
	ID         string // the id in the Received header, for the logs
	UserID     int64
	TenantID   string
	Address    string // the authenticated user's address
	MailFrom   string // the envelope sender: Address or an alias of it, as the client spelled it
	Recipients []string
	Data       []byte // the message, starting with our Received header
	ClientIP   string
	UTF8       bool // the client asked for SMTPUTF8: the relay must offer it
}

// Submitter takes a message for sending. It returns nil only once the
// message is durable (it is acknowledged with 250 at once); a *Reject is
// answered to the client as it is, any other error with a 451.
type Submitter interface {
	Submit(ctx context.Context, s Submission) error
}

// Reject is a refusal of a submission with the reply the client gets, e.g.
// 550 5.7.1 for a suspended account or 450 4.7.1 for one over a limit.
// Code must be 4xx or 5xx; Enhanced is the status code "x.y.z" (RFC 3463).
type Reject struct {
	Code     int
	Enhanced string
	Text     string
}

func (r *Reject) Error() string { return fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text) }

// Config sets up a Server. Hostname and TLSConfig are required, the size,
// recipient and connection limits must be positive, and zero timeouts take
// the defaults named.
type Config struct {
	Hostname             string        // in the greeting and the Received header
	TLSConfig            *tls.Config   // for STARTTLS and port 465
	MaxMessageBytes      int64         // announced with SIZE
	MaxRecipients        int           // RCPT TO in one transaction
	MaxConnections       int           // open at once, all clients together
	MaxConnectionsPerIP  int           // open at once from one client IP address
	LoginsPerIPPerMinute int           // AUTH attempts, successful or not, from one IP address; 0: no limit
	ReadTimeout          time.Duration // how long a client may stay silent; 0: 5 minutes
	WriteTimeout         time.Duration // 0: 1 minute
	SubmitTimeout        time.Duration // bounds one Submit; 0: 1 minute
	Log                  *slog.Logger  // nil: slog.Default()
}

// Default timeouts.
const (
	defaultReadTimeout = 5 * time.Minute
	defaultTimeout     = time.Minute
)

// check names the first setting that is missing.
func (c Config) check() error {
	switch {
	case c.Hostname == "":
		return errors.New("submission: Hostname is empty")
	case c.TLSConfig == nil:
		return errors.New("submission: TLSConfig is nil: submission needs TLS")
	case c.MaxMessageBytes <= 0:
		return errors.New("submission: MaxMessageBytes must be positive")
	case c.MaxRecipients <= 0:
		return errors.New("submission: MaxRecipients must be positive")
	case c.MaxConnections <= 0 || c.MaxConnectionsPerIP <= 0:
		return errors.New("submission: MaxConnections and MaxConnectionsPerIP must be positive")
	}
	return nil
}

// orDefault returns d when v is zero.
func orDefault(v, d time.Duration) time.Duration {
	if v == 0 {
		return d
	}
	return v
}

// Server serves submission on any number of listeners.
type Server struct {
	cfg    Config
	auth   Authenticator
	sub    Submitter
	log    *slog.Logger
	logins *ratelimit.Limiter
	smtp   *smtp.Server

	conns     connlimit.Counter
	mu        sync.Mutex
	open      map[*connlimit.Conn]struct{} // for Shutdown to close what is left
	listeners []net.Listener               // for Shutdown: smtp.Server misses those served after it
	stopped   bool                         // Shutdown or Close was called
}

// New returns a server, or an error naming a setting of cfg that is wrong.
func New(cfg Config, auth Authenticator, sub Submitter) (*Server, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	cfg.ReadTimeout = orDefault(cfg.ReadTimeout, defaultReadTimeout)
	cfg.WriteTimeout = orDefault(cfg.WriteTimeout, defaultTimeout)
	cfg.SubmitTimeout = orDefault(cfg.SubmitTimeout, defaultTimeout)
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	s := &Server{
		cfg: cfg, auth: auth, sub: sub,
		log:    cfg.Log.With("component", "submission"),
		logins: ratelimit.New(cfg.LoginsPerIPPerMinute),
		open:   map[*connlimit.Conn]struct{}{},
	}
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = cfg.Hostname
	srv.TLSConfig = cfg.TLSConfig
	srv.MaxMessageBytes = cfg.MaxMessageBytes
	srv.MaxRecipients = cfg.MaxRecipients
	srv.ReadTimeout = cfg.ReadTimeout
	srv.WriteTimeout = cfg.WriteTimeout
	srv.EnableSMTPUTF8 = true
	// The session refuses AUTH before TLS itself, with the replies of
	// RFC 4954 and RFC 3207 rather than go-smtp's own.
	srv.AllowInsecureAuth = true
	srv.ErrorLog = smtputil.ErrorLog{Log: s.log}
	s.smtp = srv
	return s, nil
}

// Serve587 answers submission on l with STARTTLS until Close or Shutdown.
func (s *Server) Serve587(l net.Listener) error {
	return s.serve(l, s.limited(l, "starttls"))
}

// ServeTLS465 answers submission on l with TLS from the first byte.
func (s *Server) ServeTLS465(l net.Listener) error {
	return s.serve(l, tls.NewListener(s.limited(l, "implicit_tls"), s.cfg.TLSConfig))
}

// serve serves wrapped (made from l) unless the server is stopped
// already, in which case it closes l and returns nil at once, as a stopped
// server's Serve does.
func (s *Server) serve(l, wrapped net.Listener) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		l.Close()
		return nil
	}
	s.listeners = append(s.listeners, l)
	s.mu.Unlock()
	return s.smtp.Serve(wrapped)
}

// stop marks the server stopped and closes every listener it serves: after
// smtp.Server's Shutdown or Close, which make Serve return nil, for those
// it did not know yet (their Serve started just then).
func (s *Server) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	for _, l := range s.listeners {
		l.Close()
	}
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	err := s.smtp.Close()
	s.stop()
	s.closeAll()
	return err
}

// Shutdown stops accepting and waits for the sessions to end; those still
// open when ctx ends are closed (a message whose 250 was not sent is not
// acknowledged, and the client sends it again). Once the server is shut
// down or closed it returns smtp.ErrServerClosed.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.smtp.Shutdown(ctx)
	s.stop()
	if err != nil && !errors.Is(err, smtp.ErrServerClosed) {
		s.log.Warn("sessions still open at the end of the shutdown timeout; closing them", "error", err)
		s.closeAll()
	}
	return err
}
