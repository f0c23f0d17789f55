package netpolicy

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// Apply sets on attr what the process attributes alone can carry of e:
// the clone flags for none, and the user and group mappings when the
// namespace is an unprivileged user namespace. local-only's namespace
// cannot be carried this way: Start makes it. Use Start.
func Apply(e Enforcement, attr *syscall.SysProcAttr) {
	switch e.mech {
	case mechNetns:
		attr.Cloneflags |= syscall.CLONE_NEWNET
	case mechUserns:
		attr.Cloneflags |= syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: os.Getuid(), HostID: os.Getuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: os.Getgid(), HostID: os.Getgid(), Size: 1}}
		attr.GidMappingsEnableSetgroups = false
	}
}

// Start starts cmd with e enforced; with the zero Enforcement it is
// cmd.Start. cmd.SysProcAttr is made if nil.
func Start(e Enforcement, cmd *exec.Cmd) error {
	if e.mech == mechNone {
		return cmd.Start()
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	Apply(e, cmd.SysProcAttr)
	return Run(e, cmd.Start)
}

// Run calls f, which starts a process whose attributes Apply has set, on
// a thread that carries what the attributes cannot: local-only's
// namespace, outbound-limited's port filter. For the other mechanisms it
// is f().
func Run(e Enforcement, f func() error) error {
	switch e.mech {
	case mechNetnsLoopUp:
		return inNetns(f)
	case mechLandlock:
		return inLandlock(outboundPorts, f)
	}
	return f()
}

// inNetns runs f on an OS thread moved into a new network namespace
// whose loopback is up; processes f starts are forked from that thread and
// stay in the namespace. The thread then goes back to its namespace; if it
// cannot, it is never reused: its goroutine ends locked to it, so the
// runtime ends the thread (or, the main thread, parks it for good).
func inNetns(f func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		back, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("network namespace: %w", err)
			return
		}
		defer back.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("new network namespace: %w", err)
			return
		}
		err = loopbackUp()
		if err != nil {
			err = fmt.Errorf("bringing up lo in the new network namespace: %w", err)
		} else {
			err = f()
		}
		if unix.Setns(int(back.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		done <- err
	}()
	return <-done
}

// loopbackUp brings up lo in the calling thread's network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// probeUsernsOnce checks that an unprivileged user and network namespace
// can be made, as Start makes it, without running anything: it forks into
// the namespaces and execs a path that does not exist, so the only
// acceptable failure is that exec's "no such file".
func probeUsernsOnce() error {
	attr := &syscall.SysProcAttr{}
	Apply(Enforcement{mech: mechUserns}, attr)
	const missing = "/nonexistent/mairust-netpolicy-probe"
	_, err := syscall.ForkExec(missing, []string{missing}, &syscall.ProcAttr{Sys: attr})
	if errors.Is(err, syscall.ENOENT) {
		return nil
	}
	if err == nil {
		return errors.New("the probe ran a program that should not exist")
	}
	return fmt.Errorf("user namespace: %w", err)
}
