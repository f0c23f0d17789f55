package pluginlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/mairust/mairust/internal/proctest"
)

// files returns the log files of id in dir, oldest first, and their contents.
func files(t *testing.T, dir, id string) ([]string, []string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.Name() == id+".log" || strings.HasPrefix(e.Name(), id+".log.") {
			names = append(names, e.Name())
		}
	}
	// id.log.N ... id.log.1, id.log
	suffix := func(name string) int {
		n, err := strconv.Atoi(strings.TrimPrefix(name, id+".log."))
		if err != nil {
			return 0
		}
		return n
	}
	for i := range names {
		for j := i + 1; j < len(names); j++ {
			if suffix(names[j]) > suffix(names[i]) {
				names[i], names[j] = names[j], names[i]
			}
		}
	}
	contents := make([]string, len(names))
	for i, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		contents[i] = string(b)
	}
	return names, contents
}

func mustOpen(t *testing.T, dir, id string, opts Options) *Writer {
	t.Helper()
	w, err := Open(dir, id, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func line(i int) string { return fmt.Sprintf("line %05d %s\n", i, strings.Repeat("x", 36)) } // 48 bytes

func TestRotationBounded(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "logs", "plugins")
	const max = 1000
	w := mustOpen(t, dir, "p1", Options{MaxBytes: max, Keep: 3})
	var all strings.Builder
	for i := 0; all.Len() < 5*max; i++ {
		s := line(i)
		all.WriteString(s)
		if n, err := w.Write([]byte(s)); err != nil || n != len(s) {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
	}
	names, contents := files(t, dir, "p1")
	want := []string{"p1.log.3", "p1.log.2", "p1.log.1", "p1.log"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("files %q, want %q", names, want)
	}
	total := 0
	for i, c := range contents {
		if len(c) > max {
			t.Errorf("%s has %d bytes, over %d", names[i], len(c), max)
		}
		if i < len(contents)-1 && len(c) < max-48 {
			t.Errorf("rotated %s has only %d bytes", names[i], len(c))
		}
		total += len(c)
	}
	if total > 4*max {
		t.Errorf("%d bytes on disk, want at most %d", total, 4*max)
	}
	if joined := strings.Join(contents, ""); !strings.HasSuffix(all.String(), joined) {
		t.Errorf("the files are not the end of what was written")
	}
	for _, n := range names {
		fi, err := os.Stat(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o640 {
			t.Errorf("%s mode %v, want 0640", n, fi.Mode().Perm())
		}
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("dir: %v %v, want mode 0750", fi.Mode().Perm(), err)
	}
}

func TestLargeWriteSplit(t *testing.T) {
	dir := t.TempDir()
	const max = 1000
	w := mustOpen(t, dir, "p2", Options{MaxBytes: max, Keep: 10})
	var big strings.Builder
	for i := 0; big.Len() < 3*max+500; i++ {
		big.WriteString(line(i))
	}
	if _, err := w.Write([]byte("first\n")); err != nil {
		t.Fatal(err)
	}
	if n, err := w.Write([]byte(big.String())); err != nil || n != big.Len() {
		t.Fatalf("write: %d, %v", n, err)
	}
	names, contents := files(t, dir, "p2")
	if len(names) != 5 {
		t.Errorf("files %q, want 5", names)
	}
	for i, c := range contents {
		if len(c) > max {
			t.Errorf("%s has %d bytes", names[i], len(c))
		}
		if !strings.HasSuffix(c, "\n") {
			t.Errorf("%s was not cut after a newline", names[i])
		}
	}
	if got := strings.Join(contents, ""); got != "first\n"+big.String() {
		t.Errorf("contents differ from what was written")
	}
	// A write with no newline longer than MaxBytes is cut at MaxBytes.
	dir2 := t.TempDir()
	w2 := mustOpen(t, dir2, "p2", Options{MaxBytes: 100})
	if _, err := w2.Write(bytes.Repeat([]byte("y"), 250)); err != nil {
		t.Fatal(err)
	}
	_, contents = files(t, dir2, "p2")
	if len(contents) != 3 || len(contents[0]) != 100 || len(contents[2]) != 50 {
		t.Errorf("sizes of %d files: %v", len(contents), contents)
	}
}

func TestDefaultsAndExistingFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p3.log")
	if err := os.WriteFile(path, []byte("before\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	// Leftovers of an earlier, larger Keep.
	for _, n := range []string{"p3.log.4", "p3.log.5"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("old\n"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	w := mustOpen(t, dir, "p3", Options{})
	if w.opts.MaxBytes != DefaultMaxBytes || w.opts.Keep != DefaultKeep {
		t.Errorf("defaults %d %d", w.opts.MaxBytes, w.opts.Keep)
	}
	if w.Path() != path {
		t.Errorf("path %s", w.Path())
	}
	w.Write([]byte("after\n"))
	if b, _ := os.ReadFile(path); string(b) != "before\nafter\n" {
		t.Errorf("appended %q", b)
	}
	w.opts.MaxBytes = 10 // the existing size counts
	w.Write([]byte("next\n"))
	names, contents := files(t, dir, "p3")
	if strings.Join(names, " ") != "p3.log.1 p3.log" || contents[0] != "before\nafter\n" || contents[1] != "next\n" {
		t.Errorf("files %q %q", names, contents)
	}
}

func TestReopenAfterRemoval(t *testing.T) {
	dir := t.TempDir()
	w := mustOpen(t, dir, "p4", Options{})
	w.Write([]byte("one\n"))
	if err := os.Remove(filepath.Join(dir, "p4.log")); err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("two\n"))
	if b, err := os.ReadFile(filepath.Join(dir, "p4.log")); err != nil || string(b) != "two\n" {
		t.Errorf("after removal: %q %v", b, err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if _, err := w.Write([]byte("x\n")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
}

func TestBadID(t *testing.T) {
	dir := t.TempDir()
	for _, id := range []string{"", ".", "..", "../x", "a/b", `a\b`} {
		if _, err := Open(dir, id, Options{}); err == nil {
			t.Errorf("Open(%q) accepted", id)
		}
		if _, err := Tail(dir, id, 1); err == nil {
			t.Errorf("Tail(%q) accepted", id)
		}
	}
}

func TestTailAcrossRotation(t *testing.T) {
	dir := t.TempDir()
	if lines, err := Tail(dir, "p5", 10); err != nil || len(lines) != 0 {
		t.Fatalf("nothing logged: %q %v", lines, err)
	}
	w := mustOpen(t, dir, "p5", Options{MaxBytes: 480, Keep: 3}) // 10 lines a file
	const total = 25
	for i := range total {
		w.Write([]byte(line(i)))
	}
	// p5.log has lines 20-24, p5.log.1 10-19, p5.log.2 0-9.
	for _, n := range []int{1, 5, 7, 15, 16, 100} {
		lines, err := Tail(dir, "p5", n)
		if err != nil {
			t.Fatal(err)
		}
		want := min(n, 15)
		if len(lines) != want {
			t.Fatalf("Tail(%d): %d lines, want %d", n, len(lines), want)
		}
		for i, l := range lines {
			if exp := strings.TrimSuffix(line(total-want+i), "\n"); l != exp {
				t.Fatalf("Tail(%d)[%d] = %q, want %q", n, i, l, exp)
			}
		}
	}
	if lines, _ := Tail(dir, "p5", 0); lines != nil {
		t.Errorf("Tail(0) = %q", lines)
	}
	// A last line without a newline is returned; \r\n endings are trimmed.
	w.Write([]byte("crlf\r\nno newline"))
	if lines, _ := Tail(dir, "p5", 2); len(lines) != 2 || lines[0] != "crlf" || lines[1] != "no newline" {
		t.Errorf("Tail: %q", lines)
	}
}

func TestTailWindow(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p6.log")
	const lineLen = 100
	var b bytes.Buffer
	for i := 0; b.Len() < TailWindow+TailWindow/2+37; i++ {
		fmt.Fprintf(&b, "%08d %s\n", i, strings.Repeat("z", lineLen-10))
	}
	if err := os.WriteFile(path, b.Bytes(), 0o640); err != nil {
		t.Fatal(err)
	}
	lines, err := Tail(dir, "p6", 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) < TailWindow/lineLen-1 || len(lines) > TailWindow/lineLen {
		t.Errorf("%d lines from a %d-byte window", len(lines), TailWindow)
	}
	for i, l := range lines {
		if len(l) != lineLen-1 {
			t.Fatalf("line %d is %d bytes: a cut line was returned", i, len(l))
		}
	}
}

func TestTailWindowAtLineStart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p7.log")
	// 1 MiB = 2^20 = 4096 lines of 256 bytes; one more line before.
	l := strings.Repeat("w", 255) + "\n"
	if err := os.WriteFile(path, []byte(strings.Repeat(l, TailWindow/256+1)), 0o640); err != nil {
		t.Fatal(err)
	}
	lines, err := Tail(dir, "p7", 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != TailWindow/256 {
		t.Errorf("%d lines, want %d", len(lines), TailWindow/256)
	}
}

// logEntry is one record of the JSON handler.
type logEntry struct {
	Level     string `json:"level"`
	Msg       string `json:"msg"`
	Component string `json:"component"`
	PluginID  string `json:"plugin_id"`
}

func entries(t *testing.T, b *bytes.Buffer) []logEntry {
	t.Helper()
	var out []logEntry
	for l := range strings.SplitSeq(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var e logEntry
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		out = append(out, e)
	}
	return out
}

func TestMerge(t *testing.T) {
	dir := t.TempDir()
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	w := mustOpen(t, dir, "p8", Options{Merge: logger})
	for _, s := range []string{"hello\nwor", "ld", "\r\n", "\n", "partial"} {
		w.Write([]byte(s))
	}
	got := entries(t, &buf)
	if len(got) != 3 || got[0].Msg != "hello" || got[1].Msg != "world" || got[2].Msg != "" {
		t.Fatalf("merged %+v, want hello, world and an empty line (partial held back)", got)
	}
	for _, e := range got {
		if e.Level != "INFO" || e.Component != "plugin" || e.PluginID != "p8" {
			t.Errorf("entry %+v", e)
		}
	}
	long := strings.Repeat("é", MaxLineBytes) // 2 bytes a rune
	w.Write([]byte("\n" + long[:5001]))       // ends mid-rune
	w.Write([]byte(long[5001:] + "\nafter\n"))
	got = entries(t, &buf)
	if len(got) != 6 || got[3].Msg != "partial" || got[5].Msg != "after" {
		t.Fatalf("merged %+v", got)
	}
	msg := got[4].Msg
	if !strings.HasSuffix(msg, " [line truncated]") || len(msg) > MaxLineBytes+len(" [line truncated]") || strings.ContainsRune(msg, '\uFFFD') {
		t.Errorf("long line merged as %d bytes: ...%q", len(msg), msg[max(0, len(msg)-40):])
	}
	w.Write([]byte("unterminated"))
	w.Close()
	got = entries(t, &buf)
	if len(got) != 7 || got[6].Msg != "unterminated" {
		t.Errorf("after Close: %+v", got[len(got)-1])
	}
	// The file keeps everything, long line whole.
	b, _ := os.ReadFile(filepath.Join(dir, "p8.log"))
	if !strings.Contains(string(b), long+"\nafter\nunterminated") {
		t.Error("the file lost part of the long line")
	}
}

func TestNoMerge(t *testing.T) {
	dir := t.TempDir()
	w := mustOpen(t, dir, "p9", Options{})
	w.Write([]byte("a\nb"))
	if w.partial != nil {
		t.Errorf("lines buffered without Merge: %q", w.partial)
	}
}

func TestConcurrent(t *testing.T) {
	dir := t.TempDir()
	var buf proctest.Output
	opts := Options{MaxBytes: 4096, Keep: 50, Merge: slog.New(slog.NewJSONHandler(&buf, nil))}
	// Two Writers on one file, as after a reload that did not close the
	// first: they share the lock and follow each other's rotations.
	ws := []*Writer{mustOpen(t, dir, "pc", opts), mustOpen(t, dir, "pc", opts)}
	const goroutines, each = 8, 200
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			w := ws[g%2]
			for i := range each {
				if _, err := fmt.Fprintf(w, "g%d-%04d %s\n", g, i, strings.Repeat("c", g+1)); err != nil {
					t.Error(err)
					return
				}
				if i%50 == 0 {
					if _, err := Tail(dir, "pc", 5); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	names, contents := files(t, dir, "pc")
	seen := map[string]bool{}
	for i, c := range contents {
		if len(c) > 4096 {
			t.Errorf("%s has %d bytes", names[i], len(c))
		}
		for l := range strings.SplitSeq(strings.TrimSuffix(c, "\n"), "\n") {
			var g, n int
			var pad string
			if _, err := fmt.Sscanf(l, "g%d-%d %s", &g, &n, &pad); err != nil || pad != strings.Repeat("c", g+1) {
				t.Fatalf("garbled line %q in %s", l, names[i])
			}
			seen[l] = true
		}
	}
	if len(seen) != goroutines*each {
		t.Errorf("%d distinct lines on disk, want %d", len(seen), goroutines*each)
	}
	merged := entries(t, bytes.NewBufferString(buf.String()))
	if len(merged) != goroutines*each {
		t.Errorf("%d lines merged, want %d", len(merged), goroutines*each)
	}
}
