package agent_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mairust/mairust/agent/accounts/accountstest"
	mdkim "github.com/mairust/mairust/agent/dkim"
	"github.com/mairust/mairust/agent/outbound/alerts"
	"github.com/mairust/mairust/agent/plugins/sdk"
	"github.com/mairust/mairust/agent/policy"
	"github.com/mairust/mairust/internal/proctest"
	"github.com/mairust/mairust/internal/smtpload"
)

// sink is an SMTP server on loopback standing for the rest of the
// Internet: it takes every message except for refused@, which it refuses
// with 550, and busy@, which it defers with 451 the first time.
type sink struct {
	mu       sync.Mutex
	msgs     []sunk
	got      chan struct{}
	deferred map[string]bool // busy@ recipients deferred once
}

type sunk struct {
	from string
	to   []string
	data []byte
}

func newSink(t *testing.T) (*sink, string) {
	t.Helper()
	s := &sink{got: make(chan struct{}, 100), deferred: map[string]bool{}}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &sinkSession{s: s}, nil }))
	srv.Domain = "sink.remote.test"
	srv.AllowInsecureAuth = true
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return s, l.Addr().String()
}

// wait returns the next message the sink took.
func (s *sink) wait(t *testing.T) sunk {
	t.Helper()
	select {
	case <-s.got:
	case <-time.After(time.Minute):
		t.Fatal("the sink got no message within a minute")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.msgs[len(s.msgs)-1]
}

type sinkSession struct {
	s    *sink
	from string
	to   []string
}

func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error { ss.from = from; return nil }
func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if strings.HasPrefix(to, "refused@") {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox"}
	}
	if strings.HasPrefix(to, "busy@") {
		ss.s.mu.Lock()
		first := !ss.s.deferred[to]
		ss.s.deferred[to] = true
		ss.s.mu.Unlock()
		if first {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
		}
	}
	ss.to = append(ss.to, to)
	return nil
}
func (ss *sinkSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, sunk{ss.from, ss.to, data})
	ss.s.mu.Unlock()
	select {
	case ss.s.got <- struct{}{}:
	default: // nobody waits for each message
	}
	return nil
}
func (ss *sinkSession) Reset()        {}
func (ss *sinkSession) Logout() error { return nil }

// submit sends a message over the submission listener (STARTTLS, AUTH
// PLAIN) and returns the server's error, nil on 250.
func submit(addr, user, pw string, to []string, body string) error {
	c, err := smtp.DialStartTLS(addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", user, pw)); err != nil {
		return err
	}
	msg := fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%d@example.test>\r\n\r\n%s\r\n",
		user, strings.Join(to, ", "), body, time.Now().Format(time.RFC1123Z), time.Now().UnixNano(), body)
	if err := c.SendMail(user, to, strings.NewReader(msg)); err != nil {
		return err
	}
	return c.Quit()
}

// folderCount counts the user's live messages in the folder with the
// special use special.
func folderCount(t *testing.T, pool *pgxpool.Pool, user, special string) int {
	t.Helper()
	var n int
	err := pool.QueryRow(context.Background(), `SELECT count(*) FROM messages m JOIN folders f ON f.id = m.folder_id
		JOIN mail_users u ON u.id = m.user_id WHERE u.address = $1 AND f.special = $2 AND m.deleted_at IS NULL`, user, special).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitFor polls cond for up to a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitLong(t, what, time.Minute, cond)
}

// waitLong polls cond for up to limit.
func waitLong(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
	}
}

