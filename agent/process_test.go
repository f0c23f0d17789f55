package agent_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mairust/mairust/agent/accounts/accountstest"
	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/proctest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	proctest.RemoveBinary()
	os.Exit(code)
}

// proc is an agent running as a separate process.
type proc struct {
	cmd  *exec.Cmd
	smtp string
	http string
	api  string
	imap string // STARTTLS
	// submission (STARTTLS)
	submission string
	log        *proctest.Output
	done       chan error
}

// setup makes a database with one user and a config file for an agent.
func setup(t *testing.T, extra string) (cfgPath, dataDir string, pool *pgxpool.Pool) {
	t.Helper()
	pool = accountstest.NewDatabase(t, "agent", "alice@example.test")
	url := pool.Config().ConnString()
	dataDir = t.TempDir()
	cfgPath = filepath.Join(dataDir, "mairust.yaml")
	cfg := fmt.Sprintf(`data_dir: %s
log:
  level: info
database:
  url: %s
smtp:
  listen: %s
  hostname: mx.example.test
http:
  listen: %s
api:
  listen: %s
imap:
  listen: %s
  tls_listen: %s
submission:
  listen: %s
  tls_listen: %s
%s`, dataDir, url, proctest.FreeAddr(t), proctest.FreeAddr(t), proctest.FreeAddr(t), proctest.FreeAddr(t), proctest.FreeAddr(t),
		proctest.FreeAddr(t), proctest.FreeAddr(t), extra)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, dataDir, pool
}

