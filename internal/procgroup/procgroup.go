// Package procgroup ends a process together with every process it started
// in its process group (plugins and their health commands run in their own).
package procgroup

import (
	"errors"
	"os"
	"syscall"
)

// Kill sends SIGKILL to the process group pgid; os.ErrProcessDone when no
// process is left in it.
func Kill(pgid int) error {
	err := syscall.Kill(-pgid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}
