// Package hooks runs the plugins' hooks. For post_receive it enqueues one
// River job per stored message and subscribed plugin, in the transaction
// that stores the message; the job builds the event the plugin may see,
// calls the plugin through its runner behind its circuit breaker, and
// applies what it answers (tags, a move, metadata) in one transaction with
// the job's completion. It does not install plugins (package plugins) or
// read manifests (package manifest).
package hooks

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"

	"github.com/mairust/mairust/agent/blobstore"
	"github.com/mairust/mairust/agent/hooks/breaker"
	"github.com/mairust/mairust/agent/hooks/health"
	"github.com/mairust/mairust/agent/hooks/netpolicy"
	"github.com/mairust/mairust/agent/hooks/pluginlog"
	"github.com/mairust/mairust/agent/hooks/runner"
	"github.com/mairust/mairust/agent/mailstore"
	"github.com/mairust/mairust/agent/plugins"
	"github.com/mairust/mairust/agent/plugins/manifest"
	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/jobs"
	"github.com/mairust/mairust/internal/sysuser"
)

var (
	calls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mairust", Subsystem: "plugin", Name: "calls_total",
		Help: "Plugin calls by plugin and result: ok, or the failure reason (timeout, crash, garbage, flood, refused, unreachable, broken, permission).",
	}, []string{"plugin", "result"})
	callSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "mairust", Subsystem: "plugin", Name: "call_seconds",
		Help:    "Duration of plugin calls.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"plugin"})
	skipped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mairust", Subsystem: "plugin", Name: "skipped_total",
		Help: "Hook jobs not run, by plugin and reason: breaker_open, not_enabled.",
	}, []string{"plugin", "reason"})
	permanentFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mairust", Subsystem: "plugin", Name: "permanent_failures_total",
		Help: "Hook jobs that failed their last retry (permanent-failed), by plugin.",
	}, []string{"plugin"})
	breakerOpen = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "mairust", Subsystem: "plugin", Name: "breaker_open",
		Help: "1 while a plugin's circuit breaker is open or half-open.",
	}, []string{"plugin"})
)

// Collectors returns the package's metrics for registration.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{calls, callSeconds, skipped, permanentFailures, breakerOpen}
}

// Queue is the River queue hook jobs run in, apart from the agent's other
// jobs (plugins.workers at once).
const Queue = "hooks"

// Manager holds the enabled plugins and their breakers.
type Manager struct {
	pool     *pgxpool.Pool
	store    *mailstore.Store
	blobs    blobstore.Store
	log      *slog.Logger
	breakers *breaker.Set
	settings atomic.Pointer[config.Plugins]
	waits    atomic.Pointer[[]time.Duration] // plugins.retry_backoff, parsed
	jobs     atomic.Pointer[jobs.Client]

	health  *health.Checker
	baseLog *slog.Logger // without component, for the plugins' merged logs

	mu      sync.RWMutex
	enabled map[string]*plugin

	userMu sync.Mutex
	user   *syscall.Credential // see pluginUser

	logMu sync.Mutex
	logs  map[string]*pluginlog.Writer // kept across reloads
}

// plugin is an enabled plugin ready to call.
type plugin struct {
	installed plugins.Installed
	run       runner.Runner
	network   netpolicy.Enforcement
}

// New returns a manager; Load reads the plugins, Start gives it the River
// client it enqueues with.
func New(cfg config.Plugins, pool *pgxpool.Pool, store *mailstore.Store, blobs blobstore.Store, log *slog.Logger) *Manager {
	m := &Manager{pool: pool, store: store, blobs: blobs, log: log.With("component", "hooks"), baseLog: log,
		enabled: map[string]*plugin{}, logs: map[string]*pluginlog.Writer{}}
	m.keepSettings(cfg)
	m.breakers = breaker.New(breakerSettings(cfg), nil)
	m.breakers.OnChange(func(st breaker.Status) {
		open := 0.0
		if st.State != breaker.Closed {
			open = 1
		}
		breakerOpen.WithLabelValues(st.ID).Set(open)
		m.log.Warn("plugin circuit breaker "+string(st.State), "plugin_id", st.ID, "reason", st.Reason)
	})
	m.health = health.New(health.Options{
		Log: log, Trip: m.breakers.Trip,
		Credential: func() *syscall.Credential {
			cred, err := m.pluginUser()
			if err != nil {
				m.log.Error("plugin health command not run", "error", err)
			}
			return cred
		},
		WorkDir: func(id string) string {
			d := filepath.Join(m.settings.Load().WorkDir, id)
			if fi, err := os.Stat(d); err == nil && fi.IsDir() {
				return d
			}
			return "" // the plugin's own directory (http plugins have no working directory)
		},
	})
	return m
}

