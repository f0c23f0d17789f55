package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mairust/mairust/agent/hooks/breaker"
	"github.com/mairust/mairust/agent/plugins/manifest"
	"github.com/mairust/mairust/internal/procgroup/procgrouptest"
	"github.com/mairust/mairust/internal/proctest"
)

// Command tests write every script before running any: a script written
// while another goroutine forks can fail to exec with "text file busy".
// Tests do not run in parallel for the same reason.

var base = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// clock is a fake clock that moves one second per reading.
type clock struct {
	mu sync.Mutex
	n  int
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return base.Add(time.Duration(c.n) * time.Second)
}

// records returns the JSON log records with msg containing substr.
func records(t *testing.T, log *proctest.Output, substr string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for l := range strings.SplitSeq(log.String(), "\n") {
		if l == "" {
			continue
		}
		var r map[string]any
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		if msg, _ := r["msg"].(string); strings.Contains(msg, substr) {
			out = append(out, r)
		}
	}
	return out
}

type env struct {
	c     *Checker
	log   *proctest.Output
	clock *clock
	mu    sync.Mutex
	trips []string
}

func (e *env) tripped() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.trips...)
}

// newEnv returns a Checker with a fake clock, a JSON log and a Trip that
// records its calls; opts may set other fields.
func newEnv(t *testing.T, opts Options) *env {
	t.Helper()
	e := &env{log: &proctest.Output{}, clock: &clock{}}
	opts.Log = slog.New(slog.NewJSONHandler(e.log, nil))
	opts.Now = e.clock.Now
	if opts.Trip == nil {
		opts.Trip = func(id, reason string) {
			e.mu.Lock()
			e.trips = append(e.trips, id+": "+reason)
			e.mu.Unlock()
		}
	}
	e.c = New(opts)
	if opts.Credential == nil {
		e.c.euid = func() int { return 1000 } // commands as the test's user
	}
	return e
}

func httpPlugin(id, url string) *manifest.Manifest {
	return &manifest.Manifest{ID: id, Kind: manifest.KindHTTP, URL: url, HealthEndpoint: url, Timeout: time.Second}
}

// cmdPlugin writes script as <dir>/bin/health and returns a manifest
// whose health_cmd runs it with args.
func cmdPlugin(t *testing.T, id, script string, args ...string) *manifest.Manifest {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "health"), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	return &manifest.Manifest{ID: id, Kind: manifest.KindStdin, Command: "bin/run", Dir: dir,
		HealthCmd: append([]string{"bin/health"}, args...), Timeout: time.Second}
}

