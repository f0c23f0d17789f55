// Package manifest reads and checks a plugin's plugin.toml: its identity,
// how the agent reaches it, the hooks it serves, the permissions it asks for
// and the schema of its settings. It does not run plugins.
package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	toml "github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// FileName is the manifest's name inside a plugin directory.
const FileName = "plugin.toml"

// MaxFileBytes bounds the size of a manifest.
const MaxFileBytes = 64 << 10

// Timeout bounds and default.
const (
	MinTimeout     = 100 * time.Millisecond
	MaxTimeout     = 5 * time.Minute
	DefaultTimeout = 10 * time.Second
)

// Kind is how the agent talks to a plugin.
type Kind string

// Plugin kinds.
const (
	KindProcess Kind = "process" // a long-running local process
	KindStdin   Kind = "stdin"   // a command run per event, fed on stdin
	KindHTTP    Kind = "http"    // a remote HTTP endpoint
)

// Hook is a point in mail processing where plugins are called.
type Hook string

// Hook points. Only those with Supported() true may be named in a manifest.
const (
	PreReceive  Hook = "pre_receive"
	PostReceive Hook = "post_receive"
	PreSend     Hook = "pre_send"
)

// hooks lists every hook point and whether this agent runs it.
var hooks = map[Hook]bool{PreReceive: false, PostReceive: true, PreSend: false}

// Supported reports whether this agent calls plugins at h.
func (h Hook) Supported() bool { return hooks[h] }

// Network is the network access a plugin process asks for.
type Network string

// Network access levels.
const (
	NetworkNone            Network = "none"
	NetworkLocalOnly       Network = "local-only"
	NetworkOutboundLimited Network = "outbound-limited" // DNS and ports 80/443, to NetworkAllow if set
	NetworkUnlimited       Network = "unlimited"
)

// Manifest is a checked plugin.toml.
type Manifest struct {
	ID                string
	Name              string
	Version           Version
	MinMairustVersion Version // zero when the plugin names no minimum
	Kind              Kind
	Hooks             []Hook
	Timeout           time.Duration
	Command           string   // process and stdin: relative to Dir
	Args              []string // process and stdin
	URL               string   // http
	SHA256            string   // lowercase hex, or empty
	Network           Network
	NetworkAllow      []string // hosts, IPs or CIDRs (outbound-limited only)
	HealthEndpoint    string
	HealthCmd         []string
	LogLevel          slog.Level
	Permissions       Permissions
	Settings          map[string]Setting
	Dir               string // the directory Load read; empty after Parse

	file  string         // name used in errors
	lines map[string]int // line of each key in the file
}

// Error is a problem with one key of a manifest (or one setting value).
type Error struct {
	File string
	Line int    // 0 when the key is not in the file
	Key  string // dotted, e.g. permissions.read_body; empty for syntax errors
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads and checks dir/plugin.toml.
func Load(dir string) (*Manifest, error) {
	path := filepath.Join(dir, FileName)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("plugin: %w (a plugin directory needs a %s)", err, FileName)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("plugin: read %s: %w", path, err)
	}
	m, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	m.Dir = dir
	return m, nil
}

// Parse checks the manifest in data; name is used in error messages. Every
// problem found is returned, as errors.Join of *Error. Permission
// dependencies and the agent version are left to Check.
func Parse(name string, data []byte) (*Manifest, error) {
	if len(data) > MaxFileBytes {
		return nil, &Error{File: name, Msg: fmt.Sprintf("larger than %d KiB; a manifest must be smaller", MaxFileBytes>>10)}
	}
	lines, keys := keyLines(data)
	if keys > maxKeys {
		// go-toml's cost per unknown key grows with the file's size.
		return nil, &Error{File: name, Msg: fmt.Sprintf("more than %d keys; a manifest needs far fewer", maxKeys)}
	}
	var f file
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(&f)
	var strict *toml.StrictMissingError
	if err != nil && !errors.As(err, &strict) {
		return nil, decodeError(name, err)
	}
	c := &checker{file: name, lines: lines}
	if strict != nil {
		c.unknownKeys(strict)
	}
	m := c.check(&f)
	if len(c.errs) == 0 {
		return m, nil
	}
	slices.SortStableFunc(c.errs, func(a, b *Error) int { return a.Line - b.Line })
	errs := make([]error, len(c.errs))
	for i, e := range c.errs {
		errs[i] = e
	}
	return nil, errors.Join(errs...)
}