// TestSubmissionDeliversSigned: alice submits over 587 with AUTH; the agent
// signs with example.test's DKIM key, delivers to the sink through a
// static route, files a copy in her Sent folder; a recipient the sink
// defers with 451 gets the message on the next try; one it refuses comes
// back as a bounce in her INBOX.
func TestSubmissionDeliversSigned(t *testing.T) {
	s, sinkAddr := newSink(t)
	cfgPath, _, pool := setup(t, "outbound:\n  routes: [\"remote.test="+sinkAddr+"\"]\n  retry_schedule: 1s\n")
	if out, err := exec.Command(proctest.Binary(t), "admin", "dkim", "generate", "--config", cfgPath, "example.test").CombinedOutput(); err != nil {
		t.Fatalf("dkim generate: %v\n%s", err, out)
	}
	p := startAgent(t, cfgPath)
	const alice = "alice@example.test"
	if err := submit(p.submission, alice, "pw-"+alice, []string{"bob@remote.test"}, "hello bob"); err != nil {
		t.Fatalf("submit: %v\n%s", err, p.logs())
	}
	m := s.wait(t)
	if m.from != alice || len(m.to) != 1 || m.to[0] != "bob@remote.test" || !bytes.Contains(m.data, []byte("hello bob")) {
		t.Fatalf("the sink got from %q to %v:\n%s", m.from, m.to, m.data)
	}
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(m.data), &dkim.VerifyOptions{LookupTXT: txtLookup(t, pool)})
	if err != nil || len(verifs) != 1 || verifs[0].Err != nil || verifs[0].Domain != "example.test" {
		t.Fatalf("DKIM: %+v, %v\n%s", verifs, err, m.data)
	}
	waitFor(t, "the copy in Sent", func() bool { return folderCount(t, pool, alice, "sent") == 1 })

	// A 451 at the destination: retried (a second later) and delivered.
	if err := submit(p.submission, alice, "pw-"+alice, []string{"busy@remote.test"}, "busy line"); err != nil {
		t.Fatalf("submit: %v", err)
	}
	if m := s.wait(t); len(m.to) != 1 || m.to[0] != "busy@remote.test" || !bytes.Contains(m.data, []byte("busy line")) {
		t.Fatalf("the sink got to %v:\n%s", m.to, m.data)
	}
	// The log is written once the session is over.
	var log string
	waitFor(t, "the delivery in the log", func() bool {
		log = deliveryLog(t, pool, "busy@remote.test")
		return strings.HasSuffix(log, "delivered 250")
	})
	if log != "deferred 451, delivered 250" {
		t.Fatalf("delivery log of busy@: %s; want deferred 451, delivered 250", log)
	}

	// A 550 at the destination: a bounce in alice's INBOX.
	before := folderCount(t, pool, alice, "inbox")
	if err := submit(p.submission, alice, "pw-"+alice, []string{"refused@remote.test"}, "nobody home"); err != nil {
		t.Fatalf("submit: %v", err)
	}
	waitFor(t, "the bounce", func() bool { return folderCount(t, pool, alice, "inbox") == before+1 })
	var subject, from string
	if err := pool.QueryRow(context.Background(), `SELECT m.subject, m.mail_from FROM messages m JOIN mail_users u ON u.id = m.user_id
		WHERE u.address = $1 ORDER BY m.id DESC LIMIT 1`, alice).Scan(&subject, &from); err != nil {
		t.Fatal(err)
	}
	if from != "" || !strings.Contains(subject, "Undelivered Mail") {
		t.Errorf("bounce from %q subject %q", from, subject)
	}
}

// deliveryLog lists the status and code of each attempt to rcpt, oldest
// first.
func deliveryLog(t *testing.T, pool *pgxpool.Pool, rcpt string) string {
	t.Helper()
	var log string
	err := pool.QueryRow(context.Background(), `SELECT coalesce(string_agg(status || ' ' || code, ', ' ORDER BY id), '')
		FROM outbound_delivery_log WHERE recipient = $1`, rcpt).Scan(&log)
	if err != nil {
		t.Fatal(err)
	}
	return log
}

// txtLookup answers DKIM TXT queries from the keys in the database.
func txtLookup(t *testing.T, pool *pgxpool.Pool) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		store, err := mdkim.New(pool, make([]byte, 32)) // listing needs no private key
		if err != nil {
			return nil, err
		}
		keys, err := store.List(context.Background(), "example.test")
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			if n, v := mdkim.TXTRecord(k); n == name {
				return []string{v}, nil
			}
		}
		return nil, fmt.Errorf("no TXT record %s", name)
	}
}

