package pack

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"

	"github.com/mairust/mairust/agent/plugins/manifest"
)

// Pack makes a package of the plugin in dir (see Build) and writes it to
// w, signed as developer by dev unless dev is nil.
func Pack(dir string, w io.Writer, dev Signer) (Manifest, error) {
	p, err := Build(dir)
	if err != nil {
		return Manifest{}, err
	}
	if dev != nil {
		if err := p.Sign(Developer, dev); err != nil {
			return Manifest{}, err
		}
	}
	return p.Manifest, p.Write(w)
}

// Build reads the plugin in dir into an unsigned package. It refuses a
// plugin.toml the manifest package refuses, a missing README.md, an
// icon.png that is not a PNG, a missing or non-executable command, a
// command not matching plugin.toml's sha256, names of the package's own
// files, symbolic links, special files, setuid, setgid and sticky bits,
// and anything over DefaultLimits. Files are stored 0755 when executable,
// else 0644; empty directories are left out.
func Build(dir string) (*Package, error) {
	m, err := manifest.Load(dir)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	p := &Package{Plugin: m, files: map[string]entry{}, dirs: map[string]bool{}}
	l := DefaultLimits
	var total int64
	err = fs.WalkDir(root.FS(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name == "." {
			return nil
		}
		if err := checkPath(name); err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
			return fmt.Errorf("%s has the setuid, setgid or sticky bit: clear it (chmod u-s,g-s,-t)", name)
		}
		switch {
		case d.IsDir():
			return nil
		case d.Type()&fs.ModeSymlink != 0:
			return fmt.Errorf("%s is a symbolic link: a package holds only regular files and directories (copy the file in instead)", name)
		case !d.Type().IsRegular():
			return fmt.Errorf("%s is a special file (%s): a package holds only regular files and directories", name, d.Type())
		case reserved(name):
			return fmt.Errorf("%s is a name the package uses for itself: rename or remove it", name)
		case info.Size() > l.MaxFileBytes:
			return fmt.Errorf("%s is %d bytes; a file may have at most %d", name, info.Size(), l.MaxFileBytes)
		}
		if total += info.Size(); total > l.MaxTotalBytes {
			return fmt.Errorf("the files add up to more than %d bytes (the limit)", l.MaxTotalBytes)
		}
		data, err := readRegular(root, name, l.MaxFileBytes)
		if err != nil {
			return err
		}
		mode := int64(0o644)
		if info.Mode()&0o111 != 0 {
			mode = 0o755
		}
		p.files[name] = entry{data: data, mode: mode}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", dir, err)
	}
	if err := p.checkPlugin(dir); err != nil {
		return nil, err
	}
	p.Manifest = Manifest{Format: Format}
	p.Manifest.ID, p.Manifest.Version, p.Manifest.MinMairustVersion = identity(m)
	for _, name := range slices.Sorted(maps.Keys(p.files)) {
		e := p.files[name]
		sum := sha256.Sum256(e.data)
		mode := ModeFile
		if e.mode == 0o755 {
			mode = ModeExec
		}
		p.Manifest.Files = append(p.Manifest.Files, File{Path: name, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(e.data)), Mode: mode})
		for i := range len(name) {
			if name[i] == '/' {
				p.dirs[name[:i]] = true
			}
		}
	}
	if n := len(p.files) + len(p.dirs) + 3; n > l.MaxFiles {
		return nil, fmt.Errorf("pack %s: %d files and directories; a package may have at most %d", dir, n, l.MaxFiles-3)
	}
	if p.manifestJSON, err = p.Manifest.Marshal(); err != nil {
		return nil, err
	}
	if len(p.manifestJSON) > MaxManifestBytes {
		return nil, fmt.Errorf("pack %s: %s would be over %d KiB: too many files", dir, ManifestName, MaxManifestBytes>>10)
	}
	return p, nil
}

// readRegular reads name under root, refusing anything but a regular file
// (the walk saw one, but it may have been replaced since).
func readRegular(root *os.Root, name string, limit int64) ([]byte, error) {
	if fi, err := root.Lstat(name); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s changed while it was read: try again", name)
	}
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s changed while it was read: try again", name)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s grew over %d bytes while it was read", name, limit)
	}
	return data, nil
}

// checkPlugin checks what a plugin directory needs to make a package.
func (p *Package) checkPlugin(dir string) error {
	if _, ok := p.files[ReadmeName]; !ok {
		return fmt.Errorf("%s has no %s: a package needs one (the marketplace shows it to administrators)", dir, ReadmeName)
	}
	if icon, ok := p.files[IconName]; ok {
		if err := checkPNG(icon.data); err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
	}
	m := p.Plugin
	if m.Command == "" {
		return nil
	}
	cmd := path.Clean(filepath.ToSlash(m.Command))
	e, ok := p.files[cmd]
	switch {
	case !ok:
		return fmt.Errorf("%s names command %q, which is not a file in %s: build it first (e.g. go build -o %s)",
			manifest.FileName, m.Command, dir, filepath.Join(dir, m.Command))
	case e.mode != 0o755:
		return fmt.Errorf("command %s is not executable: chmod +x %s", m.Command, filepath.Join(dir, m.Command))
	}
	if m.SHA256 != "" {
		if sum := sha256.Sum256(e.data); hex.EncodeToString(sum[:]) != m.SHA256 {
			return fmt.Errorf("command %s does not match the sha256 in %s: rebuild it, or update the sha256 (sha256sum %s)",
				m.Command, manifest.FileName, filepath.Join(dir, m.Command))
		}
	}
	return nil
}
