package submission

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/internal/tlsconfig"
)

const (
	hostname   = "submit.example.test"
	alice      = "alice@example.test"
	alicePW    = "correct horse"
	suspension = "Sending from this account is temporarily suspended. Please contact your administrator."
)

var aliceUser = accounts.User{ID: 7, TenantID: "tenant-1", Address: alice}

// login is one RecordLogin call.
type login struct {
	tenant, actor string
	ok            bool
	ip, via       string
}

// fakeAliases are the fake users' aliases: postmaster@ is alice's, sales@
// another user's.
var fakeAliases = map[string]int64{"postmaster@example.test": aliceUser.ID, "sales@example.test": aliceUser.ID + 1}

// *accounts.Accounts is what the agent passes to New.
var _ Authenticator = (*accounts.Accounts)(nil)

// fakeAuth knows alice and her alias, records sign-ins and counts Owns
// calls; Owns fails with ownsErr when it is set.
type fakeAuth struct {
	mu        sync.Mutex
	logins    []login
	ownsCalls int
	ownsErr   error
}

func (a *fakeAuth) Authenticate(_ context.Context, addr, pw string) (accounts.User, error) {
	if n, err := accounts.Normalize(addr); err != nil || n != alice || pw != alicePW {
		return accounts.User{}, accounts.ErrBadCredentials
	}
	return aliceUser, nil
}

func (a *fakeAuth) Owns(_ context.Context, userID int64, address string) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ownsCalls++
	if a.ownsErr != nil {
		return false, a.ownsErr
	}
	id, ok := fakeAliases[address]
	return (ok && id == userID) || (userID == aliceUser.ID && address == alice), nil
}

func (a *fakeAuth) RecordLogin(_ context.Context, tenant, actor string, ok bool, ip, via string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.logins = append(a.logins, login{tenant, actor, ok, ip, via})
	return nil
}

func (a *fakeAuth) recorded() []login {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]login(nil), a.logins...)
}

// fakeSubmitter keeps what it is given and answers with submit, or nil.
type fakeSubmitter struct {
	mu     sync.Mutex
	got    []Submission
	submit func(Submission) error
}

func (f *fakeSubmitter) Submit(_ context.Context, s Submission) error {
	f.mu.Lock()
	f.got = append(f.got, s)
	submit := f.submit
	f.mu.Unlock()
	if submit == nil {
		return nil
	}
	return submit(s)
}

func (f *fakeSubmitter) submissions() []Submission {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Submission(nil), f.got...)
}

// harness is a server on two loopback ports.
type harness struct {
	srv              *Server
	auth             *fakeAuth
	sub              *fakeSubmitter
	addr587, addr465 string
}

func testLog() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// start runs a server with cfg changed by change (if not nil); Shutdown
// stops it at the end of the test.
func start(t *testing.T, change func(*Config)) *harness {
	t.Helper()
	tlsCfg, err := tlsconfig.SelfSigned(t.TempDir(), hostname)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Hostname: hostname, TLSConfig: tlsCfg, MaxMessageBytes: 64 << 10, MaxRecipients: 10,
		MaxConnections: 20, MaxConnectionsPerIP: 10, LoginsPerIPPerMinute: 100, Log: testLog(),
	}
	if change != nil {
		change(&cfg)
	}
	h := &harness{auth: &fakeAuth{}, sub: &fakeSubmitter{}}
	if h.srv, err = New(cfg, h.auth, h.sub); err != nil {
		t.Fatal(err)
	}
	l587, l465 := listen(t), listen(t)
	h.addr587, h.addr465 = l587.Addr().String(), l465.Addr().String()
	done := make(chan error, 2)
	go func() { done <- h.srv.Serve587(l587) }()
	go func() { done <- h.srv.ServeTLS465(l465) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.srv.Shutdown(ctx); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
			t.Errorf("Shutdown: %v", err)
		}
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		}
	})
	return h
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

