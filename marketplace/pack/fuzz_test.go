package pack

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"strings"
	"testing"
)

var fuzzLimits = Limits{MaxFileBytes: 8 << 10, MaxFiles: 20, MaxTotalBytes: 32 << 10}

// gunzip returns the tar inside a package, for seeds the fuzzer can change.
func gunzip(t testing.TB, pkg []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(pkg))
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// FuzzOpen: Open never panics, and whatever it accepts holds only safe
// paths and writes back into a package it accepts again.
func FuzzOpen(f *testing.F) {
	good := signedPackage(f, pluginDir(f, "subject-tagger", true), key("dev"))
	f.Add(good, false)
	f.Add(gunzip(f, good), true)
	f.Add(gunzip(f, rewrite(f, good, without("tag.sh"))), true)
	f.Add(entries2tar(f, file("../x", "x")), true)
	f.Add(entries2tar(f, tarEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "a", Linkname: "/"}}, file("a/b", "x")), true)
	f.Add(entries2tar(f, file(ManifestName, manifestWith("a")), file("a", "")), true)
	f.Add([]byte{}, false)
	f.Add([]byte("\x1f\x8b\x08\x00\x00\x00\x00\x00"), false)
	f.Fuzz(func(t *testing.T, data []byte, compress bool) {
		if compress {
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			zw.Write(data)
			zw.Close()
			data = b.Bytes()
		}
		p, err := Open(bytes.NewReader(data), fuzzLimits)
		if err != nil {
			return
		}
		for name := range p.files {
			if checkPath(name) != nil || reserved(name) {
				t.Fatalf("accepted entry %q", name)
			}
		}
		_ = p.Warnings()
		if err := p.Verify(trustAll(), now); err != nil {
			return
		}
		var b bytes.Buffer
		if err := p.Write(&b); err != nil {
			t.Fatalf("write of a verified package: %v", err)
		}
		q, err := Open(&b, fuzzLimits)
		if err != nil {
			t.Fatalf("reopen of a verified package: %v", err)
		}
		if err := q.Verify(trustAll(), now); err != nil {
			t.Fatalf("reverify: %v", err)
		}
	})
}

// FuzzManifest: ParseManifest never panics and accepts only canonical,
// sorted manifests of safe paths.
func FuzzManifest(f *testing.F) {
	good := Manifest{Format: 1, ID: "tagger", Version: "1.2.3-rc.1+b5", MinMairustVersion: "0.1.0", Files: []File{
		{Path: "README.md", SHA256: strings.Repeat("a", 64), Size: 3, Mode: ModeFile},
		{Path: "bin/tag", SHA256: strings.Repeat("b", 64), Size: 5, Mode: ModeExec},
	}}
	data, _ := good.Marshal()
	f.Add(data)
	f.Add([]byte(strings.Replace(string(data), "bin/tag", "../tag", 1)))
	f.Add([]byte(strings.Replace(string(data), `"format": 1,`, `"format": 1, "format": 2,`, 1)))
	f.Add([]byte(`{"format":1}`))
	f.Add([]byte(`null`))
	f.Add([]byte(manifestWith(`a\b`)))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			return
		}
		canon, err := m.Marshal()
		if err != nil || !bytes.Equal(canon, data) {
			t.Fatalf("accepted a manifest that is not canonical:\n%s", data)
		}
		for i, f := range m.Files {
			if checkPath(f.Path) != nil || reserved(f.Path) || (i > 0 && m.Files[i-1].Path >= f.Path) {
				t.Fatalf("accepted file %q", f.Path)
			}
		}
	})
}
