package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mairust/mairust/internal/proctest"
)

// runIn runs the binary in dir with extra environment variables.
func runIn(t *testing.T, dir string, env []string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, proctest.Binary(t), args...)
	cmd.Dir, cmd.Env = dir, append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit) && exit.ExitCode() >= 0:
		return string(out), exit.ExitCode()
	}
	t.Fatalf("mairust %s: %v\n%s", strings.Join(args, " "), err, out)
	return "", 0
}

// TestPackCLI: keygen, pack an example, sign, verify, inspect.
func TestPackCLI(t *testing.T) {
	work := t.TempDir()
	plugin := filepath.Join(work, "subject-tagger")
	if err := os.CopyFS(plugin, os.DirFS("../../agent/plugins/examples/subject-tagger")); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(plugin, "tag.sh"), 0o755)
	if err := os.WriteFile(filepath.Join(plugin, "README.md"), []byte("# Subject tagger\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ok := func(env []string, args ...string) string {
		t.Helper()
		out, code := runIn(t, work, env, args...)
		if code != 0 {
			t.Fatalf("mairust %s: exit %d\n%s", strings.Join(args, " "), code, out)
		}
		return out
	}
	fails := func(want string, env []string, args ...string) {
		t.Helper()
		out, code := runIn(t, work, env, args...)
		if code == 0 || !strings.Contains(out, want) {
			t.Fatalf("mairust %s: exit %d, want an error saying %q:\n%s", strings.Join(args, " "), code, want, out)
		}
	}
	want := func(out string, parts ...string) {
		t.Helper()
		for _, p := range parts {
			if !strings.Contains(out, p) {
				t.Fatalf("output lacks %q:\n%s", p, out)
			}
		}
	}

	for _, k := range []struct{ name, typ string }{{"dev", "ed25519"}, {"devrsa", "rsa"}, {"mp", "ed25519"}, {"other", "ed25519"}} {
		want(ok(nil, "plugin", "keygen", "--type", k.typ, "--out", k.name), "key id: ", "private key: "+k.name+".key")
	}
	if fi, err := os.Stat(filepath.Join(work, "dev.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("dev.key: %v %v, want mode 0600", fi, err)
	}
	fails("dev.key exists already", nil, "plugin", "keygen", "--out", "dev")
	fails("--out PREFIX is required", nil, "plugin", "keygen")

	want(ok(nil, "plugin", "pack", "subject-tagger", "--key", "dev.key"),
		"packed subject-tagger 1.0.0: 3 files in subject-tagger-1.0.0.mairust-plugin", "signed as developer by key", "warning: no icon.png")
	const pkg = "subject-tagger-1.0.0.mairust-plugin"
	mpKey, err := os.ReadFile(filepath.Join(work, "mp.key"))
	if err != nil {
		t.Fatal(err)
	}
	fails("--key is required (or the key's PEM in $MAIRUST_MARKETPLACE_KEY)", nil, "plugin", "sign", pkg, "--as", "marketplace")
	fails("marketplace signatures are ed25519; this key is rsa-pss-sha256", nil, "plugin", "sign", pkg, "--as", "marketplace", "--key", "devrsa.key")
	want(ok([]string{"MAIRUST_MARKETPLACE_KEY=" + string(mpKey)}, "plugin", "sign", pkg, "--as", "marketplace"), "as marketplace by key")

	trust := "developer:dev.pub,marketplace:mp.pub"
	want(ok(nil, "plugin", "verify", pkg, "--trust", trust, "--require-marketplace", "--require-developer"),
		"files: 3 checked", "developer.sig: valid", "marketplace.sig: valid", "verified: subject-tagger 1.0.0")
	want(ok(nil, "plugin", "verify", pkg, "--trust", "developer:dev.pub"), "marketplace.sig: not checked (no marketplace key is trusted)")
	fails("developer.sig: signed by key", nil, "plugin", "verify", pkg, "--trust", "other.pub")
	fails("which is not a trusted marketplace key", nil, "plugin", "verify", pkg, "--trust", "developer:dev.pub,marketplace:other.pub")
	fails("--trust PUBFILE is required", nil, "plugin", "verify", pkg)
	fails("this is a private key", nil, "plugin", "verify", pkg, "--trust", "dev.key")

	want(ok(nil, "plugin", "inspect", pkg),
		"id:                   subject-tagger", "min_mairust_version:  0.1.0 (compatible", "tag messages (write_tags)",
		"0755  538  tag.sh", "developer.sig    key ", "marketplace.sig  key ", "(ed25519)")

	// Re-signing as developer drops the marketplace signature.
	want(ok(nil, "plugin", "sign", pkg, "--key", "devrsa.key"), "as developer by key", "the marketplace signature was removed")
	fails("no marketplace signature (marketplace.sig), and one is required", nil, "plugin", "verify", pkg, "--trust", "devrsa.pub", "--require-marketplace")
	want(ok(nil, "plugin", "verify", pkg, "--trust", "devrsa.pub"), "developer.sig: valid", "(rsa-pss-sha256)")

	// A changed package is refused.
	data, _ := os.ReadFile(filepath.Join(work, pkg))
	data[len(data)/2] ^= 0xff
	os.WriteFile(filepath.Join(work, "bad.mairust-plugin"), data, 0o644)
	fails("bad.mairust-plugin", nil, "plugin", "verify", "bad.mairust-plugin", "--trust", "devrsa.pub")

	// What cannot be packed.
	os.Symlink("/etc/passwd", filepath.Join(plugin, "passwd"))
	fails("passwd is a symbolic link", nil, "plugin", "pack", "subject-tagger", "--out", "x.mairust-plugin")
	os.Remove(filepath.Join(plugin, "passwd"))
	os.Remove(filepath.Join(plugin, "README.md"))
	fails("has no README.md", nil, "plugin", "pack", "subject-tagger", "--out", "x.mairust-plugin")
}
