package deploy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/proctest"
)

// The repository root, from this package's directory.
const root = ".."

const dockerfile = "deploy/docker/Dockerfile"

var composeFiles = []string{"deploy/compose/aio.yml", "deploy/compose/split.yml"}

func TestMain(m *testing.M) {
	code := m.Run()
	proctest.RemoveBinary()
	os.Exit(code)
}

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int    // where it starts
	cmd  string // upper case: FROM, RUN, ...
	args string
}

func (in instruction) String() string { return fmt.Sprintf("%s:%d: %s", dockerfile, in.line, in.cmd) }

// parseDockerfile is a simple line parser: comments and blank lines are
// dropped (also inside continuations, as Docker does), a trailing
// backslash continues the instruction on the next line.
func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur *instruction
	for i, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cont := strings.HasSuffix(line, `\`)
		line = strings.TrimSpace(strings.TrimSuffix(line, `\`))
		if cur == nil {
			cmd, args, _ := strings.Cut(line, " ")
			cur = &instruction{line: i + 1, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		} else {
			cur.args += " " + line
		}
		if !cont {
			out = append(out, *cur)
			cur = nil
		}
	}
	if cur != nil {
		t.Errorf("%s:%d: the last instruction ends with a continuation backslash", dockerfile, cur.line)
		out = append(out, *cur)
	}
	return out
}

// words splits an instruction's arguments: the JSON (exec) form or
// whitespace-separated words.
func words(t *testing.T, in instruction, args string) []string {
	t.Helper()
	args = strings.TrimSpace(args)
	if strings.HasPrefix(args, "[") {
		var w []string
		if err := json.Unmarshal([]byte(args), &w); err != nil {
			t.Errorf("%v: invalid JSON array %s: %v", in, args, err)
		}
		return w
	}
	return strings.Fields(args)
}

// helpCache keeps `mairust <path> --help` outputs.
var helpCache sync.Map

// help runs the built binary with the command path and --help, and fails
// when that command does not exist.
func help(t *testing.T, where string, path []string) string {
	t.Helper()
	key := strings.Join(path, " ")
	if v, ok := helpCache.Load(key); ok {
		return v.(string)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, proctest.Binary(t), append(slices.Clone(path), "--help")...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Usage: mairust "+key+" [flags]") {
		t.Errorf("%s: `mairust %s` is not a command (mairust %s --help: %v)\n%s", where, key, key, err, out)
		return ""
	}
	helpCache.Store(key, string(out))
	return string(out)
}

// checkCommand checks that args (after "mairust") name a registered command
// and that each of its --flags is one that command takes. It returns the
// values of the flags.
func checkCommand(t *testing.T, where string, args []string) map[string]string {
	t.Helper()
	var path []string
	for len(path) < len(args) && !strings.HasPrefix(args[len(path)], "-") {
		path = append(path, args[len(path)])
	}
	if len(path) == 0 {
		t.Errorf("%s: %q names no mairust command", where, args)
		return nil
	}
	out := help(t, where, path)
	if out == "" {
		return nil
	}
	flags := map[string]string{}
	rest := args[len(path):]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if !strings.HasPrefix(a, "-") {
			t.Errorf("%s: unexpected argument %q after the flags of mairust %s", where, a, strings.Join(path, " "))
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !regexp.MustCompile(`(?m)^  -` + regexp.QuoteMeta(name) + `( |$)`).MatchString(out) {
			t.Errorf("%s: mairust %s has no flag --%s (see mairust %s --help)", where, strings.Join(path, " "), name, strings.Join(path, " "))
			continue
		}
		isBool := regexp.MustCompile(`(?m)^  -` + regexp.QuoteMeta(name) + `$`).MatchString(out)
		if !hasVal && !isBool && i+1 < len(rest) {
			i++
			val = rest[i]
		}
		flags[name] = val
	}
	return flags
}

// listenPorts returns port → address of the listen addresses among flags
// (--*-listen).
func listenFlags(flags map[string]string) map[string]string {
	ports := map[string]string{}
	for name, v := range flags {
		if strings.HasSuffix(name, "-listen") && v != "" {
			if _, p, err := net.SplitHostPort(v); err == nil {
				ports[p] = v
			}
		}
	}
	return ports
}

// loopback reports whether a listen address is reachable from inside the
// container only.
func loopback(addr string) bool {
	host, _, _ := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// imageCmd is the image's ENTRYPOINT and CMD, for the compose services that
// keep them.
type imageCmd struct {
	entrypoint, cmd []string
	cmdAt           string            // where the CMD is, for messages
	listen          map[string]string // port → address
}

func checkDockerfile(t *testing.T) imageCmd {
	t.Helper()
	ins := parseDockerfile(t, filepath.Join(root, dockerfile))
	var (
		froms, users, volumes []instruction
		stages                = map[string]bool{}
		cgo, copyFromBuilder  bool
		img                   imageCmd
		exposed               = map[string]int{}
		health                *instruction
	)
	for _, in := range ins {
		switch in.cmd {
		case "FROM":
			froms = append(froms, in)
			if f := strings.Fields(in.args); len(f) == 3 && strings.EqualFold(f[1], "AS") {
				stages[f[2]] = true
			}
		case "RUN", "ENV", "ARG":
			if strings.Contains(in.args, "CGO_ENABLED=0") {
				cgo = true
			}
		case "USER":
			users = append(users, in)
		case "VOLUME":
			volumes = append(volumes, in)
		case "EXPOSE":
			for _, p := range strings.Fields(in.args) {
				exposed[strings.TrimSuffix(p, "/tcp")] = in.line
			}
		case "HEALTHCHECK":
			in := in
			health = &in
		case "ENTRYPOINT":
			img.entrypoint = words(t, in, in.args)
		case "CMD":
			img.cmd = words(t, in, in.args)
			img.cmdAt = in.String()
		case "COPY", "ADD":
			w := strings.Fields(in.args)
			fromStage := false
			var srcs []string
			for _, a := range w {
				if strings.HasPrefix(a, "--") {
					if v, ok := strings.CutPrefix(a, "--from="); ok {
						fromStage = true
						if v == "builder" {
							copyFromBuilder = true
						} else if !stages[v] {
							t.Errorf("%v: --from=%s is no earlier stage", in, v)
						}
					}
					continue
				}
				srcs = append(srcs, a)
			}
			if len(srcs) < 2 {
				t.Errorf("%v: wants at least a source and a destination", in)
				continue
			}
			if fromStage {
				continue
			}
			for _, src := range srcs[:len(srcs)-1] {
				m, err := filepath.Glob(filepath.Join(root, src))
				if err != nil || len(m) == 0 {
					t.Errorf("%v: source %q does not exist in the repository", in, src)
				}
			}
		}
	}

	if len(froms) < 2 || !stages["builder"] {
		t.Errorf("%s: want a multi-stage build with a stage named builder (FROM ... AS builder); FROMs: %v", dockerfile, froms)
	}
	if !copyFromBuilder {
		t.Errorf("%s: the runtime stage does not COPY --from=builder", dockerfile)
	}
	if !cgo {
		t.Errorf("%s: the build does not set CGO_ENABLED=0 (a static binary)", dockerfile)
	}
	if len(users) == 0 {
		t.Errorf("%s: no USER: the image would run as root", dockerfile)
	} else if u := users[len(users)-1]; slices.Contains([]string{"root", "0", "0:0", "root:root"}, u.args) {
		t.Errorf("%v: the image runs as root (%s); want a non-root user", u, u.args)
	}
	var vols []string
	for _, v := range volumes {
		vols = append(vols, words(t, v, v.args)...)
	}
	for _, want := range []string{"/var/lib/mairust/db", "/var/lib/mairust/mail"} {
		if !slices.Contains(vols, want) {
			t.Errorf("%s: no VOLUME %s (have %v)", dockerfile, want, vols)
		}
	}

	if len(img.entrypoint) != 1 || img.entrypoint[0] != "mairust" {
		t.Errorf("%s: ENTRYPOINT is %q, want [\"mairust\"]", dockerfile, img.entrypoint)
	}
	if img.cmd == nil {
		t.Errorf("%s: no CMD", dockerfile)
	}
	flags := checkCommand(t, img.cmdAt, img.cmd)
	img.listen = listenFlags(flags)
	for port, addr := range img.listen {
		if loopback(addr) {
			continue
		}
		if _, ok := exposed[port]; !ok {
			t.Errorf("%s: CMD listens on %s, but port %s is not EXPOSEd", dockerfile, addr, port)
		}
	}
	for port, line := range exposed {
		addr, ok := img.listen[port]
		switch {
		case !ok:
			t.Errorf("%s:%d: EXPOSE %s, but the CMD listens on no such port (listen flags: %v)", dockerfile, line, port, img.listen)
		case loopback(addr):
			t.Errorf("%s:%d: EXPOSE %s, but the CMD listens on it on loopback only (%s)", dockerfile, line, port, addr)
		}
	}

	if health == nil {
		t.Errorf("%s: no HEALTHCHECK", dockerfile)
	} else {
		_, after, ok := strings.Cut(health.args, "CMD ")
		if !ok {
			t.Errorf("%v: no CMD in %q", *health, health.args)
		} else {
			w := words(t, *health, after)
			if len(w) == 0 || w[0] != "mairust" {
				t.Errorf("%v: the check runs %q, want mairust (the image has no curl)", *health, w)
			} else {
				checkHealth(t, health.String(), w[1:], img.listen)
			}
		}
	}
	return img
}

// checkHealth checks a `mairust health` command line: the command exists
// and its --addr is one the process listens on.
func checkHealth(t *testing.T, where string, args []string, listen map[string]string) {
	t.Helper()
	if len(args) == 0 || args[0] != "health" {
		t.Errorf("%s: the health check runs mairust %q, want mairust health", where, args)
		return
	}
	flags := checkCommand(t, where, args)
	addr := flags["addr"]
	if addr == "" {
		addr = "127.0.0.1:8025"
	}
	_, port, _ := net.SplitHostPort(addr)
	if got, ok := listen[port]; !ok || net.JoinHostPort(strings.Trim(hostOf(got), "[]"), port) != addr && !unspecified(got) {
		t.Errorf("%s: the health check calls %s, which the process does not listen on (listen addresses: %v)", where, addr, listen)
	}
}

func hostOf(addr string) string { h, _, _ := net.SplitHostPort(addr); return h }

func unspecified(addr string) bool {
	h := hostOf(addr)
	ip := net.ParseIP(h)
	return h == "" || ip != nil && ip.IsUnspecified()
}

// TestDeployHealth checks the deployment files (its name matches the
// targeted -run 'Help|Health').
func TestDeployHealth(t *testing.T) {
	var img imageCmd
	t.Run("Dockerfile", func(t *testing.T) { img = testDockerfile(t) })
	t.Run("Compose", func(t *testing.T) { testCompose(t, img) })
	t.Run("README", testREADME)
}

func testDockerfile(t *testing.T) imageCmd {
	img := checkDockerfile(t)
	ignore := filepath.Join(root, dockerfile+".dockerignore")
	data, err := os.ReadFile(ignore)
	if err != nil {
		t.Errorf("%s.dockerignore: %v", dockerfile, err)
	}
	lines := strings.Fields(string(data))
	for _, want := range []string{".git", "data/", "bin/"} {
		if !slices.Contains(lines, want) {
			t.Errorf("%s.dockerignore does not exclude %s", dockerfile, want)
		}
	}
	return img
}

// compose is the part of a compose file the test reads.
type compose struct {
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

type service struct {
	Image       string            `yaml:"image"`
	Build       any               `yaml:"build"`
	Command     any               `yaml:"command"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	Environment map[string]string `yaml:"environment"`
	Healthcheck struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

func (s service) command() []string {
	switch c := s.Command.(type) {
	case string:
		return strings.Fields(c)
	case []any:
		var out []string
		for _, v := range c {
			out = append(out, fmt.Sprint(v))
		}
		return out
	}
	return nil
}

func (s service) mairust() bool {
	return strings.HasPrefix(s.Image, "mairust/") || s.Build != nil
}

// configEnv lists the environment variables the config package reads (its
// env tags).
func configEnv() map[string]string {
	vars := map[string]string{}
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			key := prefix + strings.Split(f.Tag.Get("yaml"), ",")[0]
			if env := f.Tag.Get("env"); env != "" {
				vars[env] = key
			}
			if f.Type.Kind() == reflect.Struct && f.Type.PkgPath() == t.PkgPath() {
				walk(f.Type, key+".")
			}
		}
	}
	walk(reflect.TypeFor[config.Config](), "")
	return vars
}

