// Package pidlock keeps a data directory to one process at a time: an
// exclusive flock on a lock file, held for as long as the process runs, with
// the holder's pid written in the file for the error the next one sees.
package pidlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// FileName is the lock file Acquire takes in a data directory.
const FileName = "mairust.lock"

// ErrLocked is matched (with errors.Is) by the *LockedError returned when
// another process holds the lock.
var ErrLocked = errors.New("pidlock: held by another process")

// LockedError names the process that holds a lock.
type LockedError struct {
	Path string
	PID  int // 0 when the holder has not written its pid (yet)
}

func (e *LockedError) Error() string {
	if e.PID == 0 {
		return fmt.Sprintf("pidlock: %s is held by another process", e.Path)
	}
	return fmt.Sprintf("pidlock: %s is held by process %d", e.Path, e.PID)
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// Lock is a held lock.
type Lock struct {
	f *os.File
}

// Acquire locks <dataDir>/mairust.lock; the directory must exist.
func Acquire(dataDir string) (*Lock, error) {
	return AcquireFile(filepath.Join(dataDir, FileName))
}

// AcquireFile takes an exclusive flock on path, creating the file, and
// writes our pid into it. It does not wait: a lock held elsewhere, even by
// another descriptor of this process, gives a *LockedError.
func AcquireFile(path string) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pidlock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &LockedError{Path: path, PID: readPID(f)}
		}
		return nil, fmt.Errorf("pidlock: lock %s: %w", path, err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("pidlock: %w", err)
	}
	if _, err := f.WriteAt(pid, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("pidlock: %w", err)
	}
	return &Lock{f: f}, nil
}

func readPID(f *os.File) int {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	if err != nil {
		return 0
	}
	return pid
}

// File is the locked file. A child process that inherits it (exec.Cmd's
// ExtraFiles) keeps the lock held until it exits too.
func (l *Lock) File() *os.File { return l.f }

// Release clears the pid and unlocks. The file stays, so that no process can
// lock a file that another is about to unlink. Releasing twice is a no-op.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	terr := f.Truncate(0)
	if err := f.Close(); err != nil {
		return fmt.Errorf("pidlock: %w", err)
	}
	if terr != nil {
		return fmt.Errorf("pidlock: %w", terr)
	}
	return nil
}
