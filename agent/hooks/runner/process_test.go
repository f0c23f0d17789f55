package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mairust/mairust/agent/plugins/manifest"
	"github.com/mairust/mairust/agent/plugins/sdk"
	"github.com/mairust/mairust/internal/procgroup/procgrouptest"
)

// The process tests build two plugins once: the classifier example and
// testdata/testplugin, whose first argument chooses how it misbehaves.

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// pluginBinary returns the path of the built plugin name ("classifier" or
// "testplugin").
func pluginBinary(t *testing.T, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..", "..")
		if buildDir, buildErr = os.MkdirTemp("", "mairust-runner-test-"); buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", buildDir+"/",
			"./agent/plugins/examples/classifier", "./agent/hooks/runner/testdata/testplugin")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, name)
}

// installPlugin copies the built plugin name into dir as its command and
// returns its manifest, with the copy's checksum.
func installPlugin(t *testing.T, dir, name string, timeout time.Duration, args ...string) *manifest.Manifest {
	t.Helper()
	bin, err := os.ReadFile(pluginBinary(t, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	sum, err := manifest.FileSHA256(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return &manifest.Manifest{ID: "test-" + name, Kind: manifest.KindProcess, Timeout: timeout,
		Command: name, Args: args, SHA256: sum, Dir: dir}
}

// installClassifier installs the classifier example with its own manifest.
func installClassifier(t *testing.T, dir string) *manifest.Manifest {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	toml, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "plugins", "examples", "classifier", manifest.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, manifest.FileName), toml, 0o644); err != nil {
		t.Fatal(err)
	}
	installed := installPlugin(t, dir, "classifier", time.Second)
	m, err := manifest.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := manifest.Check(m, "1.0.0"); err != nil {
		t.Fatal(err)
	}
	m.SHA256 = installed.SHA256
	return m
}

func newProcess(t *testing.T, m *manifest.Manifest, opts ProcessOptions) *Process {
	t.Helper()
	p, err := NewProcess(m, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// mailEvent is an event for m whose message has subject and body text.
func mailEvent(m *manifest.Manifest, subject, body string) sdk.Event {
	ev := testEvent(m.ID)
	ev.Message.Headers = []sdk.Header{{Name: "Subject", Value: subject}}
	ev.Message.Body = &sdk.Body{Text: body}
	settings, err := m.CheckSettings(nil)
	if err != nil {
		panic(err)
	}
	ev.Settings = settings
	return ev
}

// runningPid is the pid of p's process, which must be running.
func runningPid(t *testing.T, p *Process) int {
	t.Helper()
	pid := p.pid()
	if pid <= 0 {
		t.Fatal("no plugin process running")
	}
	return pid
}

// procFile reads /proc/pid/name.
func procFile(t *testing.T, pid int, name string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func wantTag(t *testing.T, res sdk.Result, err error, tag string) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Tags, []string{tag}) {
		t.Fatalf("tags %q, want [%s] (metadata %v)", res.Tags, tag, res.Metadata)
	}
}

func TestProcessClassifier(t *testing.T) {
	t.Setenv("MAIRUST_TEST_SECRET", "hunter2")
	dir, work := t.TempDir(), t.TempDir()
	m := installClassifier(t, dir)
	var log bytes.Buffer
	p := newProcess(t, m, ProcessOptions{WorkDir: work, Log: &log})
	ctx := context.Background()

	res, err := p.Run(ctx, mailEvent(m, "WINNER! Claim your free prize now", "Click here, limited offer"))
	wantTag(t, res, err, "likely-spam")
	if s, err := strconv.ParseFloat(res.Metadata["spam_score"], 64); err != nil || s < 0.5 || s > 1 {
		t.Errorf("spam_score %q for spam", res.Metadata["spam_score"])
	}
	pid := runningPid(t, p)

	res, err = p.Run(ctx, mailEvent(m, "Notes from Tuesday's project meeting", "The agenda for the next review is attached."))
	wantTag(t, res, err, "likely-ham")
	if s, err := strconv.ParseFloat(res.Metadata["spam_score"], 64); err != nil || s >= 0.5 {
		t.Errorf("spam_score %q for ham", res.Metadata["spam_score"])
	}
	ev := mailEvent(m, "Notes from Tuesday's project meeting", "")
	ev.Settings["threshold"] = 0.0 // everything is spam
	res, err = p.Run(ctx, ev)
	wantTag(t, res, err, "likely-spam")
	if got := runningPid(t, p); got != pid {
		t.Errorf("pid %d after %d: the process was restarted between calls", got, pid)
	}

	// Many calls at once share the one process.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := p.Run(ctx, mailEvent(m, "cheap pills", ""))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := runningPid(t, p); got != pid {
		t.Errorf("pid %d after concurrent calls, want %d", got, pid)
	}

	// Where and how it runs.
	if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err != nil || cwd != work {
		t.Errorf("working directory %q (%v), want %s", cwd, err, work)
	}
	env := strings.Split(procFile(t, pid, "environ"), "\x00")
	for _, want := range []string{"HOME=" + work, "MAIRUST_PLUGIN_ID=" + m.ID, "LANG=C.UTF-8", "PATH=/usr/local/bin:/usr/bin:/bin"} {
		if !slices.Contains(env, want) {
			t.Errorf("environment %q lacks %s", env, want)
		}
	}
	for _, e := range env {
		if strings.HasPrefix(e, "MAIRUST_TEST_SECRET=") {
			t.Errorf("the agent's environment leaked: %s", e)
		}
	}
	if pgid, err := syscall.Getpgid(pid); err != nil || pgid != pid {
		t.Errorf("process group %d (%v), want its own %d", pgid, err, pid)
	}

	status, detail, err := p.Health(ctx)
	if err != nil || status != "ok" || !strings.Contains(detail, "12 spam and 12 ham") {
		t.Errorf("health %q %q %v, want ok and the training size", status, detail, err)
	}

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	procgrouptest.WaitGone(t, pid)
	_, err = p.Run(ctx, mailEvent(m, "hello", ""))
	wantFailure(t, err, ReasonBroken)
	if !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
}

func TestProcessTrainingFile(t *testing.T) {
	dir, work := t.TempDir(), t.TempDir()
	m := installClassifier(t, dir)
	// Teach it the opposite: meetings are spam.
	examples := "spam\tproject meeting notes agenda\nham\tfree prize winner cheap pills\n"
	if err := os.WriteFile(filepath.Join(work, "train.tsv"), []byte(examples), 0o644); err != nil {
		t.Fatal(err)
	}
	p := newProcess(t, m, ProcessOptions{WorkDir: work})
	ev := mailEvent(m, "project meeting agenda", "")
	ev.Settings["training_file"] = "train.tsv" // relative to the working directory
	res, err := p.Run(context.Background(), ev)
	wantTag(t, res, err, "likely-spam")

	ev.Settings["training_file"] = "missing.tsv"
	_, err = p.Run(context.Background(), ev)
	wantFailure(t, err, ReasonCrash, "answered an error", "missing.tsv")
}

func TestProcessChecksum(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(t.TempDir(), "started")
	m := installPlugin(t, dir, "testplugin", 5*time.Second, "ok", marker)
	m.SHA256 = strings.Repeat("0", 64)
	p := newProcess(t, m, ProcessOptions{})
	_, err := p.Run(context.Background(), testEvent(m.ID))
	wantFailure(t, err, ReasonBroken, "sha256", strings.Repeat("0", 64), "not started")
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the plugin ran despite its checksum (marker: %v)", err)
	}
	if p.pid() != 0 {
		t.Error("a process is running")
	}
}

