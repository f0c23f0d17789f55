package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/mairust/mairust/internal/groupcommit"
)

// Local keeps blobs as files: root/ab/<key>, where ab are the key's first two
// hex digits. A Put writes root/ab/.tmp-<random> (in the blob's own directory,
// so that creations spread over 256 directory locks and the rename touches
// one directory); the file is then made durable in a group with the other
// Puts under way: fsync of each file, rename into place, one fsync per
// fan-out directory touched. A blob is either whole or
// absent, and Put returns only once its blob is durable.
type Local struct {
	root string
	dirs [256]*os.File // the fan-out directories, kept open for fsync
	sync *groupcommit.Committer[*written]
}

// written is a temporary file waiting to be made durable under its key.
type written struct {
	f   *os.File
	key string
}

// maxSyncBatch bounds the files made durable together.
const maxSyncBatch = 128

// tmpPrefix starts the names of files not yet made durable.
const tmpPrefix = ".tmp-"

// OpenLocal prepares root (creating the 256 fan-out directories once, made
// durable) and removes temporary files a crash may have left.
func OpenLocal(root string) (*Local, error) {
	l := &Local{root: root}
	if err := os.MkdirAll(root, 0o750); err != nil {
		return nil, fmt.Errorf("blobstore: create %s: %w (check the path and its permissions)", root, err)
	}
	created := false
	for i := range l.dirs {
		dir := filepath.Join(root, fmt.Sprintf("%02x", i))
		err := os.Mkdir(dir, 0o750)
		if err == nil {
			created = true
		} else if !errors.Is(err, fs.ErrExist) {
			l.closeDirs()
			return nil, fmt.Errorf("blobstore: %w", err)
		}
		if l.dirs[i], err = os.Open(dir); err != nil {
			l.closeDirs()
			return nil, fmt.Errorf("blobstore: %w", err)
		}
	}
	if created {
		if err := syncDir(root); err != nil {
			l.closeDirs()
			return nil, err
		}
	}
	for _, d := range l.dirs {
		leftovers, err := filepath.Glob(filepath.Join(d.Name(), tmpPrefix+"*"))
		if err != nil {
			l.closeDirs()
			return nil, fmt.Errorf("blobstore: %w", err)
		}
		for _, f := range leftovers {
			os.Remove(f)
		}
	}
	l.sync = groupcommit.New("local_blobs", 2, maxSyncBatch, l.makeDurable)
	return l, nil
}

// Close stops the group committer and closes the directories.
func (l *Local) Close() error {
	l.sync.Close()
	l.closeDirs()
	return nil
}

func (l *Local) closeDirs() {
	for _, d := range l.dirs {
		if d != nil {
			d.Close()
		}
	}
}

func (l *Local) path(key string) string {
	return filepath.Join(l.root, key[:2], key)
}

// dirIndex is the fan-out directory of key.
func dirIndex(key string) int {
	i, _ := strconv.ParseUint(key[:2], 16, 8)
	return int(i)
}

// Put implements Store.
func (l *Local) Put(ctx context.Context, key string, size int64, body io.ReadSeeker) error {
	if !ValidKey(key) {
		return fmt.Errorf("blobstore: invalid key %q", key)
	}
	defer observe("local", "put", time.Now())
	f, err := os.CreateTemp(l.dirs[dirIndex(key)].Name(), tmpPrefix)
	if err != nil {
		return fmt.Errorf("blobstore: %w", err)
	}
	n, err := io.Copy(f, body)
	if err == nil && n != size {
		err = fmt.Errorf("wrote %d bytes, expected %d", n, size)
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("blobstore: write %s: %w", key, err)
	}
	startWriteback(f)
	// From here the committer owns f (closing, renaming or removing it).
	if err := l.sync.Do(ctx, &written{f: f, key: key}); err != nil {
		if errors.Is(err, groupcommit.ErrClosed) {
			f.Close()
			os.Remove(f.Name())
		}
		return fmt.Errorf("blobstore: %s: %w", key, err)
	}
	return nil
}

// makeDurable fsyncs and renames a batch of written files, then fsyncs each
// fan-out directory they went into once.
func (l *Local) makeDurable(batch []*written) []error {
	errs := make([]error, len(batch))
	touched := map[int][]int{} // directory -> batch positions renamed into it
	for i, w := range batch {
		err := w.f.Sync()
		if cerr := w.f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(w.f.Name(), l.path(w.key))
		}
		if err != nil {
			os.Remove(w.f.Name())
			errs[i] = fmt.Errorf("make durable: %w", err)
			continue
		}
		d := dirIndex(w.key)
		touched[d] = append(touched[d], i)
	}
	for d, positions := range touched {
		if err := l.dirs[d].Sync(); err != nil {
			for _, i := range positions {
				errs[i] = fmt.Errorf("fsync dir: %w", err)
			}
		}
	}
	return errs
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
	if err := os.Remove(l.path(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blobstore: %w", err)
	}
	if err := l.dirs[dirIndex(key)].Sync(); err != nil {
		return fmt.Errorf("blobstore: fsync dir: %w", err)
	}
	return nil
}

// Walk implements Store.
func (l *Local) Walk(ctx context.Context, fn func(key string, written time.Time) error) error {
	for i := range l.dirs {
		entries, err := os.ReadDir(filepath.Join(l.root, fmt.Sprintf("%02x", i)))
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
