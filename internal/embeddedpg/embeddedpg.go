// Package embeddedpg runs the system's PostgreSQL server binaries as a child
// process of mairust aio, with a private data directory and a unix socket
// only (no TCP listener).
//
// Layout under Options.DataDir: data/ is the cluster, run/ (mode 0700) holds
// the socket, postgres.lock is held by us and by the server processes, which
// inherit it, so that no second server starts while any of them lives.
// The server's log lines go to Options.Logger with component=embedded-postgres.
package embeddedpg

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mairust/mairust/internal/pidlock"
	"github.com/mairust/mairust/internal/sysuser"
)

const (
	// superuser is the PostgreSQL role initdb creates, and osUser the
	// system account the server runs as when we run as root.
	superuser = "mairust"
	osUser    = "mairust"
	// database is the database URL points at.
	database = "mairust"
	port     = 5432

	// startTimeout bounds the wait for the server to accept connections
	// (crash recovery of a large WAL can take a while).
	startTimeout = 2 * time.Minute
	// orphanTimeout bounds the wait for a server left by a killed owner
	// to finish shutting down.
	orphanTimeout = 30 * time.Second
	// killTimeout is how long an immediate shutdown may take before the
	// process group is killed.
	killTimeout = 10 * time.Second
)

// settings are appended to postgresql.conf by the first start; the operator
// may edit them. The network settings are passed on the command line, so
// that no edit can open a TCP port.
const settings = `
# Added by mairust for its embedded PostgreSQL. listen_addresses and
# unix_socket_directories are set on the command line by mairust.
max_connections = 100
shared_buffers = 128MB
fsync = on
synchronous_commit = on
full_page_writes = on
`

// Options configure Start.
type Options struct {
	DataDir string       // directory of the embedded server, e.g. <data_dir>/db
	Logger  *slog.Logger // receives the server's log lines; nil: slog.Default()
}

// Server is a running embedded PostgreSQL.
type Server struct {
	dir, pgdata, sock, bin string
	cred                   *syscall.Credential
	logger                 *slog.Logger
	lock                   *pidlock.Lock

	cmd      *exec.Cmd
	log      *logSink
	done     chan struct{}
	exitErr  error // set before done is closed
	stopping atomic.Bool

	stopOnce sync.Once
	stopErr  error
}

// Initialized reports whether dir holds a cluster made by a previous Start.
func Initialized(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "data", "PG_VERSION"))
	return err == nil
}

// Start runs the server of o.DataDir, creating the cluster and the database
// on the first start, and returns once it accepts connections. ctx bounds
// the start only; the server runs until Stop.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.DataDir == "" {
		return nil, errors.New("embeddedpg: no data directory given")
	}
	dir, err := filepath.Abs(o.DataDir)
	if err != nil {
		return nil, fmt.Errorf("embeddedpg: %w", err)
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{
		dir:    dir,
		pgdata: filepath.Join(dir, "data"),
		sock:   filepath.Join(dir, "run"),
		logger: logger.With("component", "embedded-postgres"),
		done:   make(chan struct{}),
	}
	if n := len(s.sock) + len("/.s.PGSQL.5432"); n > 107 {
		return nil, fmt.Errorf("embeddedpg: the socket path under %s would be %d bytes, more than the 107 the system allows: use a shorter data_dir", dir, n)
	}
	if s.bin, err = binDir(s.pgdata); err != nil {
		return nil, err
	}
	if s.cred, err = serverCredential(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("embeddedpg: %w", err)
	}
	if s.lock, err = lockDir(ctx, dir); err != nil {
		return nil, err
	}
	if err := s.prepare(ctx); err != nil {
		s.lock.Release()
		return nil, err
	}
	if err := s.start(); err != nil {
		s.lock.Release()
		return nil, err
	}
	if err := s.waitReady(ctx); err != nil {
		return nil, s.abort(err)
	}
	if _, err := s.Database(ctx, database); err != nil {
		return nil, s.abort(err)
	}
	s.logger.Info("embedded PostgreSQL is ready", "dir", dir, "bin", s.bin)
	return s, nil
}

// URL is the pgx connection URL of database mairust through the socket.
func (s *Server) URL() string { return s.url(database) }

