package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mairust/mairust/agent/policy"
	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/proctest"
)

var t0 = time.Date(2030, 3, 4, 10, 0, 0, 0, time.UTC)

// clock is the notifier's clock, set by the test.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *clock) add(d time.Duration) { c.set(c.now().Add(d)) }

// newNotifier starts an enabled notifier posting to url on a clock at t0.
func newNotifier(t *testing.T, url string, timeout time.Duration) (*Notifier, *clock, *proctest.Output) {
	clk := &clock{}
	clk.set(t0)
	var log proctest.Output
	m := start(config.Monitor{Enabled: true, URL: url, Token: "s3cret", Timeout: timeout}, "mx1.example.test",
		slog.New(slog.NewTextHandler(&log, nil)), clk.now)
	t.Cleanup(m.Close)
	return m, clk, &log
}

// hang answers nothing until the client gives up (the server notices once
// the body is read).
func hang(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	<-r.Context().Done()
}

func suspension(account string) policy.Notice {
	return policy.Notice{Kind: policy.Suspend, Account: account, TenantID: "t1", Score: 0.8, Reason: "score 0.80", At: t0}
}

// counts reads mairust_monitor_notifications_total by result.
func counts() map[string]float64 {
	c := map[string]float64{}
	for _, r := range []string{"sent", "failed", "dropped_rate", "dropped_full"} {
		c[r] = testutil.ToFloat64(notifications.WithLabelValues(r))
	}
	return c
}

// growth is what each counter gained since before.
func growth(before map[string]float64) map[string]float64 {
	c := counts()
	for r, v := range before {
		c[r] -= v
	}
	return c
}

// waitFor waits until the counters have gained want since before (the
// sender counts a notice once it is done with it).
func waitFor(t *testing.T, before, want map[string]float64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for {
		got := growth(before)
		for r := range got {
			if got[r] == 0 && want[r] == 0 {
				delete(got, r)
			}
		}
		if reflect.DeepEqual(got, want) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("counters grew by %v, want %v", got, want)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func TestNotifyPostsJSONWithToken(t *testing.T) {
	type request struct {
		method, auth, contentType string
		body                      map[string]any
	}
	got := make(chan request, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			t.Error(err)
		}
		got <- request{r.Method, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), body}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	m, _, _ := newNotifier(t, srv.URL, 5*time.Second)
	n := policy.Notice{Kind: policy.Warn, Account: "bob@example.test", TenantID: "t1", Score: 0.55,
		Factors: policy.Factors{Rate: 0.5, Content: 0.625, History: 0.5}, Reason: "score 0.55 (rate 0.50, content 0.62, history 0.50) ≥ 0.5", At: t0}

	before := counts()
	m.Apply(config.Monitor{URL: srv.URL, Timeout: time.Second}) // disabled: nothing happens
	m.Notify(n)
	m.Apply(config.Monitor{Enabled: true, URL: srv.URL, Token: "s3cret", Timeout: time.Second})
	m.Notify(n)
	waitFor(t, before, map[string]float64{"sent": 1})
	r := <-got
	var want map[string]any
	json.Unmarshal([]byte(`{"kind": "warn", "account": "bob@example.test", "tenant_id": "t1", "score": 0.55,
		"factors": {"rate": 0.5, "content": 0.625, "history": 0.5},
		"reason": "score 0.55 (rate 0.50, content 0.62, history 0.50) ≥ 0.5", "at": "2030-03-04T10:00:00Z", "agent": "mx1.example.test"}`), &want)
	if r.method != "POST" || r.auth != "Bearer s3cret" || r.contentType != "application/json" || !reflect.DeepEqual(r.body, want) {
		t.Fatalf("got %+v\nwant body %v", r, want)
	}
	if len(got) != 0 {
		t.Fatalf("%d more requests", len(got))
	}
}

// Without monitor.url, notices go through the Sender (the control plane's
// monitor service), or fail, counted, when the agent has none.
func TestSenderWithoutURL(t *testing.T) {
	m, clk, _ := newNotifier(t, "", time.Second)
	before := counts()
	m.Notify(suspension("a@example.test"))
	waitFor(t, before, map[string]float64{"failed": 1})
	got := make(chan policy.Notice, 1)
	m.SetSender(func(_ context.Context, n policy.Notice) error { got <- n; return nil })
	clk.add(accountGap)
	before = counts()
	m.Notify(suspension("a@example.test"))
	waitFor(t, before, map[string]float64{"sent": 1})
	if n := <-got; n.Account != "a@example.test" || n.Kind != policy.Suspend {
		t.Fatalf("sent %+v", n)
	}
}

func TestRateLimits(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	m, clk, _ := newNotifier(t, srv.URL, 5*time.Second)
	type step struct {
		at      time.Duration // after t0
		account string
		sent    bool
	}
	steps := []step{
		{0, "a", true},
		{5 * time.Minute, "a", false}, // 10 minutes apart per account
		{5 * time.Minute, "b", true},
		{5*time.Minute + 999*time.Millisecond, "c", false}, // one a second in all
		{5*time.Minute + time.Second, "c", true},
		{10 * time.Minute, "a", true},
	}
	// At most 24 in 24 hours for one account, even 10 minutes apart.
	for i := range 25 {
		steps = append(steps, step{time.Hour + time.Duration(i)*10*time.Minute, "d", i < 24})
	}
	steps = append(steps, step{25*time.Hour - time.Second, "d", false}, step{25 * time.Hour, "d", true})
	before := counts()
	sent := 0
	for _, s := range steps {
		clk.set(t0.Add(s.at))
		dropped := counts()["dropped_rate"]
		m.Notify(suspension(s.account))
		if d := counts()["dropped_rate"] - dropped; d != map[bool]float64{true: 0, false: 1}[s.sent] {
			t.Fatalf("%v %s: dropped %v", s.at, s.account, d)
		}
		if s.sent {
			sent++
		}
	}
	waitFor(t, before, map[string]float64{"sent": float64(sent), "dropped_rate": float64(len(steps) - sent)})
	// Accounts without a notice in 24 hours are forgotten.
	clk.add(24 * time.Hour)
	m.Notify(suspension("e"))
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.accounts) != 1 || len(m.accounts["e"]) != 1 {
		t.Fatalf("accounts remembered: %v", m.accounts)
	}
}

