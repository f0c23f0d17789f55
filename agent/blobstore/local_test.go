package blobstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// putBlob stores data under its key and returns the key.
func putBlob(t *testing.T, s Store, data []byte) string {
	t.Helper()
	key := Key(data)
	if err := s.Put(context.Background(), key, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatalf("Put %d bytes: %v", len(data), err)
	}
	return key
}

// getBlob reads the whole blob key.
func getBlob(t *testing.T, s Store, key string) []byte {
	t.Helper()
	r, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get %s: %v", key, err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return data
}

// walkKeys returns every key Walk reports, failing on a key seen twice or a
// zero time.
func walkKeys(t *testing.T, s Store) map[string]bool {
	t.Helper()
	keys := map[string]bool{}
	err := s.Walk(context.Background(), func(key string, written time.Time) error {
		if keys[key] {
			return fmt.Errorf("key %s walked twice", key)
		}
		if written.IsZero() {
			return fmt.Errorf("key %s has no write time", key)
		}
		keys[key] = true
		return nil
	})
	if err != nil {
		t.Fatalf("Walk: %v", err)
	}
	return keys
}

// sameKeys fails unless got holds exactly want.
func sameKeys(t *testing.T, got map[string]bool, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("walked %d keys, want %d: %v", len(got), len(want), got)
	}
	for _, k := range want {
		if !got[k] {
			t.Fatalf("key %s not walked; walked %v", k, got)
		}
	}
}

func TestLocalRoundTrip(t *testing.T) {
	root := t.TempDir()
	l, err := OpenLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, b := []byte("first blob"), []byte("second blob")
	ka, kb := putBlob(t, l, a), putBlob(t, l, b)
	putBlob(t, l, a) // again: still one object
	if got := getBlob(t, l, ka); !bytes.Equal(got, a) {
		t.Fatalf("Get returned %q, want %q", got, a)
	}
	if _, err := os.Stat(filepath.Join(root, ka[:2], ka)); err != nil {
		t.Fatalf("blob not at root/ab/key: %v", err)
	}
	// Files in the fan-out directories that are not keys are not walked.
	if err := os.WriteFile(filepath.Join(root, "00", "notes.txt"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	sameKeys(t, walkKeys(t, l), ka, kb)

	if err := l.Delete(ctx, ka); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := l.Get(ctx, ka); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
	}
	if err := l.Delete(ctx, ka); err != nil {
		t.Fatalf("Delete of an absent key: %v", err)
	}
	sameKeys(t, walkKeys(t, l), kb)
}

func TestLocalSizeMismatch(t *testing.T) {
	root := t.TempDir()
	l, err := OpenLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("twelve bytes")
	key := Key(data)
	for _, size := range []int64{int64(len(data)) - 1, int64(len(data)) + 1} {
		if err := l.Put(context.Background(), key, size, bytes.NewReader(data)); err == nil {
			t.Fatalf("Put of %d bytes declared as %d succeeded", len(data), size)
		}
	}
	if _, err := l.Get(context.Background(), key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after failed Puts: %v, want ErrNotFound", err)
	}
	if tmp, _ := filepath.Glob(filepath.Join(root, "??", tmpPrefix+"*")); len(tmp) != 0 {
		t.Fatalf("failed Puts left %d temporary files", len(tmp))
	}
}

func TestLocalInvalidKey(t *testing.T) {
	l, err := OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, key := range []string{"", "../../etc/passwd", Key(nil)[:63], Key(nil)[:63] + "g"} {
		if err := l.Put(ctx, key, 1, bytes.NewReader([]byte("x"))); err == nil {
			t.Errorf("Put %q succeeded", key)
		}
		if _, err := l.Get(ctx, key); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get %q: %v, want ErrNotFound", key, err)
		}
		if err := l.Delete(ctx, key); err == nil {
			t.Errorf("Delete %q succeeded", key)
		}
	}
}

func TestLocalOpenRemovesTemporaryFiles(t *testing.T) {
	root := t.TempDir()
	l, err := OpenLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	key := putBlob(t, l, []byte("kept"))
	left := filepath.Join(root, "7f", tmpPrefix+"12345")
	if err := os.WriteFile(left, []byte("half written"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err = OpenLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(left); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("leftover temporary file still there after OpenLocal: %v", err)
	}
	if got := getBlob(t, l, key); string(got) != "kept" {
		t.Fatalf("stored blob changed by OpenLocal: %q", got)
	}
}
