// Package sysuser finds, and as root creates, the unprivileged system users
// MaiRust runs other programs as (the embedded PostgreSQL, plugins).
package sysuser

import (
	"errors"
	"fmt"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
)

// Ensure returns the credential of the system user name (and its group),
// creating the user with useradd (no home, no login shell) when it is
// missing. Creating needs root.
func Ensure(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if errors.As(err, new(user.UnknownUserError)) {
		out, aerr := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput()
		// Another process may have created it meanwhile: look again.
		if u, err = user.Lookup(name); err != nil && aerr != nil {
			return nil, fmt.Errorf("creating the system user %s failed: useradd: %v: %s", name, aerr, strings.TrimSpace(string(out)))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("system user %s: %w", name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("system user %s has uid %q gid %q, not numbers", name, u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}
