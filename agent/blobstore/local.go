package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Local keeps blobs as files: root/ab/<key>, where ab are the key's first two
// hex digits. A Put writes root/tmp/<random>, fsyncs it, renames it into
// place and fsyncs the directory, so a blob is either whole or absent.
type Local struct {
	root string
}

// OpenLocal prepares root (creating the 256 fan-out directories once, made
// durable) and removes temporary files a crash may have left.
func OpenLocal(root string) (*Local, error) {
	l := &Local{root: root}
	if err := os.MkdirAll(filepath.Join(root, "tmp"), 0o750); err != nil {
		return nil, fmt.Errorf("blobstore: create %s: %w (check the path and its permissions)", root, err)
	}
	created := false
	for i := 0; i < 256; i++ {
		dir := filepath.Join(root, fmt.Sprintf("%02x", i))
		if _, err := os.Stat(dir); err == nil {
			continue
		}
		if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("blobstore: %w", err)
		}
		created = true
	}
	if created {
		if err := syncDir(root); err != nil {
			return nil, err
		}
	}
	tmp, err := os.ReadDir(filepath.Join(root, "tmp"))
	if err != nil {
		return nil, fmt.Errorf("blobstore: %w", err)
	}
	for _, e := range tmp {
		os.Remove(filepath.Join(root, "tmp", e.Name()))
	}
	return l, nil
}

func (l *Local) path(key string) string {
	return filepath.Join(l.root, key[:2], key)
}

// Put implements Store.
func (l *Local) Put(ctx context.Context, key string, size int64, body io.ReadSeeker) (err error) {
	if !ValidKey(key) {
		return fmt.Errorf("blobstore: invalid key %q", key)
	}
	defer observe("local", "put", time.Now())
	f, err := os.CreateTemp(filepath.Join(l.root, "tmp"), "put-")
	if err != nil {
		return fmt.Errorf("blobstore: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	n, err := io.Copy(f, body)
	if err != nil {
		return fmt.Errorf("blobstore: write %s: %w", key, err)
	}
	if n != size {
		return fmt.Errorf("blobstore: wrote %d bytes of %s, expected %d", n, key, size)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("blobstore: fsync %s: %w", key, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("blobstore: close %s: %w", key, err)
	}
	dst := l.path(key)
	if err = os.Rename(f.Name(), dst); err != nil {
		return fmt.Errorf("blobstore: rename %s: %w", key, err)
	}
	return syncDir(filepath.Dir(dst))
}

// Get implements Store.
func (l *Local) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if !ValidKey(key) {
		return nil, ErrNotFound
	}
	defer observe("local", "get", time.Now())
	f, err := os.Open(l.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	return f, err
}

// Delete implements Store.
func (l *Local) Delete(ctx context.Context, key string) error {
	if !ValidKey(key) {
		return fmt.Errorf("blobstore: invalid key %q", key)
	}
	defer observe("local", "delete", time.Now())
	p := l.path(key)
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blobstore: %w", err)
	}
	return syncDir(filepath.Dir(p))
}

// Walk implements Store.
func (l *Local) Walk(ctx context.Context, fn func(key string, written time.Time) error) error {
	for i := 0; i < 256; i++ {
		dir := filepath.Join(l.root, fmt.Sprintf("%02x", i))
		entries, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("blobstore: %w", err)
		}
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				return err
			}
			if !ValidKey(e.Name()) {
				continue
			}
			info, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue
			} else if err != nil {
				return fmt.Errorf("blobstore: %w", err)
			}
			if err := fn(e.Name(), info.ModTime()); err != nil {
				return err
			}
		}
	}
	return nil
}

// syncDir makes a directory's entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("blobstore: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("blobstore: fsync dir %s: %w", dir, err)
	}
	return nil
}
