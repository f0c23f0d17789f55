//go:build unix && !linux

package embeddedpg

import "syscall"

// sysProcAttr runs a child as cred (nil: as we are), in its own process
// group so that a terminal's ^C reaches only us. Without Linux's Pdeathsig
// the server outlives a killed parent; the next Start waits for it.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true}
}
