// Package health polls plugins' health checks (an HTTP endpoint or a
// command) and reports ok, degraded or error per plugin; repeated errors
// trip the plugin's circuit breaker and raise an alert.
//
// An HTTP check GETs the manifest's health_endpoint without following
// redirects: 200 is ok, unless the body is JSON {"status": "degraded" or
// "error", "detail": "..."}, which is taken as is; any other status, a
// connection error or no answer within the timeout is an error.
//
// A command check runs health_cmd, whose program must be inside the
// plugin's directory, in its own process group with a minimal environment,
// as Options.Credential (which an agent running as root must set: health
// commands never run as root); the group is killed at the timeout. Exit 0 is ok, 1 degraded, anything else an error;
// the first line of its standard output is the detail.
//
// Errors in a row form a streak. When a streak reaches TripAfter, the
// Checker logs an alert, counts it and calls Trip once; any check that is
// not an error (ok or degraded) ends the streak.
package health

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mairust/mairust/agent/plugins/manifest"
	"github.com/mairust/mairust/internal/procgroup"
)

// Statuses of a plugin.
const (
	StatusOK       = "ok"
	StatusDegraded = "degraded"
	StatusError    = "error"
	StatusUnknown  = "unknown" // no health check declared, or not checked yet
)

var statuses = []string{StatusOK, StatusDegraded, StatusError, StatusUnknown}

// Defaults for Options.
const (
	DefaultInterval  = 30 * time.Second
	DefaultTimeout   = 5 * time.Second
	DefaultTripAfter = 3
)

// MaxDetailBytes caps a Result's Detail.
const MaxDetailBytes = 512

// maxBodyBytes bounds what is read of an HTTP check's answer.
const maxBodyBytes = 64 << 10

// waitDelay bounds the wait for a command's output pipes once it has exited
// or been killed (a child outside its process group may hold them open).
const waitDelay = 500 * time.Millisecond

var (
	healthGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "mairust", Subsystem: "plugin", Name: "health",
		Help: "1 for a plugin's current health status (ok, degraded, error, unknown), 0 for the others.",
	}, []string{"plugin", "status"})
	alerts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mairust", Subsystem: "plugin", Name: "health_alerts_total",
		Help: "Health alerts raised by plugin: its health check failed TripAfter times in a row (the breaker was tripped).",
	}, []string{"plugin"})
)

// Collectors returns the package's metrics for registration.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{healthGauge, alerts}
}

// Result is the last health check of one plugin.
type Result struct {
	ID                string    `json:"id"`
	Status            string    `json:"status"` // ok, degraded, error or unknown
	Detail            string    `json:"detail,omitempty"`
	CheckedAt         time.Time `json:"checked_at,omitzero"`
	ConsecutiveErrors int       `json:"consecutive_errors"`
}

// Options configure a Checker. Zero values take the defaults.
type Options struct {
	Interval   time.Duration              // between rounds of checks; default 30s
	Timeout    time.Duration              // bounds each check; default 5s
	TripAfter  int                        // errors in a row that trip the breaker; default 3
	Trip       func(id, reason string)    // called once per streak that reaches TripAfter
	Log        *slog.Logger               // default: slog.Default()
	Now        func() time.Time           // the clock for CheckedAt; default time.Now
	Credential func() *syscall.Credential // the user commands run as, asked for when one runs; required (non-nil result) when the agent runs as root
	WorkDir    func(id string) string     // commands' working directory and HOME; default (or ""): the plugin's directory
	HTTPClient *http.Client               // for HTTP checks; default: no proxy (redirects are never followed)
}

// Checker polls the health checks of a set of plugins. Safe for concurrent use.
type Checker struct {
	opts   Options
	client *http.Client
	log    *slog.Logger
	wake   chan struct{} // Set tells Run about new plugins

	afterCheck func(id string, r Result) // tests: called after each recorded check
	euid       func() int                // os.Geteuid; tests replace it

	mu      sync.Mutex
	plugins map[string]*entry
}

