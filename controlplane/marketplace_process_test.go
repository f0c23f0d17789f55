package controlplane_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mairust/mairust/controlplane/cptest"
	"github.com/mairust/mairust/marketplace/catalog"
	"github.com/mairust/mairust/marketplace/pack"
	marketplacev1 "github.com/mairust/mairust/proto/mairust/marketplace/v1"
	"github.com/mairust/mairust/proto/mairust/marketplace/v1/marketplacev1connect"
)

// publish packs a small stdin plugin, uploads it as c's owner, approves it
// (the owner reviews) and installs it on c's tenant.
func publish(t *testing.T, c *cp, id string) {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{
		"plugin.toml": `id = "` + id + `"
name = "Tagger"
version = "1.0.0"
kind = "stdin"
hooks = ["post_receive"]
command = "run.sh"
network = "none"

[permissions]
read_headers = true
write_tags = true
`,
		"README.md": "# Tagger\n\nTags mail.\n",
		"run.sh":    "#!/bin/sh\ncat >/dev/null\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var pkg bytes.Buffer
	if _, err := pack.Pack(dir, &pkg, nil); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, c.url+catalog.UploadPath, &pkg)
	req.Header.Set("Authorization", "Bearer "+c.session)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %v %v", resp, err)
	}
	resp.Body.Close()
	ctx := context.Background()
	m := marketplacev1connect.NewMarketplaceServiceClient(http.DefaultClient, c.url)
	if _, err := m.ReviewSubmission(ctx, cptest.Auth(&marketplacev1.ReviewSubmissionRequest{PluginId: id, Version: "1.0.0", Approve: true}, c.session)); err != nil {
		t.Fatal(err)
	}
	if _, err := m.InstallPlugin(ctx, cptest.Auth(&marketplacev1.InstallPluginRequest{TenantId: c.tenant, PluginId: id, PermissionsAccepted: true}, c.session)); err != nil {
		t.Fatal(err)
	}
}

// TestRecallReachesAgents: a plugin published, approved and installed
// from the marketplace reaches three agents (processes); one is stopped;
// a recall reaches the two connected ones — the one with
// plugins.auto_disable_recalled disables the plugin, the other records
// the alert and keeps it — and the stopped one when it comes back.
func TestRecallReachesAgents(t *testing.T) {
	key, err := pack.GenerateKey("ed25519")
	if err != nil {
		t.Fatal(err)
	}
	pem, _ := key.MarshalPEM()
	keyFile := filepath.Join(t.TempDir(), "marketplace.key")
	os.WriteFile(keyFile, pem, 0o600)
	c := startControlPlane(t, fmt.Sprintf("marketplace:\n  reviewers: [owner@example.test]\n  signing_key_file: %s\n", keyFile))
	publish(t, c, "tagger")
	auto := "plugins:\n  auto_disable_recalled: true\n"
	agents := []*agentProc{startAgent(t, c, auto), startAgent(t, c, ""), startAgent(t, c, auto)}
	for i, a := range agents {
		waitUntil(t, fmt.Sprintf("the plugin on agent %d\n%s", i, a.log.String()), func() bool {
			return a.count(t, `SELECT count(*) FROM plugins WHERE id = 'tagger' AND enabled AND managed_by_controlplane`) == 1
		})
	}
	defer func() {
		if t.Failed() {
			for i, a := range agents {
				t.Logf("agent %d:\n%s", i, a.log.String())
			}
			t.Logf("control plane:\n%s", c.out.String())
		}
	}()
	offline := agents[2]
	offline.stop()

	ctx := context.Background()
	m := marketplacev1connect.NewMarketplaceServiceClient(http.DefaultClient, c.url)
	start := time.Now()
	if _, err := m.RecallPlugin(ctx, cptest.Auth(&marketplacev1.RecallPluginRequest{PluginId: "tagger", Reason: "exfiltrates mail"}, c.session)); err != nil {
		t.Fatal(err)
	}
	recalled := func(a *agentProc) bool {
		return a.count(t, `SELECT count(*) FROM plugin_recalls WHERE plugin_id = 'tagger' AND reason = 'exfiltrates mail'`) == 1
	}
	enabled := func(a *agentProc) bool {
		return a.count(t, `SELECT count(*) FROM plugins WHERE id = 'tagger' AND enabled`) == 1
	}
	waitUntil(t, "the recall on the agent with auto-disable\n"+agents[0].log.String(), func() bool { return recalled(agents[0]) && !enabled(agents[0]) })
	waitUntil(t, "the recall on the agent without\n"+agents[1].log.String(), func() bool { return recalled(agents[1]) })
	t.Logf("the recall reached both connected agents %v after the call", time.Since(start).Round(time.Millisecond))
	if !enabled(agents[1]) {
		t.Error("the agent without auto-disable disabled the plugin")
	}
	if recalled(offline) {
		t.Fatal("the stopped agent has the recall already")
	}
	offline.start(t)
	waitUntil(t, "the recall on the agent back online\n"+offline.log.String(), func() bool { return recalled(offline) && !enabled(offline) })
}