var clientTLS = &tls.Config{InsecureSkipVerify: true}

// client makes c (unless err) send EHLO client.test, and closes it at the
// end of the test.
func client(t *testing.T, c *smtp.Client, err error) *smtp.Client {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	c.CommandTimeout, c.SubmissionTimeout = 5*time.Second, 5*time.Second
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	return c
}

// dial connects to port 587 without TLS.
func dial(t *testing.T, h *harness) *smtp.Client {
	c, err := smtp.Dial(h.addr587)
	return client(t, c, err)
}

// dialTLS connects to port 587 and issues STARTTLS.
func dialTLS(t *testing.T, h *harness) *smtp.Client {
	c, err := smtp.DialStartTLS(h.addr587, clientTLS)
	return client(t, c, err)
}

// signedIn is dialTLS and AUTH PLAIN as alice.
func signedIn(t *testing.T, h *harness) *smtp.Client {
	t.Helper()
	c := dialTLS(t, h)
	if err := c.Auth(sasl.NewPlainClient("", alice, alicePW)); err != nil {
		t.Fatal(err)
	}
	return c
}

const message = "From: Alice <alice@example.test>\r\nTo: bob@remote.test\r\nSubject: hello\r\n\r\nHi Bob.\r\n"

// wantReply checks that err is the server's reply want ("550 5.7.1 text").
func wantReply(t *testing.T, err error, want string) {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("got %v, want the reply %q", err, want)
	}
	e := se.EnhancedCode
	if got := fmt.Sprintf("%d %d.%d.%d %s", se.Code, e[0], e[1], e[2], se.Message); got != want {
		t.Fatalf("got reply %q, want %q", got, want)
	}
}

func TestSubmitStartTLSPlain(t *testing.T) {
	h := start(t, nil)
	accepted := testutil.ToFloat64(submissionsTotal.WithLabelValues("accepted"))
	c := signedIn(t, h)
	if err := c.SendMail(alice, []string{"bob@remote.test", "carol@other.test", "bob@remote.test"}, strings.NewReader(message)); err != nil {
		t.Fatal(err)
	}
	subs := h.sub.submissions()
	if len(subs) != 1 {
		t.Fatalf("%d submissions, want 1", len(subs))
	}
	s := subs[0]
	if s.UserID != 7 || s.TenantID != "tenant-1" || s.Address != alice || s.MailFrom != alice || s.ClientIP != "127.0.0.1" || s.UTF8 {
		t.Errorf("submission %+v", s)
	}
	if strings.Join(s.Recipients, ",") != "bob@remote.test,carol@other.test" {
		t.Errorf("recipients %q, want bob and carol once each", s.Recipients)
	}
	head := "Received: from client.test ([127.0.0.1])\r\n\t(Authenticated sender: alice@example.test)\r\n\tby submit.example.test (MaiRust) with ESMTPSA id " + s.ID + ";\r\n\t"
	data := string(s.Data)
	if !strings.HasPrefix(data, head) || !strings.HasSuffix(data, "\r\n"+message) || strings.Count(data, "\r\n")-strings.Count(message, "\r\n") != 4 {
		t.Errorf("data %q, want the Received header %q… and the message", data, head)
	}
	if got := h.auth.recorded(); len(got) != 1 || got[0] != (login{"tenant-1", alice, true, "127.0.0.1", "submission"}) {
		t.Errorf("admin log %+v", got)
	}
	if d := testutil.ToFloat64(submissionsTotal.WithLabelValues("accepted")) - accepted; d != 1 {
		t.Errorf("accepted submissions counted %v times", d)
	}
	// A second message on the same connection, with SMTPUTF8 and the
	// sender spelled with capitals.
	if err := c.SendMail("Alice@EXAMPLE.test", []string{"hanako@例え.jp"}, strings.NewReader(message)); err != nil {
		t.Fatal(err)
	}
	if s := h.sub.submissions()[1]; !s.UTF8 || s.MailFrom != "Alice@EXAMPLE.test" || !bytes.Contains(s.Data, []byte("with UTF8SMTPSA id")) {
		t.Errorf("second submission %+v", s)
	}
}

