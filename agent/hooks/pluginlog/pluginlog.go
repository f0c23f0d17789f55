// Package pluginlog writes a plugin's log: its stderr, to <dir>/<id>.log
// rotated by size, and optionally each line into the agent's JSON log with
// plugin_id.
//
// Rotation renames <id>.log to <id>.log.1 (and <id>.log.1 to <id>.log.2, and
// so on, dropping what is past Options.Keep) when the next write would make
// <id>.log larger than Options.MaxBytes. Each file stays at or under
// MaxBytes, so a plugin's log takes at most (Keep+1)*MaxBytes on disk.
//
// Writers of the same file in one process share a lock, and a Writer reopens
// the file when it was renamed or removed under it (by another Writer's
// rotation, or by hand), so an agent that opens a plugin's log again on
// reload without closing the old Writer still rotates correctly.
package pluginlog

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// Defaults for Options.
const (
	DefaultMaxBytes = 10 << 20
	DefaultKeep     = 3
)

// MaxLineBytes caps one line merged into the agent's log; the rest of a
// longer line is dropped from the merged copy (the file keeps it whole).
const MaxLineBytes = 4 << 10

// TailWindow is how much of the end of each file Tail reads.
const TailWindow = 1 << 20

// Options are how a plugin's log is written. Zero values take the defaults.
type Options struct {
	MaxBytes int64        // rotate before <id>.log passes this size; default 10 MiB
	Keep     int          // rotated files kept, <id>.log.1 .. <id>.log.N; default 3
	Merge    *slog.Logger // if set, each complete line is also logged here at info
}

// Writer appends to a plugin's log file, rotating it by size. It is an
// io.WriteCloser safe for concurrent use.
type Writer struct {
	dir, id, path string
	opts          Options
	mu            *sync.Mutex // shared by the Writers of path

	// Under mu.
	f       *os.File
	closed  bool
	partial []byte // the start of a line not yet ended, for Merge
	dropped bool   // partial was cut at MaxLineBytes
}

var _ io.WriteCloser = (*Writer)(nil)

// locks holds one mutex per log file path.
var locks sync.Map // string -> *sync.Mutex

// Open opens (creating it and dir as needed) the log of plugin id in dir.
// Files are created 0640 and dir 0750.
func Open(dir, id string, opts Options) (*Writer, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.Keep <= 0 {
		opts.Keep = DefaultKeep
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("plugin %s log: %w", id, err)
	}
	path := filepath.Join(dir, id+".log")
	mu, _ := locks.LoadOrStore(path, new(sync.Mutex))
	w := &Writer{dir: dir, id: id, path: path, opts: opts, mu: mu.(*sync.Mutex)}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.file(); err != nil {
		return nil, err
	}
	return w, nil
}