// URL returns the connection URL of database mairust of the embedded server
// of dir (Options.DataDir), for other processes while that server runs.
func URL(dir string) string { return socketURL(filepath.Join(dir, "run"), database) }

// BinDir is the directory of the PostgreSQL binaries in use; its pg_dump
// matches the server's version.
func (s *Server) BinDir() string { return s.bin }

// Done is closed when the server process has exited, whether by Stop or not.
func (s *Server) Done() <-chan struct{} { return s.done }

// Stop shuts the server down fast (SIGINT: sessions are ended, the data is
// checkpointed) and waits for it to exit. When ctx ends first, the server is
// stopped at once (SIGQUIT) and recovers on its next start. Stop releases
// the directory; calling it again returns the first result.
func (s *Server) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() { s.stopErr = s.shutdown(ctx) })
	return s.stopErr
}

func (s *Server) url(db string) string { return socketURL(s.sock, db) }

func socketURL(sock, db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(superuser),
		Path:     "/" + db,
		RawQuery: url.Values{"host": {sock}, "port": {strconv.Itoa(port)}}.Encode(),
	}
	return u.String()
}

// binDir finds a directory with the server binaries: the version the cluster
// was made with if it is installed, else pg_config --bindir, the newest
// /usr/lib/postgresql/*/bin, or the PATH.
func binDir(pgdata string) (string, error) {
	var dirs []string
	if v, err := os.ReadFile(filepath.Join(pgdata, "PG_VERSION")); err == nil {
		dirs = append(dirs, filepath.Join("/usr/lib/postgresql", strings.TrimSpace(string(v)), "bin"))
	}
	if p, err := exec.LookPath("pg_config"); err == nil {
		if out, err := exec.Command(p, "--bindir").Output(); err == nil {
			dirs = append(dirs, strings.TrimSpace(string(out)))
		}
	}
	installed, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(installed, func(a, b string) int { return compareVersions(versionOf(b), versionOf(a)) })
	dirs = append(dirs, installed...)
	if p, err := exec.LookPath("postgres"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	for _, d := range dirs {
		if isExecutable(filepath.Join(d, "postgres")) && isExecutable(filepath.Join(d, "initdb")) {
			return d, nil
		}
	}
	return "", errors.New("embeddedpg: the PostgreSQL server binaries (postgres, initdb) were not found: install postgresql (apt-get install postgresql)")
}

func versionOf(bin string) string { return filepath.Base(filepath.Dir(bin)) }

// compareVersions orders "9.6" before "15" before "16.1".
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) || i < len(bs); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x - y
		}
	}
	return 0
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// serverCredential is nil when we are not root; as root it is the system
// user mairust, created when missing, as PostgreSQL refuses to run as root.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	c, err := sysuser.Ensure(osUser)
	if err != nil {
		return nil, fmt.Errorf("embeddedpg: PostgreSQL cannot run as root: %w", err)
	}
	return c, nil
}

// lockDir takes dir/postgres.lock. While a server whose owner was killed
// is still shutting down (its processes hold the lock), it waits for it.
func lockDir(ctx context.Context, dir string) (*pidlock.Lock, error) {
	path := filepath.Join(dir, "postgres.lock")
	ctx, cancel := context.WithTimeout(ctx, orphanTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		l, err := pidlock.AcquireFile(path)
		var held *pidlock.LockedError
		if !errors.As(err, &held) {
			return l, err
		}
		if held.PID != 0 && processExists(held.PID) {
			return nil, fmt.Errorf("embeddedpg: the PostgreSQL of %s is already in use by process %d (is another mairust running on this data directory?)", dir, held.PID)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("embeddedpg: the PostgreSQL of %s, left by a mairust that has exited (process %d), is still running (%v): stop it with kill -INT on the pid in %s", dir, held.PID, context.Cause(ctx), filepath.Join(dir, "data", "postmaster.pid"))
		case <-tick.C:
		}
	}
}

