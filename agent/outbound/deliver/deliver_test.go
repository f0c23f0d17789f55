package deliver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

type fakeResolver struct {
	mx    map[string][]*net.MX
	hosts map[string][]string
}

func (f *fakeResolver) LookupMX(_ context.Context, d string) ([]*net.MX, error) {
	if m, ok := f.mx[d]; ok {
		return m, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: d, IsNotFound: true}
}

func (f *fakeResolver) LookupHost(_ context.Context, h string) ([]string, error) {
	if a, ok := f.hosts[h]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: h, IsNotFound: true}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

const msg = "From: a@sender.test\r\nTo: b@example.test\r\nSubject: hi\r\n\r\nhello\r\n"

func staticClient(addrs ...string) *Client {
	return &Client{
		Router:         &Router{Static: map[string][]string{"example.test": addrs}},
		HeloName:       "out.sender.test",
		DialTimeout:    2 * time.Second,
		CommandTimeout: 2 * time.Second,
		DataTimeout:    2 * time.Second,
	}
}

func TestDeliverAccepts(t *testing.T) {
	s := newTestServer(t)
	c := staticClient(s.addr)
	res := c.Deliver(testCtx(t), Attempt{MailFrom: "a@sender.test", Recipients: []string{"b@example.test", "c@example.test"}, Data: []byte(msg)})
	if len(res.Recipients) != 2 {
		t.Fatalf("results: %+v", res)
	}
	for _, r := range res.Recipients {
		if r.Status != Delivered || r.Code != 250 || r.Host != "127.0.0.1" {
			t.Fatalf("recipient: %+v", r)
		}
	}
	if res.TLS || res.Addr != s.addr {
		t.Fatalf("result: %+v", res)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.data) != 1 || !strings.Contains(string(s.data[0]), "hello") || s.mails[0] != "a@sender.test" || len(s.rcpts) != 2 {
		t.Fatalf("server saw mails=%v rcpts=%v data=%q", s.mails, s.rcpts, s.data)
	}
}

