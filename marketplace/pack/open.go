package pack

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image/png"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/mairust/mairust/agent/plugins/manifest"
)

// Package is a package held in memory: read by Open or made by Build.
type Package struct {
	Manifest    Manifest           // manifest.json
	Plugin      *manifest.Manifest // plugin.toml
	Developer   *Signature         // nil when the package has no developer.sig
	Marketplace *Signature         // nil when the package has no marketplace.sig

	manifestJSON, developerSig, marketplaceSig []byte // as stored
	files                                      map[string]entry
	dirs                                       map[string]bool
	checked                                    []Check // set by a successful Verify
}

type entry struct {
	data []byte
	mode int64 // permission bits in the archive
}

// ManifestJSON returns the bytes of manifest.json, as signed.
func (p *Package) ManifestJSON() []byte { return p.manifestJSON }

// ReadFile returns the content of a listed file of the package.
func (p *Package) ReadFile(path string) ([]byte, bool) {
	e, ok := p.files[path]
	return e.data, ok
}

// Warnings lists what a package should have but does not.
func (p *Package) Warnings() []string {
	if _, ok := p.files[IconName]; !ok {
		return []string{"no " + IconName + ": the marketplace will show a placeholder (add a square PNG, 256x256 or more)"}
	}
	return nil
}

// boundedReader fails once more than left bytes are read.
type boundedReader struct {
	r    io.Reader
	left int64
	over bool
}

var errBound = errors.New("size bound exceeded")

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.over {
		return 0, errBound
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		b.over = true
		return n, errBound
	}
	return n, err
}

// Open reads a whole package into memory, refusing anything unsafe or
// over limits (zero fields: DefaultLimits), and checks its manifest.json,
// signature files and plugin.toml. It does not check digests or trust:
// call Verify.
func Open(r io.Reader, limits Limits) (*Package, error) {
	l := limits.orDefaults()
	// Room for the files, the package's own files, tar headers and padding.
	bound := l.MaxTotalBytes + MaxManifestBytes + 2*MaxSignatureBytes + int64(l.MaxFiles+3)*4096 + 1<<20
	in := &boundedReader{r: r, left: bound}
	out := &boundedReader{left: bound}
	fail := func(err error) (*Package, error) {
		switch {
		case out.over:
			return nil, fmt.Errorf("the package expands to more than %d bytes when decompressed (a gzip bomb?); the limit for its files is %d bytes", bound, l.MaxTotalBytes)
		case in.over:
			return nil, fmt.Errorf("the package file is larger than %d bytes", bound)
		case errors.Is(err, io.EOF):
			return nil, errors.New("the package file is empty")
		case errors.Is(err, io.ErrUnexpectedEOF):
			return nil, errors.New("the package is truncated (download it again)")
		}
		return nil, fmt.Errorf("the package is corrupt: %w", err)
	}
	zr, err := gzip.NewReader(in)
	if err != nil {
		if in.over || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return fail(err)
		}
		return nil, fmt.Errorf("not a %s package: %v (it must be a gzip-compressed tar made by mairust plugin pack)", Ext, err)
	}
	out.r = zr
	tr := tar.NewReader(out)
	p := &Package{files: map[string]entry{}, dirs: map[string]bool{}}
	seen := map[string]bool{}
	var total int64
	for n := 1; ; n++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil && !(errors.Is(err, tar.ErrInsecurePath) && hdr != nil) {
			return fail(err)
		}
		if n > l.MaxFiles {
			return nil, fmt.Errorf("the package has more than %d entries (the limit)", l.MaxFiles)
		}
		name, err := entryName(hdr)
		if err != nil {
			return nil, err
		}
		if seen[name] {
			return nil, fmt.Errorf("entry %q appears twice in the package", name)
		}
		seen[name] = true
		if hdr.Typeflag == tar.TypeDir {
			if reserved(name) {
				return nil, fmt.Errorf("entry %q is a directory; it must be a file", name)
			}
			p.dirs[name] = true
			continue
		}
		limit := l.MaxFileBytes
		switch name {
		case ManifestName:
			limit = MaxManifestBytes
		case DeveloperSigName, MarketplaceSigName:
			limit = MaxSignatureBytes
		}
		if hdr.Size > limit {
			return nil, fmt.Errorf("entry %q is %d bytes, over the limit of %d", name, hdr.Size, limit)
		}
		if total += hdr.Size; total > l.MaxTotalBytes {
			return nil, fmt.Errorf("the files of the package add up to more than %d bytes (the limit)", l.MaxTotalBytes)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return fail(err)
		}
		switch name {
		case ManifestName:
			p.manifestJSON = data
		case DeveloperSigName:
			p.developerSig = data
		case MarketplaceSigName:
			p.marketplaceSig = data
		default:
			p.files[name] = entry{data: data, mode: hdr.Mode & 0o777}
		}
	}
	// The rest of the stream (the gzip checksum, or hidden data) is bounded too.
	if _, err := io.Copy(io.Discard, out); err != nil {
		return fail(err)
	}
	if err := p.checkLayout(); err != nil {
		return nil, err
	}
	return p, nil
}