func TestProcessNotAPlugin(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "run"), []byte("#!/bin/sh\necho hello\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	m := &manifest.Manifest{ID: "test-plugin", Kind: manifest.KindProcess, Timeout: 5 * time.Second, Command: "run", Dir: dir}
	p := newProcess(t, m, ProcessOptions{})
	_, err := p.Run(context.Background(), testEvent(m.ID))
	wantFailure(t, err, ReasonBroken, "starting run")

	// Started without the agent's handshake, a plugin refuses to run.
	out, err := exec.Command(pluginBinary(t, "testplugin"), "ok").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "This binary is a plugin") {
		t.Errorf("run by hand: %v, %q", err, out)
	}
}

func TestProcessTimeout(t *testing.T) {
	m := installPlugin(t, t.TempDir(), "testplugin", 300*time.Millisecond, "sleep")
	p := newProcess(t, m, ProcessOptions{})
	_, err := p.Run(context.Background(), testEvent(m.ID))
	wantFailure(t, err, ReasonTimeout, m.ID, "300ms")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
	}
	// The process stays for the next calls; Close kills it though it is stuck.
	pid := runningPid(t, p)
	if _, err := p.Run(context.Background(), testEvent(m.ID)); err == nil {
		t.Fatal("a sleeping plugin answered")
	}
	if got := runningPid(t, p); got != pid {
		t.Errorf("pid %d after a timeout, want %d", got, pid)
	}
	p.Close()
	procgrouptest.WaitGone(t, pid)
}