func TestDeliverNullSenderAndUTF8(t *testing.T) {
	s := newTestServer(t)
	c := staticClient(s.addr)
	res := c.Deliver(testCtx(t), Attempt{MailFrom: "", Recipients: []string{"ユーザー@example.test"}, Data: []byte(msg)})
	if res.Recipients[0].Status != Delivered {
		t.Fatalf("%+v", res)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mails[0] != "" || !s.utf8[0] {
		t.Fatalf("mail=%q utf8=%v", s.mails[0], s.utf8[0])
	}
}

func TestDeliverRcptFailures(t *testing.T) {
	s := newTestServer(t)
	s.rcptErr = func(to string) error {
		switch {
		case strings.HasPrefix(to, "temp"):
			return smtpErr(451, smtp.EnhancedCode{4, 2, 0}, "mailbox busy")
		case strings.HasPrefix(to, "perm"):
			return smtpErr(550, smtp.EnhancedCode{5, 1, 1}, "no such user")
		}
		return nil
	}
	c := staticClient(s.addr)
	res := c.Deliver(testCtx(t), Attempt{MailFrom: "a@sender.test", Recipients: []string{"temp@example.test", "ok@example.test", "perm@example.test"}, Data: []byte(msg)})
	want := []struct {
		st   Status
		code int
		enh  string
	}{{TempFail, 451, "4.2.0"}, {Delivered, 250, "2.0.0"}, {PermFail, 550, "5.1.1"}}
	for i, w := range want {
		r := res.Recipients[i]
		if r.Status != w.st || r.Code != w.code || r.Enhanced != w.enh || r.Host != "127.0.0.1" {
			t.Fatalf("recipient %d: %+v, want %+v", i, r, w)
		}
	}
	if !strings.Contains(res.Recipients[2].Message, "no such user") {
		t.Fatalf("message: %q", res.Recipients[2].Message)
	}
}

func TestDeliverAllRcptRejectedNoData(t *testing.T) {
	s := newTestServer(t)
	s.rcptErr = func(string) error { return smtpErr(550, smtp.EnhancedCode{5, 1, 1}, "no") }
	res := staticClient(s.addr).Deliver(testCtx(t), Attempt{MailFrom: "a@sender.test", Recipients: []string{"x@example.test"}, Data: []byte(msg)})
	if res.Recipients[0].Status != PermFail {
		t.Fatalf("%+v", res)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.data) != 0 {
		t.Fatal("DATA sent with no accepted recipients")
	}
}

func TestDeliverDataTempFail(t *testing.T) {
	s := newTestServer(t)
	s.dataErr = smtpErr(452, smtp.EnhancedCode{4, 3, 1}, "insufficient storage")
	res := staticClient(s.addr).Deliver(testCtx(t), Attempt{MailFrom: "a@sender.test", Recipients: []string{"x@example.test", "y@example.test"}, Data: []byte(msg)})
	for _, r := range res.Recipients {
		if r.Status != TempFail || r.Code != 452 || r.Enhanced != "4.3.1" {
			t.Fatalf("%+v", r)
		}
	}
	if res.Recipients[1].Recipient != "y@example.test" {
		t.Fatalf("%+v", res.Recipients)
	}
}

func TestDeliverDataPermFail(t *testing.T) {
	s := newTestServer(t)
	s.dataErr = smtpErr(554, smtp.EnhancedCode{5, 7, 1}, "spam")
	res := staticClient(s.addr).Deliver(testCtx(t), Attempt{MailFrom: "a@sender.test", Recipients: []string{"x@example.test"}, Data: []byte(msg)})
	if r := res.Recipients[0]; r.Status != PermFail || r.Code != 554 || r.Enhanced != "5.7.1" {
		t.Fatalf("%+v", r)
	}
}

func TestDeliverFallsBackToNextHost(t *testing.T) {
	s := newTestServer(t)
	res := staticClient(closedAddr(t), s.addr).Deliver(testCtx(t), Attempt{MailFrom: "a@sender.test", Recipients: []string{"x@example.test"}, Data: []byte(msg)})
	if res.Recipients[0].Status != Delivered || res.Addr != s.addr {
		t.Fatalf("%+v", res)
	}
}

func TestDeliverConnectionRefusedTempFail(t *testing.T) {
	res := staticClient(closedAddr(t)).Deliver(testCtx(t), Attempt{MailFrom: "a@sender.test", Recipients: []string{"x@example.test"}, Data: []byte(msg)})
	if r := res.Recipients[0]; r.Status != TempFail || r.Code != 0 || r.Enhanced == "" {
		t.Fatalf("%+v", r)
	}
}

func TestDeliverTimeout(t *testing.T) {
	c := staticClient(hangServer(t))
	c.CommandTimeout = 200 * time.Millisecond
	res := c.Deliver(testCtx(t), Attempt{MailFrom: "a@sender.test", Recipients: []string{"x@example.test"}, Data: []byte(msg)})
	if r := res.Recipients[0]; r.Status != TempFail || r.Enhanced != "4.4.2" {
		t.Fatalf("%+v", r)
	}
}

func TestDeliverContextCancelStopsHang(t *testing.T) {
	c := staticClient(hangServer(t))
	c.CommandTimeout = time.Minute
	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan Result)
	go func() {
		done <- c.Deliver(ctx, Attempt{MailFrom: "a@sender.test", Recipients: []string{"x@example.test"}, Data: []byte(msg)})
	}()
	cancel()
	select {
	case res := <-done:
		if res.Recipients[0].Status != TempFail {
			t.Fatalf("%+v", res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Deliver did not return after cancel")
	}
}

func TestDeliverSTARTTLS(t *testing.T) {
	s := newTestServer(t, withTLS(selfSigned(t)))
	res := staticClient(s.addr).Deliver(testCtx(t), Attempt{MailFrom: "a@sender.test", Recipients: []string{"x@example.test"}, Data: []byte(msg)})
	if res.Recipients[0].Status != Delivered || !res.TLS || !strings.HasPrefix(res.TLSVersion, "TLS 1.") {
		t.Fatalf("%+v", res)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.sawTLS[0] {
		t.Fatal("server did not see TLS")
	}
}

func TestDeliverSTARTTLSFailureFallback(t *testing.T) {
	s := newTestServer(t, withTLS(selfSigned(t)))
	c := staticClient(s.addr)
	// A client that only speaks TLS 1.3 against a server capped at 1.2
	// fails the handshake.
	s.srv.TLSConfig.MaxVersion = tls.VersionTLS12
	c.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS13}

	res := c.Deliver(testCtx(t), Attempt{MailFrom: "a@sender.test", Recipients: []string{"x@example.test"}, Data: []byte(msg)})
	if r := res.Recipients[0]; r.Status != TempFail || !strings.Contains(r.Message, "STARTTLS") {
		t.Fatalf("without fallback: %+v", res)
	}
	c.PlainFallback = true
	res = c.Deliver(testCtx(t), Attempt{MailFrom: "a@sender.test", Recipients: []string{"x@example.test"}, Data: []byte(msg)})
	if res.Recipients[0].Status != Delivered || res.TLS {
		t.Fatalf("with fallback: %+v", res)
	}
}

func TestSmarthostAuthOverTLS(t *testing.T) {
	cfg := selfSigned(t)
	s := newTestServer(t, withTLS(cfg))
	s.username, s.password = "relayuser", "secret"
	leaf, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	c := &Client{
		Router:         &Router{Resolver: &fakeResolver{hosts: map[string][]string{"mx.test": {"127.0.0.1"}}}, Smarthost: &Smarthost{Addr: fmt.Sprintf("mx.test:%d", s.port), Username: "relayuser", Password: "secret", RequireTLS: true}},
		TLSConfig:      &tls.Config{RootCAs: pool},
		CommandTimeout: 2 * time.Second,
	}
	res := c.Deliver(testCtx(t), Attempt{MailFrom: "a@sender.test", Recipients: []string{"x@anywhere.test"}, Data: []byte(msg)})
	if res.Recipients[0].Status != Delivered || !res.TLS || res.Host != "mx.test" {
		t.Fatalf("%+v", res)
	}
	s.mu.Lock()
	if s.authUser != "relayuser" {
		t.Fatalf("auth user %q", s.authUser)
	}
	s.mu.Unlock()

	// Wrong password: temporary (configuration) failure.
	c.Router.Smarthost.Password = "wrong"
	res = c.Deliver(testCtx(t), Attempt{MailFrom: "a@sender.test", Recipients: []string{"x@anywhere.test"}, Data: []byte(msg)})
	if r := res.Recipients[0]; r.Status != TempFail || r.Code != 535 {
		t.Fatalf("%+v", r)
	}

	// RequireTLS against a server without STARTTLS: no plaintext.
	plain := newTestServer(t)
	c.Router.Smarthost = &Smarthost{Addr: plain.addr, Username: "relayuser", Password: "secret", RequireTLS: true}
	c.PlainFallback = true
	res = c.Deliver(testCtx(t), Attempt{MailFrom: "a@sender.test", Recipients: []string{"x@anywhere.test"}, Data: []byte(msg)})
	if r := res.Recipients[0]; r.Status != TempFail || r.Enhanced != "4.7.10" {
		t.Fatalf("%+v", r)
	}
	plain.mu.Lock()
	defer plain.mu.Unlock()
	if len(plain.mails) != 0 {
		t.Fatal("mail sent in plain text despite RequireTLS")
	}
}

func TestDeliverViaMX(t *testing.T) {
	s := newTestServer(t)
	c := &Client{
		Router: &Router{
			Resolver: &fakeResolver{
				mx:    map[string][]*net.MX{"example.test": {{Host: "mx1.example.test.", Pref: 10}}},
				hosts: map[string][]string{"mx1.example.test": {"127.0.0.1"}},
			},
			Port: s.port,
		},
		CommandTimeout: 2 * time.Second,
	}
	res := c.Deliver(testCtx(t), Attempt{MailFrom: "a@sender.test", Recipients: []string{"x@Example.TEST"}, Data: []byte(msg)})
	if res.Recipients[0].Status != Delivered || res.Host != "mx1.example.test" {
		t.Fatalf("%+v", res)
	}
}

func TestDeliverNullMXPermFail(t *testing.T) {
	c := &Client{Router: &Router{Resolver: &fakeResolver{mx: map[string][]*net.MX{"example.test": {{Host: ".", Pref: 0}}}}}}
	res := c.Deliver(testCtx(t), Attempt{MailFrom: "a@sender.test", Recipients: []string{"x@example.test"}, Data: []byte(msg)})
	if r := res.Recipients[0]; r.Status != PermFail || r.Enhanced != "5.1.10" || !strings.Contains(r.Message, "does not accept mail") {
		t.Fatalf("%+v", r)
	}
}

func TestRouterMXOrdering(t *testing.T) {
	res := &fakeResolver{
		mx: map[string][]*net.MX{"example.test": {
			{Host: "c.example.test.", Pref: 20},
			{Host: "a1.example.test.", Pref: 10},
			{Host: "a2.example.test.", Pref: 10},
			{Host: "bad.example.test.", Pref: 5}, // does not resolve: skipped
		}},
		hosts: map[string][]string{
			"a1.example.test": {"192.0.2.1"},
			"a2.example.test": {"192.0.2.2", "2001:db8::2"},
			"c.example.test":  {"192.0.2.3"},
		},
	}
	seen := map[string]bool{}
	for i := 0; i < 50; i++ {
		r := &Router{Resolver: res}
		route, err := r.Route(testCtx(t), "example.test")
		if err != nil {
			t.Fatal(err)
		}
		if len(route.Hops) != 3 || route.Hops[2].Host != "c.example.test" || route.Hops[0].Preference != 10 {
			t.Fatalf("%+v", route.Hops)
		}
		seen[route.Hops[0].Host] = true
		if route.Key != "example.test" {
			t.Fatalf("key %q", route.Key)
		}
	}
	if !seen["a1.example.test"] || !seen["a2.example.test"] {
		t.Fatalf("equal preferences not shuffled: %v", seen)
	}
	// Deterministic shuffle hook: identity keeps input order among equals.
	r := &Router{Resolver: res, Shuffle: func(int, func(i, j int)) {}, Port: 2525}
	route, err := r.Route(testCtx(t), "example.test")
	if err != nil {
		t.Fatal(err)
	}
	if route.Hops[0].Host != "a1.example.test" || route.Hops[1].Addrs[1] != "[2001:db8::2]:2525" {
		t.Fatalf("%+v", route.Hops)
	}
}

func TestRouterNoMXFallsBackToA(t *testing.T) {
	r := &Router{Resolver: &fakeResolver{hosts: map[string][]string{"example.test": {"192.0.2.9"}}}}
	route, err := r.Route(testCtx(t), "example.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(route.Hops) != 1 || route.Hops[0].Host != "example.test" || route.Hops[0].Addrs[0] != "192.0.2.9:25" {
		t.Fatalf("%+v", route)
	}
}

func TestRouterErrors(t *testing.T) {
	r := &Router{Resolver: &fakeResolver{}}
	_, err := r.Route(testCtx(t), "nowhere.test")
	var re *RouteError
	if !errors.As(err, &re) || !re.Permanent || re.Status != "5.1.2" {
		t.Fatalf("unknown domain: %v", err)
	}
	_, err = (&Router{Resolver: &fakeResolver{mx: map[string][]*net.MX{"example.test": {{Host: ".", Pref: 0}}}}}).Route(testCtx(t), "example.test")
	if !errors.As(err, &re) || !re.Permanent || !strings.Contains(err.Error(), "does not accept mail") {
		t.Fatalf("null MX: %v", err)
	}
	_, err = (&Router{Resolver: tempResolver{}}).Route(testCtx(t), "example.test")
	if !errors.As(err, &re) || re.Permanent {
		t.Fatalf("temporary DNS: %v", err)
	}
}

type tempResolver struct{}

func (tempResolver) LookupMX(_ context.Context, d string) ([]*net.MX, error) {
	return nil, &net.DNSError{Err: "server misbehaving", Name: d, IsTemporary: true}
}
func (tempResolver) LookupHost(_ context.Context, h string) ([]string, error) {
	return nil, &net.DNSError{Err: "server misbehaving", Name: h, IsTemporary: true}
}

func TestRouterStaticAndSmarthostPrecedence(t *testing.T) {
	r := &Router{
		Resolver:  &fakeResolver{hosts: map[string][]string{"relay.test": {"192.0.2.7"}, "inner.test": {"192.0.2.8"}}},
		Static:    map[string][]string{"Corp.Test": {"inner.test:2525", "192.0.2.10:25"}},
		Smarthost: &Smarthost{Addr: "relay.test:587", Username: "u", Password: "p", RequireTLS: true},
	}
	route, err := r.Route(testCtx(t), "corp.test")
	if err != nil {
		t.Fatal(err)
	}
	if route.Key != "static:corp.test" || len(route.Hops) != 2 || route.Hops[0].Addrs[0] != "192.0.2.8:2525" || route.Hops[1].Addrs[0] != "192.0.2.10:25" || route.Hops[0].Username != "" {
		t.Fatalf("static: %+v", route)
	}
	route, err = r.Route(testCtx(t), "other.test")
	if err != nil {
		t.Fatal(err)
	}
	if route.Key != "smarthost:relay.test:587" || route.Hops[0].Addrs[0] != "192.0.2.7:587" || route.Hops[0].Username != "u" || !route.Hops[0].RequireTLS {
		t.Fatalf("smarthost: %+v", route)
	}
}

func TestLimiterCapsConcurrency(t *testing.T) {
	s := newTestServer(t)
	s.hold = make(chan struct{})
	c := staticClient(s.addr)
	c.CommandTimeout = 10 * time.Second
	c.Limiter = NewLimiter(2)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	results := make([]Result, 5)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = c.Deliver(ctx, Attempt{MailFrom: "a@sender.test", Recipients: []string{fmt.Sprintf("r%d@example.test", i)}, Data: []byte(msg)})
		}()
	}
	// Wait until two sessions are blocked in RCPT, then check nobody else
	// got in, and release them one at a time.
	for c.Limiter.InUse("static:example.test") < 2 {
		select {
		case <-ctx.Done():
			t.Fatal("sessions did not start")
		case <-time.After(5 * time.Millisecond):
		}
	}
	for i := 0; i < 5; i++ {
		s.hold <- struct{}{}
	}
	wg.Wait()
	for _, r := range results {
		if r.Recipients[0].Status != Delivered {
			t.Fatalf("%+v", r)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.maxSeen > 2 || s.maxSeen < 1 {
		t.Fatalf("max concurrent sessions %d, want <= 2", s.maxSeen)
	}
	if c.Limiter.InUse("static:example.test") != 0 {
		t.Fatal("slots leaked")
	}
}

func TestLimiterContext(t *testing.T) {
	l := NewLimiter(1)
	rel, err := l.Acquire(testCtx(t), "d")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(testCtx(t))
	cancel()
	if _, err := l.Acquire(ctx, "d"); !errors.Is(err, context.Canceled) {
		t.Fatalf("want canceled, got %v", err)
	}
	// Other keys are independent.
	rel2, err := l.Acquire(ctx, "e")
	if err == nil {
		rel2()
	}
	rel()
	rel() // idempotent
	rel3, err := l.Acquire(testCtx(t), "d")
	if err != nil {
		t.Fatal(err)
	}
	rel3()
	if len(l.keys) != 0 {
		t.Fatalf("keys leaked: %v", l.keys)
	}
}

func TestDefaultSchedule(t *testing.T) {
	first := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	want := []time.Duration{time.Minute, 6 * time.Minute, 21 * time.Minute, 51 * time.Minute, time.Hour + 51*time.Minute, 3*time.Hour + 51*time.Minute, 7*time.Hour + 51*time.Minute, 11*time.Hour + 51*time.Minute}
	for i, w := range want {
		next, expired := DefaultSchedule.Next(i+1, first, 0)
		if expired || !next.Equal(first.Add(w)) {
			t.Fatalf("attempt %d: %v %v, want +%v", i+1, next.Sub(first), expired, w)
		}
	}
	// Default lifetime: 5 days. 7h51m + k*4h < 120h → last k = 28 (119h51m).
	next, expired := DefaultSchedule.Next(7+28, first, 0)
	if expired || next.Sub(first) != 119*time.Hour+51*time.Minute {
		t.Fatalf("last retry: %v %v", next.Sub(first), expired)
	}
	next, expired = DefaultSchedule.Next(7+29, first, 0)
	if !expired || !next.Equal(first.Add(DefaultLifetime)) {
		t.Fatalf("expiry: %v %v", next.Sub(first), expired)
	}
	// Short lifetime.
	if _, expired := DefaultSchedule.Next(2, first, 5*time.Minute); !expired {
		t.Fatal("6m offset should exceed a 5m lifetime")
	}
	if next, expired := DefaultSchedule.Next(0, first, time.Hour); expired || next.Sub(first) != time.Minute {
		t.Fatalf("attempt 0: %v %v", next, expired)
	}
}

// A configured schedule repeats its last wait; an empty one is the default.
func TestSchedule(t *testing.T) {
	first := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	s := Schedule{time.Second, 10 * time.Second}
	for i, w := range []time.Duration{time.Second, 11 * time.Second, 21 * time.Second} {
		if next, expired := s.Next(i+1, first, time.Minute); expired || next.Sub(first) != w {
			t.Fatalf("attempt %d: +%v %v, want +%v", i+1, next.Sub(first), expired, w)
		}
	}
	if next, expired := s.Next(7, first, time.Minute); !expired || next.Sub(first) != time.Minute {
		t.Fatalf("past the lifetime: +%v %v", next.Sub(first), expired)
	}
	if next, _ := Schedule(nil).Next(2, first, 0); next.Sub(first) != 6*time.Minute {
		t.Fatalf("empty schedule: +%v, want the default's 6m", next.Sub(first))
	}
}