// entryName checks a tar entry's type, mode and path, and returns the path.
func entryName(hdr *tar.Header) (string, error) {
	name := hdr.Name
	if hdr.Typeflag == tar.TypeDir {
		name = strings.TrimSuffix(name, "/")
	}
	if err := checkPath(name); err != nil {
		return "", fmt.Errorf("entry %w", err)
	}
	only := "a package holds only regular files and directories"
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeDir:
	case tar.TypeSymlink:
		return "", fmt.Errorf("entry %q is a symbolic link (to %q): %s", name, hdr.Linkname, only)
	case tar.TypeLink:
		return "", fmt.Errorf("entry %q is a hard link (to %q): %s", name, hdr.Linkname, only)
	case tar.TypeChar, tar.TypeBlock:
		return "", fmt.Errorf("entry %q is a device file: %s", name, only)
	case tar.TypeFifo:
		return "", fmt.Errorf("entry %q is a FIFO: %s", name, only)
	default:
		return "", fmt.Errorf("entry %q has tar type %q: %s", name, hdr.Typeflag, only)
	}
	if hdr.Mode&0o7000 != 0 {
		return "", fmt.Errorf("entry %q has the setuid, setgid or sticky bit (mode %04o): packages may not carry them", name, hdr.Mode&0o7777)
	}
	return name, nil
}