// TestSlowMonitorNeverBlocks holds the monitor's answer to the first
// notice: the notices after it are queued, then dropped, and every Notify
// returns meanwhile.
func TestSlowMonitorNeverBlocks(t *testing.T) {
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		<-release
	}))
	defer srv.Close()
	m, clk, log := newNotifier(t, srv.URL, time.Minute)
	before := counts()
	m.Notify(suspension("first@example.test"))
	<-arrived
	for i := range queueSize + 5 {
		clk.add(time.Second)
		m.Notify(suspension(fmt.Sprintf("u%d@example.test", i)))
	}
	if g := growth(before); g["dropped_full"] != 5 || g["sent"] != 0 || len(m.queue) != queueSize {
		t.Fatalf("while the monitor is held: %v, %d queued", g, len(m.queue))
	}
	close(release)
	waitFor(t, before, map[string]float64{"sent": queueSize + 1, "dropped_full": 5})
	if n := strings.Count(log.String(), "queue is full"); n != 1 {
		t.Fatalf("%d log lines for 5 drops within a minute:\n%s", n, log)
	}
}

// TestMonitorDown counts the notices to a closed port and to a monitor
// that does not answer in time as failed, with one log line a minute.
func TestMonitorDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String() + "/notices"
	l.Close()
	stuck := httptest.NewServer(http.HandlerFunc(hang))
	defer stuck.Close()
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }))
	defer refusing.Close()
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer ok.Close()

	m, clk, log := newNotifier(t, closed, 50*time.Millisecond)
	before := counts()
	notify := func(url string, failed float64) {
		t.Helper()
		m.Apply(config.Monitor{Enabled: true, URL: url, Timeout: 50 * time.Millisecond})
		clk.add(time.Second)
		m.Notify(suspension(fmt.Sprintf("u%v@example.test", clk.now().Unix())))
		waitFor(t, before, map[string]float64{"failed": failed})
	}
	notify(closed, 1)
	notify(stuck.URL, 2)
	notify(refusing.URL, 3)
	clk.add(time.Minute)
	notify(closed, 4)
	m.Apply(config.Monitor{Enabled: true, URL: ok.URL, Timeout: time.Second})
	clk.add(time.Second)
	m.Notify(suspension("back@example.test"))
	waitFor(t, before, map[string]float64{"failed": 4, "sent": 1})

	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "connection refused") || !strings.Contains(lines[0], "not_logged=0") ||
		!strings.Contains(lines[1], "not_logged=2") || !strings.Contains(lines[2], "monitor notifications sent again") ||
		!strings.Contains(lines[2], "failed_before=4") {
		t.Fatalf("log:\n%s", log)
	}
}

