package provider_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/mairust/mairust/controlplane/accounts"
	"github.com/mairust/mairust/controlplane/auth"
	"github.com/mairust/mairust/controlplane/cptest"
	"github.com/mairust/mairust/controlplane/mailer"
	"github.com/mairust/mairust/controlplane/server"
	"github.com/mairust/mairust/controlplane/tenants"
	"github.com/mairust/mairust/internal/proctest"
	accountsv1 "github.com/mairust/mairust/proto/mairust/accounts/v1"
	"github.com/mairust/mairust/proto/mairust/accounts/v1/accountsv1connect"
	tenantsv1 "github.com/mairust/mairust/proto/mairust/tenants/v1"
	"github.com/mairust/mairust/proto/mairust/tenants/v1/tenantsv1connect"
	"github.com/mairust/mairust/terraform/provider"
)

// installTerraform is how the pinned Terraform CLI (the last MPL release)
// is installed; TF_ACC_TERRAFORM_PATH names another binary.
const installTerraform = "go install github.com/hashicorp/terraform@v1.5.7"

const mainTF = `terraform {
  required_providers {
    mairust = { source = "` + provider.Address + `" }
  }
}

variable "tenant" { type = string }

resource "mairust_domain" "main" {
  tenant_id = var.tenant
  name      = "tf.example"
}

data "mairust_tenants" "all" {}

output "tenants" { value = [for t in data.mairust_tenants.all.tenants : t.name] }
`

// TestAcceptance runs the provider through a real Terraform CLI against a
// control plane on loopback, with an API token: create, read (no change
// planned), drift (a domain deleted in the console is planned again),
// import, and destroy.
func TestAcceptance(t *testing.T) {
	tf := os.Getenv("TF_ACC_TERRAFORM_PATH")
	if tf == "" {
		tf = proctest.GoTool(t, "terraform", installTerraform)
	}
	e := cptest.New(t, "cptf")
	acc := accounts.New(e.Store, e.Keys, e.Config, &mailer.Recorder{}, e.Log)
	e.Keys.APITokens = acc.LookupAPIToken
	opts := e.Options()
	e.Serve(t, []server.Service{acc.Service(opts...), tenants.New(e.Store, e.Config, &mailer.Recorder{}, e.Log).Service(opts...)}, nil)
	ctx := context.Background()
	var account string
	if err := e.Owner.QueryRow(ctx, `INSERT INTO accounts (email, password_hash, email_verified_at) VALUES ('ops@example.test', 'x', now()) RETURNING id`).Scan(&account); err != nil {
		t.Fatal(err)
	}
	session, _, err := e.Keys.Issue(auth.Principal{Kind: auth.KindSession, AccountID: account}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ten := tenantsv1connect.NewTenantsServiceClient(http.DefaultClient, e.URL, cptest.Bearer(session))
	created, err := ten.CreateTenant(ctx, connect.NewRequest(&tenantsv1.CreateTenantRequest{Name: "Ops"}))
	if err != nil {
		t.Fatal(err)
	}
	tenant := created.Msg.Tenant.Id
	tok, err := accountsv1connect.NewAccountsServiceClient(http.DefaultClient, e.URL, cptest.Bearer(session)).
		CreateAPIToken(ctx, connect.NewRequest(&accountsv1.CreateAPITokenRequest{Name: "terraform"}))
	if err != nil {
		t.Fatal(err)
	}

	// The provider binary, and a CLI configuration that uses it.
	bin := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, "terraform-provider-mairust"), "github.com/mairust/mairust/terraform/cmd/terraform-provider-mairust").CombinedOutput(); err != nil {
		t.Fatalf("build the provider: %v\n%s", err, out)
	}
	work := t.TempDir()
	rc := filepath.Join(work, "terraformrc")
	os.WriteFile(rc, []byte("provider_installation {\n  dev_overrides {\n    \""+provider.Address+"\" = \""+bin+"\"\n  }\n  direct {}\n}\n"), 0o644)
	os.WriteFile(filepath.Join(work, "main.tf"), []byte(mainTF), 0o644)
	run := func(args ...string) (string, int) {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(cctx, tf, args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+rc, "TF_IN_AUTOMATION=1", "CHECKPOINT_DISABLE=1",
			"MAIRUST_CONTROLPLANE_URL="+e.URL, "MAIRUST_API_TOKEN="+tok.Msg.Token, "TF_VAR_tenant="+tenant)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("terraform %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out), cmd.ProcessState.ExitCode()
	}
	must := func(args ...string) string {
		t.Helper()
		out, code := run(args...)
		if code != 0 {
			t.Fatalf("terraform %s: exit %d\n%s", strings.Join(args, " "), code, out)
		}
		return out
	}
	domains := func() []*tenantsv1.Domain {
		r, err := ten.ListDomains(ctx, connect.NewRequest(&tenantsv1.ListDomainsRequest{TenantId: tenant}))
		if err != nil {
			t.Fatal(err)
		}
		return r.Msg.Domains
	}
	plan := func() int {
		t.Helper()
		out, code := run("plan", "-detailed-exitcode", "-input=false", "-no-color")
		if code == 1 {
			t.Fatalf("terraform plan failed:\n%s", out)
		}
		return code
	}

	out := must("apply", "-auto-approve", "-input=false", "-no-color")
	t.Logf("terraform apply:\n%s", out)
	if d := domains(); len(d) != 1 || d[0].Name != "tf.example" || !strings.Contains(out, `"Ops"`) {
		t.Fatalf("after apply: domains %v\n%s", d, out)
	}
	if code := plan(); code != 0 {
		t.Fatalf("plan after apply: exit %d, want 0 (no changes)", code)
	}

	// Drift: the domain is deleted in the console.
	if _, err := ten.DeleteDomain(ctx, connect.NewRequest(&tenantsv1.DeleteDomainRequest{TenantId: tenant, DomainId: domains()[0].Id})); err != nil {
		t.Fatal(err)
	}
	if code := plan(); code != 2 {
		t.Fatalf("plan after a deletion in the console: exit %d, want 2 (changes)", code)
	}
	must("apply", "-auto-approve", "-input=false", "-no-color")
	id := domains()[0].Id

	// Import.
	must("state", "rm", "mairust_domain.main")
	must("import", "-input=false", "-no-color", "mairust_domain.main", tenant+"/"+id)
	if code := plan(); code != 0 {
		t.Fatalf("plan after import: exit %d, want 0", code)
	}

	must("destroy", "-auto-approve", "-input=false", "-no-color")
	if d := domains(); len(d) != 0 {
		t.Fatalf("after destroy: domains %v", d)
	}
}
