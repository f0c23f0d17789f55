package runner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mairust/mairust/agent/hooks/netpolicy"
	"github.com/mairust/mairust/agent/plugins/manifest"
	"github.com/mairust/mairust/agent/plugins/sdk"
	"github.com/mairust/mairust/agent/plugins/sdk/process"
	"github.com/mairust/mairust/internal/procgroup"
	pluginv1 "github.com/mairust/mairust/proto/plugin/v1"
)

// StartTimeout bounds the start of a process plugin, up to its handshake.
// A call that starts the plugin waits for the start, then has the plugin's
// timeout for its answer.
const StartTimeout = 10 * time.Second

// ErrClosed is the cause of the Failure of a call to a closed [Process].
var ErrClosed = errors.New("plugin runner closed")

// ProcessOptions is how a process plugin's process runs.
type ProcessOptions struct {
	WorkDir    string              // working directory and HOME; the plugin's directory if empty
	Credential *syscall.Credential // run as this user and group (set when the agent runs as root)
	Log        io.Writer           // if set, gets the plugin's standard output and error and go-plugin's warnings
	// Network is enforced on the process (see netpolicy).
	Network netpolicy.Enforcement
	Nice    int // the process's nice value (0-19)
}

// Process calls a process plugin: a long-running program started on first
// use through hashicorp/go-plugin (gRPC, mutual TLS on a Unix socket) and
// kept for the calls that follow. It runs in its own process group with a
// minimal environment; the manifest's sha256, if any, is checked before
// each start. A process found dead fails the call that finds it (a crash)
// and is started again by the next call. Safe for concurrent use; Close
// stops the process.
type Process struct {
	m    *manifest.Manifest
	opts ProcessOptions
	log  io.Writer // opts.Log made safe for concurrent writes, or io.Discard

	mu     sync.Mutex
	closed bool
	cur    *proc // the running process, or nil
}

var _ Runner = (*Process)(nil)

// proc is one started plugin process.
type proc struct {
	client  *plugin.Client
	cmd     *exec.Cmd
	rpc     pluginv1.PluginClient
	sockDir string
}

// NewProcess returns the runner of m, a process plugin loaded from its
// directory. The process starts on the first call.
func NewProcess(m *manifest.Manifest, opts ProcessOptions) (*Process, error) {
	if m.Kind != manifest.KindProcess {
		return nil, fmt.Errorf("plugin %s: kind %q is not %q", m.ID, m.Kind, manifest.KindProcess)
	}
	if m.Dir == "" {
		return nil, fmt.Errorf("plugin %s: no plugin directory (the manifest was not loaded from one)", m.ID)
	}
	if m.Timeout <= 0 {
		return nil, fmt.Errorf("plugin %s: no timeout", m.ID)
	}
	if m.SHA256 != "" {
		if _, err := hex.DecodeString(m.SHA256); err != nil || len(m.SHA256) != 2*sha256.Size {
			return nil, fmt.Errorf("plugin %s: sha256 %q is not a SHA-256 in hex", m.ID, m.SHA256)
		}
	}
	if opts.WorkDir == "" {
		opts.WorkDir = m.Dir
	}
	if _, err := localCommand(m); err != nil {
		return nil, err
	}
	p := &Process{m: m, opts: opts, log: io.Discard}
	if opts.Log != nil {
		p.log = &syncWriter{w: opts.Log}
	}
	return p, nil
}

// Run sends ev to the plugin, starting it if it is not running.
func (p *Process) Run(ctx context.Context, ev sdk.Event) (sdk.Result, error) {
	m := p.m
	in, err := json.Marshal(ev)
	if err != nil {
		return sdk.Result{}, fmt.Errorf("plugin %s: encoding the event: %w", m.ID, err)
	}
	pr, err := p.get()
	if err != nil {
		return sdk.Result{}, err
	}
	ctx, stop := context.WithTimeoutCause(ctx, m.Timeout, errTimeout)
	defer stop()
	reply, err := pr.rpc.PostReceive(ctx, &pluginv1.EventRequest{EventJson: in})
	if err != nil {
		return sdk.Result{}, p.callFailure(ctx, pr, err)
	}
	res, err := sdk.DecodeResult(bytes.NewReader(reply.GetResultJson()), sdk.MaxResultBytes)
	if err != nil {
		return sdk.Result{}, &Failure{Plugin: m.ID, Reason: ReasonGarbage,
			Err: fmt.Errorf("%w; answer %s", err, excerpt(reply.GetResultJson(), 200))}
	}
	return res, nil
}

