package pidlock

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestAcquire(t *testing.T) {
	dir := t.TempDir()
	l, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(os.Getpid())
	if strings.TrimSpace(string(b)) != pid {
		t.Fatalf("lock file holds %q, want our pid %s", b, pid)
	}

	// flock belongs to the open file description: a second Acquire opens a
	// new one and must be refused, even from the same process.
	_, err = Acquire(dir)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Acquire: %v, want ErrLocked", err)
	}
	var le *LockedError
	if !errors.As(err, &le) || le.PID != os.Getpid() {
		t.Fatalf("second Acquire: %#v, want a LockedError with pid %s", err, pid)
	}
	if !strings.Contains(err.Error(), pid) {
		t.Fatalf("error %q does not name the holder's pid %s", err, pid)
	}

	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	l2, err := Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	if err := l2.Release(); err != nil {
		t.Fatal(err)
	}
}

func TestAcquireMissingDir(t *testing.T) {
	_, err := Acquire(filepath.Join(t.TempDir(), "absent"))
	if err == nil || errors.Is(err, ErrLocked) {
		t.Fatalf("Acquire in a missing directory: %v, want a plain error", err)
	}
}

// TestLockFileKeptByChild checks that the lock stays held through a
// duplicate of the descriptor, which is how a child process inherits it.
func TestLockFileKeptByChild(t *testing.T) {
	dir := t.TempDir()
	l, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	dup, err := dupFile(l.File())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := Acquire(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("Acquire while a duplicate descriptor is open: %v, want ErrLocked", err)
	}
	dup.Close()
	l2, err := Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire after the duplicate closed: %v", err)
	}
	l2.Release()
}

func dupFile(f *os.File) (*os.File, error) {
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}