// loginNoIR is LOGIN without an initial response: the server asks for both.
type loginNoIR struct{ user, pw string }

func (l loginNoIR) Start() (string, []byte, error) { return sasl.Login, nil, nil }

func (l loginNoIR) Next(challenge []byte) ([]byte, error) {
	switch string(challenge) {
	case "Username:":
		return []byte(l.user), nil
	case "Password:":
		return []byte(l.pw), nil
	}
	return nil, fmt.Errorf("unexpected challenge %q", challenge)
}

func TestAuthLogin(t *testing.T) {
	h := start(t, nil)
	for name, mech := range map[string]sasl.Client{
		"initial response":    sasl.NewLoginClient(alice, alicePW),
		"no initial response": loginNoIR{alice, alicePW},
	} {
		t.Run(name, func(t *testing.T) {
			c := dialTLS(t, h)
			if ok, mechs := c.Extension("AUTH"); !ok || mechs != "PLAIN LOGIN" {
				t.Errorf("AUTH advertised %v %q, want PLAIN LOGIN", ok, mechs)
			}
			if err := c.Auth(mech); err != nil {
				t.Fatal(err)
			}
			if err := c.SendMail(alice, []string{"bob@remote.test"}, strings.NewReader(message)); err != nil {
				t.Fatal(err)
			}
		})
	}
	c := dialTLS(t, h)
	wantReply(t, c.Auth(loginNoIR{alice, "wrong"}), "535 5.7.8 Authentication credentials invalid")
}

func TestAuthNeedsTLS(t *testing.T) {
	h := start(t, nil)
	c := dial(t, h)
	if ok, _ := c.Extension("STARTTLS"); !ok {
		t.Error("STARTTLS not advertised")
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH advertised before TLS")
	}
	wantReply(t, c.Auth(sasl.NewPlainClient("", alice, alicePW)), "538 5.7.11 Encryption required for requested authentication mechanism")
	wantReply(t, c.Mail(alice, nil), "530 5.7.0 Must issue a STARTTLS command first")
	if got := h.auth.recorded(); len(got) != 0 {
		t.Errorf("sign-ins recorded before TLS: %+v", got)
	}
	if ok, _ := dialTLS(t, h).Extension("STARTTLS"); ok {
		t.Error("STARTTLS advertised over TLS")
	}
}

func TestMailNeedsAuth(t *testing.T) {
	h := start(t, nil)
	c := dialTLS(t, h)
	wantReply(t, c.Mail(alice, nil), "530 5.7.0 Authentication required")
}

func TestWrongPasswordLimited(t *testing.T) {
	h := start(t, func(c *Config) { c.LoginsPerIPPerMinute = 3 })
	for range 3 { // a connection each: go-smtp closes one after 3 errors
		wantReply(t, dialTLS(t, h).Auth(sasl.NewPlainClient("", alice, "wrong")), "535 5.7.8 Authentication credentials invalid")
	}
	// Over the limit even the right password is refused, on a new connection too.
	err := dialTLS(t, h).Auth(sasl.NewPlainClient("", alice, alicePW))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 454 || se.EnhancedCode != (smtp.EnhancedCode{4, 7, 0}) ||
		!strings.HasPrefix(se.Message, "Too many authentication attempts from your address; try again in ") {
		t.Fatalf("got %v, want 454 4.7.0 Too many authentication attempts", err)
	}
	got := h.auth.recorded()
	if len(got) != 3 {
		t.Fatalf("admin log %+v, want the 3 failures", got)
	}
	for _, l := range got {
		if l != (login{"", alice, false, "127.0.0.1", "submission"}) {
			t.Errorf("recorded %+v", l)
		}
	}
}