func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// prepare creates the directories, hands them to the server's user, removes
// a stale postmaster.pid and makes the cluster on the first start.
func (s *Server) prepare(ctx context.Context) error {
	for _, d := range []string{s.dir, s.sock} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("embeddedpg: %w", err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return fmt.Errorf("embeddedpg: %w", err)
		}
	}
	if s.cred != nil {
		if err := checkSearchable(s.dir, s.cred); err != nil {
			return err
		}
		if err := chownTree(s.dir, s.cred); err != nil {
			return err
		}
	}
	if err := s.removeStalePid(); err != nil {
		return err
	}
	if Initialized(s.dir) {
		return nil
	}
	return s.initdb(ctx)
}

// checkSearchable makes sure the server's user can reach dir.
func checkSearchable(dir string, cred *syscall.Credential) error {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("embeddedpg: %w", err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		perm := fi.Mode().Perm()
		var x fs.FileMode = 0o001
		switch {
		case st.Uid == cred.Uid:
			x = 0o100
		case st.Gid == cred.Gid:
			x = 0o010
		}
		if perm&x == 0 {
			return fmt.Errorf("embeddedpg: PostgreSQL runs as user %s, which cannot enter %s (mode %v): allow it, e.g. chmod o+x %s", osUser, d, perm, d)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// chownTree gives dir and everything under it to cred's user.
func chownTree(dir string, cred *syscall.Credential) error {
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == cred.Uid && st.Gid == cred.Gid {
			return nil
		}
		return os.Lchown(p, int(cred.Uid), int(cred.Gid))
	})
	if err != nil {
		return fmt.Errorf("embeddedpg: give %s to user %s: %w", dir, osUser, err)
	}
	return nil
}

// postmasterPid reads the pid and status lines of pgdata/postmaster.pid.
func postmasterPid(pgdata string) (pid int, status string) {
	b, err := os.ReadFile(filepath.Join(pgdata, "postmaster.pid"))
	if err != nil {
		return 0, ""
	}
	lines := strings.Split(string(b), "\n")
	pid, _ = strconv.Atoi(strings.TrimSpace(lines[0]))
	if len(lines) > 7 {
		status = strings.TrimSpace(lines[7])
	}
	return pid, status
}

// removeStalePid deletes a postmaster.pid whose pid now belongs to another
// process, which PostgreSQL would take for a running server. Since we hold
// the lock, no server of ours runs; one started by hand in the directory
// would have it as its working directory and is left for PostgreSQL to see.
func (s *Server) removeStalePid() error {
	pid, _ := postmasterPid(s.pgdata)
	if pid <= 0 || !processExists(pid) {
		return nil // none, or PostgreSQL sees for itself that it is stale
	}
	if _, err := os.Stat("/proc/self/cwd"); err != nil {
		return nil // no procfs to tell: leave it to PostgreSQL
	}
	if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err == nil {
		if real, err := filepath.EvalSymlinks(s.pgdata); err == nil && cwd == real {
			return nil
		}
	}
	s.logger.Info("removing a stale postmaster.pid; its pid now belongs to another process", "pid", pid)
	if err := os.Remove(filepath.Join(s.pgdata, "postmaster.pid")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("embeddedpg: %w", err)
	}
	return nil
}

// command prepares a child that runs as the server's user, in the server's
// directory, with a clean environment and the lock inherited.
func (s *Server) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, name), args...)
	cmd.Dir = s.dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C"}
	cmd.SysProcAttr = sysProcAttr(s.cred)
	cmd.ExtraFiles = []*os.File{s.lock.File()}
	return cmd
}

// spawn starts cmd from a goroutine locked to its thread until cmd exits:
// the kernel sends Pdeathsig when the creating thread ends, which must be
// when the process does, not when the Go runtime retires a thread.
func spawn(cmd *exec.Cmd) (<-chan error, error) {
	started, exited := make(chan error, 1), make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return exited, nil
}