func checkNow(t *testing.T, c *Checker, id string) Result {
	t.Helper()
	r, err := c.CheckNow(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func wantResult(t *testing.T, r Result, status string, detail ...string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("%s: status %q (%s), want %q", r.ID, r.Status, r.Detail, status)
	}
	for _, d := range detail {
		if !strings.Contains(r.Detail, d) {
			t.Errorf("%s: detail %q does not contain %q", r.ID, r.Detail, d)
		}
	}
}

func gauge(id, status string) float64 {
	return testutil.ToFloat64(healthGauge.WithLabelValues(id, status))
}

func TestHTTPChecks(t *testing.T) {
	var redirected atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/plain", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			t.Errorf("method %s", r.Method)
		}
		fmt.Fprint(w, "fine")
	})
	mux.HandleFunc("/ok-json", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"status":"ok","detail":"3 workers"}`)
	})
	mux.HandleFunc("/degraded", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"status":"degraded","detail":"cache cold"}`)
	})
	mux.HandleFunc("/error-json", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"status":"error","detail":{"db":"down"}}`)
	})
	mux.HandleFunc("/500", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "database unreachable\nmore", http.StatusInternalServerError)
	})
	mux.HandleFunc("/503-json", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"status":"error","detail":"starting"}`)
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/plain-target", http.StatusFound)
	})
	mux.HandleFunc("/plain-target", func(w http.ResponseWriter, r *http.Request) {
		redirected.Store(true)
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	mux.HandleFunc("/hang-body", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, `{"status":`)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()

	e := newEnv(t, Options{Timeout: 300 * time.Millisecond})
	cases := []struct {
		id, url, status string
		detail          []string
	}{
		{"h-plain", srv.URL + "/plain", StatusOK, nil},
		{"h-ok-json", srv.URL + "/ok-json", StatusOK, []string{"3 workers"}},
		{"h-degraded", srv.URL + "/degraded", StatusDegraded, []string{"cache cold"}},
		{"h-error-json", srv.URL + "/error-json", StatusError, []string{`{"db":"down"}`}},
		{"h-500", srv.URL + "/500", StatusError, []string{"HTTP 500 Internal Server Error", "database unreachable"}},
		{"h-503", srv.URL + "/503-json", StatusError, []string{"HTTP 503", "starting"}},
		{"h-redirect", srv.URL + "/redirect", StatusError, []string{"HTTP 302", "not followed"}},
		{"h-hang", srv.URL + "/hang", StatusError, []string{"no answer within 300ms"}},
		{"h-hang-body", srv.URL + "/hang-body", StatusError, []string{"300ms"}},
		{"h-refused", closed.URL, StatusError, []string{"connection refused"}},
	}
	var list []*manifest.Manifest
	for _, c := range cases {
		list = append(list, httpPlugin(c.id, c.url))
	}
	e.c.Set(list)
	for _, c := range cases {
		r := checkNow(t, e.c, c.id)
		wantResult(t, r, c.status, c.detail...)
		if strings.Contains(r.Detail, "\n") {
			t.Errorf("%s: detail has a newline: %q", c.id, r.Detail)
		}
		if gauge(c.id, c.status) != 1 {
			t.Errorf("%s: gauge for %s not 1", c.id, c.status)
		}
		for _, s := range statuses {
			if s != c.status && gauge(c.id, s) != 0 {
				t.Errorf("%s: gauge for %s not 0", c.id, s)
			}
		}
	}
	if redirected.Load() {
		t.Error("the redirect was followed")
	}
}

func TestCommandChecks(t *testing.T) {
	t.Setenv("MAIRUST_TEST_SECRET", "hunter2")
	work := t.TempDir()
	pidFile := filepath.Join(t.TempDir(), "child")
	ok := cmdPlugin(t, "c-ok", "echo; echo '  all good  '; echo second line\n")
	degraded := cmdPlugin(t, "c-degraded", "echo queue backed up; exit 1\n")
	failed := cmdPlugin(t, "c-failed", "echo broken >&2; exit 2\n")
	failedOut := cmdPlugin(t, "c-failed-out", "echo 'cannot reach db'; echo noise >&2; exit 3\n")
	envp := cmdPlugin(t, "c-env", `echo "home=$HOME pwd=$(pwd) id=$MAIRUST_PLUGIN_ID lang=$LANG path=$PATH secret=${MAIRUST_TEST_SECRET-unset} arg=$1"`+"\n", "--arg")
	hang := cmdPlugin(t, "c-hang", "sleep 60 &\necho $! > \"$1\"\nsleep 60\n", pidFile)
	long := cmdPlugin(t, "c-long", "head -c 100000 /dev/zero | tr '\\0' 'a'; echo\n")
	escape := cmdPlugin(t, "c-escape", "exit 0\n")
	escape.HealthCmd = []string{"../health"}
	abs := cmdPlugin(t, "c-abs", "exit 0\n")
	abs.HealthCmd = []string{"/bin/true"}
	link := cmdPlugin(t, "c-link", "exit 0\n")
	if err := os.Symlink("/bin/true", filepath.Join(link.Dir, "bin", "true")); err != nil {
		t.Fatal(err)
	}
	link.HealthCmd = []string{"bin/true"}
	missing := cmdPlugin(t, "c-missing", "exit 0\n")
	missing.HealthCmd = []string{"bin/nope"}

	e := newEnv(t, Options{Timeout: 500 * time.Millisecond, WorkDir: func(id string) string {
		if id == "c-env" {
			return work
		}
		return ""
	}})
	e.c.Set([]*manifest.Manifest{ok, degraded, failed, failedOut, envp, hang, long, escape, abs, link, missing})

	wantResult(t, checkNow(t, e.c, "c-ok"), StatusOK)
	if r, _ := e.c.Result("c-ok"); r.Detail != "all good" {
		t.Errorf("detail %q, want the first non-empty line of stdout, trimmed", r.Detail)
	}
	wantResult(t, checkNow(t, e.c, "c-degraded"), StatusDegraded, "queue backed up")
	wantResult(t, checkNow(t, e.c, "c-failed"), StatusError, "exit status 2", "broken")
	r := checkNow(t, e.c, "c-failed-out")
	wantResult(t, r, StatusError, "exit status 3", "cannot reach db")
	if strings.Contains(r.Detail, "noise") {
		t.Errorf("stderr used although stdout had a line: %q", r.Detail)
	}
	want := fmt.Sprintf("home=%s pwd=%s id=c-env lang=C.UTF-8 path=/usr/local/bin:/usr/bin:/bin secret=unset arg=--arg", work, work)
	wantResult(t, checkNow(t, e.c, "c-env"), StatusOK)
	if r, _ := e.c.Result("c-env"); r.Detail != want {
		t.Errorf("environment:\n got %s\nwant %s", r.Detail, want)
	}
	wantResult(t, checkNow(t, e.c, "c-hang"), StatusError, "no answer within 500ms", "killed")
	procgrouptest.WaitGone(t, procgrouptest.ChildPid(t, pidFile))
	r = checkNow(t, e.c, "c-long")
	wantResult(t, r, StatusOK)
	if len(r.Detail) > MaxDetailBytes || !strings.HasSuffix(r.Detail, "…") {
		t.Errorf("long detail: %d bytes", len(r.Detail))
	}
	wantResult(t, checkNow(t, e.c, "c-escape"), StatusError, "not a path inside the plugin directory")
	wantResult(t, checkNow(t, e.c, "c-abs"), StatusError, "not a path inside the plugin directory")
	wantResult(t, checkNow(t, e.c, "c-link"), StatusError, "outside the plugin directory")
	wantResult(t, checkNow(t, e.c, "c-missing"), StatusError, "health_cmd")
}

func TestCommandNotAsRoot(t *testing.T) {
	m := cmdPlugin(t, "c-root", "echo ran; exit 0\n")
	e := newEnv(t, Options{})
	e.c.euid = func() int { return 0 }
	e.c.Set([]*manifest.Manifest{m})
	wantResult(t, checkNow(t, e.c, "c-root"), StatusError, "runs as root", "not run")
}

func TestCommandCredential(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test runs a health command as another user, which needs root; run the tests as root (CI does)")
	}
	m := cmdPlugin(t, "c-cred", `echo "$(id -u):$(id -g)"`+"\n")
	// t.TempDir's parent is private to root; the plugin user must reach its script.
	if err := os.Chmod(filepath.Dir(m.Dir), 0o755); err != nil {
		t.Fatal(err)
	}
	const nobody = 65534
	e := newEnv(t, Options{Credential: func() *syscall.Credential { return &syscall.Credential{Uid: nobody, Gid: nobody} }})
	e.c.Set([]*manifest.Manifest{m})
	r := checkNow(t, e.c, "c-cred")
	wantResult(t, r, StatusOK)
	if r.Detail != "65534:65534" {
		t.Errorf("ran as %q, want 65534:65534", r.Detail)
	}
}

