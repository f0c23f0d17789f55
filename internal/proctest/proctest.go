// Package proctest helps tests that run MaiRust as a separate process: the
// binary built once per test process, free loopback addresses, and a buffer
// that collects a child's output while the test reads it.
package proctest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

var binary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "mairust-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "mairust")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/mairust/mairust/cmd/mairust").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// Binary returns the path of cmd/mairust built for this test process; the
// first call builds it.
func Binary(t testing.TB) string {
	t.Helper()
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// RemoveBinary deletes the built binary; call it from TestMain after m.Run.
func RemoveBinary() {
	if bin, err := binary(); err == nil {
		os.RemoveAll(filepath.Dir(bin))
	}
}

// FreeAddr returns a loopback address with a port free at the time of the
// call. The port is below the kernel's ephemeral range (32768 and up on
// Linux), so that a connection some other test opens meanwhile cannot take
// it as its local port before the child process listens on it, and it is
// reserved for t: no other test, of this package or another running at the
// same time, is given it until t ends.
func FreeAddr(t testing.TB) string {
	t.Helper()
	for range 1000 {
		port := 20000 + rand.IntN(12000)
		if !reserve(t, port) {
			continue // handed to a test of another package
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // taken
		}
		l.Close()
		return l.Addr().String()
	}
	t.Fatal("proctest: no free port between 20000 and 32000 on 127.0.0.1")
	return ""
}

// reserve takes port for t until it ends, across the test processes of
// the machine (go test runs packages in parallel): an exclusive lock on a
// file named after it, released when t ends or its process dies.
func reserve(t testing.TB, port int) bool {
	dir := filepath.Join(os.TempDir(), "mairust-test-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return true // no reservations: the bind check alone
	}
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return true
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return false
	}
	t.Cleanup(func() { f.Close() }) // closing releases the lock
	return true
}

// Output collects what a child writes; safe for concurrent use.
type Output struct {
	mu sync.Mutex
	b  strings.Builder
}

// Write implements io.Writer.
func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

// String returns everything written so far.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// GoTool finds the program name, installed with `go install` (the command
// given in install), in PATH, GOBIN or GOPATH/bin; it fails the test with
// the install command when it is missing.
func GoTool(t testing.TB, name, install string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output()
	if err != nil {
		t.Fatalf("%s is not in PATH and `go env` failed (%v); install it with: %s", name, err, install)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	dirs := []string{strings.TrimSpace(lines[0])}
	if len(lines) > 1 {
		for _, gp := range filepath.SplitList(strings.TrimSpace(lines[1])) {
			dirs = append(dirs, filepath.Join(gp, "bin"))
		}
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	t.Fatalf("%s not found in PATH nor in %v; install it with: %s (scripts/deps.sh test does)", name, dirs, install)
	return ""
}
