package manifest

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const fullProcess = `# A tagger run as a long-lived process.
id = "spam-tagger"
name = "Spam tagger"
version = "1.2.0-rc.1+build.7"
min_mairust_version = "0.3.0"
kind = "process"
hooks = ["post_receive"]
timeout = "30s"
command = "bin/tagger"
args = ["--fast", "-v"]
sha256 = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
network = "outbound-limited"
network_allow = ["api.example.com", "*.example.org", "192.0.2.7", "2001:db8::/32"]
health_endpoint = "http://127.0.0.1:8125/health"
log_level = "debug"

[permissions]
read_headers = true
read_body = "preview"
read_attachments = "full"
write_tags = true
move_message = true
write_metadata = true

[settings.api_key]
type = "string"
required = true
description = "Key for the scoring service"

[settings.threshold]
type = "float"
default = 5

[settings.max_size]
type = "int"
default = 1048576

[settings.verbose]
type = "bool"
default = false

[settings.cache_ttl]
type = "duration"
default = "1h"
`

func TestParseValid(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want Manifest
	}{
		{"process", fullProcess, Manifest{
			ID: "spam-tagger", Name: "Spam tagger",
			Version:           Version{Major: 1, Minor: 2, Patch: 0, Pre: "rc.1", Build: "build.7"},
			MinMairustVersion: Version{Minor: 3},
			Kind:              KindProcess, Hooks: []Hook{PostReceive}, Timeout: 30 * time.Second,
			Command: "bin/tagger", Args: []string{"--fast", "-v"},
			SHA256:         "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
			Network:        NetworkOutboundLimited,
			NetworkAllow:   []string{"api.example.com", "*.example.org", "192.0.2.7", "2001:db8::/32"},
			HealthEndpoint: "http://127.0.0.1:8125/health", LogLevel: slog.LevelDebug,
			Permissions: Permissions{ReadHeaders: true, ReadBody: BodyPreview, ReadAttachments: AttachmentsFull,
				WriteTags: true, MoveMessage: true, WriteMetadata: true},
			Settings: map[string]Setting{
				"api_key":   {Type: SettingString, Required: true, Description: "Key for the scoring service"},
				"threshold": {Type: SettingFloat, Default: 5.0},
				"max_size":  {Type: SettingInt, Default: int64(1048576)},
				"verbose":   {Type: SettingBool, Default: false},
				"cache_ttl": {Type: SettingDuration, Default: time.Hour},
			},
		}},
		{"stdin with defaults", `
id = "archiver"
name = "Archiver"
version = "0.1.0"
kind = "stdin"
hooks = ["post_receive"]
command = "archive.sh"
health_cmd = ["archive.sh", "--check"]
`, Manifest{
			ID: "archiver", Name: "Archiver", Version: Version{Minor: 1}, Kind: KindStdin,
			Hooks: []Hook{PostReceive}, Timeout: DefaultTimeout, Command: "archive.sh",
			Network: NetworkNone, HealthCmd: []string{"archive.sh", "--check"}, LogLevel: slog.LevelInfo,
			Permissions: Permissions{ReadAttachments: AttachmentsMetadata},
		}},
		{"http", `
id = "crm.sync_v2"
name = "CRM sync"
version = "2.0.0"
kind = "http"
hooks = ["post_receive"]
url = "https://crm.example.com/mairust/hook"
health_endpoint = "https://crm.example.com/health"
timeout = "100ms"
log_level = "warn"
permissions = { read_headers = true, read_attachments = "none" }
`, Manifest{
			ID: "crm.sync_v2", Name: "CRM sync", Version: Version{Major: 2}, Kind: KindHTTP,
			Hooks: []Hook{PostReceive}, Timeout: 100 * time.Millisecond,
			URL: "https://crm.example.com/mairust/hook", Network: NetworkNone,
			HealthEndpoint: "https://crm.example.com/health", LogLevel: slog.LevelWarn,
			Permissions: Permissions{ReadHeaders: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse("plugin.toml", []byte(tt.doc))
			if err != nil {
				t.Fatal(err)
			}
			m.file, m.lines = "", nil
			if !reflect.DeepEqual(*m, tt.want) {
				t.Errorf("got  %+v\nwant %+v", *m, tt.want)
			}
		})
	}
}

// base is a valid manifest of 6 lines; cases append to it or edit it.
const base = `id = "spam-tagger"
name = "Spam tagger"
version = "1.0.0"
kind = "process"
hooks = ["post_receive"]
command = "bin/tagger"
`