// pluginUser is the user plugin processes run as: nil unless the agent
// runs as root; then plugins.run_as, created the first time a plugin
// needs it (not at start), and remembered.
func (m *Manager) pluginUser() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	m.userMu.Lock()
	defer m.userMu.Unlock()
	if m.user == nil {
		c, err := sysuser.Ensure(m.settings.Load().RunAs)
		if err != nil {
			return nil, fmt.Errorf("plugins.run_as: %w", err)
		}
		m.user = c
	}
	return m.user, nil
}

// RunHealth polls the plugins' health checks until ctx ends.
func (m *Manager) RunHealth(ctx context.Context) { m.health.Run(ctx) }

// Health returns the last health check of every enabled plugin.
func (m *Manager) Health() []health.Result { return m.health.Results() }

func breakerSettings(c config.Plugins) breaker.Settings {
	return breaker.Settings{
		ConsecutiveFailures: c.BreakerFailures, FailureRate: c.BreakerFailureRate,
		Window: c.BreakerWindow, MinCalls: c.BreakerMinCalls, CoolDown: c.BreakerCoolDown,
	}
}

// Apply takes the settings that change live (retries, breaker thresholds).
func (m *Manager) Apply(cfg config.Plugins) {
	m.keepSettings(cfg)
	m.breakers.Apply(breakerSettings(cfg))
}

// Register adds the hook workers.
func (m *Manager) Register(w *river.Workers) {
	river.AddWorker(w, &postReceiveWorker{m: m})
}

// Start gives the manager the River client and, when some enabled plugin
// has a post_receive hook, hooks it into deliveries.
func (m *Manager) Start(client *jobs.Client) {
	m.jobs.Store(client)
	m.hookDeliveries()
}

// Load reads the enabled plugins and prepares their runners; a plugin that
// cannot be prepared is logged and left out. Called at start and on reload.
func (m *Manager) Load(ctx context.Context) error {
	list, err := plugins.Enabled(ctx, m.pool)
	if err != nil {
		return err
	}
	cfg := m.settings.Load()
	m.mu.RLock()
	prev := m.enabled
	m.mu.RUnlock()
	next := map[string]*plugin{}
	for _, p := range list {
		if old := prev[p.ID()]; old != nil && sameRuntime(old.installed, p) {
			next[p.ID()] = &plugin{installed: p, run: old.run, network: old.network} // a running process stays
			continue
		}
		netw, err := netpolicy.For(p.Manifest.Network, os.Geteuid() == 0, cfg.AllowUnlimitedNetwork)
		if err != nil {
			m.log.Error("plugin not loaded", "plugin_id", p.ID(), "error", err)
			continue
		}
		run, err := m.runner(p, cfg, netw)
		if err != nil {
			m.log.Error("plugin not loaded", "plugin_id", p.ID(), "error", err)
			continue
		}
		m.log.Info("plugin loaded", "plugin_id", p.ID(), "kind", p.Manifest.Kind, "network", netw.String())
		next[p.ID()] = &plugin{installed: p, run: run, network: netw}
	}
	m.mu.Lock()
	m.enabled = next
	m.mu.Unlock()
	for id, old := range prev {
		if p := next[id]; p == nil || p.run != old.run {
			closeRunner(old.run)
		}
	}
	mfs := make([]*manifest.Manifest, 0, len(next))
	for _, p := range next {
		mfs = append(mfs, p.installed.Manifest)
	}
	m.health.Set(mfs)
	m.hookDeliveries()
	return nil
}

// sameRuntime reports whether a reloaded plugin can keep its runner: the
// same files, command, address, secret and limits.
func sameRuntime(a, b plugins.Installed) bool {
	x, y := a.Manifest, b.Manifest
	return x.Kind == y.Kind && x.Dir == y.Dir && x.Command == y.Command && slices.Equal(x.Args, y.Args) &&
		x.SHA256 == y.SHA256 && x.URL == y.URL && x.Timeout == y.Timeout && x.Network == y.Network &&
		string(a.Secret) == string(b.Secret)
}