func TestPlainAuthzidOfAnotherUser(t *testing.T) {
	h := start(t, nil)
	wantReply(t, dialTLS(t, h).Auth(sasl.NewPlainClient("bob@example.test", alice, alicePW)), "535 5.7.8 Authentication credentials invalid")
}

func TestSenderNotOwned(t *testing.T) {
	h := start(t, nil)
	c := signedIn(t, h)
	wantReply(t, c.Mail("bob@example.test", nil), "553 5.7.1 Sender address not owned by the authenticated user: <bob@example.test>")
	wantReply(t, c.Mail("", nil), "553 5.7.1 The null sender <> is not accepted for submission; send from your own address")
	if err := c.Mail(alice, nil); err != nil {
		t.Fatal(err)
	}
}

// The user may send from its aliases, in any case, but not from another
// user's; its own address needs no look-up.
func TestSenderAlias(t *testing.T) {
	h := start(t, nil)
	c := signedIn(t, h)
	if err := c.SendMail("PostMaster@Example.TEST", []string{"bob@remote.test"}, strings.NewReader(message)); err != nil {
		t.Fatalf("sending from alice's alias: %v", err)
	}
	if subs := h.sub.submissions(); len(subs) != 1 || subs[0].MailFrom != "PostMaster@Example.TEST" || subs[0].Address != alice || subs[0].UserID != aliceUser.ID {
		t.Fatalf("submissions %+v, want one from the alias by alice", subs)
	}
	wantReply(t, c.Mail("sales@example.test", nil), "553 5.7.1 Sender address not owned by the authenticated user: <sales@example.test>")
	wantReply(t, c.Mail("Sales@Example.test", nil), "553 5.7.1 Sender address not owned by the authenticated user: <Sales@Example.test>")

	h.auth.mu.Lock()
	calls := h.auth.ownsCalls
	h.auth.ownsErr = errors.New("database down")
	h.auth.mu.Unlock()
	if calls != 3 {
		t.Errorf("%d look-ups of aliases, want 3", calls)
	}
	wantReply(t, c.Mail("postmaster@example.test", nil), "451 4.3.0 Temporary failure, message not accepted; try again later")
	if err := c.Mail("ALICE@example.test", nil); err != nil {
		t.Fatalf("the user's own address while aliases cannot be read: %v", err)
	}
}

func TestRecipients(t *testing.T) {
	h := start(t, func(c *Config) { c.MaxRecipients = 2 })
	c := signedIn(t, h)
	if err := c.Mail(alice, nil); err != nil {
		t.Fatal(err)
	}
	for addr, why := range map[string]string{
		"bob@[127.0.0.1]":    "the domain is not a host name: labels of letters, digits and hyphens separated by dots",
		"bob@-remote.test":   "the domain is not a host name: labels of letters, digits and hyphens separated by dots",
		"b\x01b@remote.test": "the local part must be at most 64 letters, digits, dots and !#$%&'*+-/=?^_`{|}~",
	} {
		wantReply(t, c.Rcpt(addr, nil), "553 5.1.3 Recipient address not valid: <"+printable(addr, 256)+">: "+why)
	}
	for _, r := range []string{"bob@remote.test", "carol@remote.test"} {
		if err := c.Rcpt(r, nil); err != nil {
			t.Fatal(err)
		}
	}
	wantReply(t, c.Rcpt("dave@remote.test", nil), "452 4.5.3 Maximum limit of 2 recipients reached")
}

func TestOversize(t *testing.T) {
	h := start(t, func(c *Config) { c.MaxMessageBytes = 1024 })
	c := signedIn(t, h)
	if ok, size := c.Extension("SIZE"); !ok || size != "1024" {
		t.Errorf("SIZE advertised %v %q", ok, size)
	}
	wantReply(t, c.Mail(alice, &smtp.MailOptions{Size: 2048}), "552 5.3.4 Max message size exceeded")
	wantReply(t, c.SendMail(alice, []string{"bob@remote.test"}, strings.NewReader(message+strings.Repeat(strings.Repeat("x", 70)+"\r\n", 30))), "552 5.3.4 Maximum message size exceeded")
	if n := len(h.sub.submissions()); n != 0 {
		t.Errorf("%d oversize messages submitted", n)
	}
}

