package netpolicy

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	landlockNetABI      = 4 // the first Landlock ABI that filters TCP connections
	landlockRuleNetPort = 2 // LANDLOCK_RULE_NET_PORT
)

// outboundPorts are the TCP ports an outbound-limited plugin may connect
// to: DNS over TCP, HTTP and HTTPS.
var outboundPorts = []uint64{53, 80, 443}

// rulesetAttr is struct landlock_ruleset_attr up to handled_access_net
// (ABI 4); the kernel takes the shorter struct.
type rulesetAttr struct {
	handledFS  uint64
	handledNet uint64
}

// netPortAttr is struct landlock_net_port_attr.
type netPortAttr struct {
	allowed uint64
	port    uint64
}

// probeLandlockOnce checks that the kernel's Landlock filters TCP connections.
func probeLandlockOnce() error {
	abi, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		return fmt.Errorf("landlock: %w", errno)
	}
	if abi < landlockNetABI {
		return fmt.Errorf("landlock ABI %d has no TCP port rules (%d needed, Linux 6.7)", abi, landlockNetABI)
	}
	return nil
}

// restrictTCPConnect limits the calling thread's TCP connections to ports.
// no_new_privs, which Landlock needs without CAP_SYS_ADMIN, is set on the
// thread too.
func restrictTCPConnect(ports []uint64) error {
	attr := rulesetAttr{handledNet: unix.LANDLOCK_ACCESS_NET_CONNECT_TCP}
	fd, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr), 0)
	if errno != 0 {
		return fmt.Errorf("create ruleset: %w", errno)
	}
	defer unix.Close(int(fd))
	for _, p := range ports {
		rule := netPortAttr{allowed: unix.LANDLOCK_ACCESS_NET_CONNECT_TCP, port: p}
		if _, _, errno := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, fd, landlockRuleNetPort,
			uintptr(unsafe.Pointer(&rule)), 0, 0, 0); errno != 0 {
			return fmt.Errorf("allow port %d: %w", p, errno)
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	if _, _, errno := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, fd, 0, 0); errno != 0 {
		return fmt.Errorf("restrict: %w", errno)
	}
	return nil
}
