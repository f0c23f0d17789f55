package embeddedpg

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mairust/mairust/internal/proctest"
)

// helperEnv makes the test binary a mairust stand-in that runs a server
// until it is killed, for the killed-owner step of TestLifecycle.
const helperEnv = "EMBEDDEDPG_TEST_HELPER_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperEnv); dir != "" {
		os.Exit(helper(dir))
	}
	os.Exit(m.Run())
}

func helper(dir string) int {
	s, err := Start(context.Background(), Options{DataDir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("ready", s.cmd.Process.Pid)
	io.Copy(io.Discard, os.Stdin)
	s.Stop(context.Background())
	return 0
}

// serverDir is a fresh server directory that user mairust, which runs the
// server when the tests run as root, can reach.
func serverDir(t *testing.T) string {
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(base, "db")
}

func start(t *testing.T, ctx context.Context, o Options) *Server {
	t.Helper()
	s, err := Start(ctx, o)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return s
}

func stop(t *testing.T, ctx context.Context, s *Server) {
	t.Helper()
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

func connect(t *testing.T, ctx context.Context, s *Server) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(ctx, s.URL())
	if err != nil {
		t.Fatalf("connect to %s: %v", s.URL(), err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// checkKept checks that the row written by the first start is still there.
func checkKept(t *testing.T, ctx context.Context, s *Server) {
	t.Helper()
	var note string
	if err := connect(t, ctx, s).QueryRow(ctx, "SELECT note FROM notes").Scan(&note); err != nil || note != "kept" {
		t.Fatalf("after restart: note %q, %v; want kept", note, err)
	}
}

// TestLifecycle shares one initdb between its steps, which run in order.
func TestLifecycle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := serverDir(t)
	logs := &proctest.Output{}
	opts := Options{DataDir: dir, Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}

	s := start(t, ctx, opts)
	// Each step stops the server it started last.
	t.Cleanup(func() { s.Stop(context.Background()) })
	if !Initialized(dir) {
		t.Fatal("Initialized is false after the first start")
	}
	c := connect(t, ctx, s)
	var db, role, listen, fsync, syncCommit string
	err := c.QueryRow(ctx, `SELECT current_database(), current_user, current_setting('listen_addresses'),
		current_setting('fsync'), current_setting('synchronous_commit')`).Scan(&db, &role, &listen, &fsync, &syncCommit)
	if err != nil {
		t.Fatal(err)
	}
	if db != "mairust" || role != "mairust" || listen != "" || fsync != "on" || syncCommit != "on" {
		t.Fatalf("database %q role %q listen_addresses %q fsync %q synchronous_commit %q; want mairust, mairust, empty, on, on", db, role, listen, fsync, syncCommit)
	}
	if _, err := c.Exec(ctx, "CREATE TABLE notes (note text); INSERT INTO notes VALUES ('kept')"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "run")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("socket directory: %v, %v; want mode 0700", fi, err)
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("mairust")
		if err != nil {
			t.Fatalf("system user mairust: %v", err)
		}
		fi, err := os.Stat(filepath.Join(dir, "data"))
		if err != nil {
			t.Fatal(err)
		}
		if uid := fi.Sys().(*syscall.Stat_t).Uid; strconv.Itoa(int(uid)) != u.Uid {
			t.Fatalf("data directory owned by uid %d, want mairust (%s)", uid, u.Uid)
		}
	}
	if l := logs.String(); !strings.Contains(l, `"component":"embedded-postgres"`) || !strings.Contains(l, "ready to accept connections") {
		t.Fatalf("the server's log did not reach the logger with component=embedded-postgres:\n%s", l)
	}

	t.Run("second start refused", func(t *testing.T) {
		_, err := Start(ctx, opts)
		if err == nil || !strings.Contains(err.Error(), "already in use by process "+strconv.Itoa(os.Getpid())) {
			t.Fatalf("second Start on a running directory: %v; want 'already in use by process %d'", err, os.Getpid())
		}
	})

	t.Run("restart keeps data", func(t *testing.T) {
		stop(t, ctx, s)
		select {
		case <-s.Done():
		default:
			t.Fatal("Done is open after Stop")
		}
		if err := s.Stop(ctx); err != nil {
			t.Fatalf("second Stop: %v", err)
		}
		s = start(t, ctx, opts)
		checkKept(t, ctx, s)
	})

	t.Run("postmaster killed", func(t *testing.T) {
		// SIGKILL leaves postmaster.pid behind with a dead pid.
		s.cmd.Process.Kill()
		<-s.Done()
		s.Stop(ctx)
		if pid, _ := postmasterPid(s.pgdata); pid == 0 {
			t.Fatal("no postmaster.pid left by the killed server")
		}
		s = start(t, ctx, opts)
		checkKept(t, ctx, s)
	})

	t.Run("pid reused", func(t *testing.T) {
		stop(t, ctx, s)
		// A postmaster.pid naming a live process that is not our server,
		// as after a reboot; PostgreSQL alone would refuse to start.
		stale := fmt.Sprintf("1\n%s\n0\n5432\n%s\n\n0 0\nready\n", s.pgdata, s.sock)
		if err := os.WriteFile(filepath.Join(s.pgdata, "postmaster.pid"), []byte(stale), 0o600); err != nil {
			t.Fatal(err)
		}
		s = start(t, ctx, opts)
		if !strings.Contains(logs.String(), "removing a stale postmaster.pid") {
			t.Error("the stale postmaster.pid was not reported")
		}
		checkKept(t, ctx, s)
	})

	t.Run("owner killed", func(t *testing.T) {
		stop(t, ctx, s)
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"="+dir)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		defer stdin.Close()
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(out).ReadString('\n')
		var pgPid int
		if _, err := fmt.Sscanf(line, "ready %d", &pgPid); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("helper: %q", line)
		}
		// Should Pdeathsig fail, do not leave the server behind.
		t.Cleanup(func() { syscall.Kill(pgPid, syscall.SIGQUIT) })
		cmd.Process.Kill()
		cmd.Wait()
		// The orphaned server shuts down on its own; Start waits for it.
		s = start(t, ctx, opts)
		if s.cmd.Process.Pid == pgPid {
			t.Fatal("the killed owner's server is still the one running")
		}
		checkKept(t, ctx, s)
		stop(t, ctx, s)
	})
}

func TestSinkLevels(t *testing.T) {
	logs := &proctest.Output{}
	w := newLogSink(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), slog.LevelInfo)
	io.WriteString(w, "LOG:  database system is ready\nWARNING:  something odd\nDETAIL:  the details\nPANIC:  could not write to file")
	if strings.Contains(logs.String(), "could not write") {
		t.Fatal("an unterminated line was logged before flush")
	}
	w.flush()
	want := []string{
		`level=INFO msg="database system is ready" severity=LOG`,
		`level=WARN msg="something odd" severity=WARNING`,
		`level=WARN msg="the details" severity=DETAIL`,
		`level=ERROR msg="could not write to file" severity=PANIC`,
	}
	for _, l := range want {
		if !strings.Contains(logs.String(), l) {
			t.Errorf("log lacks %s:\n%s", l, logs.String())
		}
	}
	if got := w.lastLines(); !strings.HasSuffix(got, "PANIC:  could not write to file") {
		t.Errorf("lastLines = %q", got)
	}
}