func TestProcessCancelled(t *testing.T) {
	m := installPlugin(t, t.TempDir(), "testplugin", time.Minute, "sleep")
	p := newProcess(t, m, ProcessOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	_, err := p.Run(ctx, testEvent(m.ID))
	if _, ok := errors.AsType[*Failure](err); ok || !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled and no Failure", err)
	}
}

func TestProcessKilledRestarts(t *testing.T) {
	m := installClassifier(t, t.TempDir())
	p := newProcess(t, m, ProcessOptions{})
	ctx := context.Background()
	res, err := p.Run(ctx, mailEvent(m, "free prize", ""))
	wantTag(t, res, err, "likely-spam")
	pid := runningPid(t, p)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	procgrouptest.WaitGone(t, pid)

	// The call that finds it dead is a crash; the next one starts it again.
	_, err = p.Run(ctx, mailEvent(m, "free prize", ""))
	wantFailure(t, err, ReasonCrash, "starts again on the next call")
	res, err = p.Run(ctx, mailEvent(m, "free prize", ""))
	wantTag(t, res, err, "likely-spam")
	if got := runningPid(t, p); got == pid {
		t.Errorf("pid %d after a restart, the same as the killed one", got)
	}
}

func TestProcessCrashDuringCall(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "pids")
	m := installPlugin(t, t.TempDir(), "testplugin", 5*time.Second, "crash", marker)
	var log syncBuffer
	p := newProcess(t, m, ProcessOptions{Log: &log})
	for range 2 {
		_, err := p.Run(context.Background(), testEvent(m.ID))
		wantFailure(t, err, ReasonCrash, "died during the call")
	}
	pids := strings.Fields(readFile(t, marker))
	if len(pids) != 2 || pids[0] == pids[1] {
		t.Errorf("started as %q, want two processes", pids)
	}
	log.waitFor(t, "testplugin: crashing")
}

func TestProcessGarbage(t *testing.T) {
	m := installPlugin(t, t.TempDir(), "testplugin", 5*time.Second, "garbage")
	var log syncBuffer
	p := newProcess(t, m, ProcessOptions{Log: &log})
	_, err := p.Run(context.Background(), testEvent(m.ID))
	wantFailure(t, err, ReasonGarbage, `"not json"`)
	if !errors.Is(err, sdk.ErrInvalidResult) {
		t.Errorf("error %v does not wrap sdk.ErrInvalidResult", err)
	}
	// The plugin's standard error reaches the log.
	log.waitFor(t, "testplugin: garbage coming")
}

func TestProcessFlood(t *testing.T) {
	m := installPlugin(t, t.TempDir(), "testplugin", 5*time.Second, "flood")
	p := newProcess(t, m, ProcessOptions{})
	_, err := p.Run(context.Background(), testEvent(m.ID))
	wantFailure(t, err, ReasonFlood)
	pid := runningPid(t, p) // a flood does not end the process
	p.Close()
	procgrouptest.WaitGone(t, pid)
}

func TestProcessCloseKillsGroup(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "pids")
	m := installPlugin(t, t.TempDir(), "testplugin", 5*time.Second, "child", marker)
	p := newProcess(t, m, ProcessOptions{})
	res, err := p.Run(context.Background(), testEvent(m.ID))
	wantTag(t, res, err, "ok")
	pids := strings.Fields(readFile(t, marker))
	if len(pids) != 2 {
		t.Fatalf("pids %q, want the plugin's and its child's", pids)
	}
	p.Close()
	for _, s := range pids {
		pid, _ := strconv.Atoi(s)
		procgrouptest.WaitGone(t, pid)
	}
}

func TestProcessHealthDegraded(t *testing.T) {
	m := installPlugin(t, t.TempDir(), "testplugin", 5*time.Second, "degraded")
	p := newProcess(t, m, ProcessOptions{})
	status, detail, err := p.Health(context.Background())
	if err != nil || status != "degraded" || detail != "queue backed up" {
		t.Errorf("health %q %q %v, want degraded", status, detail, err)
	}
}

