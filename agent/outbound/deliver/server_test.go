package deliver

import (
	"crypto/tls"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/mairust/mairust/internal/tlsconfig"
)

// testServer is a loopback go-smtp server with scripted answers.
type testServer struct {
	t    *testing.T
	srv  *smtp.Server
	addr string
	port int

	mu       sync.Mutex
	rcptErr  func(to string) error
	dataErr  error
	mails    []string // MAIL FROM values
	utf8     []bool
	rcpts    []string // accepted
	data     [][]byte
	authUser string
	sawTLS   []bool
	// hold makes RCPT block until released (for limiter tests).
	hold     chan struct{}
	active   int
	maxSeen  int
	username string
	password string
}

func smtpErr(code int, enh smtp.EnhancedCode, msg string) error {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}
}

type testSession struct {
	s    *testServer
	conn *smtp.Conn
	in   bool
}

func (ts *testSession) Reset()                   {}
func (ts *testSession) Logout() error            { return nil }
func (ts *testSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (ts *testSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if user != ts.s.username || pass != ts.s.password {
			return smtpErr(535, smtp.EnhancedCode{5, 7, 8}, "bad credentials")
		}
		ts.s.mu.Lock()
		ts.s.authUser = user
		ts.s.mu.Unlock()
		return nil
	}), nil
}
func (ts *testSession) Mail(from string, opts *smtp.MailOptions) error {
	s := ts.s
	_, isTLS := ts.conn.TLSConnectionState()
	s.mu.Lock()
	s.mails = append(s.mails, from)
	s.utf8 = append(s.utf8, opts.UTF8)
	s.sawTLS = append(s.sawTLS, isTLS)
	s.active++
	if s.active > s.maxSeen {
		s.maxSeen = s.active
	}
	ts.in = true
	s.mu.Unlock()
	return nil
}
func (ts *testSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s := ts.s
	if s.hold != nil {
		<-s.hold
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rcptErr != nil {
		if err := s.rcptErr(to); err != nil {
			return err
		}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}
func (ts *testSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s := ts.s
	s.mu.Lock()
	defer s.mu.Unlock()
	// Counted down before the reply to DATA, so before the client can
	// release its limiter slot.
	if ts.in {
		s.active--
		ts.in = false
	}
	if s.dataErr != nil {
		return s.dataErr
	}
	s.data = append(s.data, b)
	return nil
}

type serverOpt func(*testServer)

func withTLS(cfg *tls.Config) serverOpt {
	return func(s *testServer) { s.srv.TLSConfig = cfg }
}

func newTestServer(t *testing.T, opts ...serverOpt) *testServer {
	t.Helper()
	s := &testServer{t: t}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &testSession{s: s, conn: c}, nil
	}))
	s.srv.Domain = "mx.test"
	s.srv.EnableSMTPUTF8 = true
	s.srv.ReadTimeout = 10 * time.Second
	s.srv.WriteTimeout = 10 * time.Second
	for _, o := range opts {
		o(s)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	_, p, _ := net.SplitHostPort(s.addr)
	s.port, _ = strconv.Atoi(p)
	go func() { _ = s.srv.Serve(l) }()
	t.Cleanup(func() { s.srv.Close() })
	return s
}

func selfSigned(t *testing.T) *tls.Config {
	t.Helper()
	cfg, err := tlsconfig.SelfSigned(t.TempDir(), "mx.test")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// hangServer accepts connections and never answers.
func hangServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return l.Addr().String()
}

// closedAddr is a loopback address nobody listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