// interpolate replaces compose's ${NAME:-default} and ${NAME-default} by
// the default, and $$ by $, as docker compose does without a .env file.
func interpolate(s string) string {
	s = regexp.MustCompile(`\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}`).ReplaceAllString(s, "$1")
	return strings.ReplaceAll(s, "$$", "$")
}

func testCompose(t *testing.T, img imageCmd) {
	envVars := configEnv()
	for _, file := range composeFiles {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(root, file))
			if err != nil {
				t.Fatal(err)
			}
			var c compose
			if err := yaml.Unmarshal(data, &c); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if len(c.Services) == 0 {
				t.Fatalf("%s: no services", file)
			}
			used := map[string]bool{}
			names := make([]string, 0, len(c.Services))
			for n := range c.Services {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, name := range names {
				checkService(t, file, name, c, img, envVars, used)
			}
			for _, v := range []string{"mairust_db", "mairust_mail"} {
				if _, ok := c.Volumes[v]; !ok {
					t.Errorf("%s: volumes: the named volume %s is not declared", file, v)
				}
				if !used[v] {
					t.Errorf("%s: no service mounts the named volume %s", file, v)
				}
			}
		})
	}
}

func checkService(t *testing.T, file, name string, c compose, img imageCmd, envVars map[string]string, used map[string]bool) {
	t.Helper()
	s := c.Services[name]
	key := fmt.Sprintf("%s: services.%s", file, name)
	if s.Image == "" && s.Build == nil {
		t.Errorf("%s: neither image nor build", key)
	}
	dir := filepath.Join(root, filepath.Dir(file))

	// The environment: every MAIRUST_ variable is one the config package reads.
	env := map[string]string{}
	for k, v := range s.Environment {
		if strings.HasPrefix(k, "MAIRUST_") {
			if _, ok := envVars[k]; !ok {
				t.Errorf("%s.environment.%s: the config package reads no such variable (see the env tags in internal/config/config.go)", key, k)
				continue
			}
			env[k] = interpolate(v)
		}
	}

	// Volumes: host paths exist, named volumes are declared.
	mounts := map[string]string{} // container path → host path
	for i, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			t.Errorf("%s.volumes[%d]: %q is not source:target", key, i, v)
			continue
		}
		src, dst := parts[0], parts[1]
		if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
			host := filepath.Join(dir, src)
			if _, err := os.Stat(host); err != nil {
				t.Errorf("%s.volumes[%d]: the host path %s does not exist in the repository (%v)", key, i, src, err)
			}
			mounts[dst] = host
			continue
		}
		used[src] = true
		if _, ok := c.Volumes[src]; !ok {
			t.Errorf("%s.volumes[%d]: the named volume %s is not declared under volumes", key, i, src)
		}
	}

	if !s.mairust() {
		return
	}

	// What the service runs, and the addresses it listens on.
	args := s.command()
	if args == nil {
		args = img.cmd
	}
	if len(args) == 0 {
		t.Errorf("%s: no command, and the image has no CMD", key)
		return
	}
	flags := checkCommand(t, key+".command", args)
	listen := listenFlags(flags)
	if cfgPath := flags["config"]; cfgPath != "" {
		host, ok := mounts[cfgPath]
		if !ok {
			t.Errorf("%s.command: --config %s is not a file mounted into the service", key, cfgPath)
		} else {
			for k, v := range env {
				t.Setenv(k, v)
			}
			cfg, err := config.Load(host)
			if err != nil {
				t.Errorf("%s: the mounted config file %s does not load: %v", key, host, err)
			} else {
				addrs := []string{cfg.SMTP.Listen, cfg.Submission.Listen, cfg.Submission.TLSListen, cfg.IMAP.Listen, cfg.IMAP.TLSListen, cfg.API.Listen, cfg.HTTP.Listen}
				switch args[0] {
				case "controlplane": // serves its own listener only
					addrs = []string{cfg.ControlPlane.Listen}
				case "aio":
					addrs = append(addrs, cfg.ControlPlane.Listen)
				}
				for _, a := range addrs {
					if p := portOf(a); p != "" {
						if _, set := listen[p]; !set {
							listen[p] = a
						}
					}
				}
			}
			for k := range env {
				os.Unsetenv(k)
			}
		}
	}

	for i, p := range s.Ports {
		spec := p
		if j := strings.LastIndex(spec, "/"); j >= 0 {
			spec = spec[:j]
		}
		f := strings.Split(spec, ":")
		port := f[len(f)-1]
		addr, ok := listen[port]
		switch {
		case !ok:
			t.Errorf("%s.ports[%d]: %q publishes container port %s, on which the service does not listen (listens on %v)", key, i, p, port, listen)
		case loopback(addr):
			t.Errorf("%s.ports[%d]: %q publishes container port %s, on which the service listens on loopback only (%s)", key, i, p, port, addr)
		}
	}

	if test := s.Healthcheck.Test; len(test) > 0 {
		if len(test) < 2 || test[0] != "CMD" || test[1] != "mairust" {
			t.Errorf("%s.healthcheck.test: %q, want [CMD, mairust, health, ...] (the image has no curl)", key, test)
		} else {
			checkHealth(t, key+".healthcheck", test[2:], listen)
		}
	} else {
		t.Errorf("%s: no healthcheck", key)
	}
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func testREADME(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, "deploy/README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"make run", "make image", "docker compose -f deploy/compose/aio.yml up -d", "deploy/compose/split.yml", "agent enroll", "Helm: see deploy/helm/mairust", "mairust_db", "mairust_mail"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("deploy/README.md does not mention %q", want)
		}
	}
}