// entry is one plugin's check and state; replaced only when the plugin
// leaves the set.
type entry struct {
	sem chan struct{} // one check at a time

	// Under Checker.mu.
	m       *manifest.Manifest
	res     Result
	tripped bool // Trip was called for the current streak
}

// New returns a Checker with no plugins.
func New(opts Options) *Checker {
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.TripAfter <= 0 {
		opts.TripAfter = DefaultTripAfter
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	client := opts.HTTPClient
	if client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = nil // health endpoints are the plugin's own, usually local
		client = &http.Client{Transport: tr}
	}
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Checker{
		opts:    opts,
		client:  &c,
		log:     log.With("component", "plugin-health"),
		wake:    make(chan struct{}, 1),
		euid:    os.Geteuid,
		plugins: map[string]*entry{},
	}
}

// Set replaces the plugins checked. A plugin already in the set keeps its
// last result and streak (its manifest is updated); plugins no longer in
// list are dropped. A plugin with neither health_endpoint nor health_cmd is
// reported unknown. Run checks new plugins without waiting for the next
// round.
func (c *Checker) Set(list []*manifest.Manifest) {
	c.mu.Lock()
	next := make(map[string]*entry, len(list))
	due := false
	for _, m := range list {
		if m == nil {
			continue
		}
		e := c.plugins[m.ID]
		if e == nil {
			e = &entry{sem: make(chan struct{}, 1)}
			alerts.WithLabelValues(m.ID) // exported from 0
		}
		e.m = m
		switch {
		case !hasCheck(m):
			e.res = Result{ID: m.ID, Status: StatusUnknown, Detail: "no health check declared"}
			e.tripped = false
		case e.res.CheckedAt.IsZero():
			e.res = Result{ID: m.ID, Status: StatusUnknown, Detail: "not checked yet"}
			due = true
		}
		next[m.ID] = e
		setGauge(m.ID, e.res.Status)
	}
	for id := range c.plugins {
		if next[id] == nil {
			healthGauge.DeletePartialMatch(prometheus.Labels{"plugin": id})
			alerts.DeleteLabelValues(id)
		}
	}
	c.plugins = next
	c.mu.Unlock()
	if due {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

func hasCheck(m *manifest.Manifest) bool {
	return m.HealthEndpoint != "" || len(m.HealthCmd) > 0
}

// Results returns the last result of every plugin, sorted by id.
func (c *Checker) Results() []Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Result, 0, len(c.plugins))
	for _, e := range c.plugins {
		out = append(out, e.res)
	}
	slices.SortFunc(out, func(a, b Result) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Result returns the last result of plugin id, and whether it is in the set.
func (c *Checker) Result(id string) (Result, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.plugins[id]
	if e == nil {
		return Result{}, false
	}
	return e.res, true
}

// Run checks every plugin each Interval, the checks of a round in
// parallel, until ctx ends; plugins added by Set are checked at once. The
// first round starts immediately.
func (c *Checker) Run(ctx context.Context) {
	t := time.NewTicker(c.opts.Interval)
	defer t.Stop()
	c.round(ctx, false)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.round(ctx, false)
		case <-c.wake:
			c.round(ctx, true)
		}
	}
}