// TestSubmissionPolicySuspends: an account sending a burst walks from
// allow through warn to suspend and gets the exact 550 text; the monitor
// it notifies is down, which changes nothing but a counter.
func TestSubmissionPolicySuspends(t *testing.T) {
	_, sinkAddr := newSink(t)
	cfgPath, _, _ := setup(t, `outbound:
  routes: ["remote.test=`+sinkAddr+`"]
outbound_policy:
  weights: {rate: 1, content: 0, history: 0}
  max_per_hour: 10
  soft_limit_fraction: 1
monitor:
  enabled: true
  url: http://`+proctest.FreeAddr(t)+`/notify
  timeout: 1s
`)
	p := startAgent(t, cfgPath)
	const alice = "alice@example.test"
	var last error
	sent := 0
	for i := range 12 {
		last = submit(p.submission, alice, "pw-"+alice, []string{fmt.Sprintf("r%d@remote.test", i)}, "burst")
		if last != nil {
			break
		}
		sent++
	}
	var se *smtp.SMTPError
	if !errors.As(last, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) || se.Message != policy.SuspendedText {
		t.Fatalf("after %d messages: %#v; want 550 5.7.1 %s\n%s", sent, last, policy.SuspendedText, p.logs())
	}
	if sent != 7 {
		t.Errorf("%d messages went out before the suspension; want 7 (the 8th scores 0.8)", sent)
	}
	// Suspended: the next one too.
	if err := submit(p.submission, alice, "pw-"+alice, []string{"x@remote.test"}, "again"); err == nil || !strings.Contains(err.Error(), policy.SuspendedText) {
		t.Fatalf("while suspended: %v", err)
	}
	// The warning was notified (and failed: nothing listens); the later
	// notices of the account were held back by its 10-minute spacing.
	waitFor(t, "the failed notification in the metrics", func() bool {
		m := metrics(t, p.http)
		return strings.Contains(m, `mairust_monitor_notifications_total{result="failed"} 1`) &&
			strings.Contains(m, `mairust_monitor_notifications_total{result="dropped_rate"}`)
	})
}

// metrics returns the agent's /metrics page.
func metrics(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestWhitelistedNewsletterNotSuspended: a newsletter account in a
// whitelist profile sends 2,000 messages within the hour, ten times the
// regular hourly cap, and is neither throttled nor suspended.
func TestWhitelistedNewsletterNotSuspended(t *testing.T) {
	s, sinkAddr := newSink(t)
	cfgPath, _, pool := setup(t, `outbound:
  routes: ["remote.test=`+sinkAddr+`"]
outbound_whitelist:
  - id: newsletter
    accounts: [alice@example.test]
    max_rate: "5000 msgs/hour"
    description: Official newsletter
`)
	p := startAgent(t, cfgPath)
	const alice, n = "alice@example.test", 2000
	res, err := smtpload.Run(context.Background(), smtpload.Options{Addr: p.submission, Conns: 8, Messages: n, Size: 2048,
		From: alice, To: []string{"subscribers@remote.test"}, StartTLS: true, InsecureSkipVerify: true, Auth: alice + ":pw-" + alice})
	if err != nil {
		t.Fatal(err)
	}
	if res.OK != n || res.Failed != 0 {
		t.Fatalf("%d accepted, %d refused (%v); want all %d\n%s", res.OK, res.Failed, res.Failures, n, p.logs())
	}
	waitLong(t, "all delivered to the sink", 5*time.Minute, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.msgs) == n
	})
	var state string
	if err := pool.QueryRow(context.Background(), `SELECT state FROM outbound_accounts WHERE account = $1`, alice).Scan(&state); err != nil {
		t.Fatal(err)
	}
	if state != string(policy.Allowed) {
		t.Errorf("after %d messages the newsletter account is %s", n, state)
	}
}

// hookLog collects the alerts POSTed to a webhook on loopback.
type hookLog struct {
	mu     sync.Mutex
	events []alerts.Event
}

