//go:build linux

package netpolicy

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mairust/mairust/agent/plugins/manifest"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the network policy tests make network namespaces, which needs root; run the tests as root (CI does)")
	}
}

// stubProbes makes the kernel probes answer err (nil: supported) for one test.
func stubProbes(t *testing.T, netns, userns, landlock error) {
	t.Helper()
	oldNetns, oldUserns, oldLandlock := probeNetns, probeUserns, probeLandlock
	probeNetns = func() error { return netns }
	probeUserns = func() error { return userns }
	probeLandlock = func() error { return landlock }
	t.Cleanup(func() { probeNetns, probeUserns, probeLandlock = oldNetns, oldUserns, oldLandlock })
}

func TestFor(t *testing.T) {
	type want struct {
		enforced bool
		mech     mechanism
		how      string // part of How, "" for none
		decl     string // part of Declarative, "" for none
		err      error
	}
	noNS := errors.New("operation not permitted")
	cases := []struct {
		mode                    manifest.Network
		privileged, allowUnlim  bool
		netns, userns, landlock error // probe results
		want                    want
	}{
		{mode: manifest.NetworkNone, privileged: true,
			want: want{enforced: true, mech: mechNetns, how: "no network at all"}},
		{mode: manifest.NetworkNone, privileged: true, netns: noNS,
			want: want{decl: "none is not enforced: cannot make a network namespace (operation not permitted)"}},
		{mode: manifest.NetworkNone,
			want: want{enforced: true, mech: mechUserns, how: "no network at all (unprivileged user namespace)"}},
		{mode: manifest.NetworkNone, userns: noNS,
			want: want{decl: "none is not enforced: not root and no unprivileged user namespace"}},
		{mode: manifest.NetworkLocalOnly, privileged: true,
			want: want{enforced: true, mech: mechNetnsLoopUp, how: "own loopback only; the host's 127.0.0.1 services are not reachable"}},
		{mode: manifest.NetworkLocalOnly, privileged: true, netns: noNS,
			want: want{decl: "local-only is not enforced: cannot make a network namespace"}},
		{mode: manifest.NetworkLocalOnly,
			want: want{decl: "local-only is not enforced without root"}},
		{mode: manifest.NetworkOutboundLimited, privileged: true,
			want: want{enforced: true, mech: mechLandlock, how: "TCP connections to ports 53, 80 and 443 only (Landlock)",
				decl: "destination addresses (network_allow) and UDP are not filtered"}},
		{mode: manifest.NetworkOutboundLimited,
			want: want{enforced: true, mech: mechLandlock, how: "ports 53, 80 and 443 only", decl: "UDP are not filtered"}},
		{mode: manifest.NetworkOutboundLimited, landlock: errors.New("landlock ABI 3 has no TCP port rules"),
			want: want{decl: "outbound-limited is not enforced: no TCP port filter (landlock ABI 3 has no TCP port rules)"}},
		{mode: manifest.NetworkUnlimited, privileged: true, want: want{err: ErrUnlimitedNotAllowed}},
		{mode: manifest.NetworkUnlimited, want: want{err: ErrUnlimitedNotAllowed}},
		{mode: manifest.NetworkUnlimited, privileged: true, allowUnlim: true,
			want: want{decl: "unlimited: nothing to enforce"}},
		{mode: manifest.NetworkUnlimited, allowUnlim: true,
			want: want{decl: "unlimited: nothing to enforce"}},
	}
	for _, c := range cases {
		stubProbes(t, c.netns, c.userns, c.landlock)
		e, err := For(c.mode, c.privileged, c.allowUnlim)
		name := string(c.mode) + " privileged=" + map[bool]string{true: "yes", false: "no"}[c.privileged]
		if c.want.err != nil {
			if !errors.Is(err, c.want.err) || e != (Enforcement{}) {
				t.Errorf("%s: %+v, %v; want error %v", name, e, err, c.want.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if e.Mode != c.mode || e.Enforced != c.want.enforced || e.mech != c.want.mech {
			t.Errorf("%s: %+v, want enforced %v mechanism %d", name, e, c.want.enforced, c.want.mech)
		}
		if c.want.how == "" && e.How != "" || !strings.Contains(e.How, c.want.how) {
			t.Errorf("%s: How %q, want %q", name, e.How, c.want.how)
		}
		if c.want.decl == "" && e.Declarative != "" || !strings.Contains(e.Declarative, c.want.decl) {
			t.Errorf("%s: Declarative %q, want %q", name, e.Declarative, c.want.decl)
		}
	}
	if _, err := For("wifi", true, true); err == nil || !strings.Contains(err.Error(), `"wifi"`) {
		t.Errorf("For(wifi): %v, want an unknown mode error", err)
	}
	if _, err := For(manifest.NetworkUnlimited, true, false); err == nil ||
		err.Error() != "network = unlimited needs plugins.allow_unlimited_network: true (an admin decision)" {
		t.Errorf("unlimited without the flag: %v", err)
	}
}

// The kernel here allows what For promises as root.
func TestProbes(t *testing.T) {
	needRoot(t)
	if err := probeNetns(); err != nil {
		t.Fatalf("network namespace: %v", err)
	}
	if err := probeUserns(); err != nil {
		t.Fatalf("user namespace: %v", err)
	}
	if err := probeLandlock(); err != nil {
		t.Fatalf("outbound-limited needs Landlock's TCP port rules (Linux 6.7+): %v", err)
	}
	for _, mode := range []manifest.Network{manifest.NetworkNone, manifest.NetworkLocalOnly, manifest.NetworkOutboundLimited} {
		for _, privileged := range []bool{true, false} {
			e, err := For(mode, privileged, false)
			if err != nil {
				t.Fatal(err)
			}
			if want := privileged || mode != manifest.NetworkLocalOnly; e.Enforced != want {
				t.Errorf("%s privileged=%v: %s", mode, privileged, e)
			}
		}
	}
}

func TestString(t *testing.T) {
	stubProbes(t, nil, nil, nil)
	for _, c := range []struct {
		mode manifest.Network
		priv bool
		want string
	}{
		{manifest.NetworkNone, true, "network none: enforced: own network namespace with only a loopback that is down: no network at all"},
		{manifest.NetworkLocalOnly, true, "network local-only: enforced: own network namespace with its loopback up: own loopback only; the host's 127.0.0.1 services are not reachable, nor any other address"},
		{manifest.NetworkLocalOnly, false, "network local-only: declarative only: local-only is not enforced without root: the plugin has the agent's network"},
		{manifest.NetworkOutboundLimited, false, "network outbound-limited: enforced: TCP connections to ports 53, 80 and 443 only (Landlock); declarative only: destination addresses (network_allow) and UDP are not filtered: Landlock filters TCP ports only"},
		{manifest.NetworkUnlimited, true, "network unlimited: not restricted: unlimited: nothing to enforce; the plugin has the agent's network (allowed by plugins.allow_unlimited_network)"},
	} {
		e, err := For(c.mode, c.priv, true)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.String(); got != c.want || strings.Contains(got, "\n") {
			t.Errorf("%s:\n got %s\nwant %s", c.mode, got, c.want)
		}
	}
	if got := (Enforcement{}).String(); got != "network: no policy" {
		t.Errorf("zero: %s", got)
	}
}

func TestApply(t *testing.T) {
	stubProbes(t, nil, nil, nil)
	e, _ := For(manifest.NetworkNone, true, false)
	attr := &syscall.SysProcAttr{Setpgid: true}
	Apply(e, attr)
	if attr.Cloneflags != syscall.CLONE_NEWNET || attr.UidMappings != nil || !attr.Setpgid {
		t.Errorf("none, root: %+v", attr)
	}
	e, _ = For(manifest.NetworkNone, false, false)
	attr = &syscall.SysProcAttr{}
	Apply(e, attr)
	if attr.Cloneflags != syscall.CLONE_NEWNET|syscall.CLONE_NEWUSER || len(attr.UidMappings) != 1 ||
		attr.UidMappings[0] != (syscall.SysProcIDMap{ContainerID: os.Getuid(), HostID: os.Getuid(), Size: 1}) ||
		len(attr.GidMappings) != 1 || attr.GidMappingsEnableSetgroups {
		t.Errorf("none, unprivileged: %+v", attr)
	}
	for _, e := range []Enforcement{{}, mustFor(t, manifest.NetworkLocalOnly, true), mustFor(t, manifest.NetworkOutboundLimited, true)} {
		attr = &syscall.SysProcAttr{}
		Apply(e, attr)
		if attr.Cloneflags != 0 || attr.UidMappings != nil {
			t.Errorf("%s: %+v", e, attr)
		}
	}
}

func mustFor(t *testing.T, m manifest.Network, privileged bool) Enforcement {
	t.Helper()
	e, err := For(m, privileged, false)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// netns is the network namespace of a task of this process, or of the process.
func netns(t *testing.T, task string) string {
	t.Helper()
	ns, err := os.Readlink(filepath.Join("/proc/self", task, "ns/net"))
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// helperEnv makes the test binary print, instead of running tests, its
// network namespace, whether lo is up, its interfaces and the nice values
// of its threads, one a line.
const helperEnv = "NETPOLICY_TEST_HELPER=1"

func init() {
	if os.Getenv("NETPOLICY_TEST_HELPER") != "1" {
		return
	}
	ns, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		panic(err)
	}
	ifs, err := net.Interfaces()
	if err != nil {
		panic(err)
	}
	lo := "lo-missing"
	names := make([]string, 0, len(ifs))
	for _, i := range ifs {
		names = append(names, i.Name)
		if i.Name == "lo" {
			lo = map[bool]string{true: "up", false: "down"}[i.Flags&net.FlagUp != 0]
		}
	}
	fmt.Printf("%s\n%s\n%s\n%s\n", ns, lo, strings.Join(names, " "), strings.Join(threadNices(true), " "))
	os.Exit(0)
}

// threadNices lists the distinct nice values of this process's threads
// but the main thread when main is false (a goroutine that ends locked to
// the main thread parks it for good instead of ending it).
func threadNices(main bool) []string {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		panic(err)
	}
	var nices []string
	for _, task := range tasks {
		if !main && task.Name() == strconv.Itoa(os.Getpid()) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc/self/task", task.Name(), "stat"))
		if err != nil {
			continue // the thread ended meanwhile
		}
		// Fields after the command's closing parenthesis: state is 3, nice 19.
		_, rest, _ := strings.Cut(string(stat), ") ")
		if f := strings.Fields(rest); len(f) > 16 && !slices.Contains(nices, f[16]) {
			nices = append(nices, f[16])
		}
	}
	return nices
}

// Start runs the command in a namespace of its own, and leaves none of the
// test's threads in it.
func TestStart(t *testing.T) {
	needRoot(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	mine := netns(t, "")
	for _, c := range []struct {
		e    Enforcement
		nice int
		own  bool   // a namespace of its own
		lo   string // up or down, in its own namespace
	}{
		{Enforcement{}, 0, false, ""},
		{Enforcement{}, 5, false, ""},
		{mustFor(t, manifest.NetworkOutboundLimited, true), 0, false, ""},
		{mustFor(t, manifest.NetworkNone, true), 0, true, "down"},
		{mustFor(t, manifest.NetworkNone, false), 0, true, "down"},
		{mustFor(t, manifest.NetworkLocalOnly, true), 0, true, "up"},
		{mustFor(t, manifest.NetworkLocalOnly, true), 7, true, "up"},
	} {
		cmd := exec.Command(self)
		cmd.Env = []string{helperEnv, "GORACE=atexit_sleep_ms=0"} // a race build would wait 1s at exit
		out, err := startOutput(c.e, c.nice, cmd)
		if err != nil {
			t.Fatalf("%s: %v", c.e, err)
		}
		lines := strings.Split(out, "\n")
		if len(lines) != 5 {
			t.Fatalf("%s: output %q", c.e, out)
		}
		if want := strconv.Itoa(c.nice); lines[3] != want {
			t.Errorf("%s nice %d: the threads' nice values are %q, want all %s", c.e, c.nice, lines[3], want)
		}
		if own := lines[0] != mine; own != c.own {
			t.Errorf("%s: namespace %s, the test's %s", c.e, lines[0], mine)
		}
		if c.own && (lines[1] != c.lo || lines[2] != "lo") {
			t.Errorf("%s: lo %s, interfaces %q; want lo %s and no other interface", c.e, lines[1], lines[2], c.lo)
		}
	}
	// The thread the local-only namespace was made on went back, and the
	// niced ones were thrown away.
	if stray := strayThreads(t, mine); len(stray) != 0 {
		t.Errorf("threads %v are in another network namespace", stray)
	}
	// (a thrown-away thread ends just after its process started; the main
	// thread, if it was the one, stays parked).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		nices := threadNices(false)
		if len(nices) == 1 && nices[0] == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the test's threads have nice values %q, want all 0", nices)
		}
	}
}

func startOutput(e Enforcement, nice int, cmd *exec.Cmd) (string, error) {
	var out strings.Builder
	cmd.Stdout = &out
	if err := Start(e, nice, cmd); err != nil {
		return "", err
	}
	err := cmd.Wait()
	return out.String(), err
}

// strayThreads lists the threads of this process outside the namespace ns.
func strayThreads(t *testing.T, ns string) []string {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var stray []string
	for _, task := range tasks {
		got, err := os.Readlink(filepath.Join("/proc/self/task", task.Name(), "ns/net"))
		if err != nil {
			continue // the thread ended meanwhile
		}
		if got != ns {
			stray = append(stray, task.Name())
		}
	}
	return stray
}
