package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// FileSHA256 returns the hex SHA-256 of a file, as the sha256 key holds it.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// LocalPath resolves name (the command, or the health command's program)
// inside the plugin's directory, symbolic links included, and refuses a
// path that leads out of it.
func (m *Manifest) LocalPath(name string) (string, error) {
	if !filepath.IsLocal(name) {
		return "", fmt.Errorf("%q is not a path inside the plugin directory", name)
	}
	if m.Dir == "" {
		return "", errors.New("no plugin directory (the manifest was not loaded from one)")
	}
	dir, err := filepath.EvalSymlinks(m.Dir)
	if err != nil {
		return "", fmt.Errorf("plugin directory: %w", err)
	}
	path, err := filepath.EvalSymlinks(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	if rel, err := filepath.Rel(dir, path); err != nil || !filepath.IsLocal(rel) {
		return "", fmt.Errorf("%q leads to %s, outside the plugin directory %s", name, path, dir)
	}
	return path, nil
}