// initdb makes the cluster in a temporary directory and renames it into
// place, so that an interrupted initdb leaves nothing half made.
func (s *Server) initdb(ctx context.Context) error {
	if err := os.Remove(s.pgdata); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("embeddedpg: %s exists but holds no PostgreSQL cluster (no PG_VERSION): move it away: %w", s.pgdata, err)
	}
	tmp := s.pgdata + ".initdb"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("embeddedpg: %w", err)
	}
	s.logger.Info("creating the database cluster", "dir", s.pgdata)
	out := newLogSink(s.logger, slog.LevelDebug)
	cmd := s.command(ctx, "initdb", "-D", tmp, "-U", superuser, "-E", "UTF8", "--locale=C",
		"--auth-local=trust", "--auth-host=reject")
	cmd.Stdout, cmd.Stderr = out, out
	exited, err := spawn(cmd)
	if err == nil {
		err = <-exited
	}
	out.flush()
	if err != nil {
		return fmt.Errorf("embeddedpg: initdb: %v; its output:\n%s", err, out.lastLines())
	}
	f, err := os.OpenFile(filepath.Join(tmp, "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("embeddedpg: %w", err)
	}
	_, err = f.WriteString(settings)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("embeddedpg: write postgresql.conf: %w", err)
	}
	if err := os.Rename(tmp, s.pgdata); err != nil {
		return fmt.Errorf("embeddedpg: %w", err)
	}
	return nil
}

// start runs the postmaster.
func (s *Server) start() error {
	s.log = newLogSink(s.logger, slog.LevelInfo)
	s.cmd = s.command(context.Background(), "postgres", "-D", s.pgdata,
		"-c", "listen_addresses=",
		"-c", "unix_socket_directories="+s.sock,
		"-c", "unix_socket_permissions=0700",
		"-c", "port="+strconv.Itoa(port),
		"-c", "logging_collector=off",
		"-c", "log_destination=stderr",
		"-c", "log_line_prefix=")
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	// Backends inherit stderr; do not wait long for them after the
	// postmaster has gone.
	s.cmd.WaitDelay = killTimeout
	exited, err := spawn(s.cmd)
	if err != nil {
		return fmt.Errorf("embeddedpg: start postgres: %w", err)
	}
	go func() {
		s.exitErr = <-exited
		s.log.flush()
		if !s.stopping.Load() {
			s.logger.Error("embedded PostgreSQL exited unexpectedly", "err", s.exitErr)
		}
		close(s.done)
	}()
	return nil
}

// waitReady waits for postmaster.pid to say ready, then for a connection.
func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last := errors.New("not ready yet")
	for {
		if pid, status := postmasterPid(s.pgdata); pid == s.cmd.Process.Pid && status == "ready" {
			c, err := pgx.Connect(ctx, s.url("postgres"))
			if err == nil {
				return c.Close(ctx)
			}
			last = err
		}
		select {
		case <-s.done:
			return fmt.Errorf("embeddedpg: PostgreSQL exited while starting (%v); its log:\n%s", s.exitErr, s.log.lastLines())
		case <-ctx.Done():
			return fmt.Errorf("embeddedpg: PostgreSQL did not accept connections (%v; last: %v); its log:\n%s", context.Cause(ctx), last, s.log.lastLines())
		case <-tick.C:
		}
	}
}

// Database creates database name when it does not exist (as the control
// plane's, next to the agent's) and returns its connection URL.
func (s *Server) Database(ctx context.Context, name string) (string, error) {
	c, err := pgx.Connect(ctx, s.url("postgres"))
	if err != nil {
		return "", fmt.Errorf("embeddedpg: %w", err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", fmt.Errorf("embeddedpg: %w", err)
	}
	if !exists {
		if _, err := c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			return "", fmt.Errorf("embeddedpg: create database %s: %w", name, err)
		}
	}
	return s.url(name), nil
}

// abort stops a server that failed to start and returns err.
func (s *Server) abort(err error) error {
	ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
	defer cancel()
	s.Stop(ctx)
	return err
}

func (s *Server) shutdown(ctx context.Context) error {
	defer s.lock.Release()
	s.stopping.Store(true)
	s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
		if s.exitErr != nil {
			return fmt.Errorf("embeddedpg: PostgreSQL exited with %v; its log:\n%s", s.exitErr, s.log.lastLines())
		}
		return nil
	case <-ctx.Done():
	}
	s.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-s.done:
	case <-time.After(killTimeout):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
	return fmt.Errorf("embeddedpg: fast shutdown did not finish (%v); PostgreSQL was stopped at once and will recover on its next start", context.Cause(ctx))
}
