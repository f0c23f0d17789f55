package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/mairust/mairust/agent/hooks/netpolicy"
	"github.com/mairust/mairust/agent/plugins/manifest"
	"github.com/mairust/mairust/agent/plugins/sdk"
	"github.com/mairust/mairust/internal/procgroup"
)

// StderrTailBytes is how much of the end of a stdin plugin's standard error
// is kept.
const StderrTailBytes = 64 << 10

// waitDelay bounds the wait for a plugin's output pipes once it has exited
// or been killed (a child outside its process group may hold them open).
const waitDelay = 500 * time.Millisecond

// StdinOptions is how a stdin plugin's process runs.
type StdinOptions struct {
	WorkDir    string              // working directory and HOME; the plugin's directory if empty
	Credential *syscall.Credential // run as this user and group (set when the agent runs as root)
	Log        io.Writer           // if set, gets the tail of each run's standard error in one Write

	// Network is how the plugin's network mode is enforced (see
	// netpolicy.For); the zero value changes nothing.
	Network netpolicy.Enforcement
	Nice    int // the command's nice value (0-19)
}

// Stdin runs a stdin plugin's command once per event: the event as JSON on
// its standard input, the result as JSON on its standard output. The
// command runs in its own process group with a minimal environment; the
// whole group is killed when the run ends, times out or floods its output.
// With StdinOptions.Network it starts in the network namespace its mode
// calls for. Safe for concurrent use.
type Stdin struct {
	m    *manifest.Manifest
	opts StdinOptions
}

var _ Runner = (*Stdin)(nil)

// NewStdin returns the runner of m, a stdin plugin loaded from its directory.
func NewStdin(m *manifest.Manifest, opts StdinOptions) (*Stdin, error) {
	if m.Kind != manifest.KindStdin {
		return nil, fmt.Errorf("plugin %s: kind %q is not %q", m.ID, m.Kind, manifest.KindStdin)
	}
	if m.Dir == "" {
		return nil, fmt.Errorf("plugin %s: no plugin directory (the manifest was not loaded from one)", m.ID)
	}
	if m.Timeout <= 0 {
		return nil, fmt.Errorf("plugin %s: no timeout", m.ID)
	}
	if opts.WorkDir == "" {
		opts.WorkDir = m.Dir
	}
	s := &Stdin{m: m, opts: opts}
	if _, err := s.command(); err != nil {
		return nil, err
	}
	return s, nil
}

// command resolves the command inside the plugin directory, symbolic links
// included, and checks its checksum if the manifest has one.
func (s *Stdin) command() (string, error) {
	m := s.m
	path, err := localCommand(m)
	if err != nil {
		return "", err
	}
	if m.SHA256 != "" {
		sum, err := manifest.FileSHA256(path)
		if err != nil {
			return "", fail(m.ID, ReasonBroken, "command checksum: %w", err)
		}
		if sum != m.SHA256 {
			return "", fail(m.ID, ReasonBroken, "command %s has sha256 %s, the manifest expects %s (the file changed after install?)", m.Command, sum, m.SHA256)
		}
	}
	return path, nil
}

// errFlood is the cause of a run's context when the plugin floods its output.
var errFlood = errors.New("plugin output over the limit")

// Run runs the command with ev on its standard input.
func (s *Stdin) Run(ctx context.Context, ev sdk.Event) (sdk.Result, error) {
	m := s.m
	path, err := s.command()
	if err != nil {
		return sdk.Result{}, err
	}
	in, err := json.Marshal(ev)
	if err != nil {
		return sdk.Result{}, fmt.Errorf("plugin %s: encoding the event: %w", m.ID, err)
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ctx, stop := context.WithTimeoutCause(ctx, m.Timeout, errTimeout)
	defer stop()

	cmd := exec.CommandContext(ctx, path, m.Args...)
	cmd.Dir = s.opts.WorkDir
	cmd.Env = []string{ // never nil: nil would inherit the agent's environment
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"HOME=" + s.opts.WorkDir,
		"LANG=C.UTF-8",
		"MAIRUST_PLUGIN_ID=" + m.ID,
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: s.opts.Credential}
	cmd.Cancel = func() error { return procgroup.Kill(cmd.Process.Pid) }
	cmd.WaitDelay = waitDelay
	cmd.Stdin = bytes.NewReader(in)
	stdout := &capWriter{max: sdk.MaxResultBytes, over: func() { cancel(errFlood) }}
	stderr := &tailWriter{max: StderrTailBytes}
	cmd.Stdout, cmd.Stderr = stdout, stderr

	if err := netpolicy.Start(s.opts.Network, s.opts.Nice, cmd); err != nil {
		if ctx.Err() != nil {
			return sdk.Result{}, ctxFailure(ctx, m.ID, m.Timeout.String())
		}
		return sdk.Result{}, fail(m.ID, ReasonBroken, "starting %s: %w", m.Command, err)
	}
	waitErr := cmd.Wait()
	procgroup.Kill(cmd.Process.Pid) // children left behind
	if s.opts.Log != nil && stderr.total > 0 {
		s.opts.Log.Write(stderr.bytes())
	}

	switch {
	case stdout.flooded:
		return sdk.Result{}, fail(m.ID, ReasonFlood, "more than %d bytes on standard output, killed", sdk.MaxResultBytes)
	case waitErr != nil && ctx.Err() != nil:
		return sdk.Result{}, ctxFailure(ctx, m.ID, m.Timeout.String())
	case waitErr != nil && !errors.Is(waitErr, exec.ErrWaitDelay):
		// ErrWaitDelay: it exited 0 but a child held its output open; its
		// own output is complete.
		return sdk.Result{}, fail(m.ID, ReasonCrash, "%v%s", waitErr, stderr.excerpt())
	}
	res, err := sdk.DecodeResult(bytes.NewReader(stdout.buf.Bytes()), sdk.MaxResultBytes)
	if err != nil {
		return sdk.Result{}, &Failure{Plugin: m.ID, Reason: ReasonGarbage,
			Err: fmt.Errorf("%w; output %s", err, excerpt(stdout.buf.Bytes(), 200))}
	}
	return res, nil
}

// capWriter keeps up to max bytes; past that it calls over once and fails.
type capWriter struct {
	buf     bytes.Buffer
	max     int
	flooded bool
	over    func()
}

func (w *capWriter) Write(p []byte) (int, error) {
	if w.buf.Len()+len(p) > w.max {
		if !w.flooded {
			w.flooded = true
			w.over()
		}
		return 0, errFlood
	}
	return w.buf.Write(p)
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	buf   []byte
	max   int
	total int64
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.total += int64(len(p))
	if len(p) >= w.max {
		w.buf = append(w.buf[:0], p[len(p)-w.max:]...)
		return len(p), nil
	}
	if drop := len(w.buf) + len(p) - w.max; drop > 0 {
		w.buf = append(w.buf[:0], w.buf[drop:]...)
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

// bytes is the tail, after a note of how much was dropped.
func (w *tailWriter) bytes() []byte {
	if dropped := w.total - int64(len(w.buf)); dropped > 0 {
		return append(fmt.Appendf(nil, "[%d bytes of standard error dropped]\n", dropped), w.buf...)
	}
	return w.buf
}

// excerpt is the end of standard error for an error message, or "".
func (w *tailWriter) excerpt() string {
	const n = 1024
	t := strings.TrimSpace(strings.ToValidUTF8(string(w.buf[max(len(w.buf)-n, 0):]), "\uFFFD"))
	if t == "" {
		return "; no standard error"
	}
	if w.total > int64(n) {
		t = "..." + t
	}
	return "; standard error: " + t
}
