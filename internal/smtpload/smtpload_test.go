package smtpload

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// sink is an SMTP server that checks and counts what it receives.
type sink struct {
	t         *testing.T
	size      int         // expected message size
	failEvery int         // answer 451 after the dot of every failEvery-th message
	rcptEvery int         // answer 550 to every rcptEvery-th RCPT
	onData    func(int)   // called with the number of each message received
	tls       *tls.Config // offer STARTTLS with this
	auth      string      // "user:password": require AUTH PLAIN with it before MAIL

	mu       sync.Mutex
	sessions int
	rcpts    int
	received int
	accepted int
	plain    int // messages received without TLS although it was offered
	ids      map[string]bool
	problems []string
}

func (s *sink) start() string {
	s.ids = map[string]bool{}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		s.mu.Lock()
		s.sessions++
		s.mu.Unlock()
		_, isTLS := c.TLSConnectionState()
		return &sinkSession{s: s, isTLS: isTLS}, nil
	}))
	srv.Domain = "sink.test"
	srv.TLSConfig = s.tls
	srv.ErrorLog = log.New(io.Discard, "", 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.t.Fatal(err)
	}
	go srv.Serve(ln)
	s.t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// check returns what is wrong with message m, if anything.
func (s *sink) check(m []byte) error {
	if len(m) != s.size {
		return fmt.Errorf("size %d, want %d", len(m), s.size)
	}
	for i, l := range bytes.Split(m, []byte("\r\n")) {
		if len(l) > 78 || bytes.ContainsAny(l, "\r\n") {
			return fmt.Errorf("line %d: %q", i+1, l)
		}
	}
	if !bytes.HasSuffix(m, []byte("\r\n")) {
		return fmt.Errorf("no CRLF at the end")
	}
	msg, err := mail.ReadMessage(bytes.NewReader(m))
	if err != nil {
		return err
	}
	if _, err := msg.Header.Date(); err != nil {
		return err
	}
	for _, h := range []string{"From", "To"} {
		if _, err := msg.Header.AddressList(h); err != nil {
			return fmt.Errorf("%s: %w", h, err)
		}
	}
	id := msg.Header.Get("Message-ID")
	if msg.Header.Get("Subject") == "" || !strings.HasPrefix(id, "<") {
		return fmt.Errorf("bad Subject or Message-ID in %q", msg.Header)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ids[id] {
		return fmt.Errorf("Message-ID %s seen twice", id)
	}
	s.ids[id] = true
	return nil
}

type sinkSession struct {
	s      *sink
	isTLS  bool
	authed bool
}

// AuthMechanisms offers PLAIN when the sink requires AUTH.
func (ss *sinkSession) AuthMechanisms() []string {
	if ss.s.auth == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *sinkSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pw string) error {
		if user+":"+pw != ss.s.auth {
			return errors.New("bad credentials")
		}
		ss.authed = true
		return nil
	}), nil
}

func (ss *sinkSession) Reset()        {}
func (ss *sinkSession) Logout() error { return nil }

func (ss *sinkSession) Mail(string, *smtp.MailOptions) error {
	if ss.s.auth != "" && !ss.authed {
		return smtp.ErrAuthRequired
	}
	return nil
}