func TestSubmitterAnswers(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"suspended", &Reject{550, "5.7.1", suspension}, "550 " + "5.7.1 " + suspension},
		{"soft limit", &Reject{450, "4.7.1", "Hourly sending limit reached; try again later"}, "450 4.7.1 Hourly sending limit reached; try again later"},
		{"wrapped", fmt.Errorf("policy: %w", &Reject{550, "5.7.1", suspension}), "550 5.7.1 " + suspension},
		{"bad enhanced code", &Reject{554, "4.7.1", "No"}, "554 5.0.0 No"},
		{"not a refusal code", &Reject{250, "2.0.0", "OK"}, "451 4.3.0 Temporary failure, message not accepted; try again later"},
		{"error", errors.New("queue: database down"), "451 4.3.0 Temporary failure, message not accepted; try again later"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, nil)
			h.sub.submit = func(Submission) error { return tc.err }
			c := signedIn(t, h)
			wantReply(t, c.SendMail(alice, []string{"bob@remote.test"}, strings.NewReader(message)), tc.want)
			// The session goes on.
			if err := c.Noop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestImplicitTLS465(t *testing.T) {
	h := start(t, nil)
	c, err := smtp.DialTLS(h.addr465, clientTLS)
	c = client(t, c, err)
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS advertised on 465")
	}
	if err := c.Auth(sasl.NewPlainClient("", alice, alicePW)); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail(alice, []string{"bob@remote.test"}, strings.NewReader(message)); err != nil {
		t.Fatal(err)
	}
	if subs := h.sub.submissions(); len(subs) != 1 || !bytes.Contains(subs[0].Data, []byte("with ESMTPSA id")) {
		t.Errorf("submissions %+v", subs)
	}
}

func TestConnectionsPerIP(t *testing.T) {
	h := start(t, func(c *Config) { c.MaxConnectionsPerIP = 1 })
	dial(t, h)
	c, err := smtp.Dial(h.addr587)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wantReply(t, c.Hello("client.test"), "421 4.7.0 submit.example.test Too many connections from your address, try again later")
}

