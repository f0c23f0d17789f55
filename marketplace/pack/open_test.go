package pack

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"strings"
	"testing"
)

// small limits keep the malicious archives small.
var small = Limits{MaxFileBytes: 1024, MaxFiles: 10, MaxTotalBytes: 4096}

func TestOpenRefusesMaliciousArchives(t *testing.T) {
	reg := func(name string, mode int64, size int) tarEntry {
		e := file(name, strings.Repeat("x", size))
		e.hdr.Mode = mode
		return e
	}
	special := func(typ byte, name, link string) tarEntry {
		return tarEntry{hdr: tar.Header{Typeflag: typ, Name: name, Linkname: link, Mode: 0o644}}
	}
	many := func(n int) []tarEntry {
		var es []tarEntry
		for i := range n {
			es = append(es, file("f"+strings.Repeat("x", i), "x"))
		}
		return es
	}
	for _, tc := range []struct {
		name    string
		entries []tarEntry
		want    string
	}{
		{"parent traversal", []tarEntry{file("../x", "x")}, `entry path "../x": a '..' element`},
		{"absolute path", []tarEntry{file("/etc/x", "x")}, `entry path "/etc/x": an absolute path`},
		{"inner traversal", []tarEntry{file("a/../../x", "x")}, `entry path "a/../../x": a '..' element`},
		{"dot element", []tarEntry{file("./x", "x")}, `entry path "./x": a '.' element`},
		{"backslash", []tarEntry{file(`a\..\x`, "x")}, `entry path "a\\..\\x": a backslash`},
		{"empty element", []tarEntry{file("a//x", "x")}, `entry path "a//x": an empty element`},
		{"control character", []tarEntry{file("a\nb", "x")}, `a control character`},
		{"symlink", []tarEntry{special(tar.TypeSymlink, "link", "/etc/passwd")}, `entry "link" is a symbolic link (to "/etc/passwd")`},
		{"symlink escape", []tarEntry{special(tar.TypeSymlink, "bin", "../../.."), file("bin/x", "x")}, `entry "bin" is a symbolic link (to "../../..")`},
		{"hard link", []tarEntry{file("a", "x"), special(tar.TypeLink, "b", "/etc/shadow")}, `entry "b" is a hard link (to "/etc/shadow")`},
		{"char device", []tarEntry{special(tar.TypeChar, "dev/null", "")}, `entry "dev/null" is a device file`},
		{"block device", []tarEntry{special(tar.TypeBlock, "sda", "")}, `entry "sda" is a device file`},
		{"fifo", []tarEntry{special(tar.TypeFifo, "pipe", "")}, `entry "pipe" is a FIFO`},
		{"setuid file", []tarEntry{reg("bin/su", 0o4755, 10)}, `entry "bin/su" has the setuid, setgid or sticky bit (mode 4755)`},
		{"setgid file", []tarEntry{reg("bin/sg", 0o2755, 10)}, `entry "bin/sg" has the setuid, setgid or sticky bit (mode 2755)`},
		{"sticky dir", []tarEntry{{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777}}}, `entry "tmp" has the setuid, setgid or sticky bit`},
		{"huge file", []tarEntry{reg("big", 0o644, 2048)}, `entry "big" is 2048 bytes, over the limit of 1024`},
		{"huge manifest", []tarEntry{reg(ManifestName, 0o644, MaxManifestBytes+1)}, `entry "manifest.json" is 1048577 bytes, over the limit of 1048576`},
		{"too many files", many(11), "the package has more than 10 entries (the limit)"},
		{"too much in total", []tarEntry{reg("a", 0o644, 1000), reg("b", 0o644, 1000), reg("c", 0o644, 1000), reg("d", 0o644, 1000), reg("e", 0o644, 1000)}, "add up to more than 4096 bytes"},
		{"duplicate path", []tarEntry{file("a", "1"), file("a", "2")}, `entry "a" appears twice`},
		{"file and directory", []tarEntry{file("a", "1"), {hdr: tar.Header{Typeflag: tar.TypeDir, Name: "a/", Mode: 0o755}}}, `entry "a" appears twice`},
		{"file inside a file", []tarEntry{file("a", "1"), file("a/b", "2")}, `entry "a/b" is inside "a", which is a file`},
		{"manifest as a directory", []tarEntry{{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "manifest.json/", Mode: 0o755}}}, `entry "manifest.json" is a directory`},
		{"no manifest", []tarEntry{file("plugin.toml", "")}, "no manifest.json: this is not a .mairust-plugin package"},
		{"manifest with an unknown field", []tarEntry{file(ManifestName, `{"format":1,"evil":true}`)}, `unknown field "evil"`},
		{"manifest listing a traversal", []tarEntry{file(ManifestName, manifestWith("../../etc/cron.d/x"))}, `path "../../etc/cron.d/x": a '..' element`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(bytes.NewReader(targz(t, tc.entries...)), small)
			wantErr(t, err, tc.want)
		})
	}
}

