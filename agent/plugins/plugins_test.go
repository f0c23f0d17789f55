package plugins

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mairust/mairust/agent/accounts/accountstest"
	"github.com/mairust/mairust/agent/plugins/manifest"
)

// pluginDir writes a stdin plugin whose manifest asks for perms.
func pluginDir(t *testing.T, id, perms string) string {
	t.Helper()
	dir := t.TempDir()
	toml := `id = "` + id + `"
name = "Tagger"
version = "1.0.0"
kind = "stdin"
hooks = ["post_receive"]
command = "tag.sh"

[permissions]
` + perms + `

[settings.word]
type = "string"
default = "invoice"

[settings.limit]
type = "int"
`
	if err := os.WriteFile(filepath.Join(dir, manifest.FileName), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tag.sh"), []byte("#!/bin/sh\necho '{}'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestInstallListEnableRemove(t *testing.T) {
	ctx := context.Background()
	pool := accountstest.NewDatabase(t, "plugins")
	files := t.TempDir()

	// A missing permission dependency is refused, naming it.
	src := pluginDir(t, "tagger", "write_tags = true")
	_, err := Install(ctx, pool, src, files, Options{})
	if err == nil || !strings.Contains(err.Error(), "permissions.write_tags: needs read_headers") || !strings.Contains(err.Error(), "--auto-add-permissions") {
		t.Fatalf("install without read_headers: %v", err)
	}
	if _, err := os.Stat(filepath.Join(files, "tagger")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused install left files: %v", err)
	}
	p, err := Install(ctx, pool, src, files, Options{AutoAddPermissions: true, Settings: map[string]any{"limit": "5"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.AddedPermissions) != 1 || !p.Manifest.Permissions.ReadHeaders || !p.Enabled || p.Settings["limit"] != int64(5) || p.Settings["word"] != "invoice" {
		t.Fatalf("installed: added %v, perms %s, enabled %v, settings %v", p.AddedPermissions, p.Manifest.Permissions, p.Enabled, p.Settings)
	}
	want, _ := manifest.FileSHA256(filepath.Join(src, "tag.sh"))
	if p.Manifest.SHA256 != want || len(p.Secret) != 32 {
		t.Fatalf("checksum %q want %q, secret %d bytes", p.Manifest.SHA256, want, len(p.Secret))
	}
	if data, err := os.ReadFile(filepath.Join(files, "tagger", "tag.sh")); err != nil || !strings.Contains(string(data), "echo") {
		t.Fatalf("copied command: %q, %v", data, err)
	}
	if _, err := Install(ctx, pool, src, files, Options{AutoAddPermissions: true}); err == nil || !strings.Contains(err.Error(), "remove") {
		t.Fatalf("installing twice: %v", err)
	}

	// What is read back is what was installed, added permission included.
	got, err := Get(ctx, pool, "tagger")
	if err != nil || !got.Manifest.Permissions.ReadHeaders || got.Manifest.SHA256 != want || string(got.Secret) != string(p.Secret) || got.Manifest.Dir != filepath.Join(files, "tagger") {
		t.Fatalf("Get: %+v, %v", got, err)
	}
	if err := SetEnabled(ctx, pool, "tagger", false); err != nil {
		t.Fatal(err)
	}
	if on, err := Enabled(ctx, pool); err != nil || len(on) != 0 {
		t.Fatalf("enabled after disable: %v, %v", on, err)
	}
	if list, err := List(ctx, pool); err != nil || len(list) != 1 || list[0].Enabled {
		t.Fatalf("list: %v, %v", list, err)
	}
	if err := SetEnabled(ctx, pool, "nope", true); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("enable unknown: %v", err)
	}
	if err := Remove(ctx, pool, "tagger"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(files, "tagger")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("files left after remove: %v", err)
	}
	if err := Remove(ctx, pool, "tagger"); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("remove twice: %v", err)
	}
}

func TestInstallRefusesLinksAndBadSettings(t *testing.T) {
	ctx := context.Background()
	pool := accountstest.NewDatabase(t, "plugins")
	src := pluginDir(t, "linky", "read_headers = true")
	if _, err := Install(ctx, pool, src, t.TempDir(), Options{Settings: map[string]any{"limit": "many"}}); err == nil || !strings.Contains(err.Error(), "settings.limit") {
		t.Fatalf("bad setting: %v", err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(src, "passwd")); err != nil {
		t.Fatal(err)
	}
	if _, err := Install(ctx, pool, src, t.TempDir(), Options{}); err == nil || !strings.Contains(err.Error(), "no links") {
		t.Fatalf("a symbolic link: %v", err)
	}
}
