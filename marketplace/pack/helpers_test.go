package pack

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"image"
	"image/png"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mairust/mairust/agent/plugins/manifest"
)

const examples = "../../agent/plugins/examples"

// exampleNames lists the example plugins.
func exampleNames(t testing.TB) []string {
	t.Helper()
	list, err := os.ReadDir(examples)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range list {
		if d.IsDir() {
			names = append(names, d.Name())
		}
	}
	if len(names) < 4 {
		t.Fatalf("only %d examples in %s", len(names), examples)
	}
	return names
}

// pluginDir copies an example into a temporary directory and adds what a
// package needs that the example lacks: README.md, a stand-in for a
// command that has to be built, and (with icon) icon.png.
func pluginDir(t testing.TB, name string, icon bool) string {
	t.Helper()
	src := filepath.Join(examples, name)
	dst := filepath.Join(t.TempDir(), name)
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		info, _ := d.Info()
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dst, ReadmeName), "# "+name+"\n\nAn example plugin.\n", 0o644)
	m, err := manifest.Load(dst)
	if err != nil {
		t.Fatal(err)
	}
	if m.Command != "" {
		if _, err := os.Stat(filepath.Join(dst, m.Command)); err != nil {
			write(t, filepath.Join(dst, m.Command), "#!/bin/sh\necho '{}'\n", 0o755)
		}
	}
	write(t, filepath.Join(dst, "docs", "more", "notes.txt"), "nested file\n", 0o644)
	if icon {
		var b bytes.Buffer
		png.Encode(&b, image.NewGray(image.Rect(0, 0, 4, 4)))
		write(t, filepath.Join(dst, IconName), b.String(), 0o644)
	}
	return dst
}

func write(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

var testKeys = sync.OnceValue(func() map[string]*PrivateKey {
	keys := map[string]*PrivateKey{}
	for name, typ := range map[string]string{"dev": "ed25519", "devrsa": "rsa", "mp": "ed25519", "other": "ed25519", "otherrsa": "rsa"} {
		k, err := GenerateKey(typ)
		if err != nil {
			panic(err)
		}
		keys[name] = k
	}
	return keys
})

func key(name string) *PrivateKey { return testKeys()[name] }

// trustAll trusts dev and devrsa as developers and mp as the marketplace,
// and requires both signatures.
func trustAll() Trust {
	return Trust{
		Keys: []TrustedKey{
			{Role: Developer, Key: key("dev").Public()},
			{Role: Developer, Key: key("devrsa").Public()},
			{Role: Marketplace, Key: key("mp").Public()},
		},
		RequireDeveloper: true, RequireMarketplace: true,
	}
}

// signedPackage packs dir signed by dev and by the marketplace key mp.
func signedPackage(t testing.TB, dir string, dev Signer) []byte {
	t.Helper()
	var b bytes.Buffer
	if _, err := Pack(dir, &b, dev); err != nil {
		t.Fatal(err)
	}
	p, err := Open(&b, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Sign(Marketplace, key("mp")); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	if err := p.Write(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// tarEntry is one entry of an archive built by a test.
type tarEntry struct {
	hdr  tar.Header
	data []byte
}

func file(name, content string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(content))}, data: []byte(content)}
}

// targz builds a gzip-compressed tar of entries as given.
func targz(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		hdr := e.hdr
		if hdr.ModTime.IsZero() {
			hdr.ModTime = time.Unix(0, 0)
		}
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	return b.Bytes()
}

// entries reads back a package's entries.
func entries(t testing.TB, pkg []byte) []tarEntry {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(pkg))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out []tarEntry
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		out = append(out, tarEntry{hdr: *hdr, data: data})
	}
}

// rewrite rebuilds a package with edit applied to its entries.
func rewrite(t testing.TB, pkg []byte, edit func([]tarEntry) []tarEntry) []byte {
	t.Helper()
	return targz(t, edit(entries(t, pkg))...)
}

// without drops the entry named name.
func without(name string) func([]tarEntry) []tarEntry {
	return func(es []tarEntry) []tarEntry {
		var out []tarEntry
		for _, e := range es {
			if e.hdr.Name != name {
				out = append(out, e)
			}
		}
		return out
	}
}

// wantErr fails unless err is an error containing every one of want.
func wantErr(t testing.TB, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("error %q, want it to contain %q", err, w)
		}
	}
}