// closeRunner stops a runner that holds a process.
func closeRunner(r runner.Runner) {
	if c, ok := r.(io.Closer); ok {
		c.Close()
	}
}

// Close stops the plugins' processes.
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.enabled {
		closeRunner(p.run)
	}
	m.enabled = map[string]*plugin{}
}

// runner prepares the runner of one plugin: its working directory, log
// file and, when the agent runs as root, the user it runs as.
func (m *Manager) runner(p plugins.Installed, cfg *config.Plugins, netw netpolicy.Enforcement) (runner.Runner, error) {
	mf := p.Manifest
	if mf.Kind == manifest.KindHTTP {
		return runner.NewHTTP(mf, p.Secret, &http.Client{})
	}
	// stdin and process plugins: a working directory of their own, their
	// log, and when the agent runs as root, the user they run as.
	// The parent is traversable so that the plugin's user reaches its
	// own 0700 directory.
	if err := os.MkdirAll(cfg.WorkDir, 0o711); err != nil {
		return nil, err
	}
	work := filepath.Join(cfg.WorkDir, mf.ID)
	if err := os.Mkdir(work, 0o700); err != nil && !os.IsExist(err) {
		return nil, err
	}
	cred, err := m.pluginUser()
	if err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(work, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
		for _, d := range []string{mf.Dir, work} {
			if err := reachable(filepath.Dir(d)); err != nil {
				return nil, fmt.Errorf("plugins.run_as %s cannot reach %s: %w", cfg.RunAs, d, err)
			}
		}
	}
	log, err := m.pluginLog(cfg.LogDir, mf.ID)
	if err != nil {
		return nil, err
	}
	switch mf.Kind {
	case manifest.KindStdin:
		return runner.NewStdin(mf, runner.StdinOptions{WorkDir: work, Credential: cred, Log: log, Network: netw, Nice: cfg.Nice})
	case manifest.KindProcess:
		return runner.NewProcess(mf, runner.ProcessOptions{WorkDir: work, Credential: cred, Log: log, Network: netw, Nice: cfg.Nice})
	}
	return nil, fmt.Errorf("plugin kind %s is not supported by this agent yet", mf.Kind)
}

// reachable checks that every directory from dir up to / lets others pass
// through (o+x), so that the plugin's user reaches what is below.
func reachable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s is %v; make it passable with chmod o+x %s (mairust aio keeps data_dir at 0711)", d, fi.Mode().Perm(), d)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// pluginLog returns the plugin's log writer, the same one across reloads
// so that calls under way never write to a closed file.
func (m *Manager) pluginLog(dir, id string) (*pluginlog.Writer, error) {
	m.logMu.Lock()
	defer m.logMu.Unlock()
	if w := m.logs[id]; w != nil {
		return w, nil
	}
	var merge *slog.Logger
	if m.settings.Load().MergeLogs {
		merge = m.baseLog
	}
	w, err := pluginlog.Open(dir, id, pluginlog.Options{Merge: merge})
	if err == nil {
		m.logs[id] = w
	}
	return w, err
}