// round checks the plugins (only those never checked when onlyNew) in
// parallel and waits for all. A plugin whose previous check still runs is
// left for the next round.
func (c *Checker) round(ctx context.Context, onlyNew bool) {
	c.mu.Lock()
	var due []*entry
	for _, e := range c.plugins {
		if hasCheck(e.m) && (!onlyNew || e.res.CheckedAt.IsZero()) {
			due = append(due, e)
		}
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, e := range due {
		select {
		case e.sem <- struct{}{}:
		default:
			continue
		}
		wg.Go(func() {
			defer func() { <-e.sem }()
			c.check(ctx, e)
		})
	}
	wg.Wait()
}

// CheckNow checks plugin id at once (waiting for a check of it already
// running) and returns the result. A plugin without a health check gets
// its unknown result.
func (c *Checker) CheckNow(ctx context.Context, id string) (Result, error) {
	c.mu.Lock()
	e := c.plugins[id]
	c.mu.Unlock()
	if e == nil {
		return Result{}, fmt.Errorf("plugin %s is not enabled", id)
	}
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
	defer func() { <-e.sem }()
	return c.check(ctx, e), nil
}

// check runs e's check (the caller holds e.sem) and records its result.
func (c *Checker) check(ctx context.Context, e *entry) Result {
	c.mu.Lock()
	m := e.m
	res := e.res
	c.mu.Unlock()
	if !hasCheck(m) {
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	var status, detail string
	if m.HealthEndpoint != "" {
		status, detail = c.checkHTTP(ctx, m)
	} else {
		status, detail = c.checkCommand(ctx, m)
	}
	return c.record(e, m, status, detail)
}

// record stores a check's outcome, updating the streak, the gauge and, when
// the streak reaches TripAfter, alerting and tripping the breaker.
func (c *Checker) record(e *entry, m *manifest.Manifest, status, detail string) Result {
	c.mu.Lock()
	if c.plugins[m.ID] != e || !hasCheck(e.m) {
		// Dropped from the set, or its check from its manifest, meanwhile.
		c.mu.Unlock()
		return Result{ID: m.ID, Status: status, Detail: detail, CheckedAt: c.opts.Now()}
	}
	prev := e.res
	res := Result{ID: m.ID, Status: status, Detail: detail, CheckedAt: c.opts.Now()}
	trip := false
	if status == StatusError {
		res.ConsecutiveErrors = prev.ConsecutiveErrors + 1
		if res.ConsecutiveErrors >= c.opts.TripAfter && !e.tripped {
			e.tripped, trip = true, true
		}
	}
	recovered := status != StatusError && e.tripped
	if status != StatusError {
		e.tripped = false
	}
	e.res = res
	setGauge(m.ID, status)
	after := c.afterCheck
	c.mu.Unlock()

	if status != prev.Status {
		lvl := slog.LevelInfo
		if status == StatusError || status == StatusDegraded {
			lvl = slog.LevelWarn
		}
		c.log.Log(context.Background(), lvl, "plugin health "+status, "plugin_id", m.ID, "detail", detail, "was", prev.Status)
	}
	if recovered {
		c.log.Info("plugin health recovered", "plugin_id", m.ID, "status", status)
	}
	if trip {
		reason := fmt.Sprintf("health check failed %d times: %s", res.ConsecutiveErrors, detail)
		alerts.WithLabelValues(m.ID).Inc()
		c.log.Error("plugin health alert: "+reason, "plugin_id", m.ID, "alert", "plugin_health", "consecutive_errors", res.ConsecutiveErrors)
		if c.opts.Trip != nil {
			c.opts.Trip(m.ID, reason)
		}
	}
	if after != nil {
		after(m.ID, res)
	}
	return res
}

func setGauge(id, status string) {
	for _, s := range statuses {
		v := 0.0
		if s == status {
			v = 1
		}
		healthGauge.WithLabelValues(id, s).Set(v)
	}
}

// checkHTTP GETs m's health endpoint.
func (c *Checker) checkHTTP(ctx context.Context, m *manifest.Manifest) (status, detail string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.HealthEndpoint, nil)
	if err != nil {
		return StatusError, clip(err.Error())
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "mairust-health")
	resp, err := c.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return StatusError, fmt.Sprintf("no answer within %s", c.opts.Timeout)
		}
		return StatusError, clip(err.Error())
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes))
	if err != nil && ctx.Err() != nil {
		return StatusError, fmt.Sprintf("no complete answer within %s", c.opts.Timeout)
	}
	var answer struct {
		Status string `json:"status"`
		Detail any    `json:"detail"`
	}
	parsed := json.Unmarshal(body, &answer) == nil
	said := ""
	if parsed && answer.Detail != nil {
		if s, ok := answer.Detail.(string); ok {
			said = s
		} else if b, err := json.Marshal(answer.Detail); err == nil {
			said = string(b)
		}
	}
	if resp.StatusCode != http.StatusOK {
		d := "HTTP " + resp.Status
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			d += " (redirects are not followed)"
		}
		if said == "" && !parsed {
			said = firstLine(body)
		}
		if said != "" {
			d += ": " + said
		}
		return StatusError, clip(d)
	}
	if parsed {
		switch s := strings.ToLower(answer.Status); s {
		case StatusDegraded, StatusError:
			return s, clip(said)
		}
	}
	return StatusOK, clip(said)
}

