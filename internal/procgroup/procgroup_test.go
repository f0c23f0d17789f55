package procgroup

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/mairust/mairust/internal/procgroup/procgrouptest"
)

// TestKillEndsTheGroup starts a shell with a sleeping child in a group of
// its own, kills the group, and finds both dead (a zombie not yet reaped
// by init counts as dead).
func TestKillEndsTheGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child")
	cmd := exec.Command("sh", "-c", `sleep 60 & echo $! > "$0"; wait`, pidFile)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if b, err := os.ReadFile(pidFile); err == nil && len(b) > 0 && b[len(b)-1] == '\n' {
			break
		}
		if i == 1000 {
			t.Fatal("the shell did not start its child")
		}
		syscall.Nanosleep(&syscall.Timespec{Nsec: 1e7}, nil)
	}
	child := procgrouptest.ChildPid(t, pidFile)
	if err := Kill(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	procgrouptest.WaitGone(t, child)
	// A group that never existed is reported done.
	if err := Kill(1 << 22); !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("Kill of a group that does not exist: %v", err)
	}
}