// subscribed returns the enabled plugins with hook h.
func (m *Manager) subscribed(h manifest.Hook) []*plugin {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []*plugin
	for _, p := range m.enabled {
		for _, x := range p.installed.Manifest.Hooks {
			if x == h {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// get returns an enabled plugin, or nil.
func (m *Manager) get(id string) *plugin {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.enabled[id]
}

// hookDeliveries makes deliveries enqueue post_receive jobs while some
// enabled plugin wants them, and costs them nothing otherwise.
func (m *Manager) hookDeliveries() {
	if m.jobs.Load() == nil || len(m.subscribed(manifest.PostReceive)) == 0 {
		m.store.OnDeliver(nil)
		return
	}
	m.store.OnDeliver(m.enqueue)
}

// enqueue is the delivery hook: post_receive jobs for each subscribed
// plugin, of up to maxBatch of the messages each, in the delivery's
// transaction.
func (m *Manager) enqueue(ctx context.Context, tx pgx.Tx, ids []int64) error {
	subs := m.subscribed(manifest.PostReceive)
	if len(subs) == 0 {
		return nil
	}
	opts := &river.InsertOpts{Queue: Queue, MaxAttempts: m.settings.Load().Retries + 1}
	params := make([]river.InsertManyParams, 0, len(subs)*(len(ids)/maxBatch+1))
	for chunk := range slices.Chunk(ids, maxBatch) {
		for _, p := range subs {
			params = append(params, river.InsertManyParams{Args: PostReceiveArgs{MessageIDs: chunk, PluginID: p.installed.ID()}, InsertOpts: opts})
		}
	}
	_, err := m.jobs.Load().InsertManyTx(ctx, tx, params)
	return err
}

// PluginStatus is one plugin's state for the admin API.
type PluginStatus struct {
	ID      string         `json:"id"`
	Name    string         `json:"name"`
	Version string         `json:"version"`
	Kind    string         `json:"kind"`
	Enabled bool           `json:"enabled"`
	Loaded  bool           `json:"loaded"`            // running in this agent (enabled and ready)
	Network string         `json:"network,omitempty"` // how its network mode is enforced here
	Breaker breaker.Status `json:"breaker"`
	Health  *health.Result `json:"health,omitempty"` // its last health check, when loaded
	// Recalled is the marketplace's reason when it recalled this version:
	// the plugin was found dangerous, disable or remove it.
	Recalled string `json:"recalled,omitempty"`
}

// Statuses lists every installed plugin with its breaker.
func (m *Manager) Statuses(ctx context.Context) ([]PluginStatus, error) {
	list, err := plugins.List(ctx, m.pool)
	if err != nil {
		return nil, err
	}
	recalls := map[[2]string]string{}
	rows, _ := m.pool.Query(ctx, `SELECT plugin_id, version, reason FROM plugin_recalls`)
	var id, version, reason string
	if _, err := pgx.ForEachRow(rows, []any{&id, &version, &reason}, func() error { recalls[[2]string{id, version}] = reason; return nil }); err != nil {
		return nil, err
	}
	out := make([]PluginStatus, len(list))
	for i, p := range list {
		mf := p.Manifest
		out[i] = PluginStatus{ID: mf.ID, Name: mf.Name, Version: mf.Version.String(), Kind: string(mf.Kind), Enabled: p.Enabled, Breaker: m.breakers.Status(mf.ID)}
		if lp := m.get(mf.ID); lp != nil {
			out[i].Loaded, out[i].Network = true, lp.network.String()
		}
		if r, ok := m.health.Result(mf.ID); ok {
			out[i].Health = &r
		}
		if reason, ok := recalls[[2]string{mf.ID, ""}]; ok {
			out[i].Recalled = reason
		} else if reason, ok := recalls[[2]string{mf.ID, mf.Version.String()}]; ok {
			out[i].Recalled = reason
		}
	}
	return out, nil
}

// SetEnabled enables or disables an installed plugin and reloads.
func (m *Manager) SetEnabled(ctx context.Context, id string, on bool) error {
	if err := plugins.SetEnabled(ctx, m.pool, id, on); err != nil {
		return err
	}
	return m.Load(ctx)
}

// Logs returns the last lines of a plugin's log.
func (m *Manager) Logs(id string, lines int) ([]string, error) {
	return pluginlog.Tail(m.settings.Load().LogDir, id, lines)
}

// ResetBreaker closes a plugin's breaker by hand (an admin re-enables it).
func (m *Manager) ResetBreaker(id string) {
	m.breakers.Reset(id)
	m.log.Info("plugin circuit breaker reset by an admin", "plugin_id", id)
}

// keepSettings keeps cfg and its retry waits, parsed once (config validation
// has checked them).
func (m *Manager) keepSettings(cfg config.Plugins) {
	waits, err := config.ParseBackoff(cfg.RetryBackoff)
	if err != nil || len(waits) == 0 {
		waits = []time.Duration{time.Minute}
	}
	m.settings.Store(&cfg)
	m.waits.Store(&waits)
}

// backoff is the wait before retry number attempt (1-based).
func (m *Manager) backoff(attempt int) time.Duration {
	waits := *m.waits.Load()
	return waits[min(max(attempt, 1), len(waits))-1]
}