// TestCloseStopsSending closes the notifier while it waits for the
// monitor: the notice is abandoned, neither counted nor logged as failed.
func TestCloseStopsSending(t *testing.T) {
	arrived := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		hang(w, r)
	}))
	defer srv.Close()
	m, clk, log := newNotifier(t, srv.URL, time.Minute)
	before := counts()
	m.Notify(suspension("a@example.test"))
	<-arrived
	clk.add(time.Second)
	m.Notify(suspension("b@example.test"))
	m.Close()
	m.Close()
	m.Notify(suspension("c@example.test")) // returns
	if g := growth(before); g["failed"] != 0 || g["sent"] != 0 || strings.Count(log.String(), "\n") != 1 || !strings.Contains(log.String(), "not sent at shutdown\" component=monitor count=1\n") ||
		strings.Contains(log.String(), "level=ERROR") {
		t.Fatalf("counters %v, log:\n%s", g, log)
	}
}

// TestConfig checks the monitor section of mairust.yaml.
func TestConfig(t *testing.T) {
	t.Setenv("MAIRUST_MONITOR_TOKEN", "")
	if d := config.Default().Monitor; d != (config.Monitor{Timeout: 5 * time.Second}) {
		t.Fatalf("defaults %+v", d)
	}
	c, err := config.Parse([]byte("monitor:\n  enabled: true\n  url: https://monitor.example.test/v1/notices\n  token: file\n"), "m.yaml")
	if err != nil || c.Monitor != (config.Monitor{Enabled: true, URL: "https://monitor.example.test/v1/notices", Token: "file", Timeout: 5 * time.Second}) {
		t.Fatalf("%+v %v", c.Monitor, err)
	}
	// Enabled without a URL: the control plane's monitor service.
	if c, err := config.Parse([]byte("monitor:\n  enabled: true\n"), "m.yaml"); err != nil || !c.Monitor.Enabled || c.Monitor.URL != "" {
		t.Fatalf("%+v %v", c.Monitor, err)
	}
	t.Setenv("MAIRUST_MONITOR_TOKEN", "from-env")
	if c, err := config.Parse([]byte("monitor:\n  token: file\n"), "m.yaml"); err != nil || c.Monitor.Token != "from-env" {
		t.Fatalf("%+v %v", c.Monitor, err)
	}
	for yaml, want := range map[string]string{
		"monitor:\n  url: ftp://monitor.test/\n":   "m.yaml:2: monitor.url: must be an http:// or https:// URL",
		"monitor:\n  timeout: 50ms\n":              "m.yaml:2: monitor.timeout: must be between 100ms and 1m",
		"monitor:\n  enabled: true\n  urls: x\n":   "m.yaml:3: monitor.urls: unknown key",
		"monitor:\n  url: http://m.test\n  x: 1\n": "m.yaml:3: monitor.x: unknown key",
	} {
		if _, err := config.Parse([]byte(yaml), "m.yaml"); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q: %v, want %q", yaml, err, want)
		}
	}
}
