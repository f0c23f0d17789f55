// Package rspamdtest gives tests a real rspamd: the system's rspamd with its
// stock configuration (/etc/rspamd) and the overrides in conf/ (loopback
// ports, a fresh database directory, Bayes in SQLite so that learning needs
// no Redis, no outside fuzzy servers, and test rules that force each
// action). It fails, never skips, when rspamd is not installed.
package rspamdtest

import (
	"embed"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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

	cmd    *exec.Cmd
	exited chan struct{}
	out    proctest.Output
	once   sync.Once
}

// Start runs rspamd on two free loopback ports with a fresh database
// directory and waits until both workers answer. It is stopped when the test
// ends.
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
	// The free ports may be taken between probing and rspamd binding them;
	// try a few times.
	for attempt := 0; attempt < 3; attempt++ {
		if s := run(t, bin, dir); s != nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatal("rspamd did not start in three attempts")
	return nil
}

// run starts rspamd and waits for it; nil when it exited before answering.
func run(t testing.TB, bin, dir string) *Server {
	t.Helper()
	normal, controller := proctest.FreeAddr(t), proctest.FreeAddr(t)
	s := &Server{URL: "http://" + normal, ControllerURL: "http://" + controller, exited: make(chan struct{})}
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
