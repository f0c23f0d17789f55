package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"

	"github.com/mairust/mairust/controlplane/cptest"
	"github.com/mairust/mairust/internal/pgtest"
	"github.com/mairust/mairust/internal/proctest"
	accountsv1 "github.com/mairust/mairust/proto/mairust/accounts/v1"
	"github.com/mairust/mairust/proto/mairust/accounts/v1/accountsv1connect"
	agentsv1 "github.com/mairust/mairust/proto/mairust/agents/v1"
	"github.com/mairust/mairust/proto/mairust/agents/v1/agentsv1connect"
	marketplacev1 "github.com/mairust/mairust/proto/mairust/marketplace/v1"
	"github.com/mairust/mairust/proto/mairust/marketplace/v1/marketplacev1connect"
	tenantsv1 "github.com/mairust/mairust/proto/mairust/tenants/v1"
	"github.com/mairust/mairust/proto/mairust/tenants/v1/tenantsv1connect"
)

// count runs a count query on the database at url.
func count(t *testing.T, url, q string, args ...any) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(ctx, q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestAllInOneControlPlane: mairust aio runs a control plane and enrolls
// its own agent with its tenant (same id, domain, admin user, and a
// console account with the admin's password); a change made in the
// console reaches the agent; a second agent enrolled with a token from
// the console gets the tenant's domains and users (the README's way); a
// restart does not enroll the aio's agent again.
func TestAllInOneControlPlane(t *testing.T) {
	dataDir := aioDataDir(t)
	cpAddr := proctest.FreeAddr(t)
	url := "http://" + cpAddr
	examples, _ := filepath.Abs("../../agent/plugins/examples")
	aio := startAIO(t, dataDir, "--controlplane-listen", cpAddr, "--publish-plugins", examples)
	banner := aio.waitBanner(t)
	um := userLine.FindStringSubmatch(banner)
	if um == nil || !strings.Contains(banner, "Console   "+url+"/console/") || !strings.Contains(banner, "this one is enrolled") ||
		!strings.Contains(banner, "mairust agent enroll --control-plane "+url) {
		t.Fatalf("banner without the user, the console URL or the enrolled agent:\n%s", aio.output())
	}
	admin, pw := um[1], um[2]
	ctx := t.Context()
	login, err := accountsv1connect.NewAccountsServiceClient(http.DefaultClient, url).LogIn(ctx,
		connect.NewRequest(&accountsv1.LogInRequest{Email: admin, Password: pw}))
	if err != nil {
		t.Fatalf("console log-in as %s with the mail password: %v", admin, err)
	}
	session := login.Msg.SessionToken
	tenants := tenantsv1connect.NewTenantsServiceClient(http.DefaultClient, url)
	agents := agentsv1connect.NewAgentsServiceClient(http.DefaultClient, url)
	list, err := tenants.ListTenants(ctx, cptest.Auth(&tenantsv1.ListTenantsRequest{}, session))
	if err != nil || len(list.Msg.Tenants) != 1 || list.Msg.Tenants[0].Role != tenantsv1.Role_ROLE_OWNER {
		t.Fatalf("tenants of the aio's admin: %v %v, want one it owns", list, err)
	}
	tenant := list.Msg.Tenants[0].Id
	local := embeddedURL(dataDir)
	if n := count(t, local, `SELECT count(*) FROM tenants WHERE id = $1 AND name = 'default'`, tenant); n != 1 {
		t.Fatalf("the control plane's tenant %s is not the aio's local tenant", tenant)
	}
	agentsOf := func() []*agentsv1.Agent {
		resp, err := agents.ListAgents(ctx, cptest.Auth(&agentsv1.ListAgentsRequest{TenantId: tenant}, session))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Msg.Agents
	}
	waitFor(t, time.Minute, func() bool {
		a := agentsOf()
		return len(a) == 1 && a[0].LastHeartbeatAt != nil && a[0].ConfigVersion > 0
	})
	// The aio's domain and admin user are now the control plane's.
	waitFor(t, 30*time.Second, func() bool {
		return count(t, local, `SELECT count(*) FROM mail_users WHERE address = $1 AND managed_by_controlplane`, admin) == 1
	})
	if _, err := tenants.AddDomain(ctx, cptest.Auth(&tenantsv1.AddDomainRequest{TenantId: tenant, Name: "second.test"}, session)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() bool {
		return count(t, local, `SELECT count(*) FROM domains WHERE name = 'second.test' AND tenant_id = $1`, tenant) == 1
	})

	// The example plugins that need no build are in the storefront, and
	// one installed there reaches the aio's agent.
	market := marketplacev1connect.NewMarketplaceServiceClient(http.DefaultClient, url)
	waitFor(t, time.Minute, func() bool {
		store, err := market.ListPlugins(ctx, connect.NewRequest(&marketplacev1.ListPluginsRequest{}))
		if err != nil {
			t.Fatalf("storefront: %v\n%s", err, aio.output())
		}
		var listed []string
		for _, p := range store.Msg.GetPlugins() {
			listed = append(listed, p.Id)
		}
		return slices.Contains(listed, "subject-tagger") && slices.Contains(listed, "webhook")
	})
	if _, err := market.InstallPlugin(ctx, cptest.Auth(&marketplacev1.InstallPluginRequest{TenantId: tenant, PluginId: "subject-tagger", PermissionsAccepted: true}, session)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() bool {
		return count(t, local, `SELECT count(*) FROM plugins WHERE id = 'subject-tagger' AND managed_by_controlplane`) == 1
	})

	// A second agent, on its own database, enrolled the README's way.
	tok, err := agents.CreateEnrollmentToken(ctx, cptest.Auth(&agentsv1.CreateEnrollmentTokenRequest{TenantId: tenant}, session))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	db := pgtest.NewDatabase(t, "aiosecond")
	httpAddr := proctest.FreeAddr(t)
	cfgPath := filepath.Join(dir, "mairust.yaml")
	cfg := fmt.Sprintf("data_dir: %s\ndatabase:\n  url: %s\nsmtp:\n  listen: %s\nhttp:\n  listen: %s\napi:\n  listen: %s\nimap:\n  listen: \"\"\n  tls_listen: \"\"\nsubmission:\n  listen: \"\"\n  tls_listen: \"\"\n",
		dir, db, proctest.FreeAddr(t), httpAddr, proctest.FreeAddr(t))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(proctest.Binary(t), "agent", "enroll", "--config", cfgPath, "--control-plane", url, "--token", tok.Msg.Token).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "of tenant "+tenant) {
		t.Fatalf("mairust agent enroll: %v\n%s", err, out)
	}
	var log proctest.Output
	second := exec.Command(proctest.Binary(t), "agent", "--config", cfgPath)
	second.Stdout, second.Stderr = &log, &log
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { second.Process.Kill(); second.Wait() })
	waitFor(t, time.Minute, func() bool { // migrated and serving
		resp, err := http.Get("http://" + httpAddr + "/health")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	waitFor(t, time.Minute, func() bool {
		return count(t, db, `SELECT count(*) FROM mail_users WHERE address = $1 AND managed_by_controlplane`, admin) == 1 &&
			count(t, db, `SELECT count(*) FROM domains WHERE name IN ('example.test', 'second.test') AND managed_by_controlplane`) == 2
	})
	waitFor(t, 30*time.Second, func() bool { return len(agentsOf()) == 2 })

	// A restart keeps the enrollment.
	aio.cmd.Process.Signal(syscall.SIGTERM)
	if err := aio.wait(t, time.Minute); err != nil {
		t.Fatalf("aio after SIGTERM: %v\n%s", err, aio.output())
	}
	again := startAIO(t, dataDir, "--controlplane-listen", cpAddr)
	if banner := again.waitBanner(t); !strings.Contains(banner, "this one is enrolled") {
		t.Fatalf("banner after the restart:\n%s", again.output())
	}
	if a := agentsOf(); len(a) != 2 {
		t.Fatalf("%d agents after the aio's restart, want still 2", len(a))
	}
}