// Check refuses m when this agent (agentVersion, e.g. "1.4.0" or "v1.4.0")
// is older than its min_mairust_version, or when a permission lacks one it
// depends on (see Permissions.AddMissing).
func Check(m *Manifest, agentVersion string) error {
	var errs []error
	if m.MinMairustVersion != (Version{}) {
		agent, err := ParseVersion(strings.TrimPrefix(agentVersion, "v"))
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("plugin %s: agent version %q: %w", m.ID, agentVersion, err))
		case agent.Compare(m.MinMairustVersion) < 0:
			errs = append(errs, m.errorAt("min_mairust_version",
				fmt.Sprintf("plugin %s needs MaiRust %s or newer; this agent is %s (upgrade the agent)", m.ID, m.MinMairustVersion, agent)))
		}
	}
	for _, d := range m.Permissions.missing() {
		errs = append(errs, m.errorAt("permissions."+d.perm,
			"needs "+d.need+" (add it to [permissions], or install with --auto-add-permissions)"))
	}
	return errors.Join(errs...)
}

func (m *Manifest) errorAt(key, msg string) *Error {
	return &Error{File: m.file, Line: lineOf(m.lines, key), Key: key, Msg: msg}
}

// lineOf is the line of key, or of its table when key is absent.
func lineOf(lines map[string]int, key string) int {
	for k := key; k != ""; k = k[:max(strings.LastIndex(k, "."), 0)] {
		if line := lines[k]; line > 0 {
			return line
		}
	}
	return 0
}

// file is the TOML layout; values are checked into a Manifest.
type file struct {
	ID                string                 `toml:"id"`
	Name              string                 `toml:"name"`
	Version           string                 `toml:"version"`
	MinMairustVersion string                 `toml:"min_mairust_version"`
	Kind              string                 `toml:"kind"`
	Hooks             []string               `toml:"hooks"`
	Timeout           string                 `toml:"timeout"`
	Command           string                 `toml:"command"`
	Args              []string               `toml:"args"`
	URL               string                 `toml:"url"`
	SHA256            string                 `toml:"sha256"`
	Network           string                 `toml:"network"`
	NetworkAllow      []string               `toml:"network_allow"`
	HealthEndpoint    string                 `toml:"health_endpoint"`
	HealthCmd         []string               `toml:"health_cmd"`
	LogLevel          string                 `toml:"log_level"`
	Permissions       filePermissions        `toml:"permissions"`
	Settings          map[string]fileSetting `toml:"settings"`
}

type filePermissions struct {
	ReadHeaders     bool   `toml:"read_headers"`
	ReadBody        string `toml:"read_body"`
	ReadAttachments string `toml:"read_attachments"`
	WriteTags       bool   `toml:"write_tags"`
	MoveMessage     bool   `toml:"move_message"`
	WriteMetadata   bool   `toml:"write_metadata"`
}

type fileSetting struct {
	Type        string `toml:"type"`
	Required    bool   `toml:"required"`
	Default     any    `toml:"default"`
	Description string `toml:"description"`
}

var tomlTypeRE = regexp.MustCompile(`cannot decode TOML (\S+)`)

// unknownKeys records the keys go-toml found no field for.
func (c *checker) unknownKeys(strict *toml.StrictMissingError) {
	for _, e := range strict.Errors {
		line, _ := e.Position()
		key := e.Key()
		msg := "unknown key"
		if t := fieldType(key[:max(len(key)-1, 0)]); t != nil && t.Kind() == reflect.Struct {
			msg += " (valid here: " + strings.Join(tomlKeys(t), ", ") + ")"
		}
		c.errs = append(c.errs, &Error{File: c.file, Line: line, Key: strings.Join(key, "."), Msg: msg})
	}
}

// decodeError turns a syntax or type error from go-toml into an *Error.
func decodeError(name string, err error) error {
	var de *toml.DecodeError
	if !errors.As(err, &de) {
		return fmt.Errorf("%s: %w", name, err)
	}
	line, _ := de.Position()
	key := de.Key()
	msg := strings.TrimPrefix(de.Error(), "toml: ")
	if m := tomlTypeRE.FindStringSubmatch(msg); m != nil && len(key) > 0 {
		if t := fieldType(key); t != nil {
			msg = "must be " + describe(t) + " (found " + m[1] + ")"
		}
	}
	return &Error{File: name, Line: line, Key: strings.Join(key, "."), Msg: msg}
}

// fieldType follows a key path through the file layout; nil if unknown.
func fieldType(key []string) reflect.Type {
	t := reflect.TypeFor[file]()
	for _, k := range key {
		switch t.Kind() {
		case reflect.Struct:
			i := slices.Index(tomlKeys(t), k)
			if i < 0 {
				return nil
			}
			t = t.Field(i).Type
		case reflect.Map:
			t = t.Elem()
		default:
			return nil
		}
	}
	return t
}

