//go:build !linux

package netpolicy

import (
	"errors"
	"os/exec"
	"syscall"
)

var errNotLinux = errors.New("network namespaces are Linux only")

func inNetns(func() error) error { return errNotLinux }

func probeUsernsOnce() error { return errNotLinux }

func probeLandlockOnce() error { return errNotLinux }

// Apply does nothing: For enforces nothing outside Linux.
func Apply(Enforcement, *syscall.SysProcAttr) {}

// Start is cmd.Start: For enforces nothing outside Linux, and the nice
// value is not set.
func Start(_ Enforcement, _ int, cmd *exec.Cmd) error { return cmd.Start() }

// Run is f(): For enforces nothing outside Linux, and the nice value is
// not set.
func Run(_ Enforcement, _ int, f func() error) error { return f() }