// manifestWith is a canonical manifest.json listing path.
func manifestWith(path string) string {
	b, _ := Manifest{Format: 1, ID: "x1", Version: "1.0.0", Files: []File{{Path: path, SHA256: strings.Repeat("0", 64), Mode: ModeFile}}}.Marshal()
	return string(b)
}

func TestOpenRefusesBombsAndGarbage(t *testing.T) {
	gz := func(data []byte) []byte {
		var b bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
		zw.Write(data)
		zw.Close()
		return b.Bytes()
	}
	// 16 MiB of zeros: an empty tar (two zero blocks) followed by more.
	bomb := gz(make([]byte, 16<<20))
	if len(bomb) > 1<<20 {
		t.Fatalf("bomb of %d bytes", len(bomb))
	}
	_, err := Open(bytes.NewReader(bomb), small)
	wantErr(t, err, "when decompressed (a gzip bomb?)")

	// A real entry, then data hidden after the end of the tar.
	tarred := entries2tar(t, file("a", "x"))
	_, err = Open(bytes.NewReader(gz(append(tarred, bytes.Repeat([]byte("A"), 4<<20)...))), small)
	wantErr(t, err, "a gzip bomb?")

	// A file whose content is large once decompressed (under the default limits it is the size check).
	_, err = Open(bytes.NewReader(gz(entries2tar(t, file("big", strings.Repeat("\x00", 200<<10))))), small)
	wantErr(t, err, `entry "big" is 204800 bytes, over the limit of 1024`)

	_, err = Open(strings.NewReader("PK\x03\x04 a zip file"), Limits{})
	wantErr(t, err, "not a .mairust-plugin package")
	_, err = Open(strings.NewReader(""), Limits{})
	wantErr(t, err, "the package file is empty")
	good := signedPackage(t, pluginDir(t, "subject-tagger", true), key("dev"))
	_, err = Open(bytes.NewReader(good[:len(good)/2]), Limits{})
	wantErr(t, err, "the package is truncated (download it again)")
	_, err = Open(io.MultiReader(bytes.NewReader(good), bytes.NewReader(make([]byte, 100))), Limits{})
	wantErr(t, err, "the package is corrupt: gzip: invalid header")
	// The compressed file itself is bounded: endless empty gzip members.
	_, err = Open(io.MultiReader(bytes.NewReader(good), &repeatReader{data: gz(nil)}), small)
	wantErr(t, err, "the package file is larger than")
}

// repeatReader repeats its data without end.
type repeatReader struct {
	data []byte
	at   int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := copy(p, r.data[r.at:])
	r.at = (r.at + n) % len(r.data)
	return n, nil
}

func entries2tar(t testing.TB, es ...tarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range es {
		if err := tw.WriteHeader(&e.hdr); err != nil {
			t.Fatal(err)
		}
		tw.Write(e.data)
	}
	tw.Close()
	return b.Bytes()
}