// startAgent runs `mairust agent --config cfgPath` and waits for /health.
func startAgent(t *testing.T, cfgPath string) *proc {
	t.Helper()
	bin := proctest.Binary(t)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{log: &proctest.Output{}, done: make(chan error, 1), smtp: cfg.SMTP.Listen, http: cfg.HTTP.Listen, api: cfg.API.Listen, imap: cfg.IMAP.Listen, submission: cfg.Submission.Listen}
	p.cmd = exec.Command(bin, "agent", "--config", cfgPath)
	stderr, _ := p.cmd.StderrPipe()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.log.Write([]byte(sc.Text() + "\n"))
		}
		p.done <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
	})
	for i := 0; i < 300; i++ {
		resp, err := http.Get("http://" + p.http + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		select {
		case err := <-p.done:
			t.Fatalf("agent exited: %v\n%s", err, p.logs())
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("agent not healthy after 30s\n%s", p.logs())
	return nil
}

func (p *proc) logs() string { return p.log.String() }

// waitExit waits for the process to end and returns its error.
func (p *proc) waitExit(t *testing.T) error {
	t.Helper()
	select {
	case err := <-p.done:
		return err
	case <-time.After(90 * time.Second):
		t.Fatalf("agent did not exit\n%s", p.logs())
		return nil
	}
}

func testMessage(id string) string {
	return fmt.Sprintf("From: load@remote.test\r\nTo: alice@example.test\r\nSubject: load %s\r\nMessage-ID: <%s@remote.test>\r\n\r\n%s\r\n", id, id, strings.Repeat("crash test body line\r\n", 200))
}

// sendOne delivers testMessage(id) to alice over plain SMTP, with subject
// in place of the default one when given.
func sendOne(addr, id string, subject ...string) error {
	msg := testMessage(id)
	if len(subject) > 0 {
		msg = strings.Replace(msg, "Subject: load "+id, "Subject: "+subject[0], 1)
	}
	return sendRaw(addr, msg)
}

// sendRaw delivers msg to alice over plain SMTP.
func sendRaw(addr, msg string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Mail("s@remote.test"); err != nil {
		return err
	}
	if err := c.Rcpt("alice@example.test"); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// TestSIGKILLLosesNoAcknowledgedMessage kills the agent mid-load and checks
// that every message answered 250 is stored and readable after a restart,
// and that the blobs left by unacknowledged ones are swept.
func TestSIGKILLLosesNoAcknowledgedMessage(t *testing.T) {
	cfgPath, dataDir, pool := setup(t, crashRetention)
	acked := loadUntilKilled(t, startAgent(t, cfgPath), 300)

	restartAfterCrash(t, cfgPath)
	root := filepath.Join(dataDir, "mail")
	checkAcknowledged(t, pool, acked, func(key string) ([]byte, error) {
		return os.ReadFile(filepath.Join(root, key[:2], key))
	})
	waitStorageMatchesRows(t, pool, filepath.Join(root, "??", "*"))
	if tmp, _ := filepath.Glob(filepath.Join(root, "??", ".tmp-*")); len(tmp) != 0 {
		t.Fatalf("%d temporary files left", len(tmp))
	}
}

// orphanGrace is the retention.orphan_blob_grace of crashRetention.
const orphanGrace = time.Second

// crashRetention makes the cleanup job, which runs at start, sweep blobs
// orphaned by a crash once they are orphanGrace old.
var crashRetention = fmt.Sprintf("retention:\n  orphan_blob_grace: %s\n  cleanup_interval: 1m\n", orphanGrace)

// loadUntilKilled sends messages to the agent over several connections,
// SIGKILLs it once n have been answered 250 and waits for it to end. It
// returns the IDs of the messages acknowledged before and around the kill.
func loadUntilKilled(t *testing.T, p *proc, n int) []string {
	t.Helper()
	const conns = 8
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	killed := make(chan struct{})
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			cl, err := smtp.Dial(p.smtp)
			if err != nil {
				return
			}
			defer cl.Close()
			for i := 0; ; i++ {
				id := fmt.Sprintf("c%d-m%d", c, i)
				if cl.Mail("load@remote.test") != nil || cl.Rcpt("alice@example.test") != nil {
					return
				}
				w, err := cl.Data()
				if err != nil {
					return
				}
				io.WriteString(w, testMessage(id))
				if w.Close() != nil {
					return // no 250: not acknowledged
				}
				mu.Lock()
				acked = append(acked, id)
				done := len(acked)
				mu.Unlock()
				if done == n {
					p.cmd.Process.Signal(syscall.SIGKILL)
					close(killed)
				}
			}
		}(c)
	}
	select {
	case <-killed:
	case <-time.After(60 * time.Second):
		t.Fatalf("load did not reach %d acknowledged messages\n%s", n, p.logs())
	}
	wg.Wait()
	p.waitExit(t)
	t.Logf("%d messages acknowledged before and around the SIGKILL", len(acked))
	return acked
}

// restartAfterCrash starts the killed agent again once the orphans it left
// are past retention.orphan_blob_grace. The cleanup job runs when the new
// agent becomes River's leader: after the dead one's lease expires (~15 s).
func restartAfterCrash(t *testing.T, cfgPath string) *proc {
	t.Helper()
	time.Sleep(orphanGrace)
	return startAgent(t, cfgPath)
}

// checkAcknowledged checks that every acknowledged message has its row and
// that read returns its blob: the message, with the key as its SHA-256.
func checkAcknowledged(t *testing.T, pool *pgxpool.Pool, acked []string, read func(key string) ([]byte, error)) {
	t.Helper()
	for _, id := range acked {
		var key string
		err := pool.QueryRow(context.Background(), `SELECT blob_key FROM messages WHERE message_id = $1`, id+"@remote.test").Scan(&key)
		if err != nil {
			t.Fatalf("acknowledged message %s not in the database: %v", id, err)
		}
		raw, err := read(key)
		if err != nil {
			t.Fatalf("acknowledged message %s: blob unreadable: %v", id, err)
		}
		sum := sha256.Sum256(raw)
		if hex.EncodeToString(sum[:]) != key || !strings.Contains(string(raw), "Subject: load "+id+"\r\n") {
			t.Fatalf("acknowledged message %s: blob content wrong", id)
		}
	}
}

// waitStorageMatchesRows waits for the cleanup job to leave the blob files
// matching pattern and the blob rows the same set.
func waitStorageMatchesRows(t *testing.T, pool *pgxpool.Pool, pattern string) {
	t.Helper()
	var diff string
	for i := 0; i < 120; i++ {
		diff = compareBlobs(t, pool, pattern)
		if diff == "" {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("storage and database disagree after cleanup: %s", diff)
}

// compareBlobs describes the difference between the blob files matching
// pattern, named by their keys, and the blob rows.
func compareBlobs(t *testing.T, pool *pgxpool.Pool, pattern string) string {
	onDisk := map[string]bool{}
	files, _ := filepath.Glob(pattern)
	for _, f := range files {
		onDisk[filepath.Base(f)] = true
	}
	rows, err := pool.Query(context.Background(), `SELECT key FROM blobs`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	inDB := map[string]bool{}
	for rows.Next() {
		var k string
		rows.Scan(&k)
		inDB[k] = true
	}
	var orphans, missing int
	for k := range onDisk {
		if !inDB[k] {
			orphans++
		}
	}
	for k := range inDB {
		if !onDisk[k] {
			missing++
		}
	}
	if orphans == 0 && missing == 0 {
		return ""
	}
	return fmt.Sprintf("%d orphan blob files, %d rows without a file", orphans, missing)
}

func TestReloadAppliesLiveKeysAndNamesRestartKeys(t *testing.T) {
	cfgPath, _, _ := setup(t, "")
	p := startAgent(t, cfgPath)
	raw, _ := os.ReadFile(cfgPath)
	changed := strings.Replace(string(raw), "level: info", "level: debug", 1)
	changed = strings.Replace(changed, "hostname: mx.example.test", "hostname: mx2.example.test", 1)
	os.WriteFile(cfgPath, []byte(changed), 0o600)

	bin := proctest.Binary(t)
	out, err := exec.Command(bin, "reload", "--config", cfgPath).CombinedOutput()
	if err != nil {
		t.Fatalf("mairust reload: %v\n%s", err, out)
	}
	want := "applied [log.level]; restart needed for [smtp.hostname]"
	if !strings.Contains(string(out), want) {
		t.Fatalf("mairust reload printed %q, want %q", out, want)
	}
	// A broken file is refused and the agent keeps running.
	os.WriteFile(cfgPath, []byte(changed+"smtp:\n  bogus: 1\n"), 0o600)
	out, err = exec.Command(bin, "reload", "--addr", p.http).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "reload refused") {
		t.Fatalf("broken config: %v %s", err, out)
	}
	// SIGHUP does the same as mairust reload.
	os.WriteFile(cfgPath, []byte(strings.Replace(changed, "level: debug", "level: warn", 1)), 0o600)
	p.cmd.Process.Signal(syscall.SIGHUP)
	for i := 0; i < 100 && !strings.Contains(p.logs(), "applied [log.level]"); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(p.logs(), "configuration reloaded") {
		t.Fatalf("SIGHUP did not reload\n%s", p.logs())
	}
	if err := sendOne(p.smtp, "after-reload"); err != nil {
		t.Fatalf("SMTP after reloads: %v", err)
	}
	resp, err := http.Get("http://" + p.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, name := range []string{"mairust_smtp_sessions_total", "mairust_smtp_messages_total", "mairust_smtp_received_bytes_total",
		"mairust_blobstore_operation_seconds", "mairust_mailstore_commit_seconds", "mairust_db_pool_connections", "mairust_groupcommit_batch_size"} {
		if !strings.Contains(string(body), "# TYPE "+name+" ") {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

func TestSIGTERMFinishesTransactionsUnderWay(t *testing.T) {
	cfgPath, _, pool := setup(t, "")
	p := startAgent(t, cfgPath)
	c, err := smtp.Dial(p.smtp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("s@remote.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("alice@example.test"); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	for i := 0; i < 100 && !strings.Contains(p.logs(), "shutting down"); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, testMessage("during-shutdown"))
	if err := w.Close(); err != nil {
		t.Fatalf("message under way at SIGTERM: %v", err)
	}
	if err := p.waitExit(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.logs())
	}
	var n int
	pool.QueryRow(context.Background(), `SELECT count(*) FROM messages WHERE message_id = 'during-shutdown@remote.test'`).Scan(&n)
	if n != 1 {
		t.Fatalf("message acknowledged during shutdown stored %d times", n)
	}
}

// TestRetentionJobPurgesExpiredMail runs the cleanup job through River: a
// message deleted longer ago than retention.deleted_messages_days loses its
// row and its blob; a recently deleted one keeps both.
func TestRetentionJobPurgesExpiredMail(t *testing.T) {
	cfgPath, dataDir, pool := setup(t, "retention:\n  deleted_messages_days: 30\n")
	p := startAgent(t, cfgPath)
	for _, id := range []string{"old", "recent"} {
		if err := sendOne(p.smtp, id); err != nil {
			t.Fatal(err)
		}
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.waitExit(t); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	keys := map[string]string{}
	for id, age := range map[string]string{"old": "31 days", "recent": "1 day"} {
		var key string
		err := pool.QueryRow(ctx, `UPDATE messages SET deleted_at = now() - $2::interval WHERE message_id = $1 RETURNING blob_key`, id+"@remote.test", age).Scan(&key)
		if err != nil {
			t.Fatal(err)
		}
		keys[id] = filepath.Join(dataDir, "mail", key[:2], key)
	}
	startAgent(t, cfgPath) // the job runs once at start
	var n int
	for i := 0; i < 600; i++ {
		pool.QueryRow(ctx, `SELECT count(*) FROM messages`).Scan(&n)
		if _, err := os.Stat(keys["old"]); n == 1 && os.IsNotExist(err) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n != 1 {
		t.Fatalf("%d messages left, want only the recently deleted one", n)
	}
	if _, err := os.Stat(keys["old"]); !os.IsNotExist(err) {
		t.Fatalf("blob of the purged message still on disk: %v", err)
	}
	if _, err := os.Stat(keys["recent"]); err != nil {
		t.Fatalf("blob of the message within retention: %v", err)
	}
}