func (ss *sinkSession) Rcpt(string, *smtp.RcptOptions) error {
	s := ss.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rcpts++
	if s.rcptEvery > 0 && s.rcpts%s.rcptEvery == 0 {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	s := ss.s
	m, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if err := s.check(m); err != nil {
		s.mu.Lock()
		s.problems = append(s.problems, err.Error())
		s.mu.Unlock()
	}
	s.mu.Lock()
	s.received++
	n := s.received
	if s.tls != nil && !ss.isTLS {
		s.plain++
	}
	reject := s.failEvery > 0 && n%s.failEvery == 0
	if !reject {
		s.accepted++
	}
	s.mu.Unlock()
	if s.onData != nil {
		s.onData(n)
	}
	if reject {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	return nil
}

// verify reports the problems found in the messages and locks the counters
// for reading until the test ends.
func (s *sink) verify() {
	s.t.Helper()
	s.mu.Lock()
	s.t.Cleanup(s.mu.Unlock)
	for _, p := range s.problems {
		s.t.Error("sink:", p)
	}
}

func TestRunCountsFailuresByCode(t *testing.T) {
	s := &sink{t: t, size: 3001, failEvery: 10}
	o := Options{
		Addr:     s.start(),
		Conns:    4,
		Messages: 200,
		Size:     s.size,
		From:     "load@bench.test",
		To:       []string{"a@sink.test", "b@sink.test"},
	}
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	s.verify()
	if res.OK != 180 || res.Failed != 20 || res.Stopped != "" {
		t.Errorf("ok %d failed %d stopped %q, want 180, 20, none", res.OK, res.Failed, res.Stopped)
	}
	want := []Failure{{Stage: stageEnd, Code: 451, Text: "4.3.0 try again later", Count: 20}}
	if fmt.Sprint(res.Failures) != fmt.Sprint(want) {
		t.Errorf("failures %v, want %v", res.Failures, want)
	}
	if s.received != 200 || s.accepted != 180 || s.rcpts != 400 || len(s.ids) != 200 {
		t.Errorf("sink received %d, accepted %d, %d RCPTs, %d Message-IDs; want 200, 180, 400, 200",
			s.received, s.accepted, s.rcpts, len(s.ids))
	}
	// A rejection after the dot ends the transaction but not the session.
	if s.sessions != o.Conns {
		t.Errorf("%d sessions, want one per connection (%d)", s.sessions, o.Conns)
	}
	if res.Bytes != 180*3001 {
		t.Errorf("bytes %d, want %d", res.Bytes, 180*3001)
	}
	l := res.Latency
	if l.P50 <= 0 || l.P50 > l.P95 || l.P95 > l.P99 || l.P99 > l.Max {
		t.Errorf("latency percentiles out of order: %+v", l)
	}
}

func TestRunReconnectsAfterRcptRejection(t *testing.T) {
	s := &sink{t: t, size: 10 << 10, rcptEvery: 7}
	o := Options{Addr: s.start(), Conns: 2, Messages: 100}
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	s.verify()
	want := []Failure{{Stage: stageRcpt, Code: 550, Text: "5.1.1 no such user", Count: 14}}
	if res.OK != 86 || fmt.Sprint(res.Failures) != fmt.Sprint(want) {
		t.Errorf("ok %d failures %v, want 86, %v", res.OK, res.Failures, want)
	}
	// Of the 14 rejections at most one per connection is its last message;
	// every other one is followed by a new session.
	if want := 1 + 14 - o.Conns; s.sessions < want {
		t.Errorf("%d sessions, want at least %d", s.sessions, want)
	}
}

func TestRunStartTLS(t *testing.T) {
	s := &sink{t: t, size: 2048, tls: selfSigned(t)}
	o := Options{Addr: s.start(), Conns: 3, Messages: 30, Size: s.size, StartTLS: true}

	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed != 30 || len(res.Failures) != 1 || res.Failures[0].Stage != stageConnect ||
		!strings.Contains(res.Failures[0].Text, "certificate") {
		t.Errorf("unverifiable certificate: failures %v, want 30 at connect", res.Failures)
	}

	o.InsecureSkipVerify = true
	res, err = Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	s.verify()
	if res.OK != 30 || res.Failed != 0 || s.plain != 0 {
		t.Errorf("ok %d, failed %d, %d sent in the clear; want 30, 0, 0", res.OK, res.Failed, s.plain)
	}
}

func TestRunAuth(t *testing.T) {
	s := &sink{t: t, size: 2048, tls: selfSigned(t), auth: "user@bench.test:secret"}
	o := Options{Addr: s.start(), Conns: 2, Messages: 10, Size: s.size, StartTLS: true, InsecureSkipVerify: true, Auth: "user@bench.test:wrong"}
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK != 0 || res.Failed != 10 {
		t.Errorf("wrong password: ok %d, failed %d; want 0, 10", res.OK, res.Failed)
	}
	o.Auth = s.auth
	if res, err = Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	s.verify()
	if res.OK != 10 || res.Failed != 0 {
		t.Errorf("ok %d, failed %d (%v); want 10, 0", res.OK, res.Failed, res.Failures)
	}
}

func selfSigned(t *testing.T) *tls.Config {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

func TestRunInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := &sink{t: t, size: 1024, onData: func(n int) {
		if n == 30 {
			cancel()
		}
	}}
	res, err := Run(ctx, Options{Addr: s.start(), Conns: 4, Messages: 1000, Size: s.size})
	if err != nil {
		t.Fatal(err)
	}
	s.verify()
	if res.Stopped != "interrupted" || res.OK+res.Failed >= 1000 || res.Failed != 0 {
		t.Errorf("stopped %q after %d ok, %d failed; want interrupted early with no failures",
			res.Stopped, res.OK, res.Failed)
	}
}

func TestRunRejectsTinySize(t *testing.T) {
	if _, err := Run(context.Background(), Options{Addr: "127.0.0.1:1", Size: 100}); err == nil {
		t.Error("size 100 accepted")
	}
}

func TestPercentile(t *testing.T) {
	// 1ms..100ms, shuffled.
	var lats []time.Duration
	for i := range 100 {
		lats = append(lats, time.Duration((i*37)%100+1)*time.Millisecond)
	}
	got := summarize(lats)
	want := Latency{P50: 50 * time.Millisecond, P95: 95 * time.Millisecond, P99: 99 * time.Millisecond, Max: 100 * time.Millisecond}
	if got != want {
		t.Errorf("summarize(1..100ms) = %+v, want %+v", got, want)
	}

	ten := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{0, 1}, {10, 1}, {11, 2}, {50, 5}, {51, 6}, {90, 9}, {95, 10}, {100, 10}} {
		if got := percentile(ten, c.p); got != c.want {
			t.Errorf("percentile(1..10, %v) = %v, want %v", c.p, got, c.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile(nil) = %v, want 0", got)
	}
	if got := summarize([]time.Duration{7}); got != (Latency{7, 7, 7, 7}) {
		t.Errorf("summarize(one) = %+v", got)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int{"1": 1, "512": 512, "10k": 10240, "10K": 10240, "2M": 2 << 20, "1m": 1 << 20} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "k", "0", "-5", "1.5k", "10kb", "9999999M", "x"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestFiller(t *testing.T) {
	for n := 2; n < 500; n++ {
		f := filler(n)
		if len(f) != n || !bytes.HasSuffix(f, []byte("\r\n")) {
			t.Fatalf("filler(%d) is %d bytes: %q", n, len(f), f)
		}
		for _, l := range bytes.Split(f[:n-2], []byte("\r\n")) {
			if len(l) > maxLine || bytes.ContainsAny(l, "\r\n.") {
				t.Fatalf("filler(%d) has line %q", n, l)
			}
		}
	}
}

func TestResultJSON(t *testing.T) {
	r := Result{
		Addr: "x:25", Messages: 10, OK: 9, Failed: 1, Bytes: 9e6, Elapsed: 2 * time.Second,
		Failures: []Failure{{Stage: stageMail, Code: 421, Text: "bye", Count: 1}},
		Latency:  Latency{P50: time.Millisecond, P95: 2 * time.Millisecond, P99: 3 * time.Millisecond, Max: 4 * time.Millisecond},
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		OK        int                `json:"ok"`
		Rate      float64            `json:"messages_per_second"`
		MBps      float64            `json:"mb_per_second"`
		LatencyMS map[string]float64 `json:"latency_ms"`
		Failures  []Failure          `json:"failures"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.OK != 9 || got.Rate != 4.5 || got.MBps != 4.5 || got.LatencyMS["p99"] != 3 || got.Failures[0].Code != 421 {
		t.Errorf("JSON %s", b)
	}
}