// checkCommand runs m's health command.
func (c *Checker) checkCommand(ctx context.Context, m *manifest.Manifest) (status, detail string) {
	var cred *syscall.Credential
	if c.opts.Credential != nil {
		cred = c.opts.Credential()
	}
	if cred == nil && c.euid() == 0 {
		return StatusError, "health_cmd not run: the agent runs as root and no plugin user is set (Options.Credential)"
	}
	path, err := program(m)
	if err != nil {
		return StatusError, clip(err.Error())
	}
	work := m.Dir
	if c.opts.WorkDir != nil {
		if w := c.opts.WorkDir(m.ID); w != "" {
			work = w
		}
	}
	cmd := exec.CommandContext(ctx, path, m.HealthCmd[1:]...)
	cmd.Dir = work
	cmd.Env = []string{ // never nil: nil would inherit the agent's environment
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"HOME=" + work,
		"LANG=C.UTF-8",
		"MAIRUST_PLUGIN_ID=" + m.ID,
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	cmd.Cancel = func() error { return procgroup.Kill(cmd.Process.Pid) }
	cmd.WaitDelay = waitDelay
	stdout := &headWriter{max: MaxDetailBytes * 2}
	stderr := &headWriter{max: MaxDetailBytes * 2}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		if ctx.Err() != nil {
			return StatusError, fmt.Sprintf("no answer within %s", c.opts.Timeout)
		}
		return StatusError, clip(fmt.Sprintf("starting %s: %v", m.HealthCmd[0], err))
	}
	waitErr := cmd.Wait()
	procgroup.Kill(cmd.Process.Pid) // children left behind
	out := firstLine(stdout.buf)
	var exit *exec.ExitError
	switch {
	case waitErr != nil && ctx.Err() != nil:
		return StatusError, fmt.Sprintf("no answer within %s (killed)", c.opts.Timeout)
	case waitErr == nil, errors.Is(waitErr, exec.ErrWaitDelay):
		// ErrWaitDelay: it exited 0 but a child held its output open.
		return StatusOK, clip(out)
	case errors.As(waitErr, &exit) && exit.ExitCode() == 1:
		return StatusDegraded, clip(out)
	}
	d := waitErr.Error()
	if out == "" {
		out = firstLine(stderr.buf)
	}
	if out != "" {
		d += ": " + out
	}
	return StatusError, clip(d)
}

// program resolves the health command's program inside the plugin
// directory, symbolic links included.
func program(m *manifest.Manifest) (string, error) {
	if len(m.HealthCmd) == 0 || m.HealthCmd[0] == "" {
		return "", errors.New("health_cmd names no program")
	}
	path, err := m.LocalPath(m.HealthCmd[0])
	if err != nil {
		return "", fmt.Errorf("health_cmd: %w", err)
	}
	return path, nil
}

// headWriter keeps the first max bytes written to it and discards the rest.
type headWriter struct {
	buf []byte
	max int
}

func (w *headWriter) Write(p []byte) (int, error) {
	if room := w.max - len(w.buf); room > 0 {
		w.buf = append(w.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// firstLine is the first non-empty line of b, trimmed.
func firstLine(b []byte) string {
	for l := range bytes.SplitSeq(b, []byte("\n")) {
		if s := strings.TrimSpace(string(l)); s != "" {
			return s
		}
	}
	return ""
}

// clip makes s valid UTF-8 of at most MaxDetailBytes.
func clip(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= MaxDetailBytes {
		return s
	}
	cut := MaxDetailBytes - len("…")
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
