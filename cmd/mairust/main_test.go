package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mairust/mairust/internal/proctest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	proctest.RemoveBinary()
	os.Exit(code)
}

// run runs the binary to its end (bounded) and returns its combined output
// and exit code.
func run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, proctest.Binary(t), args...).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit) && exit.ExitCode() >= 0:
		return string(out), exit.ExitCode()
	default:
		t.Fatalf("mairust %s: %v\n%s", strings.Join(args, " "), err, out)
		return "", 0
	}
}

// commandPaths lists the argument paths of c and every command below it.
func commandPaths(c *command) [][]string {
	var path []string
	if c != root {
		path = strings.Fields(c.name)
	}
	paths := [][]string{path}
	for _, ch := range c.children {
		paths = append(paths, commandPaths(ch)...)
	}
	return paths
}

func TestHelpOnEveryCommand(t *testing.T) {
	paths := commandPaths(root)
	if len(paths) < 5 {
		t.Fatalf("only %d commands registered: %v", len(paths), paths)
	}
	seen := map[string]bool{}
	for _, p := range paths {
		name := strings.Join(p, " ")
		if seen[name] {
			t.Errorf("command %q is registered twice", name)
		}
		seen[name] = true
	}
	for _, p := range paths {
		args := append(append([]string{}, p...), "--help")
		t.Run(strings.Join(append([]string{"mairust"}, p...), "_"), func(t *testing.T) {
			t.Parallel()
			out, code := run(t, args...)
			if code != 0 || !strings.Contains(out, "Usage") {
				t.Fatalf("mairust %s: exit %d, want 0 and a usage text:\n%s", strings.Join(args, " "), code, out)
			}
		})
	}

	t.Run("no arguments", func(t *testing.T) {
		out, code := run(t)
		if code != 2 {
			t.Errorf("mairust: exit %d, want 2", code)
		}
		for _, ch := range root.children {
			if !strings.Contains(out, "  "+ch.last()+" ") {
				t.Errorf("mairust without arguments does not list %q:\n%s", ch.last(), out)
			}
		}
	})

	for _, args := range [][]string{{"frobnicate"}, {"config", "frobnicate"}} {
		t.Run(strings.Join(args, "_"), func(t *testing.T) {
			out, code := run(t, args...)
			if code == 0 || !strings.Contains(out, `unknown command "frobnicate"`) {
				t.Fatalf("mairust %s: exit %d, want non-zero and the unknown command named:\n%s", strings.Join(args, " "), code, out)
			}
		})
	}
}

// aioProc is a running `mairust aio`.
type aioProc struct {
	cmd            *exec.Cmd
	stdout, stderr proctest.Output
	done           chan struct{}
	err            error // set before done is closed
}

// startAIO runs mairust aio on dataDir with fresh loopback ports (or the
// addresses in extra flags). On test end a process still running gets
// SIGTERM, then SIGKILL.
func startAIO(t *testing.T, dataDir string, extra ...string) *aioProc {
	t.Helper()
	p := &aioProc{done: make(chan struct{})}
	args := []string{"aio", "--data-dir", dataDir, "--domain", "example.test", "--log-format", "text"}
	if !slices.Contains(extra, "--http-listen") {
		args = append(args, "--smtp-listen", proctest.FreeAddr(t), "--http-listen", proctest.FreeAddr(t))
	}
	if !slices.Contains(extra, "--api-listen") {
		args = append(args, "--api-listen", proctest.FreeAddr(t))
	}
	if !slices.Contains(extra, "--controlplane-listen") {
		args = append(args, "--controlplane-listen", proctest.FreeAddr(t))
	}
	if !slices.Contains(extra, "--imap-listen") {
		args = append(args, "--imap-listen", proctest.FreeAddr(t), "--imaps-listen", proctest.FreeAddr(t),
			"--submission-listen", proctest.FreeAddr(t), "--submissions-listen", proctest.FreeAddr(t))
	}
	p.cmd = exec.Command(proctest.Binary(t), append(args, extra...)...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	p.cmd.WaitDelay = 10 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
			return
		default:
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(60 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
		// The embedded server (which got SIGINT) must be gone before the
		// temporary directory is removed.
		waitFor(t, 30*time.Second, func() bool { return !exists(postmasterPid(dataDir)) })
	})
	return p
}