func TestProcessCredential(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test runs a plugin as another user, which needs root; run the tests as root (CI does)")
	}
	base := t.TempDir()
	// t.TempDir's parent is private to root: let the plugin user pass
	// through to its directory and read its binary there.
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(base, "classifier")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // whatever the umask
		t.Fatal(err)
	}
	m := installClassifier(t, dir)
	const nobody = 65534
	p := newProcess(t, m, ProcessOptions{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}, Nice: 3})
	res, err := p.Run(context.Background(), mailEvent(m, "free prize winner", ""))
	wantTag(t, res, err, "likely-spam")
	pid := runningPid(t, p)
	st := procFile(t, pid, "status")
	for _, want := range []string{"Uid:\t65534\t65534\t65534\t65534", "Gid:\t65534\t65534\t65534\t65534"} {
		if !strings.Contains(st, want) {
			t.Errorf("/proc/%d/status lacks %q:\n%s", pid, want, st)
		}
	}
	if _, rest, _ := strings.Cut(procFile(t, pid, "stat"), ") "); len(strings.Fields(rest)) < 17 || strings.Fields(rest)[16] != "3" {
		t.Errorf("/proc/%d/stat: nice is not 3: %s", pid, rest)
	}
	p.Close()
	procgrouptest.WaitGone(t, pid)
}

func TestNewProcessRefuses(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		m    manifest.Manifest
		want string
	}{
		{"kind", manifest.Manifest{ID: "p", Kind: manifest.KindStdin, Timeout: time.Second, Command: "run", Dir: dir}, `kind "stdin"`},
		{"no dir", manifest.Manifest{ID: "p", Kind: manifest.KindProcess, Timeout: time.Second, Command: "run"}, "no plugin directory"},
		{"no timeout", manifest.Manifest{ID: "p", Kind: manifest.KindProcess, Command: "run", Dir: dir}, "no timeout"},
		{"missing", manifest.Manifest{ID: "p", Kind: manifest.KindProcess, Timeout: time.Second, Command: "run", Dir: dir}, "command"},
		{"outside", manifest.Manifest{ID: "p", Kind: manifest.KindProcess, Timeout: time.Second, Command: "../run", Dir: dir}, "not a path inside"},
		{"sha256", manifest.Manifest{ID: "p", Kind: manifest.KindProcess, Timeout: time.Second, Command: "run", Dir: dir, SHA256: "xyz"}, "sha256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewProcess(&tc.m, ProcessOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewProcess: %v, want an error about %s", err, tc.want)
			}
		})
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// syncBuffer is a log written by the runner's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// waitFor waits until the log has s: the plugin's output arrives
// asynchronously.
func (b *syncBuffer) waitFor(t *testing.T, s string) {
	t.Helper()
	for range 500 {
		b.mu.Lock()
		ok := strings.Contains(b.buf.String(), s)
		b.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	t.Fatalf("log lacks %q:\n%s", s, b.buf.String())
}

// A process plugin's network mode is enforced on it, and the agent still
// reaches it over its socket.
func TestProcessNetwork(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test makes network namespaces, which needs root; run the tests as root (CI does)")
	}
	host, hostAccepted := testListener(t, "127.0.0.1:0")
	allowed, allowedAccepted := outboundListener(t)
	for _, c := range []struct {
		mode          manifest.Network
		host, allowed string // what the plugin gets dialing them
	}{
		{manifest.NetworkNone, "~network is unreachable", "~network is unreachable"},
		{manifest.NetworkLocalOnly, "~connection refused", "~connection refused"},
		{manifest.NetworkOutboundLimited, "~permission denied", "ok"},
	} {
		m := installPlugin(t, t.TempDir(), "testplugin", 10*time.Second, "dial", host, allowed)
		p := newProcess(t, m, ProcessOptions{Network: enforcement(t, c.mode, true)})
		res, err := p.Run(context.Background(), testEvent(m.ID))
		if err != nil {
			t.Fatalf("%s: %v", c.mode, err)
		}
		wantMeta(t, res.Metadata, map[string]string{host: c.host, allowed: c.allowed})
		p.Close()
		hostAccepted(0)
		allowedAccepted(map[bool]int{true: 1}[c.allowed == "ok"])
	}
	if err := dialOnce(host); err != nil {
		t.Fatalf("the agent lost its own network: %v", err)
	}
	hostAccepted(1)
}
