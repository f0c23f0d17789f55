package procgroup

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// TestKillEndsTheGroup starts a shell with a sleeping child in a group of
// its own, kills the group, and finds both gone.
func TestKillEndsTheGroup(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 60 & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := Kill(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	// The child may take a moment to be reaped by init; the group is
	// empty once it is.
	for i := 0; ; i++ {
		err := Kill(cmd.Process.Pid)
		if errors.Is(err, os.ErrProcessDone) {
			return
		}
		if i == 1000 {
			t.Fatalf("the group is still there: %v", err)
		}
		syscall.Nanosleep(&syscall.Timespec{Nsec: 1e6}, nil)
	}
}