func newHookLog(t *testing.T, secret string) (*hookLog, string) {
	h := &hookLog{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var e alerts.Event
		if err := sdk.Verify(r.Header, body, alerts.SignerID, []byte(secret), time.Now()); err != nil || json.Unmarshal(body, &e) != nil {
			http.Error(w, "bad alert", http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.events = append(h.events, e)
		h.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	return h, srv.URL
}

// kinds lists the kinds and actors of the alerts received so far, in the
// order of the transitions (webhooks are sent concurrently).
func (h *hookLog) kinds() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	slices.SortFunc(h.events, func(a, b alerts.Event) int { return cmp.Compare(a.ID, b.ID) })
	var k []string
	for _, e := range h.events {
		k = append(k, e.Kind+":"+e.Actor)
	}
	return strings.Join(k, ",")
}

// burst submits until the policy refuses; it returns how many went out and
// the refusal.
func burst(t *testing.T, p *proc, account string, limit int) (int, error) {
	t.Helper()
	for i := range limit {
		if err := submit(p.submission, account, "pw-"+account, []string{fmt.Sprintf("b%d.%d@remote.test", i, time.Now().UnixNano())}, "burst"); err != nil {
			return i, err
		}
	}
	t.Fatalf("%d messages went out without a refusal", limit)
	return 0, nil
}

// TestSuspensionAlertsReleaseAndReenable: the administrator is told of the
// warning and the suspension by mail and by a signed webhook; a release
// with the CLI lets the account send again at once; suspended again, it
// is re-enabled (soft-limited) once auto_reenable_after_hours have passed.
func TestSuspensionAlertsReleaseAndReenable(t *testing.T) {
	_, sinkAddr := newSink(t)
	hooks, hookURL := newHookLog(t, "hook-secret")
	cfgPath, _, pool := setup(t, `outbound:
  routes: ["remote.test=`+sinkAddr+`"]
outbound_policy:
  weights: {rate: 1, content: 0, history: 0}
  max_per_hour: 10
  soft_limit_fraction: 1
  auto_reenable_after_hours: 1
outbound_alerts:
  email: postmaster@example.test
  webhook_url: `+hookURL+`
  webhook_secret: hook-secret
`)
	if err := accountstest.Seed(context.Background(), pool, "postmaster@example.test"); err != nil {
		t.Fatal(err)
	}
	p := startAgent(t, cfgPath)
	const alice = "alice@example.test"
	if _, err := burst(t, p, alice, 20); err == nil || !strings.Contains(err.Error(), policy.SuspendedText) {
		t.Fatalf("burst ended with %v", err)
	}
	// Each warning (the account is warned again while soft-limited) and
	// the suspension: by webhook and by mail.
	waitFor(t, "the webhook alerts", func() bool { return strings.HasSuffix(hooks.kinds(), ",suspend:policy") })
	alerted := hooks.kinds()
	if !strings.HasPrefix(alerted, "warn:policy,") {
		t.Fatalf("alerts %s", alerted)
	}
	waitFor(t, "the alert mails", func() bool {
		return folderCount(t, pool, "postmaster@example.test", "inbox") == strings.Count(alerted, ",")+1
	})
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM messages m JOIN mail_users u ON u.id = m.user_id
		WHERE u.address = 'postmaster@example.test' AND m.subject = $1`, "[MaiRust] Sending suspended: "+alice).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d suspension alerts in the INBOX (%v), want 1", n, err)
	}

	// Released with the CLI: the next message goes out.
	out, err := exec.Command(proctest.Binary(t), "admin", "outbound", "release", "--config", cfgPath, alice, "--why", "password reset").CombinedOutput()
	if err != nil {
		t.Fatalf("release: %v\n%s", err, out)
	}
	if err := submit(p.submission, alice, "pw-"+alice, []string{"after.release@remote.test"}, "released"); err != nil {
		t.Fatalf("after the release: %v", err)
	}
	waitFor(t, "the release alert", func() bool { return strings.HasPrefix(hooks.kinds(), alerted+",release:cli:") })

	// Suspended again; an hour later (the suspension is moved back an
	// hour rather than waited for) it is re-enabled, soft-limited.
	if _, err := burst(t, p, alice, 20); err == nil || !strings.Contains(err.Error(), policy.SuspendedText) {
		t.Fatalf("second burst ended with %v", err)
	}
	if _, err := pool.Exec(context.Background(), `UPDATE outbound_accounts SET suspended_at = suspended_at - interval '1 hour' WHERE account = $1`, alice); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(proctest.Binary(t), "admin", "outbound", "status", "--config", cfgPath, alice).CombinedOutput()
	if err != nil || !strings.Contains(string(out), string(policy.SoftLimited)) {
		t.Fatalf("status after an hour: %v\n%s", err, out)
	}
	waitFor(t, "the re-enable alert", func() bool { return strings.HasSuffix(hooks.kinds(), ",auto_reenable:system") })
}
