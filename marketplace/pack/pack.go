// Package pack reads, writes, signs and verifies .mairust-plugin packages:
// a plugin directory as a gzip-compressed tar with a manifest.json of the
// digests of its files and optional developer and marketplace signatures.
// The format is described in package marketplace.
package pack

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/mairust/mairust/agent/plugins/manifest"
)

// Names in a package.
const (
	Ext                = ".mairust-plugin"
	ManifestName       = "manifest.json"
	DeveloperSigName   = "developer.sig"
	MarketplaceSigName = "marketplace.sig"
	ReadmeName         = "README.md"
	IconName           = "icon.png"
)

// Format is the version of manifest.json this package writes and reads.
const Format = 1

// Size bounds of the package's own files.
const (
	MaxManifestBytes  = 1 << 20
	MaxSignatureBytes = 64 << 10
	maxPathBytes      = 512
)

// Limits bound what Open accepts; zero fields take the DefaultLimits.
type Limits struct {
	MaxFileBytes  int64 // size of one file
	MaxFiles      int   // tar entries, directories and the package's own files included
	MaxTotalBytes int64 // sum of the files' sizes
}

// DefaultLimits are the limits Build and Open use by default.
var DefaultLimits = Limits{MaxFileBytes: 64 << 20, MaxFiles: 1000, MaxTotalBytes: 256 << 20}

func (l Limits) orDefaults() Limits {
	if l.MaxFileBytes <= 0 {
		l.MaxFileBytes = DefaultLimits.MaxFileBytes
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = DefaultLimits.MaxFiles
	}
	if l.MaxTotalBytes <= 0 {
		l.MaxTotalBytes = DefaultLimits.MaxTotalBytes
	}
	return l
}

// Manifest is manifest.json: the plugin's identity and every file of the
// package but manifest.json and the signatures.
type Manifest struct {
	Format            int    `json:"format"`
	ID                string `json:"id"`
	Version           string `json:"version"`
	MinMairustVersion string `json:"min_mairust_version"` // empty when the plugin names none
	Files             []File `json:"files"`               // sorted by Path
}

// File is one file of a package.
type File struct {
	Path   string `json:"path"`   // slash-separated, relative
	SHA256 string `json:"sha256"` // lowercase hex
	Size   int64  `json:"size"`
	Mode   string `json:"mode"` // "0644" or "0755"
}

// File modes in a package.
const (
	ModeFile = "0644"
	ModeExec = "0755"
)

// Marshal returns the canonical bytes of m, the ones that are signed.
func (m Manifest) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

var (
	hexRE = regexp.MustCompile(`^[0-9a-f]{64}$`)
	idRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{1,63}$`) // as in plugin.toml
)

// ParseManifest decodes and checks manifest.json. It must be in the
// canonical form Marshal writes: no unknown or repeated fields, files
// sorted, paths that are safe to unpack.
func ParseManifest(data []byte) (Manifest, error) {
	var m Manifest
	if len(data) > MaxManifestBytes {
		return m, fmt.Errorf("%s is larger than %d KiB", ManifestName, MaxManifestBytes>>10)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("%s: %w", ManifestName, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Manifest{}, fmt.Errorf("%s: data after the JSON object", ManifestName)
	}
	if err := m.check(); err != nil {
		return Manifest{}, fmt.Errorf("%s: %w", ManifestName, err)
	}
	if canon, err := m.Marshal(); err != nil || !bytes.Equal(canon, data) {
		return Manifest{}, fmt.Errorf("%s is not in canonical form (repeated, misspelt or reordered fields?); pack the plugin again with mairust plugin pack", ManifestName)
	}
	return m, nil
}

func (m Manifest) check() error {
	if m.Format != Format {
		return fmt.Errorf("format %d is not supported (this mairust reads format %d; upgrade it)", m.Format, Format)
	}
	if !idRE.MatchString(m.ID) {
		return fmt.Errorf("id %q is not a plugin id", m.ID)
	}
	if _, err := manifest.ParseVersion(m.Version); err != nil {
		return fmt.Errorf("version: %w", err)
	}
	if m.MinMairustVersion != "" {
		if _, err := manifest.ParseVersion(m.MinMairustVersion); err != nil {
			return fmt.Errorf("min_mairust_version: %w", err)
		}
	}
	if len(m.Files) == 0 {
		return errors.New("no files")
	}
	for i, f := range m.Files {
		if err := checkPath(f.Path); err != nil {
			return err
		}
		if reserved(f.Path) {
			return fmt.Errorf("%q is the package's own file and may not be listed", f.Path)
		}
		if i > 0 && m.Files[i-1].Path >= f.Path {
			return fmt.Errorf("files are not sorted by path, or %q is listed twice", f.Path)
		}
		if !hexRE.MatchString(f.SHA256) {
			return fmt.Errorf("%s: sha256 must be 64 lowercase hexadecimal digits", f.Path)
		}
		if f.Size < 0 {
			return fmt.Errorf("%s: negative size", f.Path)
		}
		if f.Mode != ModeFile && f.Mode != ModeExec {
			return fmt.Errorf("%s: mode %q (want %s or %s)", f.Path, f.Mode, ModeFile, ModeExec)
		}
	}
	return nil
}

// File returns the entry of path, if listed.
func (m Manifest) File(path string) (File, bool) {
	for _, f := range m.Files {
		if f.Path == path {
			return f, true
		}
	}
	return File{}, false
}

// reserved reports whether name is one of the package's own files.
func reserved(name string) bool {
	return name == ManifestName || name == DeveloperSigName || name == MarketplaceSigName
}

// checkPath refuses a path that is not a clean, relative, slash-separated
// path of printable UTF-8 inside the package.
func checkPath(p string) error {
	why := ""
	switch {
	case p == "":
		return errors.New("empty path")
	case len(p) > maxPathBytes:
		why = fmt.Sprintf("longer than %d bytes", maxPathBytes)
	case !utf8.ValidString(p):
		why = "not valid UTF-8"
	case strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		why = "a control character"
	case strings.Contains(p, `\`):
		why = "a backslash (paths are slash-separated)"
	case strings.HasPrefix(p, "/"):
		why = "an absolute path"
	}
	for e := range strings.SplitSeq(p, "/") {
		if why != "" {
			break
		}
		switch e {
		case "..":
			why = "a '..' element (it would lead out of the plugin directory)"
		case ".":
			why = "a '.' element"
		case "":
			why = "an empty element ('//' or a trailing '/')"
		}
	}
	if why != "" {
		return fmt.Errorf("path %q: %s", p, why)
	}
	return nil
}
