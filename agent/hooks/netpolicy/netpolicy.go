// Package netpolicy decides how a plugin's network mode is enforced on this
// machine and says so plainly.
//
// What Linux gives without extra daemons is a network namespace:
//
//   - none: the plugin starts in a new network namespace whose only
//     interface is a loopback left down, so it has no network at all. As
//     root the namespace is made with CLONE_NEWNET before the plugin's
//     user and group are set; without root, with an unprivileged user
//     namespace (CLONE_NEWUSER, the current user mapped to itself) if the
//     kernel allows one, else the mode is declarative only.
//
//   - local-only, as root: a new network namespace whose loopback the
//     agent brings up before the plugin starts, so 127.0.0.1 and ::1 work
//     inside it but the host's loopback services are not reachable. The
//     namespace is made on a locked OS thread of the agent (unshare,
//     then an ioctl on lo), the plugin is forked from that thread and
//     inherits it, and the thread goes back to the agent's namespace: no
//     helper binary, no iproute2, and the plugin never holds a capability.
//     Without root, declarative only (an unprivileged plugin could not
//     bring lo up without keeping CAP_NET_ADMIN).
//
//   - outbound-limited, with or without root: Landlock (Linux 6.7+) lets
//     the plugin open TCP connections to ports 53, 80 and 443 only. The
//     rule is set on a locked OS thread of the agent that the plugin is
//     forked from and that is then thrown away. Landlock filters ports,
//     not addresses, and not UDP: network_allow and "DNS only" for UDP
//     stay declarative.
//
//   - unlimited: nothing to enforce; refused unless the administrator
//     allows it.
//
// Outside Linux nothing is enforced. For probes the kernel once per
// process; a mode it cannot enforce is declarative only, never an error.
package netpolicy

import (
	"errors"
	"fmt"
	"sync"

	"github.com/mairust/mairust/agent/plugins/manifest"
)

// ErrUnlimitedNotAllowed is the error of For for network = unlimited
// without the administrator's flag.
var ErrUnlimitedNotAllowed = errors.New("network = unlimited needs plugins.allow_unlimited_network: true (an admin decision)")

// Enforcement is how a plugin's network mode is enforced. The zero value
// enforces nothing and changes nothing: the plugin has the agent's network.
type Enforcement struct {
	Mode        manifest.Network
	Enforced    bool   // the kernel enforces the mode
	How         string // what is enforced, and how; "" if nothing
	Declarative string // what is only declared and not enforced; "" if nothing

	mech mechanism
}

// mechanism is how Start puts the plugin in its namespace.
type mechanism int

const (
	mechNone        mechanism = iota // nothing
	mechNetns                        // CLONE_NEWNET (root)
	mechUserns                       // CLONE_NEWUSER|CLONE_NEWNET (unprivileged)
	mechNetnsLoopUp                  // a namespace made on a locked thread, lo up (root)
	mechLandlock                     // a Landlock TCP port filter set on a locked thread
)

// Texts of How and Declarative.
const (
	howNone       = "own network namespace with only a loopback that is down: no network at all"
	howNoneUserns = howNone + " (unprivileged user namespace)"
	howLocalOnly  = "own network namespace with its loopback up: own loopback only; the host's 127.0.0.1 services are not reachable, nor any other address"
	declLocalOnly = "local-only is not enforced without root: the plugin has the agent's network"
	howOutbound   = "TCP connections to ports 53, 80 and 443 only (Landlock)"
	declOutbound  = "destination addresses (network_allow) and UDP are not filtered: Landlock filters TCP ports only"
	declUnlimited = "unlimited: nothing to enforce; the plugin has the agent's network (allowed by plugins.allow_unlimited_network)"
)

// Probes of what the kernel allows, each run once; variables for tests.
var (
	probeNetns    = onceErr(func() error { return inNetns(func() error { return nil }) })
	probeUserns   = onceErr(probeUsernsOnce)
	probeLandlock = onceErr(probeLandlockOnce)
)

func onceErr(f func() error) func() error {
	var once sync.Once
	var err error
	return func() error {
		once.Do(func() { err = f() })
		return err
	}
}

// For decides how mode m is enforced here. privileged is whether the
// agent runs as root (and may make network namespaces); unlimitedAllowed
// is the administrator's plugins.allow_unlimited_network. The kernel's
// support is probed once, on first need.
func For(m manifest.Network, privileged, unlimitedAllowed bool) (Enforcement, error) {
	e := Enforcement{Mode: m}
	switch m {
	case manifest.NetworkNone:
		if privileged {
			if err := probeNetns(); err != nil {
				e.Declarative = "none is not enforced: cannot make a network namespace (" + err.Error() + "); the plugin has the agent's network"
				return e, nil
			}
			e.Enforced, e.How, e.mech = true, howNone, mechNetns
			return e, nil
		}
		if err := probeUserns(); err != nil {
			e.Declarative = "none is not enforced: not root and no unprivileged user namespace (" + err.Error() + "); the plugin has the agent's network"
			return e, nil
		}
		e.Enforced, e.How, e.mech = true, howNoneUserns, mechUserns
		return e, nil
	case manifest.NetworkLocalOnly:
		if !privileged {
			e.Declarative = declLocalOnly
			return e, nil
		}
		if err := probeNetns(); err != nil {
			e.Declarative = "local-only is not enforced: cannot make a network namespace (" + err.Error() + "); the plugin has the agent's network"
			return e, nil
		}
		e.Enforced, e.How, e.mech = true, howLocalOnly, mechNetnsLoopUp
		return e, nil
	case manifest.NetworkOutboundLimited:
		if err := probeLandlock(); err != nil {
			e.Declarative = "outbound-limited is not enforced: no TCP port filter (" + err.Error() + "); the plugin has the agent's network"
			return e, nil
		}
		e.Enforced, e.How, e.Declarative, e.mech = true, howOutbound, declOutbound, mechLandlock
		return e, nil
	case manifest.NetworkUnlimited:
		if !unlimitedAllowed {
			return Enforcement{}, ErrUnlimitedNotAllowed
		}
		e.Declarative = declUnlimited
		return e, nil
	}
	return Enforcement{}, fmt.Errorf("unknown network mode %q", m)
}

// String is one line for logs and plugin lists.
func (e Enforcement) String() string {
	if e.Mode == "" {
		return "network: no policy"
	}
	s := "network " + string(e.Mode) + ": "
	switch {
	case e.Enforced && e.Declarative != "":
		return s + "enforced: " + e.How + "; declarative only: " + e.Declarative
	case e.Enforced:
		return s + "enforced: " + e.How
	case e.Mode == manifest.NetworkUnlimited:
		return s + "not restricted: " + e.Declarative
	default:
		return s + "declarative only: " + e.Declarative
	}
}