// switchServer answers 200, 500 or degraded as told.
func switchServer(t *testing.T) (*httptest.Server, *atomic.Value) {
	var mode atomic.Value
	mode.Store(StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load() {
		case StatusError:
			http.Error(w, "boom", http.StatusInternalServerError)
		case StatusDegraded:
			fmt.Fprint(w, `{"status":"degraded"}`)
		default:
			fmt.Fprint(w, "ok")
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &mode
}

func TestTripOncePerStreak(t *testing.T) {
	srv, mode := switchServer(t)
	breakers := breaker.New(breaker.Settings{}, nil)
	e := newEnv(t, Options{TripAfter: 3})
	e.c.opts.Trip = func(id, reason string) {
		e.mu.Lock()
		e.trips = append(e.trips, id+": "+reason)
		e.mu.Unlock()
		breakers.Trip(id, reason)
	}
	const id = "t-streak"
	e.c.Set([]*manifest.Manifest{httpPlugin(id, srv.URL)})
	alerts0 := testutil.ToFloat64(alerts.WithLabelValues(id))

	mode.Store(StatusError)
	for i := 1; i <= 5; i++ {
		r := checkNow(t, e.c, id)
		if r.ConsecutiveErrors != i {
			t.Fatalf("check %d: %d consecutive errors", i, r.ConsecutiveErrors)
		}
		wantTrips := 0
		if i >= 3 {
			wantTrips = 1
		}
		if n := len(e.tripped()); n != wantTrips {
			t.Fatalf("after %d errors: %d trips, want %d", i, n, wantTrips)
		}
	}
	want := id + ": health check failed 3 times: HTTP 500 Internal Server Error: boom"
	if got := e.tripped(); got[0] != want {
		t.Errorf("trip %q, want %q", got[0], want)
	}
	if st := breakers.Status(id); st.State != breaker.Open || !strings.Contains(st.Reason, "health check failed 3 times") {
		t.Errorf("breaker %+v, want open by the health check", st)
	}
	if n := testutil.ToFloat64(alerts.WithLabelValues(id)) - alerts0; n != 1 {
		t.Errorf("%v alerts counted, want 1", n)
	}
	recs := records(t, e.log, "plugin health alert")
	if len(recs) != 1 || recs[0]["level"] != "ERROR" || recs[0]["plugin_id"] != id || recs[0]["consecutive_errors"] != 3.0 {
		t.Errorf("alert log %v", recs)
	}

	// Recovery ends the streak; a new streak trips again, once.
	mode.Store(StatusOK)
	if r := checkNow(t, e.c, id); r.ConsecutiveErrors != 0 || r.Status != StatusOK {
		t.Errorf("after recovery: %+v", r)
	}
	if len(records(t, e.log, "plugin health recovered")) != 1 {
		t.Error("recovery not logged")
	}
	mode.Store(StatusError)
	for range 4 {
		checkNow(t, e.c, id)
	}
	if n := len(e.tripped()); n != 2 {
		t.Errorf("%d trips after a second streak, want 2", n)
	}
	// A degraded answer ends the streak too.
	mode.Store(StatusDegraded)
	if r := checkNow(t, e.c, id); r.ConsecutiveErrors != 0 || r.Status != StatusDegraded {
		t.Errorf("degraded: %+v", r)
	}
	mode.Store(StatusError)
	for range 2 {
		checkNow(t, e.c, id)
	}
	if n := len(e.tripped()); n != 2 {
		t.Errorf("%d trips after 2 errors, want 2 still", n)
	}
	checkNow(t, e.c, id)
	if n := len(e.tripped()); n != 3 {
		t.Errorf("%d trips after a third streak, want 3", n)
	}
	if n := testutil.ToFloat64(alerts.WithLabelValues(id)) - alerts0; n != 3 {
		t.Errorf("%v alerts counted, want 3", n)
	}

	// The streak survives Set with the same plugin.
	e.c.Set([]*manifest.Manifest{httpPlugin(id, srv.URL)})
	if r, _ := e.c.Result(id); r.ConsecutiveErrors != 3 {
		t.Errorf("after Set: %d consecutive errors, want 3", r.ConsecutiveErrors)
	}
	checkNow(t, e.c, id)
	if n := len(e.tripped()); n != 3 {
		t.Errorf("Set started a new streak: %d trips", n)
	}
}

func TestSetAndResults(t *testing.T) {
	srv, _ := switchServer(t)
	e := newEnv(t, Options{})
	bare := &manifest.Manifest{ID: "r-bare", Kind: manifest.KindHTTP, URL: srv.URL}
	e.c.Set([]*manifest.Manifest{httpPlugin("r-c", srv.URL), bare, httpPlugin("r-a", srv.URL), nil})
	got := e.c.Results()
	ids := []string{}
	for _, r := range got {
		ids = append(ids, r.ID)
	}
	if strings.Join(ids, " ") != "r-a r-bare r-c" {
		t.Fatalf("results %v, want sorted by id", ids)
	}
	wantResult(t, got[0], StatusUnknown, "not checked yet")
	wantResult(t, got[1], StatusUnknown, "no health check declared")
	if gauge("r-bare", StatusUnknown) != 1 || gauge("r-a", StatusUnknown) != 1 {
		t.Error("unknown gauge not set")
	}
	r := checkNow(t, e.c, "r-a")
	if r.CheckedAt.Before(base) || r.CheckedAt.After(base.Add(time.Hour)) {
		t.Errorf("CheckedAt %v is not from the fake clock", r.CheckedAt)
	}
	if r, _ := e.c.CheckNow(context.Background(), "r-bare"); r.Status != StatusUnknown || !r.CheckedAt.IsZero() {
		t.Errorf("a plugin without a check was checked: %+v", r)
	}
	if _, err := e.c.CheckNow(context.Background(), "r-none"); err == nil {
		t.Error("CheckNow of an unknown plugin succeeded")
	}

	// Dropping a plugin drops its result and metrics.
	before := testutil.CollectAndCount(healthGauge)
	e.c.Set([]*manifest.Manifest{httpPlugin("r-a", srv.URL)})
	if got := e.c.Results(); len(got) != 1 || got[0].ID != "r-a" || got[0].Status != StatusOK {
		t.Errorf("after Set: %+v", got)
	}
	if n := before - testutil.CollectAndCount(healthGauge); n != 2*len(statuses) {
		t.Errorf("%d gauge series dropped, want %d", n, 2*len(statuses))
	}
	// A plugin that loses its check becomes unknown; one that gains one is checked.
	e.c.Set([]*manifest.Manifest{{ID: "r-a", Kind: manifest.KindHTTP, URL: srv.URL}})
	wantResult(t, e.c.Results()[0], StatusUnknown, "no health check declared")
	e.c.Set([]*manifest.Manifest{httpPlugin("r-a", srv.URL)})
	wantResult(t, e.c.Results()[0], StatusUnknown, "not checked yet")
	wantResult(t, checkNow(t, e.c, "r-a"), StatusOK)
}

func TestCheckNowWaitsForContext(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	e := newEnv(t, Options{Timeout: 10 * time.Second})
	e.c.Set([]*manifest.Manifest{httpPlugin("w-busy", srv.URL)})
	done := make(chan Result)
	go func() {
		r, _ := e.c.CheckNow(context.Background(), "w-busy")
		done <- r
	}()
	// Wait for the first check to hold the plugin.
	for e.c.plugins["w-busy"] != nil && len(e.c.plugins["w-busy"].sem) == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.c.CheckNow(ctx, "w-busy"); !errors.Is(err, context.Canceled) {
		t.Errorf("second CheckNow: %v, want context.Canceled", err)
	}
	release <- struct{}{}
	if r := <-done; r.Status != StatusOK {
		t.Errorf("first check %+v", r)
	}
}

func TestRun(t *testing.T) {
	// Both plugins' checks must be in flight at once for either to pass.
	var arrived sync.WaitGroup
	arrived.Add(2)
	both := make(chan struct{})
	go func() { arrived.Wait(); close(both) }()
	var first sync.Map
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, again := first.LoadOrStore(r.URL.Path, true); !again && r.URL.Path != "/late" {
			arrived.Done()
			select {
			case <-both:
			case <-time.After(5 * time.Second):
				http.Error(w, "checks did not run in parallel", http.StatusInternalServerError)
				return
			}
		}
		fmt.Fprint(w, "ok")
	}))
	defer srv.Close()

	var mu sync.Mutex
	counts := map[string]int{}
	checked := make(chan string, 100)
	e := newEnv(t, Options{Interval: time.Hour, Timeout: 10 * time.Second})
	e.c.afterCheck = func(id string, r Result) {
		mu.Lock()
		counts[id]++
		mu.Unlock()
		if r.Status != StatusOK {
			t.Errorf("%s: %+v", id, r)
		}
		checked <- id
	}
	e.c.Set([]*manifest.Manifest{httpPlugin("run-a", srv.URL+"/a"), httpPlugin("run-b", srv.URL+"/b")})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { e.c.Run(ctx); close(stopped) }()
	seen := map[string]bool{}
	wait := func(id string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for !seen[id] {
			select {
			case got := <-checked:
				seen[got] = true
			case <-timeout:
				t.Fatalf("%s not checked", id)
			}
		}
	}
	wait("run-a")
	wait("run-b")
	// A plugin added while running is checked without waiting for the
	// next round (an hour away); the others are not checked again.
	e.c.Set([]*manifest.Manifest{httpPlugin("run-a", srv.URL+"/a"), httpPlugin("run-b", srv.URL+"/b"), httpPlugin("run-late", srv.URL+"/late")})
	wait("run-late")
	cancel()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	mu.Lock()
	defer mu.Unlock()
	if counts["run-a"] != 1 || counts["run-b"] != 1 || counts["run-late"] != 1 {
		t.Errorf("checks %v, want one each", counts)
	}
}

func TestRunRounds(t *testing.T) {
	srv, _ := switchServer(t)
	checked := make(chan string, 100)
	e := newEnv(t, Options{Interval: 10 * time.Millisecond})
	e.c.afterCheck = func(id string, r Result) { checked <- id }
	e.c.Set([]*manifest.Manifest{httpPlugin("rr-a", srv.URL)})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { e.c.Run(ctx); close(stopped) }()
	timeout := time.After(10 * time.Second)
	for range 3 {
		select {
		case <-checked:
		case <-timeout:
			t.Fatal("fewer than 3 rounds")
		}
	}
	cancel()
	<-stopped
}

func TestClip(t *testing.T) {
	s := strings.Repeat("é", MaxDetailBytes)
	c := clip(s)
	if len(c) > MaxDetailBytes || !strings.HasSuffix(c, "…") || strings.ContainsRune(c, '\uFFFD') {
		t.Errorf("clip: %d bytes %q", len(c), c[len(c)-10:])
	}
	if clip("a\xffb") != "a\uFFFDb" {
		t.Error("invalid UTF-8 kept")
	}
}