func (p *aioProc) output() string {
	return "stdout:\n" + p.stdout.String() + "\nstderr:\n" + p.stderr.String()
}

// waitBanner waits for the complete banner and returns it.
func (p *aioProc) waitBanner(t *testing.T) string {
	t.Helper()
	const last = "Stop with Ctrl-C"
	deadline := time.After(2 * time.Minute)
	for !strings.Contains(p.stdout.String(), last) {
		select {
		case <-p.done:
			t.Fatalf("mairust aio exited (%v) before printing its banner\n%s", p.err, p.output())
		case <-deadline:
			t.Fatalf("mairust aio printed no banner within 2 minutes\n%s", p.output())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return p.stdout.String()
}

// wait waits (bounded) for the process to end and returns its exit error.
func (p *aioProc) wait(t *testing.T, limit time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(limit):
		t.Fatalf("mairust aio still running after %v\n%s", limit, p.output())
		return nil
	}
}

// waitFor polls cond until it holds, failing the test after limit.
func waitFor(t *testing.T, limit time.Duration, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(limit); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("condition not met within %v", limit)
		}
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func postmasterPid(dataDir string) string {
	return filepath.Join(dataDir, "db", "data", "postmaster.pid")
}

// embeddedURL is the URL of the embedded database, as embeddedpg makes it.
func embeddedURL(dataDir string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("mairust"),
		Path:     "/mairust",
		RawQuery: url.Values{"host": {filepath.Join(dataDir, "db", "run")}, "port": {"5432"}}.Encode(),
	}
	return u.String()
}

var (
	smtpLine = regexp.MustCompile(`(?m)^  SMTP +(\S+) `)
	userLine = regexp.MustCompile(`(?m)^  User +(\S+) +password: (\S+) `)
)

const japaneseSubject = "日本語の件名"

// storedMessage is the one message row of the embedded database.
func storedMessage(t *testing.T, dataDir string) (rcptTo, subject, blobKey string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, embeddedURL(dataDir))
	if err != nil {
		t.Fatalf("connect to the embedded PostgreSQL: %v", err)
	}
	defer conn.Close(context.Background())
	rows, _ := conn.Query(ctx, `SELECT rcpt_to, subject, blob_key FROM messages`)
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([3]string, error) {
		var v [3]string
		err := r.Scan(&v[0], &v[1], &v[2])
		return v, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("%d message rows, want 1: %q", len(got), got)
	}
	return got[0][0], got[0][1], got[0][2]
}