// Health asks the plugin for its health, starting it if it is not running:
// status is "ok", "degraded" or "error", detail a short explanation. The
// error is a *Failure when the plugin did not answer (ctx and the plugin's
// timeout bound the call).
func (p *Process) Health(ctx context.Context) (status, detail string, err error) {
	pr, err := p.get()
	if err != nil {
		return "", "", err
	}
	ctx, stop := context.WithTimeoutCause(ctx, p.m.Timeout, errTimeout)
	defer stop()
	r, err := pr.rpc.Health(ctx, &pluginv1.HealthRequest{})
	if err != nil {
		return "", "", p.callFailure(ctx, pr, err)
	}
	switch r.GetStatus() {
	case pluginv1.HealthReply_STATUS_OK:
		return process.StatusOK, r.GetDetail(), nil
	case pluginv1.HealthReply_STATUS_DEGRADED:
		return process.StatusDegraded, r.GetDetail(), nil
	case pluginv1.HealthReply_STATUS_ERROR:
		return process.StatusError, r.GetDetail(), nil
	}
	return process.StatusError, fmt.Sprintf("unknown health status %v: %s", r.GetStatus(), r.GetDetail()), nil
}

// Close stops the plugin's process: a graceful shutdown, then SIGKILL to
// its process group (within stopGrace). Later calls fail.
func (p *Process) Close() error {
	p.mu.Lock()
	pr := p.cur
	p.cur, p.closed = nil, true
	p.mu.Unlock()
	if pr != nil {
		pr.stop()
	}
	return nil
}

// pid is the running process's id, or 0 (for tests).
func (p *Process) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil || p.cur.cmd.Process == nil {
		return 0
	}
	return p.cur.cmd.Process.Pid
}

// get returns the running process, starting one if there is none. A
// process that has exited is cleared and its crash returned.
func (p *Process) get() (*proc, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, &Failure{Plugin: p.m.ID, Reason: ReasonBroken, Err: ErrClosed}
	}
	if pr := p.cur; pr != nil && pr.client.Exited() {
		p.cur = nil
		pr.stop() // quick: it has exited
		return nil, fail(p.m.ID, ReasonCrash, "the plugin process %d had exited (%v); it starts again on the next call",
			pr.cmd.Process.Pid, pr.cmd.ProcessState)
	}
	if p.cur == nil {
		pr, err := p.start()
		if err != nil {
			return nil, err
		}
		p.cur = pr
	}
	return p.cur, nil
}

// callFailure classifies the failed call err on pr, dropping pr when its
// process is gone.
func (p *Process) callFailure(ctx context.Context, pr *proc, err error) error {
	m := p.m
	if ctx.Err() != nil {
		return ctxFailure(ctx, m.ID, m.Timeout.String())
	}
	st := status.Convert(err)
	switch st.Code() {
	case codes.DeadlineExceeded, codes.Canceled:
		// The deadline, passed on to the plugin, ended the call there a
		// moment before it ended here.
		return &Failure{Plugin: m.ID, Reason: ReasonTimeout,
			Err: fmt.Errorf("no answer in time (plugin timeout %s): %w", m.Timeout, context.DeadlineExceeded)}
	case codes.Unavailable:
		// The connection broke: the process died during the call.
		p.drop(pr)
		return fail(m.ID, ReasonCrash, "the plugin process died during the call (%s); it starts again on the next call", st.Message())
	case codes.ResourceExhausted:
		return fail(m.ID, ReasonFlood, "%s (an answer is at most %d bytes)", st.Message(), sdk.MaxResultBytes)
	}
	// The plugin answered an error, as a stdin plugin exits non-zero.
	return fail(m.ID, ReasonCrash, "the plugin answered an error: %s: %s", st.Code(), st.Message())
}

// drop stops pr unless another call has already replaced it.
func (p *Process) drop(pr *proc) {
	p.mu.Lock()
	mine := p.cur == pr
	if mine {
		p.cur = nil
	}
	p.mu.Unlock()
	if mine {
		pr.stop()
	}
}

