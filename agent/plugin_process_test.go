package agent_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mairust/mairust/internal/proctest"
)

// TestPluginInstalledWithTheCLI installs the example stdin plugin into a
// running agent with `mairust plugin install` and `mairust reload`, then
// sends mail over SMTP: the plugin (run as the plugins.run_as user, since
// the tests run as root) tags the message whose subject matches.
func TestPluginInstalledWithTheCLI(t *testing.T) {
	cfgPath, dataDir, pool := setup(t, "")
	// As mairust agent keeps it: passable for the plugin's user.
	for _, d := range []string{dataDir, filepath.Dir(dataDir)} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	p := startAgent(t, cfgPath)
	bin := proctest.Binary(t)
	cli := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("mairust %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	example, err := filepath.Abs(filepath.Join("plugins", "examples", "subject-tagger"))
	if err != nil {
		t.Fatal(err)
	}
	out := cli("plugin", "install", "--config", cfgPath, "--set", "tag=bills", example)
	if !strings.Contains(out, "installed subject-tagger 1.0.0") || !strings.Contains(out, "mairust reload") {
		t.Fatalf("install printed:\n%s", out)
	}
	if out := cli("plugin", "list", "--config", cfgPath); !strings.Contains(out, "subject-tagger") || !strings.Contains(out, "true") {
		t.Fatalf("list printed:\n%s", out)
	}
	cli("reload", "--addr", p.http)
	if err := sendOne(p.smtp, "inv1", "Invoice 7 for you"); err != nil {
		t.Fatal(err)
	}
	if err := sendOne(p.smtp, "other1", "Lunch"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var tagged, events int
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM message_tags WHERE tag = 'bills'), (SELECT count(*) FROM events WHERE kind = 'plugin.post_receive')`).Scan(&tagged, &events); err != nil {
			t.Fatal(err)
		}
		if events == 2 {
			break
		}
	}
	var subject string
	if err := pool.QueryRow(ctx, `SELECT m.subject FROM message_tags t JOIN messages m ON m.id = t.message_id`).Scan(&subject); err != nil || tagged != 1 || events != 2 || subject != "Invoice 7 for you" {
		t.Fatalf("%d tagged (%q, %v), %d plugin events; want the invoice tagged, 2 events\n%s", tagged, subject, err, events, p.logs())
	}
	// The management /status shows the plugin's health check (none declared).
	resp, err := http.Get("http://" + p.http + "/status")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"id":"subject-tagger","status":"unknown","detail":"no health check declared"`) {
		t.Fatalf("/status: %s", body)
	}
	// Disabled and reloaded: new mail is not hooked any more.
	cli("plugin", "disable", "--config", cfgPath, "subject-tagger")
	cli("reload", "--addr", p.http)
	if err := sendOne(p.smtp, "inv2", "Invoice 8"); err != nil {
		t.Fatal(err)
	}
	var jobs int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'post_receive'`).Scan(&jobs); err != nil || jobs != 2 {
		t.Fatalf("%d post_receive jobs after disabling, %v; want still 2", jobs, err)
	}
	// The example writes nothing to stderr.
	if out := cli("plugin", "logs", "--config", cfgPath, "subject-tagger"); !strings.Contains(out, "not logged anything") && strings.TrimSpace(out) != "" {
		t.Fatalf("logs printed %q", out)
	}
	if out := cli("plugin", "remove", "--config", cfgPath, "subject-tagger"); !strings.Contains(out, "removed") {
		t.Fatalf("remove printed %q", out)
	}
}

// TestHookJobsSurviveSIGKILL kills the agent while post_receive jobs are
// queued and running: after a restart every message gets its plugin's
// result, applied once (jobs.rescue_after runs again the jobs that were
// running when the agent died).
func TestHookJobsSurviveSIGKILL(t *testing.T) {
	// Retries a second apart: a call that times out on a loaded machine is
	// retried within the test's wait, not after the default 30s, 2m.
	cfgPath, dataDir, pool := setup(t, "jobs:\n  rescue_after: 3s\nplugins:\n  workers: 2\n  retry_backoff: 1s\n")
	for _, d := range []string{dataDir, filepath.Dir(dataDir)} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	src := t.TempDir()
	manifest := "id = \"slow\"\nname = \"Slow\"\nversion = \"1.0.0\"\nkind = \"stdin\"\nhooks = [\"post_receive\"]\ncommand = \"run.sh\"\ntimeout = \"5s\"\n\n[permissions]\nread_headers = true\nwrite_tags = true\n"
	if err := os.WriteFile(filepath.Join(src, "plugin.toml"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "run.sh"), []byte("#!/bin/sh\ncat >/dev/null\nsleep 0.3\necho x >> calls\necho '{\"tags\":[\"seen\"]}'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(proctest.Binary(t), "plugin", "install", "--config", cfgPath, src).CombinedOutput(); err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	p := startAgent(t, cfgPath)
	const n = 20
	for i := range n {
		if err := sendOne(p.smtp, fmt.Sprintf("crash-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	count := func(q string) int {
		t.Helper()
		var c int
		if err := pool.QueryRow(ctx, q).Scan(&c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	applied := `SELECT count(*) FROM events WHERE kind = 'plugin.post_receive'`
	for deadline := time.Now().Add(time.Minute); count(applied) < 3; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no hook result within a minute\n%s", p.logs())
		}
	}
	p.cmd.Process.Kill()
	p.waitExit(t)
	if done := count(applied); done >= n {
		t.Fatalf("all %d jobs finished before the kill; the test proves nothing", done)
	}
	p = restartAfterCrash(t, cfgPath)
	for deadline := time.Now().Add(3 * time.Minute); count(applied) < n; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d hook results after the restart\n%s", count(applied), n, p.logs())
		}
	}
	if tagged, events := count(`SELECT count(*) FROM message_tags WHERE tag = 'seen'`), count(applied); tagged != n || events != n {
		t.Fatalf("%d messages tagged, %d results applied; want %d each (none lost, none applied twice)", tagged, events, n)
	}
	if left := count(`SELECT count(*) FROM river_job WHERE kind = 'post_receive' AND state <> 'completed'`); left != 0 {
		t.Fatalf("%d post_receive jobs not completed", left)
	}
}
