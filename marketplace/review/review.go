// Package review is the automatic analysis of a plugin package submitted
// to the marketplace: permission combinations beyond need, executables and
// scripts, hidden and setuid files, and the Go modules compiled into its
// binaries checked against an advisory list. Its report is stored and
// shown to the reviewer, who approves or rejects; it decides nothing.
package review

import (
	"bytes"
	"debug/buildinfo"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/mairust/mairust/agent/plugins/manifest"
)

// Severity ranks a finding.
type Severity string

// Severities, most serious first.
const (
	High   Severity = "high"
	Medium Severity = "medium"
	Info   Severity = "info"
)

// Finding is one thing the reviewer should look at.
type Finding struct {
	Severity Severity `json:"severity"`
	Code     string   `json:"code"` // e.g. permissions.exfiltration, file.hidden, module.vulnerable
	Path     string   `json:"path,omitempty"`
	Message  string   `json:"message"`
}

// Module is a Go module compiled into one of the package's binaries.
type Module struct {
	Binary  string `json:"binary"`
	Path    string `json:"path"` // "stdlib" for Go itself
	Version string `json:"version"`
}

// Report is the analysis of one package.
type Report struct {
	PluginID string    `json:"plugin_id"`
	Version  string    `json:"version"`
	Findings []Finding `json:"findings"`
	Modules  []Module  `json:"modules"`
}

// Worst is the most serious severity found, or "" when nothing was.
func (r Report) Worst() Severity {
	for _, s := range []Severity{High, Medium, Info} {
		if slices.ContainsFunc(r.Findings, func(f Finding) bool { return f.Severity == s }) {
			return s
		}
	}
	return ""
}

// File is a file of a package.
type File struct {
	Path string // slash-separated, relative
	Mode fs.FileMode
	Data []byte
}

// Analyze reviews the package of m made of files, checking its Go
// binaries' modules against vulns.
func Analyze(m *manifest.Manifest, files []File, vulns *Vulns) Report {
	r := Report{PluginID: m.ID, Version: m.Version.String(), Findings: append([]Finding{}, permissions(m)...), Modules: []Module{}}
	for _, f := range files {
		r.Findings = append(r.Findings, fileFindings(m, f)...)
		mods := modules(f)
		r.Modules = append(r.Modules, mods...)
		for _, mod := range mods {
			found, fixed := vulns.Affecting(mod.Path, mod.Version)
			for i, a := range found {
				fix := "no fixed version yet"
				if fixed[i] != "" {
					fix = "fixed in " + fixed[i]
				}
				r.Findings = append(r.Findings, Finding{High, "module.vulnerable", f.Path,
					fmt.Sprintf("%s %s is affected by %s: %s (%s)", mod.Path, mod.Version, a.ID, a.Summary, fix)})
			}
		}
	}
	return r
}

// permissions flags permission combinations that give more than a
// plugin usually needs.
func permissions(m *manifest.Manifest) []Finding {
	p, net := m.Permissions, m.Network
	var out []Finding
	add := func(s Severity, code, msg string) { out = append(out, Finding{Severity: s, Code: code, Message: msg}) }
	if p.ReadBody == manifest.BodyFull && p.MoveMessage && p.WriteMetadata {
		add(High, "permissions.exfiltration", "reads whole message bodies, moves messages and writes metadata: together these let a plugin read mail and hide it; check that it needs all three")
	}
	if net == manifest.NetworkUnlimited {
		add(High, "permissions.network", "asks for unlimited network access: anything it reads can leave the machine")
	}
	if net != manifest.NetworkNone && net != "" && (p.ReadBody == manifest.BodyFull || p.ReadAttachments == manifest.AttachmentsFull) {
		add(Medium, "permissions.read_and_send", fmt.Sprintf("reads whole bodies or attachments and has network access (%s)", net))
	}
	if missing := p.Missing(); len(missing) > 0 {
		add(Medium, "permissions.dependencies", "permissions without the ones they need: "+strings.Join(missing, "; "))
	}
	return out
}

// executable says what kind of program data is ("" when none).
func executable(data []byte) string {
	switch {
	case bytes.HasPrefix(data, []byte("\x7fELF")):
		return "ELF binary"
	case bytes.HasPrefix(data, []byte("\xcf\xfa\xed\xfe")), bytes.HasPrefix(data, []byte("\xce\xfa\xed\xfe")), bytes.HasPrefix(data, []byte("\xca\xfe\xba\xbe")):
		return "Mach-O binary"
	case bytes.HasPrefix(data, []byte("MZ")):
		return "Windows executable"
	case bytes.HasPrefix(data, []byte("#!")):
		return "script"
	}
	return ""
}

// shells are interpreters whose scripts the review points out.
var shells = []string{"sh", "bash", "dash", "zsh", "ksh", "ash"}

// fileFindings flags hidden, setuid and unexpected executable files, and
// shell scripts.
func fileFindings(m *manifest.Manifest, f File) []Finding {
	var out []Finding
	add := func(s Severity, code, msg string) { out = append(out, Finding{s, code, f.Path, msg}) }
	if f.Mode&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
		add(High, "file.setuid", "has the setuid or setgid bit: it would run with another user's rights")
	}
	if slices.ContainsFunc(strings.Split(f.Path, "/"), func(e string) bool { return strings.HasPrefix(e, ".") }) {
		add(Medium, "file.hidden", "is hidden (a name starting with a dot): say why the plugin ships it")
	}
	kind := executable(f.Data)
	if kind == "" && f.Mode&0o111 != 0 {
		kind = "file marked executable"
	}
	entry := path.Clean(strings.ReplaceAll(m.Command, `\`, "/"))
	if kind != "" && f.Path != entry {
		add(Medium, "file.unexpected_executable", fmt.Sprintf("%s that plugin.toml does not run (its command is %q)", kind, m.Command))
	}
	if kind == "script" {
		line, _, _ := bytes.Cut(f.Data, []byte("\n"))
		fields := strings.Fields(strings.TrimPrefix(string(line), "#!"))
		interp := ""
		if len(fields) > 0 {
			interp = path.Base(fields[0])
			if interp == "env" && len(fields) > 1 {
				interp = fields[1]
			}
		}
		if slices.Contains(shells, interp) {
			add(Info, "file.shell_script", "is a shell script ("+interp+"): read it")
		}
	}
	return out
}

// modules lists the Go modules compiled into f, when it is a Go binary.
func modules(f File) []Module {
	info, err := buildinfo.Read(bytes.NewReader(f.Data))
	if err != nil {
		return nil
	}
	mods := []Module{{f.Path, "stdlib", strings.TrimPrefix(info.GoVersion, "go")}}
	for _, d := range info.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		mods = append(mods, Module{f.Path, d.Path, d.Version})
	}
	return mods
}