// checkID refuses an id that is not a plain file name.
func checkID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, `/\`+"\x00") {
		return fmt.Errorf("pluginlog: %q is not a plugin id", id)
	}
	return nil
}

// Path is the file the Writer appends to.
func (w *Writer) Path() string { return w.path }

// Write appends p to the log, rotating first when p would take the file
// past MaxBytes. A p larger than MaxBytes is cut (after a newline when it
// has one) across files. With Merge set, the complete lines in p (with the
// buffered start of the first one) are logged.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, os.ErrClosed
	}
	if w.opts.Merge != nil {
		w.merge(p)
	}
	size, err := w.file()
	if err != nil {
		return 0, err
	}
	written := 0
	for len(p) > 0 {
		room := w.opts.MaxBytes - size
		if int64(len(p)) > room && size > 0 {
			if err := w.rotate(); err != nil {
				return written, err
			}
			size, room = 0, w.opts.MaxBytes
		}
		chunk := p
		if int64(len(chunk)) > room {
			chunk = p[:room]
			if i := bytes.LastIndexByte(chunk, '\n'); i >= 0 {
				chunk = chunk[:i+1]
			}
		}
		n, err := w.f.Write(chunk)
		written += n
		size += int64(n)
		if err != nil {
			return written, fmt.Errorf("plugin %s log: %w", w.id, err)
		}
		p = p[n:]
	}
	return written, nil
}

// Close flushes a pending partial line to Merge and closes the file. Later
// writes fail with os.ErrClosed.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	if w.opts.Merge != nil && len(w.partial) > 0 {
		w.emit(w.partial)
		w.partial = nil
	}
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// file makes w.f the current <id>.log, reopening it when it was rotated or
// removed under w, and returns its size.
func (w *Writer) file() (int64, error) {
	fi, err := os.Stat(w.path)
	if err == nil && w.f != nil {
		if cur, err := w.f.Stat(); err == nil && os.SameFile(fi, cur) {
			return fi.Size(), nil
		}
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("plugin %s log: %w", w.id, err)
	}
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	f, err := os.OpenFile(w.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return 0, fmt.Errorf("plugin %s log: %w", w.id, err)
	}
	fi, err = f.Stat()
	if err != nil {
		f.Close()
		return 0, fmt.Errorf("plugin %s log: %w", w.id, err)
	}
	w.f = f
	return fi.Size(), nil
}

// rotate shifts <id>.log.i to .i+1 (dropping those past Keep), renames
// <id>.log to <id>.log.1 and opens a fresh <id>.log.
func (w *Writer) rotate() error {
	name := func(i int) string { return w.path + "." + strconv.Itoa(i) }
	// Files past Keep, left by an earlier, larger Keep.
	for i := w.opts.Keep + 1; ; i++ {
		if err := os.Remove(name(i)); err != nil {
			break
		}
	}
	if err := os.Remove(name(w.opts.Keep)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("plugin %s log rotation: %w", w.id, err)
	}
	for i := w.opts.Keep - 1; i >= 1; i-- {
		if err := os.Rename(name(i), name(i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("plugin %s log rotation: %w", w.id, err)
		}
	}
	if err := os.Rename(w.path, name(1)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("plugin %s log rotation: %w", w.id, err)
	}
	_, err := w.file()
	return err
}

// merge logs the lines p completes; the rest is kept for the next write.
func (w *Writer) merge(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		part := p
		if i >= 0 {
			part = p[:i]
		}
		if room := MaxLineBytes - len(w.partial); len(part) > room {
			part = part[:room]
			w.dropped = true
		}
		w.partial = append(w.partial, part...)
		if i < 0 {
			return
		}
		w.emit(w.partial)
		w.partial, w.dropped = w.partial[:0], false
		p = p[i+1:]
	}
}

// emit logs one line.
func (w *Writer) emit(line []byte) {
	line = bytes.TrimSuffix(line, []byte("\r"))
	if w.dropped {
		// Do not leave half a rune where the line was cut.
		for len(line) > 0 {
			r, size := utf8.DecodeLastRune(line)
			if r != utf8.RuneError || size != 1 {
				break
			}
			line = line[:len(line)-1]
		}
	}
	msg := string(line)
	if w.dropped {
		msg += " [line truncated]"
	}
	w.opts.Merge.Info(msg, "component", "plugin", "plugin_id", w.id)
}

// Tail returns the last n lines of plugin id's log in dir, oldest first:
// those of <id>.log, preceded by the end of <id>.log.1 when <id>.log has
// fewer than n. Only the last TailWindow bytes of each file are read (a
// line cut by the window is left out). Missing files count as empty; a
// plugin that never logged has no lines and no error.
func Tail(dir, id string, n int) ([]string, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, nil
	}
	path := filepath.Join(dir, id+".log")
	lines, err := tailFile(path, n)
	if err != nil {
		return nil, err
	}
	if len(lines) < n {
		older, err := tailFile(path+".1", n-len(lines))
		if err != nil {
			return nil, err
		}
		lines = append(older, lines...)
	}
	return lines, nil
}

// tailFile returns the last n lines of the last TailWindow bytes of path,
// without their line endings.
func tailFile(path string, n int) ([]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	cut := false // the window starts inside a line
	if fi.Size() > TailWindow {
		var before [1]byte
		if _, err := f.ReadAt(before[:], fi.Size()-TailWindow-1); err != nil {
			return nil, err
		}
		cut = before[0] != '\n'
		if _, err := f.Seek(fi.Size()-TailWindow, io.SeekStart); err != nil {
			return nil, err
		}
	}
	var lines []string
	sc := bufio.NewScanner(io.LimitReader(f, TailWindow))
	sc.Buffer(make([]byte, 0, 64<<10), TailWindow+1)
	first := true
	for sc.Scan() {
		if first && cut {
			first = false
			continue // the end of a line that began before the window
		}
		first = false
		lines = append(lines, strings.TrimSuffix(sc.Text(), "\r"))
		if len(lines) > 2*n {
			lines = slices.Delete(lines, 0, len(lines)-n)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return lines[max(0, len(lines)-n):], nil
}