// aioDataDir is a fresh data dir the embedded server (run as the system
// user mairust when we are root) can reach.
func aioDataDir(t *testing.T) string {
	t.Helper()
	dataDir := t.TempDir()
	for _, d := range []string{dataDir, filepath.Dir(dataDir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dataDir
}

// TestAIOReloadKeepsCommandLine: flags override the file at start and on
// reload, so a reload reports only what the file really changed.
func TestAIOReloadKeepsCommandLine(t *testing.T) {
	dataDir := aioDataDir(t)
	cfgPath := filepath.Join(dataDir, "mairust.yaml")
	file := "log:\n  level: info\nsmtp:\n  listen: 127.0.0.1:1\n"
	if err := os.WriteFile(cfgPath, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	httpAddr := proctest.FreeAddr(t)
	p := startAIO(t, dataDir, "--config", cfgPath, "--smtp-listen", proctest.FreeAddr(t), "--http-listen", httpAddr)
	p.waitBanner(t)
	os.WriteFile(cfgPath, []byte(strings.Replace(file, "info", "debug", 1)), 0o600)
	out, code := run(t, "reload", "--addr", httpAddr)
	if code != 0 || strings.TrimSpace(out) != "applied [log.level]" {
		t.Fatalf("reload: exit %d, %q; want only log.level applied", code, out)
	}
}

func TestAllInOne(t *testing.T) {
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		t.Fatal("swaks is not installed: run scripts/deps.sh (apt-get install swaks)")
	}
	dataDir := aioDataDir(t)

	first := startAIO(t, dataDir)
	banner := first.waitBanner(t)
	sm, um := smtpLine.FindStringSubmatch(banner), userLine.FindStringSubmatch(banner)
	if sm == nil || um == nil {
		t.Fatalf("banner without the SMTP address or the user and password:\n%s", first.output())
	}
	addr, user := sm[1], um[1]
	if user != "admin@example.test" {
		t.Errorf("banner names user %q, want admin@example.test", user)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, swaks, "--to", user, "--server", addr,
		"--header", "Subject: =?UTF-8?B?5pel5pys6Kqe44Gu5Lu25ZCN?=").CombinedOutput()
	// The answer to the end of the data (" -> .") must be 250.
	_, afterData, found := strings.Cut(string(out), "\n -> .\n")
	if err != nil || !found || !strings.HasPrefix(afterData, "<-  250 ") {
		t.Fatalf("swaks: %v, want 250 after the data\n%s\naio:\n%s", err, out, first.output())
	}

	rcpt, subject, key := storedMessage(t, dataDir)
	if rcpt != user || subject != japaneseSubject {
		t.Errorf("stored rcpt_to %q subject %q, want %q %q", rcpt, subject, user, japaneseSubject)
	}
	if len(key) < 3 || !exists(filepath.Join(dataDir, "mail", key[:2], key)) {
		t.Errorf("no blob file for key %q under %s", key, filepath.Join(dataDir, "mail"))
	}

	// A second aio on the same directory is refused by the lock, before it
	// starts anything.
	second := startAIO(t, dataDir)
	err = second.wait(t, 30*time.Second)
	lockMsg := fmt.Sprintf("%s is in use by another mairust (pidlock: %s is held by process %d); stop it first", dataDir, filepath.Join(dataDir, "mairust.lock"), first.cmd.Process.Pid)
	if err == nil || !strings.Contains(second.stderr.String(), lockMsg) || strings.Contains(second.stderr.String(), "starting the embedded PostgreSQL") {
		t.Fatalf("second aio on the same data dir: %v, want an error saying %q\n%s", err, lockMsg, second.output())
	}

	first.cmd.Process.Signal(syscall.SIGTERM)
	if err := first.wait(t, time.Minute); err != nil {
		t.Fatalf("aio after SIGTERM: %v, want exit code 0\n%s", err, first.output())
	}
	if exists(postmasterPid(dataDir)) {
		t.Fatalf("embedded PostgreSQL still running after aio exited (%s exists)\n%s", postmasterPid(dataDir), first.output())
	}
	pingCtx, pingCancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer pingCancel()
	if conn, err := pgx.Connect(pingCtx, embeddedURL(dataDir)); err == nil {
		conn.Close(pingCtx)
		t.Fatal("embedded PostgreSQL still accepts connections after aio exited")
	}

	// The restart keeps the data and does not show a password again.
	third := startAIO(t, dataDir)
	banner = third.waitBanner(t)
	if userLine.MatchString(banner) || !smtpLine.MatchString(banner) {
		t.Errorf("banner of the second start shows a password or no SMTP address:\n%s", banner)
	}
	if r, s, k := storedMessage(t, dataDir); r != rcpt || s != subject || k != key {
		t.Errorf("after the restart the message is %q %q %q, want %q %q %q", r, s, k, rcpt, subject, key)
	}
	third.cmd.Process.Signal(syscall.SIGTERM)
	if err := third.wait(t, time.Minute); err != nil {
		t.Fatalf("restarted aio after SIGTERM: %v\n%s", err, third.output())
	}
	if exists(postmasterPid(dataDir)) {
		t.Fatal("embedded PostgreSQL still running after the restarted aio exited")
	}
}