// checkLayout checks what Open read: no file inside a file, manifest.json,
// the signature files, plugin.toml agreeing with manifest.json, README.md,
// and icon.png if any.
func (p *Package) checkLayout() error {
	for _, name := range slices.Sorted(maps.Keys(p.files)) {
		if err := p.checkParents(name); err != nil {
			return err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(p.dirs)) {
		if err := p.checkParents(name); err != nil {
			return err
		}
	}
	if p.manifestJSON == nil {
		return fmt.Errorf("no %s: this is not a %s package (make one with mairust plugin pack)", ManifestName, Ext)
	}
	var err error
	if p.Manifest, err = ParseManifest(p.manifestJSON); err != nil {
		return err
	}
	if p.developerSig != nil {
		if p.Developer, err = ParseSignature(DeveloperSigName, p.developerSig); err != nil {
			return err
		}
	}
	if p.marketplaceSig != nil {
		if p.Marketplace, err = ParseSignature(MarketplaceSigName, p.marketplaceSig); err != nil {
			return err
		}
	}
	toml, ok := p.files[manifest.FileName]
	if !ok {
		return fmt.Errorf("the package has no %s", manifest.FileName)
	}
	if p.Plugin, err = manifest.Parse(manifest.FileName, toml.data); err != nil {
		return fmt.Errorf("the package's %w", err)
	}
	id, version, minVersion := identity(p.Plugin)
	if m := p.Manifest; m.ID != id || m.Version != version || m.MinMairustVersion != minVersion {
		return fmt.Errorf("%s (%s %s, min_mairust_version %q) does not match %s (%s %s, min_mairust_version %q)",
			ManifestName, m.ID, m.Version, m.MinMairustVersion, manifest.FileName, id, version, minVersion)
	}
	if _, ok := p.files[ReadmeName]; !ok {
		return fmt.Errorf("the package has no %s", ReadmeName)
	}
	if icon, ok := p.files[IconName]; ok {
		if err := checkPNG(icon.data); err != nil {
			return err
		}
	}
	return nil
}

// checkParents refuses a path below a file ("a" a file and "a/b").
func (p *Package) checkParents(name string) error {
	for i := range len(name) {
		if name[i] != '/' {
			continue
		}
		parent := name[:i]
		if _, ok := p.files[parent]; ok || reserved(parent) {
			return fmt.Errorf("entry %q is inside %q, which is a file", name, parent)
		}
	}
	return nil
}

// identity is what manifest.json repeats of plugin.toml.
func identity(m *manifest.Manifest) (id, version, minVersion string) {
	if m.MinMairustVersion != (manifest.Version{}) {
		minVersion = m.MinMairustVersion.String()
	}
	return m.ID, m.Version.String(), minVersion
}

func checkPNG(data []byte) error {
	if _, err := png.DecodeConfig(bytes.NewReader(data)); err != nil {
		return fmt.Errorf("%s is not a PNG image (%v)", IconName, err)
	}
	return nil
}

// checkFiles compares the files with manifest.json: each listed file
// present with its size, SHA-256 and mode; nothing else.
func (p *Package) checkFiles() error {
	var errs []error
	listed := map[string]bool{}
	for _, f := range p.Manifest.Files {
		listed[f.Path] = true
		for i := range len(f.Path) {
			if f.Path[i] == '/' {
				listed[f.Path[:i]+"/"] = true
			}
		}
		e, ok := p.files[f.Path]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: listed in %s but missing from the package", f.Path, ManifestName))
			continue
		}
		sum := sha256.Sum256(e.data)
		switch {
		case int64(len(e.data)) != f.Size:
			errs = append(errs, fmt.Errorf("%s: %d bytes, but %s says %d: the file was changed after the package was made", f.Path, len(e.data), ManifestName, f.Size))
		case hex.EncodeToString(sum[:]) != f.SHA256:
			errs = append(errs, fmt.Errorf("%s: its SHA-256 differs from %s: the file was changed after the package was made", f.Path, ManifestName))
		case fmt.Sprintf("%04o", e.mode) != f.Mode:
			errs = append(errs, fmt.Errorf("%s: mode %04o, but %s says %s", f.Path, e.mode, ManifestName, f.Mode))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(p.files)) {
		if !listed[name] {
			errs = append(errs, fmt.Errorf("%s: in the package but not listed in %s (a file was added)", name, ManifestName))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(p.dirs)) {
		if !listed[name+"/"] {
			errs = append(errs, fmt.Errorf("%s/: a directory in the package that holds no listed file", name))
		}
	}
	return errors.Join(errs...)
}

// modTime is the time of every entry, so that packing is reproducible.
var modTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Write writes the package: manifest.json first, then the signatures,
// then the listed files and their directories, in path order. It refuses
// a package whose files do not match its manifest.json.
func (p *Package) Write(w io.Writer) error {
	if err := p.checkFiles(); err != nil {
		return err
	}
	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	add := func(typ byte, name string, mode int64, data []byte) error {
		hdr := &tar.Header{Typeflag: typ, Name: name, Mode: mode, Size: int64(len(data)), ModTime: modTime}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := add(tar.TypeReg, ManifestName, 0o644, p.manifestJSON); err != nil {
		return err
	}
	for _, s := range []struct {
		name string
		data []byte
	}{{DeveloperSigName, p.developerSig}, {MarketplaceSigName, p.marketplaceSig}} {
		if s.data != nil {
			if err := add(tar.TypeReg, s.name, 0o644, s.data); err != nil {
				return err
			}
		}
	}
	dirs := map[string]bool{}
	for _, f := range p.Manifest.Files {
		for i := range len(f.Path) {
			if d := f.Path[:i]; f.Path[i] == '/' && !dirs[d] {
				dirs[d] = true
				if err := add(tar.TypeDir, d+"/", 0o755, nil); err != nil {
					return err
				}
			}
		}
		mode := int64(0o644)
		if f.Mode == ModeExec {
			mode = 0o755
		}
		if err := add(tar.TypeReg, f.Path, mode, p.files[f.Path].data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}