// asHTTP turns base into an http plugin (still 6 lines).
var asHTTP = []string{`kind = "process"`, `kind = "http"`, `command = "bin/tagger"`, `url = "https://example.com/hook"`}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name  string
		edits []string // old, new pairs applied to base
		extra string   // appended to base (from line 7)
		key   string
		line  int
		msg   string
	}{
		{"unknown key", nil, `colour = "red"`, "colour", 7, "unknown key (valid here: id, name,"},
		{"unknown permission", nil, "[permissions]\nread_everything = true", "permissions.read_everything", 8, "unknown key (valid here: read_headers,"},
		{"unknown setting field", nil, "[settings.a]\ntype = \"int\"\nmin = 1", "settings.a.min", 9, "unknown key (valid here: type, required, default, description)"},
		{"syntax", nil, "timeout = ", "", 7, "expected"},
		{"key twice", nil, `id = "again"`, "id", 7, "already defined"},

		{"id type", []string{`id = "spam-tagger"`, `id = 5`}, "", "id", 1, "must be a string (found integer)"},
		{"hooks type", []string{`hooks = ["post_receive"]`, `hooks = "post_receive"`}, "", "hooks", 5, "must be a list of strings (found string)"},
		{"timeout type", nil, "timeout = 10", "timeout", 7, "must be a string (found integer)"},
		{"read_headers type", nil, "[permissions]\nread_headers = \"yes\"", "permissions.read_headers", 8, "must be true or false (found string)"},
		{"permissions type", nil, "permissions = true", "permissions", 7, "must be a table"},
		{"setting type", nil, "[settings]\nlimit = 5", "settings.limit", 8, "must be a table (found integer)"},

		{"id uppercase", []string{`"spam-tagger"`, `"Spam"`}, "", "id", 1, "must be 2 to 64 of a-z"},
		{"id short", []string{`"spam-tagger"`, `"a"`}, "", "id", 1, "must be 2 to 64"},
		{"id long", []string{`"spam-tagger"`, `"` + strings.Repeat("a", 65) + `"`}, "", "id", 1, "must be 2 to 64"},
		{"name missing", []string{"name = \"Spam tagger\"\n", ""}, "", "name", 0, "required"},
		{"name empty", []string{`name = "Spam tagger"`, `name = " "`}, "", "name", 2, "must not be empty"},
		{"version short", []string{`"1.0.0"`, `"1.0"`}, "", "version", 3, `"1.0" is not a semantic version`},
		{"version v", []string{`"1.0.0"`, `"v1.0.0"`}, "", "version", 3, "not a semantic version"},
		{"version zeros", []string{`"1.0.0"`, `"1.01.0"`}, "", "version", 3, "leading zeros"},
		{"min version", nil, `min_mairust_version = "latest"`, "min_mairust_version", 7, "not a semantic version"},
		{"kind", []string{`"process"`, `"docker"`}, "", "kind", 4, "must be process, stdin or http"},
		{"hooks empty", []string{`["post_receive"]`, `[]`}, "", "hooks", 5, "at least one hook"},
		{"hooks unknown", []string{`["post_receive"]`, `["on_send"]`}, "", "hooks", 5, `"on_send" is not a hook (use post_receive)`},
		{"hooks pre_receive", []string{`["post_receive"]`, `["pre_receive"]`}, "", "hooks", 5, "hook pre_receive is not supported by this agent yet"},
		{"hooks pre_send", []string{`["post_receive"]`, `["post_receive", "pre_send"]`}, "", "hooks", 5, "hook pre_send is not supported by this agent yet"},
		{"hooks twice", []string{`["post_receive"]`, `["post_receive", "post_receive"]`}, "", "hooks", 5, "listed twice"},
		{"timeout unit", nil, `timeout = "10"`, "timeout", 7, `"10" is not a duration`},
		{"timeout short", nil, `timeout = "50ms"`, "timeout", 7, "between 100ms and 5m"},
		{"timeout long", nil, `timeout = "6m"`, "timeout", 7, "between 100ms and 5m"},
		{"command absolute", []string{`"bin/tagger"`, `"/usr/bin/tagger"`}, "", "command", 6, "inside the plugin directory"},
		{"command escapes", []string{`"bin/tagger"`, `"../tagger"`}, "", "command", 6, "inside the plugin directory"},
		{"command missing", []string{"command = \"bin/tagger\"\n", ""}, "", "command", 0, `required when kind = "process"`},
		{"url for process", nil, `url = "https://example.com/"`, "url", 7, `only for kind = "http"`},
		{"http args", asHTTP, `args = ["-v"]`, "args", 7, `not allowed when kind = "http"`},
		{"http sha256", asHTTP, `sha256 = "` + strings.Repeat("0", 64) + `"`, "sha256", 7, `not allowed when kind = "http"`},
		{"http url missing", []string{`kind = "process"`, `kind = "http"`, "command = \"bin/tagger\"\n", ""}, "", "url", 0, `required when kind = "http"`},
		{"http url scheme", []string{`kind = "process"`, `kind = "http"`, `command = "bin/tagger"`, `url = "ftp://example.com/"`}, "", "url", 6, "http:// or https:// URL"},
		{"sha256", nil, `sha256 = "abc"`, "sha256", 7, "64 hexadecimal digits"},
		{"network", nil, `network = "some"`, "network", 7, "must be none, local-only, outbound-limited or unlimited"},
		{"network_allow alone", nil, `network_allow = ["example.com"]`, "network_allow", 7, `only allowed with network = "outbound-limited"`},
		{"network_allow host", nil, "network = \"outbound-limited\"\nnetwork_allow = [\"ex ample.com\"]", "network_allow", 8, `"ex ample.com" is not a host name, IP address or CIDR`},
		{"health both", nil, "health_endpoint = \"http://127.0.0.1:8080/\"\nhealth_cmd = [\"bin/check\"]", "health_endpoint", 7, "not both"},
		{"health_endpoint stdin", []string{`"process"`, `"stdin"`}, `health_endpoint = "http://127.0.0.1:8080/"`, "health_endpoint", 7, `only for kind = "http" or "process"`},
		{"health_endpoint url", nil, `health_endpoint = "localhost:8080"`, "health_endpoint", 7, "http:// or https:// URL"},
		{"health_cmd empty", nil, `health_cmd = []`, "health_cmd", 7, "must start with the program"},
		{"log_level", nil, `log_level = "trace"`, "log_level", 7, "must be debug, info, warn or error"},
		{"read_body", nil, "[permissions]\nread_body = \"all\"", "permissions.read_body", 8, "must be none, preview or full"},
		{"read_attachments", nil, "[permissions]\nread_attachments = \"some\"", "permissions.read_attachments", 8, "must be none, metadata, preview or full"},
		{"setting type value", nil, "[settings.a]\ntype = \"list\"", "settings.a.type", 8, "must be string, int, bool, float or duration"},
		{"setting type missing", nil, "\n[settings.a]\nrequired = true", "settings.a.type", 8, "required (one of string,"},
		{"setting default type", nil, "[settings.a]\ntype = \"int\"\ndefault = \"x\"", "settings.a.default", 9, "is not an integer"},
		{"setting default fraction", nil, "[settings.a]\ntype = \"int\"\ndefault = 1.5", "settings.a.default", 9, "must be an int, not a number with a fraction"},
		{"setting default duration", nil, "[settings.a]\ntype = \"duration\"\ndefault = \"soon\"", "settings.a.default", 9, `"soon" is not a duration`},
		{"setting default date", nil, "[settings.a]\ntype = \"string\"\ndefault = 2024-01-02", "settings.a.default", 9, "must be a string, not a date or time"},
		{"setting required default", nil, "[settings.a]\ntype = \"bool\"\nrequired = true\ndefault = true", "settings.a.required", 9, "cannot have a default"},
		{"setting name", nil, "[settings.API]\ntype = \"bool\"", "settings.API", 7, "a setting name is a lowercase letter"},
		{"inline setting", nil, "settings = { a = { type = \"int\", default = true } }", "settings.a.default", 7, "must be an int, not true or false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := strings.NewReplacer(tt.edits...).Replace(base) + tt.extra
			if tt.edits != nil && doc == base+tt.extra {
				t.Fatal("edit did not apply")
			}
			_, err := Parse("plugin.toml", []byte(doc))
			errs := allErrors(err)
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1:\n%v", len(errs), err)
			}
			e := errs[0]
			if e.Key != tt.key || e.Line != tt.line || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("got %q\nwant key %q line %d msg containing %q", e, tt.key, tt.line, tt.msg)
			}
			prefix := fmt.Sprintf("plugin.toml:%d: %s: ", tt.line, tt.key)
			switch {
			case tt.line == 0:
				prefix = fmt.Sprintf("plugin.toml: %s: ", tt.key)
			case tt.key == "":
				prefix = fmt.Sprintf("plugin.toml:%d: ", tt.line)
			}
			if !strings.HasPrefix(e.Error(), prefix) {
				t.Errorf("error %q does not start with %q", e, prefix)
			}
		})
	}
}

