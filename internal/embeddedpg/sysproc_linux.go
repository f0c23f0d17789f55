package embeddedpg

import "syscall"

// sysProcAttr runs a child as cred (nil: as we are), in its own process
// group so that a terminal's ^C reaches only us, and has the kernel send it
// SIGINT, PostgreSQL's fast shutdown, when its creating thread dies.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGINT}
}
