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

// Start starts cmd with e enforced and the nice value nice; with the zero
// Enforcement and nice 0 it is cmd.Start. cmd.SysProcAttr is made if nil.
func Start(e Enforcement, nice int, cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	Apply(e, cmd.SysProcAttr)
	return Run(e, nice, cmd.Start)
}

// Run calls f, which starts a process whose attributes Apply has set, on
// a thread that carries what the attributes cannot and the process
// inherits: local-only's namespace, outbound-limited's port filter, the
// nice value (per thread in Linux, so set before the fork every thread of
// the process has it). Without any of those it is f().
func Run(e Enforcement, nice int, f func() error) error {
	if e.mech != mechNetnsLoopUp && e.mech != mechLandlock && nice == 0 {
		return f()
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		reusable, err := prepareThread(e, nice)
		if err == nil {
			err = f()
		}
		if reusable() {
			runtime.UnlockOSThread()
		}
		// Otherwise the goroutine ends locked to the thread, so the runtime
		// ends the thread (or, the main thread, parks it for good). New
		// threads never come from a locked one (the runtime makes them from a
		// clean template thread), so the rest of the agent keeps its network
		// and priority.
		done <- err
	}()
	return <-done
}

// prepareThread sets e and nice on the calling, locked thread. reusable,
// called once the process is started, puts back what can be put back and
// reports whether the thread is as it was.
func prepareThread(e Enforcement, nice int) (reusable func() bool, err error) {
	reusable = func() bool { return false }
	if nice != 0 {
		// Raising it is for good without CAP_SYS_NICE: the thread is not reused.
		if err := unix.Setpriority(unix.PRIO_PROCESS, 0, nice); err != nil {
			return reusable, fmt.Errorf("nice %d: %w", nice, err)
		}
	}
	switch e.mech {
	case mechNetnsLoopUp:
		back, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			return func() bool { return nice == 0 }, fmt.Errorf("network namespace: %w", err)
		}
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			back.Close()
			return func() bool { return nice == 0 }, fmt.Errorf("new network namespace: %w", err)
		}
		reusable = func() bool {
			defer back.Close()
			return unix.Setns(int(back.Fd()), unix.CLONE_NEWNET) == nil && nice == 0
		}
		if err := loopbackUp(); err != nil {
			return reusable, fmt.Errorf("bringing up lo in the new network namespace: %w", err)
		}
	case mechLandlock:
		if err := restrictTCPConnect(outboundPorts); err != nil {
			return reusable, fmt.Errorf("landlock TCP port filter: %w", err)
		}
	}
	return reusable, nil
}

// inNetns runs f on a thread in a new network namespace whose loopback is
// up (the probe of local-only).
func inNetns(f func() error) error {
	return Run(Enforcement{mech: mechNetnsLoopUp}, 0, f)
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