// allErrors flattens errors.Join and fails on anything but *Error.
func allErrors(err error) []*Error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []*Error
		for _, e := range j.Unwrap() {
			out = append(out, allErrors(e)...)
		}
		return out
	}
	var e *Error
	if !errors.As(err, &e) {
		return []*Error{{Msg: fmt.Sprintf("not an *Error: %T %v", err, err)}}
	}
	return []*Error{e}
}

func TestParseReportsEveryProblem(t *testing.T) {
	doc := `id = "X"
name = "x"
version = "1"
kind = "http"
hooks = ["pre_receive"]
colour = "red"

[permissions]
read_body = "all"
`
	_, err := Parse("plugin.toml", []byte(doc))
	want := `plugin.toml: url: required when kind = "http"
plugin.toml:1: id: must be 2 to 64 of a-z, 0-9, '.', '-', '_', starting with a letter or digit
plugin.toml:3: version: "1" is not a semantic version: needs three numbers (write MAJOR.MINOR.PATCH, e.g. 1.0.0)
plugin.toml:5: hooks: hook pre_receive is not supported by this agent yet
plugin.toml:6: colour: unknown key (valid here: id, name, version, min_mairust_version, kind, hooks, timeout, command, args, url, sha256, network, network_allow, health_endpoint, health_cmd, log_level, permissions, settings)
plugin.toml:9: permissions.read_body: must be none, preview or full`
	if err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "plugin.toml") {
		t.Errorf("missing file: %v", err)
	}
	path := filepath.Join(dir, FileName)
	if err := os.WriteFile(path, []byte(base), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Dir != dir || m.ID != "spam-tagger" {
		t.Errorf("got dir %q id %q", m.Dir, m.ID)
	}

	if err := os.WriteFile(path, []byte(base+"timeout = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.HasPrefix(err.Error(), path+":7: timeout: ") {
		t.Errorf("bad file: %v", err)
	}

	big := base + "# " + strings.Repeat("x", MaxFileBytes) + "\n"
	if err := os.WriteFile(path, []byte(big), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "larger than 64 KiB") {
		t.Errorf("big file: %v", err)
	}
}

func TestCheck(t *testing.T) {
	doc := base + `min_mairust_version = "1.4.0"

[permissions]
read_headers = true
read_body = "preview"
move_message = true
`
	m, err := Parse("plugin.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		agent string
		want  string // "" for no error
	}{
		{"1.4.0", ""},
		{"v1.5.2", ""},
		{"2.0.0-beta.1", ""},
		{"1.3.9", "plugin.toml:7: min_mairust_version: plugin spam-tagger needs MaiRust 1.4.0 or newer; this agent is 1.3.9 (upgrade the agent)"},
		{"1.4.0-rc.1", "needs MaiRust 1.4.0 or newer; this agent is 1.4.0-rc.1"},
		{"dev", `agent version "dev"`},
	}
	for _, tt := range tests {
		err := Check(m, tt.agent)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("Check(%s) = %v, want %q", tt.agent, err, tt.want)
		}
	}

	// Permission dependencies are checked too, and AddMissing fixes them.
	m.MinMairustVersion = Version{}
	m.Permissions.ReadHeaders = false
	m.Permissions.ReadBody = BodyNone
	m.Permissions.WriteTags = true
	err = Check(m, "1.0.0")
	want := `plugin.toml:9: permissions.write_tags: needs read_headers (add it to [permissions], or install with --auto-add-permissions)
plugin.toml:12: permissions.move_message: needs read_headers (add it to [permissions], or install with --auto-add-permissions)
plugin.toml:12: permissions.move_message: needs read_body = preview or full (add it to [permissions], or install with --auto-add-permissions)`
	if err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
	m.Permissions.AddMissing()
	if err := Check(m, "1.0.0"); err != nil {
		t.Error(err)
	}
}

func TestLimits(t *testing.T) {
	big := base + "# " + strings.Repeat("x", MaxFileBytes) + "\n"
	if _, err := Parse("plugin.toml", []byte(big)); err == nil || err.Error() != "plugin.toml: larger than 64 KiB; a manifest must be smaller" {
		t.Errorf("big: %v", err)
	}
	many := base + "[settings]\n" + strings.Repeat("x = 1\n", 1000)
	if _, err := Parse("plugin.toml", []byte(many)); err == nil || err.Error() != "plugin.toml: more than 1000 keys; a manifest needs far fewer" {
		t.Errorf("many keys: %v", err)
	}
}
