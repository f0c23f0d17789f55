package review

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/mairust/mairust/agent/plugins/manifest"
)

// defaultVulns is the advisory list built in: a few advisories of modules
// plugins commonly embed, in OSV's JSON format. Operators replace it with
// a fresh export (an array of OSV entries, e.g. from the Go vulnerability
// database) through LoadVulns.
//
//go:embed vulns.json
var defaultVulns []byte

// Advisory is an OSV entry, as far as the review reads it.
type Advisory struct {
	ID       string `json:"id"`
	Summary  string `json:"summary"`
	Affected []struct {
		Package struct {
			Name      string `json:"name"`
			Ecosystem string `json:"ecosystem"`
		} `json:"package"`
		Ranges []struct {
			Type   string `json:"type"`
			Events []struct {
				Introduced string `json:"introduced,omitempty"`
				Fixed      string `json:"fixed,omitempty"`
			} `json:"events"`
		} `json:"ranges"`
	} `json:"affected"`
}

// Vulns is a list of advisories by module path ("stdlib" for Go itself).
type Vulns struct {
	byModule map[string][]*Advisory
}

// maxVulnBytes bounds an advisory file.
const maxVulnBytes = 256 << 20

// DefaultVulns returns the built-in list.
func DefaultVulns() *Vulns {
	v, err := LoadVulns(strings.NewReader(string(defaultVulns)))
	if err != nil {
		panic("review: the built-in vulns.json: " + err.Error())
	}
	return v
}

// LoadVulns reads a JSON array of OSV entries; entries of other ecosystems
// than Go are skipped.
func LoadVulns(r io.Reader) (*Vulns, error) {
	var list []*Advisory
	if err := json.NewDecoder(io.LimitReader(r, maxVulnBytes)).Decode(&list); err != nil {
		return nil, fmt.Errorf("review: the advisory list is not a JSON array of OSV entries: %w", err)
	}
	v := &Vulns{byModule: map[string][]*Advisory{}}
	for _, a := range list {
		for _, af := range a.Affected {
			if af.Package.Ecosystem == "Go" && af.Package.Name != "" {
				v.byModule[af.Package.Name] = append(v.byModule[af.Package.Name], a)
			}
		}
	}
	return v, nil
}

// Len is the number of modules with advisories.
func (v *Vulns) Len() int { return len(v.byModule) }

// Affecting returns the advisories affecting module at version (Go module
// versions, "v1.2.3" or pseudo-versions; "1.22.1" for stdlib), and for
// each the version that fixes it ("" when none does).
func (v *Vulns) Affecting(module, version string) (found []*Advisory, fixed []string) {
	ver, ok := semver(version)
	if !ok {
		return nil, nil
	}
	for _, a := range v.byModule[module] {
		for _, af := range a.Affected {
			if af.Package.Name != module {
				continue
			}
			for _, r := range af.Ranges {
				if r.Type != "SEMVER" {
					continue
				}
				if hit, fix := inRange(ver, r.Events); hit {
					found, fixed = append(found, a), append(fixed, fix)
				}
			}
		}
	}
	return found, fixed
}

// inRange reports whether ver is in an OSV range's events (introduced /
// fixed pairs in order), and the fixed version of its interval.
func inRange(ver manifest.Version, events []struct {
	Introduced string `json:"introduced,omitempty"`
	Fixed      string `json:"fixed,omitempty"`
}) (bool, string) {
	in := false
	for _, e := range events {
		switch {
		case e.Introduced != "":
			v, ok := semver(e.Introduced)
			if e.Introduced == "0" || ok && ver.Compare(v) >= 0 {
				in = true
			}
		case e.Fixed != "":
			if v, ok := semver(e.Fixed); ok && in && ver.Compare(v) < 0 {
				return true, e.Fixed
			}
			in = false
		}
	}
	return in, ""
}

// semver parses a Go module or toolchain version: "v1.2.3", a
// pseudo-version, "1.22" or "go1.23rc1".
func semver(s string) (manifest.Version, bool) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "go"), "v")
	if i := strings.IndexAny(s, "abcdefghijklmnopqrstuvwxyz"); i > 0 && !strings.Contains(s, "-") {
		s = s[:i] + "-" + s[i:] // go1.23rc1 → 1.23-rc1
	}
	core, rest, _ := strings.Cut(s, "-")
	if strings.Count(core, ".") == 1 {
		core += ".0"
	}
	if rest != "" {
		core += "-" + rest
	}
	v, err := manifest.ParseVersion(core)
	return v, err == nil
}