// TestShutdownWaitsForSubmit checks that a message being submitted during
// Shutdown is answered 250 before the server stops.
func TestShutdownWaitsForSubmit(t *testing.T) {
	h := start(t, nil)
	entered, release := make(chan struct{}), make(chan struct{})
	h.sub.submit = func(Submission) error {
		close(entered)
		<-release
		return nil
	}
	c := signedIn(t, h)
	sent := make(chan error, 1)
	go func() { sent <- c.SendMail(alice, []string{"bob@remote.test"}, strings.NewReader(message)) }()
	<-entered
	stopped := make(chan error, 1)
	go func() { stopped <- h.srv.Shutdown(context.Background()) }()
	select {
	case err := <-stopped:
		t.Fatalf("Shutdown returned %v while a message was being submitted", err)
	default:
	}
	close(release)
	if err := <-sent; err != nil {
		t.Fatalf("message under way at shutdown: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}

// TestShutdownClosesIdle checks that sessions still open when Shutdown's
// context ends are closed.
func TestShutdownClosesIdle(t *testing.T) {
	h := start(t, nil)
	c := signedIn(t, h)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.srv.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := c.Noop(); err == nil {
		t.Fatal("session still open after Shutdown")
	}
}

func TestNewChecksConfig(t *testing.T) {
	if _, err := New(Config{Hostname: hostname}, &fakeAuth{}, &fakeSubmitter{}); err == nil || !strings.Contains(err.Error(), "TLSConfig") {
		t.Errorf("New without TLS: %v", err)
	}
}

func FuzzLoginServer(f *testing.F) {
	f.Add(true, []byte(alice), []byte(alicePW))
	f.Add(false, []byte(""), []byte("\x00"))
	f.Fuzz(func(t *testing.T, initial bool, user, pw []byte) {
		var gotUser, gotPW string
		l := &loginServer{check: func(u, p string) error { gotUser, gotPW = u, p; return nil }}
		if !initial {
			if ch, done, err := l.Next(nil); string(ch) != "Username:" || done || err != nil {
				t.Fatalf("first step %q %v %v", ch, done, err)
			}
		}
		if ch, done, err := l.Next(append([]byte{}, user...)); string(ch) != "Password:" || done || err != nil {
			t.Fatalf("user name step %q %v %v", ch, done, err)
		}
		if _, done, err := l.Next(append([]byte{}, pw...)); !done || err != nil || gotUser != string(user) || gotPW != string(pw) {
			t.Fatalf("password step: done %v, %v, checked %q %q", done, err, gotUser, gotPW)
		}
	})
}

func FuzzCheckAddress(f *testing.F) {
	for _, s := range []string{"bob@remote.test", "hanako@例え.jp", "a..b.@docomo.ne.jp", "bob@[127.0.0.1]", "@x", "a@b@c", "a\"b@c", "x@a-.b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		err := checkAddress(addr)
		if err != nil {
			if msg := err.Error(); printable(msg, len(msg)) != msg {
				t.Fatalf("error not printable ASCII: %q", msg)
			}
			return
		}
		at := strings.LastIndexByte(addr, '@')
		if at <= 0 || len(addr) > 254 || !utf8.ValidString(addr) || strings.ContainsAny(addr, " \t\r\n\"\\<>()[],;:\x00\x7f") ||
			strings.Contains(addr[at:], "..") || strings.HasSuffix(addr, ".") || strings.HasPrefix(addr[at+1:], ".") {
			t.Fatalf("accepted %q", addr)
		}
	})
}

func FuzzReplyTo(f *testing.F) {
	f.Add(550, "5.7.1", suspension)
	f.Add(450, "4.7.1", "soft\r\nlimit")
	f.Add(250, "2.0.0", "OK")
	f.Add(554, "5.1234.1", "")
	f.Fuzz(func(t *testing.T, code int, enhanced, text string) {
		r, result := replyTo(&Reject{code, enhanced, text})
		if r == errTemporary {
			if result != "failed" || code >= 400 && code <= 599 {
				t.Fatalf("%d answered 451 (%s)", code, result)
			}
			return
		}
		if r.Code != code || r.Code < 400 || r.Code > 599 || r.Message == "" || printable(r.Message, len(r.Message)) != r.Message {
			t.Fatalf("reply %+v for %d %q %q", r, code, enhanced, text)
		}
		if e := r.EnhancedCode; e != smtp.EnhancedCodeNotSet && (e[0] != code/100 || e[1] > 999 || e[2] > 999) {
			t.Fatalf("enhanced code %v for %d %q", e, code, enhanced)
		}
	})
}

// TestServeAfterShutdown: a listener served once the server is shut down
// (its goroutine started late) is closed at once instead of accepting
// forever.
func TestServeAfterShutdown(t *testing.T) {
	tlsCfg, err := tlsconfig.SelfSigned(t.TempDir(), hostname)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Hostname: hostname, TLSConfig: tlsCfg, MaxMessageBytes: 64 << 10, MaxRecipients: 10,
		MaxConnections: 20, MaxConnectionsPerIP: 10, LoginsPerIPPerMinute: 100, Log: testLog()}, &fakeAuth{}, &fakeSubmitter{})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	l := listen(t)
	go func() { done <- srv.ServeTLS465(l) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after Shutdown: %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve after Shutdown still accepting after 10s")
	}
}
