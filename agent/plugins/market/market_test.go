package market_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mairust/mairust/agent/accounts/accountstest"
	"github.com/mairust/mairust/agent/plugins"
	"github.com/mairust/mairust/agent/plugins/manifest"
	"github.com/mairust/mairust/agent/plugins/market"
	"github.com/mairust/mairust/marketplace/pack"
	agentsv1 "github.com/mairust/mairust/proto/mairust/agents/v1"
)

// repo serves packages at /p/<id>/<version>.
type repo struct {
	files map[string][]byte
}

func (r *repo) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, ok := r.files[req.URL.Path]
	if !ok {
		http.NotFound(w, req)
		return
	}
	w.Write(b)
}

// publish packs a plugin (version, minimum MaiRust version), signs it with
// key as the marketplace (nil: unsigned by it) and returns its
// installation for the snapshot.
func (r *repo) publish(t *testing.T, id, version, min string, key *pack.PrivateKey) *agentsv1.PluginInstallation {
	t.Helper()
	dir := t.TempDir()
	toml := "id = \"" + id + "\"\nname = \"T\"\nversion = \"" + version + "\"\nkind = \"stdin\"\nhooks = [\"post_receive\"]\ncommand = \"run.sh\"\nnetwork = \"none\"\n"
	if min != "" {
		toml += "min_mairust_version = \"" + min + "\"\n"
	}
	toml += "[permissions]\nread_headers = true\nwrite_tags = true\n"
	os.WriteFile(filepath.Join(dir, "plugin.toml"), []byte(toml), 0o644)
	os.WriteFile(filepath.Join(dir, "README.md"), []byte("# T\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\ncat >/dev/null\n"), 0o755)
	p, err := pack.Build(dir)
	if err != nil {
		t.Fatal(err)
	}
	if key != nil {
		if err := p.Sign(pack.Marketplace, key); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := p.Write(&buf); err != nil {
		t.Fatal(err)
	}
	path := "/p/" + id + "/" + version
	r.files[path] = buf.Bytes()
	sum := sha256.Sum256(buf.Bytes())
	return &agentsv1.PluginInstallation{PluginId: id, Version: version, Enabled: true, DownloadPath: path, Sha256: hex.EncodeToString(sum[:])}
}

func keyOf(t *testing.T, k *pack.PrivateKey, notAfter time.Time) *agentsv1.MarketplaceKey {
	pem, err := k.Public().MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	mk := &agentsv1.MarketplaceKey{KeyId: k.KeyID(), PublicKeyPem: string(pem)}
	if !notAfter.IsZero() {
		mk.NotAfter = timestamppb.New(notAfter)
	}
	return mk
}

// TestInstaller: the control plane's plugins are installed, enabled,
// upgraded, kept from downgrades unless allowed, and removed; packages
// with a wrong digest, no trusted marketplace signature, an expired key or
// too new a MaiRust are refused; a locally installed plugin is left alone.
func TestInstaller(t *testing.T) {
	ctx := context.Background()
	pool := accountstest.NewDatabase(t, "market")
	key, _ := pack.GenerateKey("ed25519")
	other, _ := pack.GenerateKey("ed25519")
	r := &repo{files: map[string][]byte{}}
	srv := httptest.NewServer(r)
	defer srv.Close()
	var changes atomic.Int32
	running, _ := manifest.ParseVersion("0.3.2")
	in := &market.Installer{Pool: pool, Dir: t.TempDir(), BaseURL: srv.URL, Running: running, Log: slog.New(slog.NewTextHandler(t.Output(), nil)),
		Changed: func(context.Context) error { changes.Add(1); return nil }}
	keys := []*agentsv1.MarketplaceKey{keyOf(t, key, time.Time{})}
	apply := func(keys []*agentsv1.MarketplaceKey, want ...*agentsv1.PluginInstallation) error {
		return in.Apply(ctx, &agentsv1.Snapshot{Plugins: want, MarketplaceKeys: keys})
	}
	state := func(id string) (version string, enabled, managed bool) {
		t.Helper()
		p, err := plugins.Get(ctx, pool, id)
		if err != nil {
			return "", false, false
		}
		pool.QueryRow(ctx, `SELECT managed_by_controlplane FROM plugins WHERE id = $1`, id).Scan(&managed)
		return p.Manifest.Version.String(), p.Enabled, managed
	}
	wantErr := func(err error, text string) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), text) {
			t.Fatalf("error %v, want one saying %q", err, text)
		}
	}

	v1 := r.publish(t, "tagger", "1.0.0", "0.1.0", key)
	if err := apply(keys, v1); err != nil {
		t.Fatal(err)
	}
	if v, on, managed := state("tagger"); v != "1.0.0" || !on || !managed || changes.Load() != 1 {
		t.Fatalf("after install: %s enabled %v managed %v, %d changes", v, on, managed, changes.Load())
	}
	if err := apply(keys, v1); err != nil || changes.Load() != 1 {
		t.Fatalf("the same again: %v, %d changes", err, changes.Load())
	}
	off := proto.CloneOf(v1)
	off.Enabled = false
	if err := apply(keys, off); err != nil {
		t.Fatal(err)
	}
	if _, on, _ := state("tagger"); on {
		t.Fatal("still enabled")
	}
	v2 := r.publish(t, "tagger", "1.1.0", "", key)
	if err := apply(keys, v2); err != nil {
		t.Fatal(err)
	}
	if v, on, _ := state("tagger"); v != "1.1.0" || !on {
		t.Fatalf("after upgrade: %s enabled %v", v, on)
	}
	wantErr(apply(keys, v1), "refusing to go back from 1.1.0")
	back := proto.CloneOf(v1)
	back.AllowDowngrade = true
	if err := apply(keys, back); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := state("tagger"); v != "1.0.0" {
		t.Fatalf("after an allowed downgrade: %s", v)
	}

	bad := r.publish(t, "bad", "1.0.0", "", key)
	bad.Sha256 = strings.Repeat("0", 64)
	wantErr(apply(keys, v1, bad), "does not match the SHA-256")
	wantErr(apply(keys, v1, r.publish(t, "unsigned", "1.0.0", "", nil)), "marketplace")
	wantErr(apply(keys, v1, r.publish(t, "stranger", "1.0.0", "", other)), "marketplace")
	expired := []*agentsv1.MarketplaceKey{keyOf(t, key, time.Now().Add(-time.Hour))}
	wantErr(apply(expired, v1, r.publish(t, "late", "1.0.0", "", key)), "late")
	err := apply(keys, v1, r.publish(t, "future", "1.0.0", "0.4.0", key))
	wantErr(err, "This plugin requires MaiRust 0.4.0 or later (current: 0.3.2)")
	for _, id := range []string{"bad", "unsigned", "stranger", "late", "future"} {
		if v, _, _ := state(id); v != "" {
			t.Errorf("%s was installed (%s)", id, v)
		}
	}

	// A local plugin of the same id stays, and says why.
	local := t.TempDir()
	os.WriteFile(filepath.Join(local, "plugin.toml"), []byte("id = \"mine\"\nname = \"M\"\nversion = \"1.0.0\"\nkind = \"stdin\"\nhooks = [\"post_receive\"]\ncommand = \"run.sh\"\nnetwork = \"none\"\n[permissions]\nread_headers = true\n"), 0o644)
	os.WriteFile(filepath.Join(local, "run.sh"), []byte("#!/bin/sh\n"), 0o755)
	if _, err := plugins.Install(ctx, pool, local, in.Dir, plugins.Options{}); err != nil {
		t.Fatal(err)
	}
	wantErr(apply(keys, v1, r.publish(t, "mine", "2.0.0", "", key)), "installed locally")

	// Not listed any more: removed; the local one stays.
	if err := apply(keys); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := state("tagger"); v != "" {
		t.Fatalf("tagger still installed (%s)", v)
	}
	if v, _, managed := state("mine"); v != "1.0.0" || managed {
		t.Fatalf("the local plugin: %s managed %v", v, managed)
	}
}

