package runner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mairust/mairust/agent/hooks/netpolicy"
	"github.com/mairust/mairust/agent/plugins/manifest"
	"github.com/mairust/mairust/agent/plugins/sdk"
	"github.com/mairust/mairust/internal/procgroup/procgrouptest"
)

// Stdin tests run one after another: a script written while another test
// forks can fail to exec with "text file busy".

func testEvent(id string) sdk.Event {
	return sdk.Event{
		Version: sdk.EventVersion, Hook: sdk.HookPostReceive, PluginID: id, EventID: "ev-1", Attempt: 1,
		Message: sdk.Message{ID: 7, User: "alice@example.com", Folder: "INBOX", Size: 123,
			ReceivedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
			Headers:    []sdk.Header{{Name: "Subject", Value: "Hello"}}},
	}
}

// stdinPlugin writes script as dir/bin/run and returns its manifest.
func stdinPlugin(t *testing.T, dir, script string, timeout time.Duration, args ...string) *manifest.Manifest {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "run"), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	return &manifest.Manifest{ID: "test-plugin", Kind: manifest.KindStdin, Timeout: timeout,
		Command: "bin/run", Args: args, Dir: dir}
}

func runStdin(t *testing.T, m *manifest.Manifest, opts StdinOptions) (sdk.Result, error) {
	t.Helper()
	r, err := NewStdin(m, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r.Run(context.Background(), testEvent(m.ID))
}

// wantFailure checks that err is a *Failure with reason whose text has each of texts.
func wantFailure(t *testing.T, err error, reason string, texts ...string) {
	t.Helper()
	f, ok := errors.AsType[*Failure](err)
	if !ok {
		t.Fatalf("error %v (%T), want a %s Failure", err, err, reason)
	}
	if f.Reason != reason {
		t.Fatalf("reason %q, want %q (error: %v)", f.Reason, reason, err)
	}
	for _, s := range texts {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

// goodScript tags the message by its subject and reports what it sees.
const goodScript = `ev=$(cat)
subj=$(printf '%s' "$ev" | sed -n 's/.*"name":"Subject","value":"\([^"]*\)".*/\1/p')
echo "looked at $subj" >&2
printf '{"tags":["subject-%s"],"metadata":{"plugin":"%s","home":"%s","pwd":"%s","secret":"%s","path":"%s","lang":"%s","uid":"%s","gid":"%s","arg":"%s"}}\n' \
	"$subj" "$MAIRUST_PLUGIN_ID" "$HOME" "$(pwd)" "${MAIRUST_TEST_SECRET-unset}" "$PATH" "$LANG" "$(id -u)" "$(id -g)" "$1"
`

func TestStdinGood(t *testing.T) {
	t.Setenv("MAIRUST_TEST_SECRET", "hunter2")
	dir, work := t.TempDir(), t.TempDir()
	m := stdinPlugin(t, dir, goodScript, 10*time.Second, "--flag")
	var log bytes.Buffer
	res, err := runStdin(t, m, StdinOptions{WorkDir: work, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tags) != 1 || res.Tags[0] != "subject-Hello" {
		t.Errorf("tags %q, want [subject-Hello]", res.Tags)
	}
	want := map[string]string{
		"plugin": "test-plugin", "home": work, "pwd": work, "secret": "unset", "arg": "--flag",
		"path": "/usr/local/bin:/usr/bin:/bin", "lang": "C.UTF-8",
		"uid": strconv.Itoa(os.Getuid()), "gid": strconv.Itoa(os.Getgid()),
	}
	for k, v := range want {
		if res.Metadata[k] != v {
			t.Errorf("metadata %s = %q, want %q", k, res.Metadata[k], v)
		}
	}
	if got := log.String(); got != "looked at Hello\n" {
		t.Errorf("log %q", got)
	}
}

func TestStdinWorkDirDefault(t *testing.T) {
	dir := t.TempDir()
	res, err := runStdin(t, stdinPlugin(t, dir, goodScript, 10*time.Second), StdinOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Metadata["pwd"] != dir || res.Metadata["home"] != dir {
		t.Errorf("pwd %q home %q, want the plugin directory %s", res.Metadata["pwd"], res.Metadata["home"], dir)
	}
}

func TestStdinCredential(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test runs a plugin as another user, which needs root; run the tests as root (CI does)")
	}
	dir := t.TempDir()
	// t.TempDir's parent is private to root; the plugin user must reach its script.
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	const nobody = 65534
	m := stdinPlugin(t, dir, goodScript, 10*time.Second)
	res, err := runStdin(t, m, StdinOptions{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Metadata["uid"] != "65534" || res.Metadata["gid"] != "65534" {
		t.Errorf("plugin ran as uid %q gid %q, want 65534", res.Metadata["uid"], res.Metadata["gid"])
	}
}

func TestStdinTimeoutKillsGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(t.TempDir(), "child")
	m := stdinPlugin(t, dir, "sleep 60 &\necho $! > \"$1\"\nsleep 60\n", 500*time.Millisecond, pidFile)
	_, err := runStdin(t, m, StdinOptions{})
	wantFailure(t, err, ReasonTimeout, "test-plugin", "500ms")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
	}
	procgrouptest.WaitGone(t, procgrouptest.ChildPid(t, pidFile))
}

func TestStdinContextDeadline(t *testing.T) {
	m := stdinPlugin(t, t.TempDir(), "sleep 60\n", time.Minute)
	r, err := NewStdin(m, StdinOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = r.Run(ctx, testEvent(m.ID))
	wantFailure(t, err, ReasonTimeout)
}

func TestStdinCancelled(t *testing.T) {
	m := stdinPlugin(t, t.TempDir(), "sleep 60\n", time.Minute)
	r, err := NewStdin(m, StdinOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = r.Run(ctx, testEvent(m.ID))
	if _, ok := errors.AsType[*Failure](err); ok || !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v (%T), want context.Canceled and no Failure", err, err)
	}
}

func TestStdinCrash(t *testing.T) {
	var log bytes.Buffer
	m := stdinPlugin(t, t.TempDir(), "echo 'boom: bad config' >&2\nexit 3\n", 10*time.Second)
	_, err := runStdin(t, m, StdinOptions{Log: &log})
	wantFailure(t, err, ReasonCrash, "exit status 3", "boom: bad config")
	if log.String() != "boom: bad config\n" {
		t.Errorf("log %q", log.String())
	}
}

func TestStdinKilledBySignal(t *testing.T) {
	_, err := runStdin(t, stdinPlugin(t, t.TempDir(), "kill -9 $$\n", 10*time.Second), StdinOptions{})
	wantFailure(t, err, ReasonCrash, "signal: killed", "no standard error")
}

func TestStdinGarbage(t *testing.T) {
	for name, out := range map[string]string{
		"text":     "not json",
		"invalid":  `{"tags":[""]}`,
		"unknown":  `{"colour":"red"}`,
		"trailing": `{} {}`,
		"empty":    ``,
	} {
		t.Run(name, func(t *testing.T) {
			m := stdinPlugin(t, t.TempDir(), "cat >/dev/null\nprintf '%s' '"+out+"'\n", 10*time.Second)
			_, err := runStdin(t, m, StdinOptions{})
			wantFailure(t, err, ReasonGarbage, sdk.ErrInvalidResult.Error())
			if !errors.Is(err, sdk.ErrInvalidResult) {
				t.Errorf("error %v does not wrap sdk.ErrInvalidResult", err)
			}
		})
	}
}

func TestStdinFlood(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child")
	m := stdinPlugin(t, t.TempDir(), "sleep 60 &\necho $! > \"$1\"\nyes\n", time.Minute, pidFile)
	_, err := runStdin(t, m, StdinOptions{})
	wantFailure(t, err, ReasonFlood, strconv.Itoa(sdk.MaxResultBytes))
	procgrouptest.WaitGone(t, procgrouptest.ChildPid(t, pidFile))
}

func TestStdinStderrTail(t *testing.T) {
	var log bytes.Buffer
	// 100000 lines of "y\n": more than StderrTailBytes.
	m := stdinPlugin(t, t.TempDir(), "yes | head -n 100000 >&2\necho '{}'\n", time.Minute)
	if _, err := runStdin(t, m, StdinOptions{Log: &log}); err != nil {
		t.Fatal(err)
	}
	note := "[" + strconv.Itoa(200000-StderrTailBytes) + " bytes of standard error dropped]\n"
	if got := log.String(); !strings.HasPrefix(got, note) || len(got) != len(note)+StderrTailBytes || !strings.HasSuffix(got, "y\ny\n") {
		t.Errorf("log starts %q, %d bytes", got[:min(len(got), 80)], len(got))
	}
}

// A successful run leaves no process behind, even one holding its output open.
func TestStdinLeftoversKilled(t *testing.T) {
	for name, script := range map[string]string{
		"detached": "sleep 60 >/dev/null 2>&1 &\necho $! > \"$1\"\necho '{\"tags\":[\"ok\"]}'\n",
		"holding":  "sleep 60 &\necho $! > \"$1\"\necho '{\"tags\":[\"ok\"]}'\n",
	} {
		t.Run(name, func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "child")
			res, err := runStdin(t, stdinPlugin(t, t.TempDir(), script, time.Minute, pidFile), StdinOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Tags) != 1 || res.Tags[0] != "ok" {
				t.Errorf("tags %q", res.Tags)
			}
			procgrouptest.WaitGone(t, procgrouptest.ChildPid(t, pidFile))
		})
	}
}

func TestStdinChecksum(t *testing.T) {
	dir := t.TempDir()
	m := stdinPlugin(t, dir, goodScript, 10*time.Second)
	data, err := os.ReadFile(filepath.Join(dir, "bin", "run"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	m.SHA256 = hex.EncodeToString(sum[:])
	r, err := NewStdin(m, StdinOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(context.Background(), testEvent(m.ID)); err != nil {
		t.Fatal(err)
	}

	// Changed after the runner was made: refused at the next run.
	changed := append(data, "# changed\n"...)
	if err := os.WriteFile(filepath.Join(dir, "bin", "run"), changed, 0o755); err != nil {
		t.Fatal(err)
	}
	got := sha256.Sum256(changed)
	_, err = r.Run(context.Background(), testEvent(m.ID))
	wantFailure(t, err, ReasonBroken, "sha256", m.SHA256, hex.EncodeToString(got[:]))

	if _, err := NewStdin(m, StdinOptions{}); err == nil {
		t.Error("NewStdin accepted a command whose checksum differs")
	}
}

func TestStdinCommandOutsideDir(t *testing.T) {
	outside := stdinPlugin(t, t.TempDir(), goodScript, 10*time.Second)
	dir := t.TempDir()
	if err := os.Symlink(filepath.Join(outside.Dir, "bin"), filepath.Join(dir, "bin")); err != nil {
		t.Fatal(err)
	}
	m := &manifest.Manifest{ID: "test-plugin", Kind: manifest.KindStdin, Timeout: time.Second, Command: "bin/run", Dir: dir}
	_, err := NewStdin(m, StdinOptions{})
	wantFailure(t, err, ReasonBroken, "outside the plugin directory")

	m.Command = "../run"
	_, err = NewStdin(m, StdinOptions{})
	wantFailure(t, err, ReasonBroken, "not a path inside")

	m.Command = "missing"
	_, err = NewStdin(m, StdinOptions{})
	wantFailure(t, err, ReasonBroken, "missing")

	// A symbolic link inside the directory is fine.
	if err := os.Symlink("run", filepath.Join(outside.Dir, "bin", "link")); err != nil {
		t.Fatal(err)
	}
	outside.Command = "bin/link"
	if _, err := runStdin(t, outside, StdinOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestNewStdinRefusesOtherKinds(t *testing.T) {
	m := &manifest.Manifest{ID: "x", Kind: manifest.KindHTTP, URL: "http://127.0.0.1/", Timeout: time.Second}
	if _, err := NewStdin(m, StdinOptions{}); err == nil {
		t.Error("NewStdin accepted an http plugin")
	}
}

// netProbeID is the plugin ID under which the test binary, run as a
// plugin, acts as netProbe instead of running tests.
const netProbeID = "runner-netprobe"

func init() {
	if os.Getenv("MAIRUST_PLUGIN_ID") == netProbeID && len(os.Args) >= 2 && len(os.Args) <= 3 {
		netProbe(os.Args[1], os.Args[2:]...)
		os.Exit(0)
	}
}

// netProbe is a stdin plugin reporting what network it has: whether it can
// dial host (the test's listener) and allowed (another, on a port
// outbound-limited allows), listen and dial itself on 127.0.0.1 and ::1,
// its uid, the interfaces in /proc/net/dev and whether lo is up.
func netProbe(host string, allowed ...string) {
	io.Copy(io.Discard, os.Stdin)
	md := map[string]string{"uid": strconv.Itoa(os.Getuid())}
	result := func(err error) string {
		if err != nil {
			return "error: " + err.Error()
		}
		return "ok"
	}
	md["dial_host"] = result(dialOnce(host))
	for _, a := range allowed {
		md["dial_allowed"] = result(dialOnce(a))
	}
	md["self4"] = result(dialSelf("tcp4", "127.0.0.1:0"))
	md["self6"] = result(dialSelf("tcp6", "[::1]:0"))
	var names []string
	if dev, err := os.ReadFile("/proc/net/dev"); err != nil {
		names = append(names, "error: "+err.Error())
	} else {
		for _, line := range strings.Split(string(dev), "\n") {
			if name, _, ok := strings.Cut(line, ":"); ok {
				names = append(names, strings.TrimSpace(name))
			}
		}
	}
	md["ifaces"] = strings.Join(names, " ")
	if lo, err := net.InterfaceByName("lo"); err != nil {
		md["lo"] = "error: " + err.Error()
	} else if lo.Flags&net.FlagUp != 0 {
		md["lo"] = "up"
	} else {
		md["lo"] = "down"
	}
	json.NewEncoder(os.Stdout).Encode(sdk.Result{Metadata: md})
}

func dialOnce(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// dialSelf listens on addr and dials the listener.
func dialSelf(network, addr string) error {
	l, err := net.Listen(network, addr)
	if err != nil {
		return err
	}
	defer l.Close()
	return dialOnce(l.Addr().String())
}

// netProbePlugin copies the test binary into a plugin directory as a
// stdin plugin that the plugin user (nobody) can run, with the address of
// a listener of the test as its argument; accepted checks how many
// connections the listener has had since the last call.
func netProbePlugin(t *testing.T) (m *manifest.Manifest, accepted func(want int)) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the network policy tests make network namespaces and run plugins as another user, which needs root; run the tests as root (CI does)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// t.TempDir's parent is private to root; the plugin user must reach its command.
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "netprobe"), bin, 0o755); err != nil {
		t.Fatal(err)
	}

	addr, accepted := testListener(t, "127.0.0.1:0")
	m = &manifest.Manifest{ID: netProbeID, Kind: manifest.KindStdin, Timeout: 30 * time.Second,
		Command: "netprobe", Args: []string{addr}, Dir: dir}
	return m, accepted
}

// testListener listens on addr and returns its address and accepted,
// which checks how many connections it has had since the last call. Call
// accepted once the dialer is done: a connection it made is accepted
// already or waits in the backlog.
func testListener(t *testing.T, addr string) (string, func(want int)) {
	t.Helper()
	l, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	conns := make(chan struct{}, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
			conns <- struct{}{}
		}
	}()
	return l.Addr().String(), func(want int) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for n := range want {
			select {
			case <-conns:
			case <-deadline:
				t.Fatalf("the listener on %s accepted %d connections, want %d", l.Addr(), n, want)
			}
		}
		select {
		case <-conns:
			t.Errorf("the listener on %s accepted more than %d connections", l.Addr(), want)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

var nobody = &syscall.Credential{Uid: 65534, Gid: 65534}

func enforcement(t *testing.T, mode manifest.Network, privileged bool) netpolicy.Enforcement {
	t.Helper()
	e, err := netpolicy.For(mode, privileged, false)
	if err != nil {
		t.Fatal(err)
	}
	if !e.Enforced {
		t.Fatalf("%s (privileged %v) not enforced on this machine: %s", mode, privileged, e)
	}
	return e
}

// wantMeta checks metadata values: an exact value, or "~" and a part of it.
func wantMeta(t *testing.T, md map[string]string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		got := md[k]
		if part, ok := strings.CutPrefix(v, "~"); ok && strings.Contains(got, part) || got == v {
			continue
		}
		t.Errorf("%s = %q, want %q (all: %q)", k, got, v, md)
	}
}

// Without a policy the plugin has the agent's network.
func TestStdinNetworkZero(t *testing.T) {
	m, accepted := netProbePlugin(t)
	res, err := runStdin(t, m, StdinOptions{Credential: nobody})
	if err != nil {
		t.Fatal(err)
	}
	wantMeta(t, res.Metadata, map[string]string{"uid": "65534", "dial_host": "ok", "self4": "ok", "lo": "up"})
	accepted(1)
}

func TestStdinNetworkNone(t *testing.T) {
	m, accepted := netProbePlugin(t)
	res, err := runStdin(t, m, StdinOptions{Credential: nobody, Network: enforcement(t, manifest.NetworkNone, true)})
	if err != nil {
		t.Fatal(err)
	}
	wantMeta(t, res.Metadata, map[string]string{"uid": "65534", "ifaces": "lo", "lo": "down",
		"dial_host": "~network is unreachable", "self4": "~error: ", "self6": "~error: "})
	accepted(0)
}

// Unprivileged none: a user namespace (exercised here as root, mapped to itself).
func TestStdinNetworkNoneUserns(t *testing.T) {
	m, accepted := netProbePlugin(t)
	res, err := runStdin(t, m, StdinOptions{Network: enforcement(t, manifest.NetworkNone, false)})
	if err != nil {
		t.Fatal(err)
	}
	wantMeta(t, res.Metadata, map[string]string{"uid": strconv.Itoa(os.Getuid()), "ifaces": "lo", "lo": "down",
		"dial_host": "~network is unreachable", "self4": "~error: "})
	accepted(0)
}

func TestStdinNetworkLocalOnly(t *testing.T) {
	m, accepted := netProbePlugin(t)
	want := map[string]string{"uid": "65534", "ifaces": "lo", "lo": "up",
		"dial_host": "~connection refused", "self4": "ok"}
	if l, err := net.Listen("tcp6", "[::1]:0"); err == nil { // the host has IPv6, so has the namespace
		l.Close()
		want["self6"] = "ok"
	}
	r, err := NewStdin(m, StdinOptions{Credential: nobody, Network: enforcement(t, manifest.NetworkLocalOnly, true)})
	if err != nil {
		t.Fatal(err)
	}
	// Twice: each run has a namespace of its own, and the agent is left in its own.
	for range 2 {
		res, err := r.Run(context.Background(), testEvent(m.ID))
		if err != nil {
			t.Fatal(err)
		}
		wantMeta(t, res.Metadata, want)
		accepted(0)
		if err := dialOnce(m.Args[0]); err != nil {
			t.Fatalf("the agent lost its own network: %v", err)
		}
		accepted(1)
	}
}

// outboundListener listens on 127.0.0.7:443, a port outbound-limited
// allows (a loopback address of its own, so nothing else holds the port).
func outboundListener(t *testing.T) (string, func(int)) {
	t.Helper()
	return testListener(t, "127.0.0.7:443")
}

// outbound-limited: TCP to ports 53, 80 and 443 only, whatever the address.
func TestStdinNetworkOutboundLimited(t *testing.T) {
	m, accepted := netProbePlugin(t)
	allowed, allowedAccepted := outboundListener(t)
	m.Args = append(m.Args, allowed)
	r, err := NewStdin(m, StdinOptions{Credential: nobody, Network: enforcement(t, manifest.NetworkOutboundLimited, true)})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		res, err := r.Run(context.Background(), testEvent(m.ID))
		if err != nil {
			t.Fatal(err)
		}
		wantMeta(t, res.Metadata, map[string]string{"uid": "65534", "lo": "up",
			"dial_host": "~permission denied", "self4": "~permission denied", "dial_allowed": "ok"})
		accepted(0)
		allowedAccepted(1)
		// The agent keeps its network.
		if err := dialOnce(m.Args[0]); err != nil {
			t.Fatalf("the agent lost its own network: %v", err)
		}
		accepted(1)
	}
}