func tomlKeys(t reflect.Type) []string {
	keys := make([]string, t.NumField())
	for i := range keys {
		keys[i] = t.Field(i).Tag.Get("toml")
	}
	return keys
}

func describe(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice:
		return "a list of strings"
	default:
		return "a table"
	}
}

// maxKeys bounds the keys in a manifest.
const maxKeys = 1000

// keyLines maps each dotted key of a TOML document (up to its first syntax
// error, and 4 levels deep) to its line, and counts the keys.
func keyLines(data []byte) (map[string]int, int) {
	lines := map[string]int{}
	var p unstable.Parser
	p.Reset(data)
	var newlines []int
	for i, b := range data {
		if b == '\n' {
			newlines = append(newlines, i)
		}
	}
	k := &keyWalker{p: &p, newlines: newlines, lines: lines}
	var table []string
	for p.NextExpression() {
		n := p.Expression()
		switch n.Kind {
		case unstable.Table, unstable.ArrayTable:
			var line int
			table, line = k.parts(n)
			k.count++
			if key := strings.Join(table, "."); lines[key] == 0 {
				lines[key] = line
			}
		case unstable.KeyValue:
			k.keyValue(n, table)
		}
	}
	return lines, k.count
}

type keyWalker struct {
	p        *unstable.Parser
	newlines []int // offsets of '\n' in the document
	lines    map[string]int
	count    int
}

func (k *keyWalker) keyValue(n *unstable.Node, prefix []string) {
	k.count++
	parts, line := k.parts(n)
	full := append(slices.Clip(prefix), parts...)
	key := strings.Join(full, ".")
	if _, ok := k.lines[key]; !ok {
		k.lines[key] = line
	}
	if v := n.Value(); v.Kind == unstable.InlineTable && len(full) < 4 {
		it := v.Children()
		for it.Next() {
			if it.Node().Kind == unstable.KeyValue {
				k.keyValue(it.Node(), full)
			}
		}
	}
}

// parts returns the parts of n's dotted key and the line it starts on.
func (k *keyWalker) parts(n *unstable.Node) (parts []string, line int) {
	it := n.Key()
	for it.Next() {
		if parts == nil {
			line, _ = slices.BinarySearch(k.newlines, int(it.Node().Raw.Offset))
			line++
		}
		parts = append(parts, string(it.Node().Data))
	}
	return parts, line
}

// checker collects problems with the values of a decoded file.
type checker struct {
	file  string
	lines map[string]int
	errs  []*Error
}