// start starts the plugin's process and connects to it.
func (p *Process) start() (*proc, error) {
	m := p.m
	path, err := localCommand(m)
	if err != nil {
		return nil, err
	}
	// The plugin's socket goes in a directory of its own, removed when the
	// process stops even if the plugin could not remove it.
	sockDir, err := os.MkdirTemp("", "mairust-plugin-")
	if err != nil {
		return nil, fmt.Errorf("plugin %s: socket directory: %w", m.ID, err)
	}
	if c := p.opts.Credential; c != nil {
		if err := os.Chown(sockDir, int(c.Uid), int(c.Gid)); err != nil {
			os.Remove(sockDir)
			return nil, fmt.Errorf("plugin %s: socket directory: %w", m.ID, err)
		}
	}

	cmd := exec.Command(path, m.Args...)
	cmd.Dir = p.opts.WorkDir
	cmd.Env = []string{ // go-plugin adds its handshake variables
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"HOME=" + p.opts.WorkDir,
		"LANG=C.UTF-8",
		"MAIRUST_PLUGIN_ID=" + m.ID,
		plugin.EnvUnixSocketDir + "=" + sockDir,
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: p.opts.Credential}
	netpolicy.Apply(p.opts.Network, cmd.SysProcAttr)
	cfg := &plugin.ClientConfig{
		HandshakeConfig:  process.Handshake,
		Plugins:          plugin.PluginSet{process.PluginName: &process.GRPCPlugin{}},
		Cmd:              cmd,
		SkipHostEnv:      true, // never the agent's environment
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     StartTimeout,
		Stderr:           p.log,
		SyncStdout:       p.log,
		SyncStderr:       p.log,
		Logger: hostLogger{hclog.New(&hclog.LoggerOptions{Name: "plugin." + m.ID, Output: p.log, Level: hclog.Warn}),
			filepath.Base(path)},
		GRPCDialOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(process.MaxReplyBytes), grpc.MaxCallSendMsgSize(process.MaxRequestBytes))},
	}
	if m.SHA256 != "" {
		sum, _ := hex.DecodeString(m.SHA256) // checked by NewProcess
		cfg.SecureConfig = &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()}
	}
	pr := &proc{client: plugin.NewClient(cfg), cmd: cmd, sockDir: sockDir}
	if err := netpolicy.Run(p.opts.Network, p.opts.Nice, pr.connect); err != nil {
		pr.stop()
		if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
			sum, _ := manifest.FileSHA256(path)
			return nil, fail(m.ID, ReasonBroken, "command %s has sha256 %s, the manifest expects %s (the file changed after install?); not started", m.Command, sum, m.SHA256)
		}
		return nil, fail(m.ID, ReasonBroken, "starting %s: %w", m.Command, err)
	}
	return pr, nil
}

// connect starts the process, connects and dispenses the plugin client.
func (pr *proc) connect() error {
	c, err := pr.client.Client()
	if err != nil {
		return err
	}
	raw, err := c.Dispense(process.PluginName)
	if err != nil {
		return err
	}
	rpc, ok := raw.(pluginv1.PluginClient)
	if !ok {
		return fmt.Errorf("dispensed %T, not a plugin client", raw)
	}
	pr.rpc = rpc
	return nil
}

// stopGrace bounds the graceful end of a plugin process: go-plugin waits
// two seconds for it to exit, then kills it and waits for its output pipes,
// which a child left behind may hold; the process group is killed then.
const stopGrace = 3 * time.Second

// stop ends the process, kills what is left of its process group and
// removes its socket directory.
func (pr *proc) stop() {
	if pr.cmd.Process != nil {
		t := time.AfterFunc(stopGrace, func() { procgroup.Kill(pr.cmd.Process.Pid) })
		defer procgroup.Kill(pr.cmd.Process.Pid)
		defer t.Stop()
	}
	pr.client.Kill()
	os.RemoveAll(pr.sockDir)
}

// localCommand resolves m's command inside its directory.
func localCommand(m *manifest.Manifest) (string, error) {
	path, err := m.LocalPath(m.Command)
	if err != nil {
		return "", fail(m.ID, ReasonBroken, "command: %w", err)
	}
	return path, nil
}

// hostLogger is go-plugin's logger without its copy of the plugin's
// standard error (logged under the command's base name), which goes whole
// to Stderr.
type hostLogger struct {
	hclog.Logger
	stderrName string
}

func (l hostLogger) Named(name string) hclog.Logger {
	if name == l.stderrName {
		return hclog.New(&hclog.LoggerOptions{Output: io.Discard, Level: hclog.Off})
	}
	return hostLogger{Logger: l.Logger.Named(name)}
}

// syncWriter serializes writes to w, which go-plugin makes from several
// goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}
