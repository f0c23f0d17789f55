// Package rspamdtest gives tests a real rspamd: the system's rspamd with its
// stock configuration (/etc/rspamd) and the overrides in conf/ (loopback
// ports, a fresh database directory, Bayes and its learn cache in a private
// redis-server that the starter runs for each rspamd and empties by ending
// it, no outside fuzzy servers, and test rules that force each action). It
// fails, never skips, when rspamd or redis-server is not installed.
package rspamdtest

import (
	"bufio"
	"embed"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mairust/mairust/internal/proctest"
)

//go:embed conf
var conf embed.FS

// StockConfig is the distribution's rspamd configuration the tests start from.
const StockConfig = "/etc/rspamd/rspamd.conf"

// install is how to get rspamd on Debian.
const install = "apt-get install -y rspamd (scripts/deps.sh test)"

// redisInstall is how to get redis-server on Debian.
const redisInstall = "apt-get install -y redis-server (scripts/deps.sh test)"

// Password is the controller's password; learning needs it.
const Password = "mairust-test-password"

// Subject markers: a message whose Subject contains one gets the score of
// that action's band from the test rules (conf/local.d/regexp.conf).
const (
	SubjectGreylist       = "mairust-test-greylist"
	SubjectAddHeader      = "mairust-test-add-header"
	SubjectRewriteSubject = "mairust-test-rewrite-subject"
	SubjectSoftReject     = "mairust-test-soft-reject"
)

// GTUBE is the test string rspamd rejects.
const GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

// Server is one running rspamd.
type Server struct {
	URL           string // the normal worker (/checkv2)
	ControllerURL string // the controller (/checkv2, /learnspam, /learnham)
	RedisAddr     string // the redis-server holding Bayes (host:port)

	cmd    *exec.Cmd
	exited chan struct{}
	out    proctest.Output
	once   sync.Once
}

// Start runs a redis-server and rspamd on free loopback ports with a fresh
// database directory and waits until both rspamd workers answer. Both are
// stopped when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("rspamd")
	if err != nil {
		t.Fatalf("rspamd is not installed: %s", install)
	}
	if _, err := os.Stat(StockConfig); err != nil {
		t.Fatalf("rspamd's configuration is missing (%v): reinstall it with %s", err, install)
	}
	dir := t.TempDir()
	if err := os.CopyFS(dir, conf); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"db", "run"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	// Registered first, so that it is killed after rspamd.
	redis := startRedis(t)
	// The free ports may be taken between probing and rspamd binding them;
	// try a few times.
	for attempt := 0; attempt < 3; attempt++ {
		if s := run(t, bin, dir, redis); s != nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatal("rspamd did not start in three attempts")
	return nil
}

// run starts rspamd and waits for it; nil when it exited before answering.
func run(t testing.TB, bin, dir, redis string) *Server {
	t.Helper()
	normal, controller := proctest.FreeAddr(t), proctest.FreeAddr(t)
	s := &Server{URL: "http://" + normal, ControllerURL: "http://" + controller, RedisAddr: redis, exited: make(chan struct{})}
	cacheDir := hsCache(dir)
	// rspamds starting at once (test packages run in parallel) would write
	// the shared compiled-pattern cache together and load half-written
	// files; one starts at a time, until it answers.
	unlock := lockDir(t, cacheDir)
	defer unlock()
	s.cmd = exec.Command(bin, "-f", "-i", "-c", StockConfig,
		"--var", "LOCAL_CONFDIR="+filepath.Join(dir, "conf"),
		"--var", "DBDIR="+filepath.Join(dir, "db"),
		"--var", "RUNDIR="+filepath.Join(dir, "run"),
		"--var", "LOGDIR="+filepath.Join(dir, "run"),
		"--var", "MAIRUST_NORMAL_SOCKET="+normal,
		"--var", "MAIRUST_CONTROLLER_SOCKET="+controller,
		"--var", "MAIRUST_PASSWORD="+Password,
		"--var", "MAIRUST_REDIS="+redis,
		"--var", "MAIRUST_HS_CACHE="+cacheDir)
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	// Its own process group, so that Stop ends the workers with the main process.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start rspamd: %v", err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()

	hc := &http.Client{Timeout: time.Second}
	// A cold start compiles the Hyperscan databases, which takes a while.
	deadline := time.After(90 * time.Second)
	for {
		if ping(hc, s.URL) && ping(hc, s.ControllerURL) {
			return s
		}
		select {
		case <-s.exited:
			t.Fatalf("rspamd exited during start:\n%s", s.Output())
		case <-deadline:
			s.Stop()
			t.Fatalf("rspamd did not answer on %s and %s within 90s:\n%s", normal, controller, s.Output())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startRedis runs a redis-server for rspamd's Bayes on a free loopback port,
// keeping nothing on disk, and waits until it answers; it is killed when the
// test ends. It returns the server's address.
func startRedis(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is not installed: %s", redisInstall)
	}
	dir := t.TempDir()
	// The free port may be taken between probing and redis-server binding
	// it; try a few times.
	var out string
	for attempt := 0; attempt < 3; attempt++ {
		var addr string
		if addr, out = runRedis(t, bin, dir); addr != "" {
			return addr
		}
	}
	t.Fatalf("redis-server did not start in three attempts:\n%s", out)
	return ""
}

// runRedis starts redis-server and waits for it; "" and its output when it
// exited before answering because its port was taken.
func runRedis(t testing.TB, bin, dir string) (string, string) {
	t.Helper()
	addr := proctest.FreeAddr(t)
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	var out proctest.Output
	cmd := exec.Command(bin, "--bind", host, "--port", port, "--dir", dir,
		"--save", "", "--appendonly", "no", "--loglevel", "warning")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	kill := func() { cmd.Process.Kill(); <-exited }

	deadline := time.After(30 * time.Second)
	for {
		if redisPing(addr) {
			t.Cleanup(kill)
			return addr, ""
		}
		select {
		case <-exited:
			if strings.Contains(out.String(), "already in use") {
				return "", out.String()
			}
			t.Fatalf("redis-server exited during start:\n%s", out.String())
		case <-deadline:
			kill()
			t.Fatalf("redis-server did not answer on %s within 30s:\n%s", addr, out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// redisPing tells whether a Redis server at addr answers PING.
func redisPing(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && line == "+PONG\r\n"
}

// lockDir takes an exclusive lock on dir/.lock, across processes.
func lockDir(t testing.TB, dir string) func() {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatal(err)
	}
	return func() { f.Close() }
}

// hsCache is the directory for rspamd's compiled Hyperscan databases, kept
// between runs under the user's cache directory when there is one.
func hsCache(dir string) string {
	if base, err := os.UserCacheDir(); err == nil {
		d := filepath.Join(base, "mairust", "rspamd-hs")
		if os.MkdirAll(d, 0o750) == nil {
			return d
		}
	}
	return filepath.Join(dir, "db")
}

func ping(hc *http.Client, url string) bool {
	resp, err := hc.Get(url + "/ping")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Stop kills rspamd and its workers at once, as a crash would, and waits
// until they are gone. Calling it again does nothing.
func (s *Server) Stop() {
	s.once.Do(func() {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	})
}

// Output returns what rspamd logged (warnings and errors).
func (s *Server) Output() string {
	return s.out.String()
}