func (c *checker) fail(key, format string, args ...any) {
	c.errs = append(c.errs, &Error{File: c.file, Line: lineOf(c.lines, key), Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (c *checker) has(key string) bool {
	_, ok := c.lines[key]
	return ok
}

// oneOf returns v if it is one of options, def if the key is absent.
func (c *checker) oneOf(key, v, def string, options ...string) string {
	if !c.has(key) {
		return def
	}
	if !slices.Contains(options, v) {
		c.fail(key, "must be %s", orList(options))
		return def
	}
	return v
}

func orList(options []string) string {
	if len(options) == 1 {
		return options[0]
	}
	return strings.Join(options[:len(options)-1], ", ") + " or " + options[len(options)-1]
}

var idRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{1,63}$`)

var logLevels = map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}

func (c *checker) check(f *file) *Manifest {
	m := &Manifest{file: c.file, lines: c.lines, ID: f.ID, Name: f.Name, Args: f.Args, NetworkAllow: f.NetworkAllow}
	for _, k := range []string{"id", "name", "version", "kind", "hooks"} {
		if !c.has(k) {
			c.fail(k, "required")
		}
	}
	if c.has("id") && !idRE.MatchString(f.ID) {
		c.fail("id", "must be 2 to 64 of a-z, 0-9, '.', '-', '_', starting with a letter or digit")
	}
	if c.has("name") && strings.TrimSpace(f.Name) == "" {
		c.fail("name", "must not be empty")
	}
	if c.has("version") {
		v, err := ParseVersion(f.Version)
		if err != nil {
			c.fail("version", "%v", err)
		}
		m.Version = v
	}
	if c.has("min_mairust_version") {
		v, err := ParseVersion(f.MinMairustVersion)
		if err != nil {
			c.fail("min_mairust_version", "%v", err)
		}
		m.MinMairustVersion = v
	}
	m.Kind = Kind(c.oneOf("kind", f.Kind, "", string(KindProcess), string(KindStdin), string(KindHTTP)))
	c.checkHooks(m, f.Hooks)

	m.Timeout = DefaultTimeout
	if c.has("timeout") {
		d, err := time.ParseDuration(f.Timeout)
		switch {
		case err != nil:
			c.fail("timeout", "%q is not a duration (write e.g. \"10s\" or \"500ms\")", f.Timeout)
		case d < MinTimeout || d > MaxTimeout:
			c.fail("timeout", "must be between 100ms and 5m")
		default:
			m.Timeout = d
		}
	}
	c.checkTarget(m, f)

	m.Network = Network(c.oneOf("network", f.Network, string(NetworkNone),
		string(NetworkNone), string(NetworkLocalOnly), string(NetworkOutboundLimited), string(NetworkUnlimited)))
	if c.has("network_allow") {
		if m.Network != NetworkOutboundLimited {
			c.fail("network_allow", "only allowed with network = \"outbound-limited\"")
		}
		for _, h := range f.NetworkAllow {
			if !validHost(h) {
				c.fail("network_allow", "%q is not a host name, IP address or CIDR", h)
			}
		}
	}

	if c.has("health_endpoint") {
		m.HealthEndpoint = f.HealthEndpoint
		if c.has("health_cmd") {
			c.fail("health_endpoint", "give health_endpoint or health_cmd, not both")
		}
		if m.Kind == KindStdin {
			c.fail("health_endpoint", "only for kind = \"http\" or \"process\"")
		}
		if !validHTTPURL(f.HealthEndpoint) {
			c.fail("health_endpoint", "must be an http:// or https:// URL")
		}
	}
	if c.has("health_cmd") {
		m.HealthCmd = f.HealthCmd
		if len(f.HealthCmd) == 0 || f.HealthCmd[0] == "" {
			c.fail("health_cmd", "must start with the program to run")
		}
	}
	level := c.oneOf("log_level", f.LogLevel, "info", "debug", "info", "warn", "error")
	m.LogLevel = logLevels[level]

	m.Permissions = c.checkPermissions(f.Permissions)
	m.Settings = c.checkSettings(f.Settings)
	return m
}

func (c *checker) checkHooks(m *Manifest, names []string) {
	if c.has("hooks") && len(names) == 0 {
		c.fail("hooks", "must list at least one hook")
	}
	for _, s := range names {
		h := Hook(s)
		supported, known := hooks[h]
		switch {
		case !known:
			c.fail("hooks", "%q is not a hook (use %s)", s, PostReceive)
		case !supported:
			c.fail("hooks", "hook %s is not supported by this agent yet", s)
		case slices.Contains(m.Hooks, h):
			c.fail("hooks", "%s is listed twice", s)
		default:
			m.Hooks = append(m.Hooks, h)
		}
	}
}

// checkTarget checks how the plugin is reached: command and args, or url.
func (c *checker) checkTarget(m *Manifest, f *file) {
	local := m.Kind == KindProcess || m.Kind == KindStdin
	if local {
		switch {
		case !c.has("command"):
			if c.has("kind") {
				c.fail("command", "required when kind = %q", m.Kind)
			}
		case !filepath.IsLocal(f.Command):
			c.fail("command", "must be a path inside the plugin directory, such as \"bin/plugin\"")
		default:
			m.Command = f.Command
		}
		if c.has("url") {
			c.fail("url", "only for kind = \"http\"; kind %q runs command", m.Kind)
		}
	}
	if m.Kind == KindHTTP {
		for _, k := range []string{"command", "args", "sha256"} {
			if c.has(k) {
				c.fail(k, "not allowed when kind = \"http\"")
			}
		}
		switch {
		case !c.has("url"):
			c.fail("url", "required when kind = \"http\"")
		case !validHTTPURL(f.URL):
			c.fail("url", "must be an http:// or https:// URL")
		default:
			m.URL = f.URL
		}
	}
	if c.has("sha256") {
		s := strings.ToLower(f.SHA256)
		if len(s) != 64 || strings.Trim(s, "0123456789abcdef") != "" {
			c.fail("sha256", "must be 64 hexadecimal digits (the output of sha256sum on the command file)")
		}
		m.SHA256 = s
	}
}

func validHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

var hostRE = regexp.MustCompile(`^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// validHost accepts a host name (optionally *.domain), an IP or a CIDR.
func validHost(s string) bool {
	if net.ParseIP(s) != nil {
		return true
	}
	if _, _, err := net.ParseCIDR(s); err == nil {
		return true
	}
	return len(s) <= 253 && hostRE.MatchString(strings.ToLower(s))
}