func TestParseManifest(t *testing.T) {
	good := Manifest{Format: 1, ID: "tagger", Version: "1.2.3", Files: []File{
		{Path: "README.md", SHA256: strings.Repeat("a", 64), Size: 3, Mode: ModeFile},
		{Path: "bin/tag", SHA256: strings.Repeat("b", 64), Size: 5, Mode: ModeExec},
	}}
	data, err := good.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseManifest(data)
	if err != nil || m.ID != "tagger" || len(m.Files) != 2 {
		t.Fatalf("%+v %v", m, err)
	}
	edit := func(f func(*Manifest)) string {
		m := good
		m.Files = append([]File(nil), good.Files...)
		f(&m)
		b, _ := m.Marshal()
		return string(b)
	}
	s := string(data)
	for _, tc := range []struct{ name, data, want string }{
		{"unknown field", strings.Replace(s, `"format": 1,`, `"format": 1, "x": 2,`, 1), `unknown field "x"`},
		{"repeated field", strings.Replace(s, `"format": 1,`, `"format": 1, "id": "other",`, 1), "not in canonical form"},
		{"other case", strings.Replace(s, `"id"`, `"ID"`, 1), "not in canonical form"},
		{"compact", `{"format":1,"id":"tagger","version":"1.2.3","min_mairust_version":"","files":[]}`, "no files"},
		{"trailing data", s + "{}", "data after the JSON object"},
		{"format 2", strings.Replace(s, `"format": 1`, `"format": 2`, 1), "format 2 is not supported"},
		{"bad id", edit(func(m *Manifest) { m.ID = "../x" }), `id "../x" is not a plugin id`},
		{"bad version", edit(func(m *Manifest) { m.Version = "1.0" }), "version:"},
		{"bad minimum", edit(func(m *Manifest) { m.MinMairustVersion = "v1" }), "min_mairust_version:"},
		{"unsorted", edit(func(m *Manifest) { m.Files[0], m.Files[1] = m.Files[1], m.Files[0] }), "not sorted"},
		{"duplicate", edit(func(m *Manifest) { m.Files[1].Path = "README.md" }), `"README.md" is listed twice`},
		{"bad digest", edit(func(m *Manifest) { m.Files[0].SHA256 = strings.Repeat("A", 64) }), "sha256 must be 64 lowercase"},
		{"bad mode", edit(func(m *Manifest) { m.Files[1].Mode = "4755" }), `mode "4755"`},
		{"negative size", edit(func(m *Manifest) { m.Files[1].Size = -1 }), "negative size"},
		{"absolute path", edit(func(m *Manifest) { m.Files[1].Path = "/bin/tag" }), "an absolute path"},
		{"reserved name", edit(func(m *Manifest) { m.Files[1].Path = "developer.sig" }), "the package's own file"},
		{"not JSON", "\x00", "manifest.json: invalid character"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseManifest([]byte(tc.data))
			wantErr(t, err, tc.want)
		})
	}
}

func TestParseSignature(t *testing.T) {
	sig := Signature{KeyID: "0123456789abcdef", Algorithm: Ed25519, Signature: make([]byte, 64)}
	data, _ := sig.Marshal()
	if _, err := ParseSignature(DeveloperSigName, data); err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for _, tc := range []struct{ name, file, data, want string }{
		{"unknown field", DeveloperSigName, strings.Replace(s, "{", `{"x":1,`, 1), `unknown field "x"`},
		{"algorithm", DeveloperSigName, strings.Replace(s, "ed25519", "hmac", 1), `algorithm "hmac"`},
		{"rsa marketplace", MarketplaceSigName, strings.Replace(s, "ed25519", "rsa-pss-sha256", 1), "marketplace signatures are ed25519"},
		{"key id", DeveloperSigName, strings.Replace(s, "0123456789abcdef", "a b", 1), `key id "a b"`},
		{"not canonical", DeveloperSigName, strings.TrimSuffix(s, "\n"), "not in canonical form"},
		{"injected field", MarketplaceSigName, strings.Replace(s, `"signature":"`, `"signature":"","z":"`, 1), `unknown field "z"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSignature(tc.file, []byte(tc.data))
			wantErr(t, err, tc.want)
		})
	}
}