// signedRecalls is a recall list signed with key.
func signedRecalls(t *testing.T, key *pack.PrivateKey, version int64, list ...*agentsv1.Recall) *agentsv1.Snapshot {
	t.Helper()
	pl := make([]pack.Recall, len(list))
	for i, r := range list {
		pl[i] = pack.Recall{PluginID: r.PluginId, Version: r.Version, Reason: r.Reason}
	}
	sig, err := pack.SignRecalls(key, version, pl)
	if err != nil {
		t.Fatal(err)
	}
	return &agentsv1.Snapshot{Recalls: list, RecallVersion: version, RecallSignature: sig, RecallKeyId: key.KeyID()}
}

// TestRecalls: a signed recall list naming an installed version is
// recorded and, with auto-disable, disables the plugin; a list signed by
// an unknown key or older than the one applied is ignored; a recalled
// version is not installed.
func TestRecalls(t *testing.T) {
	ctx := context.Background()
	pool := accountstest.NewDatabase(t, "recall")
	key, _ := pack.GenerateKey("ed25519")
	other, _ := pack.GenerateKey("ed25519")
	r := &repo{files: map[string][]byte{}}
	srv := httptest.NewServer(r)
	defer srv.Close()
	var auto atomic.Bool
	running, _ := manifest.ParseVersion("0.3.2")
	in := &market.Installer{Pool: pool, Dir: t.TempDir(), BaseURL: srv.URL, Running: running, Log: slog.New(slog.NewTextHandler(t.Output(), nil)),
		AutoDisable: auto.Load}
	keys := []*agentsv1.MarketplaceKey{keyOf(t, key, time.Time{})}
	v1 := r.publish(t, "tagger", "1.0.0", "", key)
	with := func(s *agentsv1.Snapshot, want ...*agentsv1.PluginInstallation) *agentsv1.Snapshot {
		s.Plugins, s.MarketplaceKeys = want, keys
		return s
	}
	if err := in.Apply(ctx, with(&agentsv1.Snapshot{}, v1)); err != nil {
		t.Fatal(err)
	}
	enabled := func() bool {
		p, err := plugins.Get(ctx, pool, "tagger")
		if err != nil {
			t.Fatal(err)
		}
		return p.Enabled
	}
	recalls := func() (n int) {
		pool.QueryRow(ctx, `SELECT count(*) FROM plugin_recalls WHERE plugin_id = 'tagger'`).Scan(&n)
		return n
	}
	bad := &agentsv1.Recall{PluginId: "tagger", Version: "1.0.0", Reason: "steals mail"}

	// Unknown key: ignored.
	err := in.Apply(ctx, with(signedRecalls(t, other, 1, bad), v1))
	if err == nil || !strings.Contains(err.Error(), "not a trusted marketplace key") || recalls() != 0 || !enabled() {
		t.Fatalf("a list by an unknown key: %v, %d recalls, enabled %v", err, recalls(), enabled())
	}
	// Auto-disable off: recorded, still enabled.
	if err := in.Apply(ctx, with(signedRecalls(t, key, 1, bad), v1)); err == nil || !strings.Contains(err.Error(), "recalled it (steals mail)") {
		t.Fatalf("the recalled version wanted still: %v", err)
	}
	if recalls() != 1 || !enabled() {
		t.Fatalf("auto-disable off: %d recalls, enabled %v", recalls(), enabled())
	}
	// On: disabled at once.
	auto.Store(true)
	in.Apply(ctx, with(signedRecalls(t, key, 2, bad), v1))
	if enabled() {
		t.Fatal("auto-disable on: still enabled")
	}
	// An older list (a replay): ignored; the recall stays.
	err = in.Apply(ctx, with(signedRecalls(t, key, 1), v1))
	if err == nil || !strings.Contains(err.Error(), "list 2 is applied already") || recalls() != 1 {
		t.Fatalf("an older list: %v, %d recalls", err, recalls())
	}
	// Withdrawn: the alert goes; the plugin stays disabled for an admin to decide.
	if err := in.Apply(ctx, with(signedRecalls(t, key, 3))); err != nil {
		t.Fatal(err)
	}
	if recalls() != 0 {
		t.Fatal("the withdrawn recall is still recorded")
	}
	// A recalled version is not installed.
	err = in.Apply(ctx, with(signedRecalls(t, key, 4, &agentsv1.Recall{PluginId: "evil", Reason: "malware"}), r.publish(t, "evil", "1.0.0", "", key)))
	if err == nil || !strings.Contains(err.Error(), "recalled it (malware)") {
		t.Fatalf("installing a recalled plugin: %v", err)
	}
	if _, err := plugins.Get(ctx, pool, "evil"); err == nil {
		t.Fatal("the recalled plugin was installed")
	}
}
