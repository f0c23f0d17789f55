package catalog_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/mairust/mairust/controlplane/auth"
	"github.com/mairust/mairust/controlplane/cptest"
	"github.com/mairust/mairust/controlplane/mailer"
	"github.com/mairust/mairust/controlplane/server"
	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/marketplace/catalog"
	"github.com/mairust/mairust/marketplace/pack"
	marketplacev1 "github.com/mairust/mairust/proto/mairust/marketplace/v1"
	"github.com/mairust/mairust/proto/mairust/marketplace/v1/marketplacev1connect"
)

// env is the marketplace on a fresh database, its RPCs, upload and
// downloads served on loopback, with a developer, another developer and
// a reviewer signed in, and the marketplace's key.
type env struct {
	*cptest.Env
	mail                 *mailer.Recorder
	key                  *pack.PrivateKey
	dev, other, reviewer string // sessions
}

func start(t *testing.T, maxBytes int64) *env {
	t.Helper()
	e := &env{Env: cptest.New(t, "cpmarket"), mail: &mailer.Recorder{}}
	var err error
	if e.key, err = pack.GenerateKey("ed25519"); err != nil {
		t.Fatal(err)
	}
	pem, err := e.key.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "marketplace.key")
	os.WriteFile(keyFile, pem, 0o600)
	cfg := config.Default().Marketplace
	cfg.Reviewers, cfg.SigningKeyFile = []string{"Reviewer@market.test"}, keyFile
	if maxBytes > 0 {
		cfg.MaxPackageBytes = maxBytes
	}
	svc, err := catalog.New(e.Store, e.Keys, cfg, "http://cp.test", e.mail, e.Log)
	if err != nil {
		t.Fatal(err)
	}
	// The upload and downloads beside the RPCs, as the control plane mounts them.
	mux := http.NewServeMux()
	mux.Handle(catalog.UploadPath, svc.Upload())
	mux.Handle(catalog.DownloadPrefix, svc.Download())
	mux.Handle("/", server.New([]server.Service{svc.Service(e.Options()...)}, e.Keys, nil, e.Registry))
	srv := &http.Server{Handler: mux}
	ln := listen(t)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	e.URL = "http://" + ln.Addr().String()
	e.dev, e.other, e.reviewer = e.account(t, "dev@market.test"), e.account(t, "other@market.test"), e.account(t, "reviewer@market.test")
	return e
}

// account makes a verified account and returns a session of it.
func (e *env) account(t *testing.T, email string) string {
	t.Helper()
	var id string
	if err := e.Owner.QueryRow(t.Context(), `INSERT INTO accounts (email, password_hash, email_verified_at) VALUES ($1, 'x', now()) RETURNING id`, email).Scan(&id); err != nil {
		t.Fatal(err)
	}
	tok, _, err := e.Keys.Issue(auth.Principal{Kind: auth.KindSession, AccountID: id}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (e *env) client(session string) marketplacev1connect.MarketplaceServiceClient {
	return marketplacev1connect.NewMarketplaceServiceClient(http.DefaultClient, e.URL, cptest.Bearer(session))
}

// upload posts a package as session and returns the status and answer.
func (e *env) upload(t *testing.T, session string, body []byte) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.URL+catalog.UploadPath, bytes.NewReader(body))
	if session != "" {
		req.Header.Set("Authorization", "Bearer "+session)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// plugin packs a plugin directory made here: id, version, permissions,
// and extra files.
func plugin(t *testing.T, id, version, permissions string, extra map[string]string) []byte {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"plugin.toml": `id = "` + id + `"
name = "Plugin ` + id + `"
version = "` + version + `"
kind = "stdin"
hooks = ["post_receive"]
command = "run.sh"
network = "none"

[permissions]
` + permissions,
		"README.md": "# " + id + "\n\nTags mail nicely.\n",
		"run.sh":    "#!/bin/sh\ncat >/dev/null\n",
	}
	for k, v := range extra {
		files[k] = v
	}
	for name, content := range files {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := pack.Pack(dir, &buf, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestSubmitReviewPublish: a developer's package is reviewed on upload
// (its planted problems flagged), waits for a reviewer, who approves it:
// then it is countersigned, listed, searchable and downloadable, and its
// download verifies with the marketplace's key. Another developer cannot
// take the id; only reviewers review; a rejection needs a note.
func TestSubmitReviewPublish(t *testing.T) {
	e := start(t, 0)
	ctx := t.Context()
	pkg := plugin(t, "tagger", "1.0.0", "read_headers = true\nwrite_tags = true\n", map[string]string{".hidden/x": "x", "tools/extra.sh": "#!/bin/bash\nrm -rf /\n"})
	code, res := e.upload(t, e.dev, pkg)
	if code != http.StatusCreated || res["state"] != "pending" {
		t.Fatalf("upload: %d %v", code, res)
	}
	codes := map[string]bool{}
	for _, f := range res["findings"].([]any) {
		codes[f.(map[string]any)["code"].(string)+" "+f.(map[string]any)["path"].(string)] = true
	}
	for _, want := range []string{"file.hidden .hidden/x", "file.unexpected_executable tools/extra.sh", "file.shell_script tools/extra.sh", "file.shell_script run.sh"} {
		if !codes[want] {
			t.Errorf("review findings %v lack %s", codes, want)
		}
	}
	if code, res := e.upload(t, e.dev, pkg); code != http.StatusConflict || !strings.Contains(res["error"].(string), "raise the version") {
		t.Errorf("the same version again: %d %v", code, res)
	}
	if code, res := e.upload(t, e.other, plugin(t, "tagger", "2.0.0", "", nil)); code != http.StatusForbidden || !strings.Contains(res["error"].(string), "belongs to another developer") {
		t.Errorf("another developer's upload of the id: %d %v", code, res)
	}
	if code, _ := e.upload(t, "", pkg); code != http.StatusUnauthorized {
		t.Errorf("upload without a session: %d", code)
	}
	tampered := bytes.Clone(pkg)
	tampered[len(tampered)/2] ^= 0xff
	if code, res := e.upload(t, e.dev, tampered); code != http.StatusBadRequest {
		t.Errorf("a damaged package: %d %v", code, res)
	}

	// Not listed before approval.
	list, err := e.client("").ListPlugins(ctx, connect.NewRequest(&marketplacev1.ListPluginsRequest{}))
	if err != nil || len(list.Msg.Plugins) != 0 {
		t.Fatalf("storefront before approval: %v %v", list, err)
	}
	_, err = e.client(e.dev).ListSubmissions(ctx, connect.NewRequest(&marketplacev1.ListSubmissionsRequest{Pending: true}))
	cptest.WantCode(t, "pending list by a developer", err, connect.CodePermissionDenied, "reviewers")
	pending, err := e.client(e.reviewer).ListSubmissions(ctx, connect.NewRequest(&marketplacev1.ListSubmissionsRequest{Pending: true}))
	if err != nil || len(pending.Msg.Submissions) != 1 || pending.Msg.Submissions[0].Developer != "dev@market.test" || len(pending.Msg.Submissions[0].Findings) == 0 {
		t.Fatalf("pending: %v %v", pending, err)
	}
	_, err = e.client(e.other).GetSubmission(ctx, connect.NewRequest(&marketplacev1.GetSubmissionRequest{PluginId: "tagger", Version: "1.0.0"}))
	cptest.WantCode(t, "another developer's submission", err, connect.CodeNotFound, "")
	_, err = e.client(e.dev).ReviewSubmission(ctx, connect.NewRequest(&marketplacev1.ReviewSubmissionRequest{PluginId: "tagger", Version: "1.0.0", Approve: true}))
	cptest.WantCode(t, "self-approval", err, connect.CodePermissionDenied, "reviewers")
	_, err = e.client(e.reviewer).ReviewSubmission(ctx, connect.NewRequest(&marketplacev1.ReviewSubmissionRequest{PluginId: "tagger", Version: "1.0.0"}))
	cptest.WantCode(t, "a rejection without a note", err, connect.CodeInvalidArgument, "note")

	rev, err := e.client(e.reviewer).ReviewSubmission(ctx, connect.NewRequest(&marketplacev1.ReviewSubmissionRequest{PluginId: "tagger", Version: "1.0.0", Approve: true, Note: "scripts read"}))
	if err != nil || rev.Msg.Submission.State != marketplacev1.VersionState_VERSION_STATE_APPROVED {
		t.Fatalf("approve: %v %v", rev, err)
	}
	_, err = e.client(e.reviewer).ReviewSubmission(ctx, connect.NewRequest(&marketplacev1.ReviewSubmissionRequest{PluginId: "tagger", Version: "1.0.0", Note: "again"}))
	cptest.WantCode(t, "a second review", err, connect.CodeFailedPrecondition, "reviewed already")

	for _, q := range []string{"", "TAGS mail", "tagger"} {
		list, err = e.client("").ListPlugins(ctx, connect.NewRequest(&marketplacev1.ListPluginsRequest{Query: q}))
		if err != nil || len(list.Msg.Plugins) != 1 || list.Msg.Plugins[0].LatestVersion != "1.0.0" || list.Msg.Plugins[0].Name != "Plugin tagger" {
			t.Fatalf("storefront %q: %v %v", q, list, err)
		}
	}
	if list, _ := e.client("").ListPlugins(ctx, connect.NewRequest(&marketplacev1.ListPluginsRequest{Query: "tags nothing%"})); len(list.Msg.Plugins) != 0 {
		t.Errorf("a search without a match lists %v", list.Msg.Plugins)
	}
	page, err := e.client("").GetPlugin(ctx, connect.NewRequest(&marketplacev1.GetPluginRequest{PluginId: "tagger"}))
	if err != nil || len(page.Msg.Versions) != 1 || !strings.Contains(page.Msg.Plugin.Description, "Tags mail nicely") || len(page.Msg.Versions[0].Permissions) == 0 {
		t.Fatalf("plugin page: %v %v", page, err)
	}
	v := page.Msg.Versions[0]
	if v.DownloadUrl != "http://cp.test/marketplace/packages/tagger/1.0.0.mairust-plugin" || v.ReviewWorst != "medium" {
		t.Errorf("version %v", v)
	}
	resp, err := http.Get(e.URL + "/marketplace/packages/tagger/1.0.0.mairust-plugin")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("download: %v %v", resp, err)
	}
	signed, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	p, err := pack.Open(bytes.NewReader(signed), pack.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	trust := pack.Trust{Keys: []pack.TrustedKey{{Role: pack.Marketplace, Key: e.key.Public()}}, RequireMarketplace: true}
	if err := p.Verify(trust, time.Now()); err != nil {
		t.Fatalf("the downloaded package does not verify with the marketplace's key: %v", err)
	}

	// A rejected version stays off the storefront.
	if code, res := e.upload(t, e.dev, plugin(t, "tagger", "1.1.0", "read_headers = true\n", nil)); code != http.StatusCreated {
		t.Fatalf("upload 1.1.0: %d %v", code, res)
	}
	rej, err := e.client(e.reviewer).ReviewSubmission(ctx, connect.NewRequest(&marketplacev1.ReviewSubmissionRequest{PluginId: "tagger", Version: "1.1.0", Note: "does nothing"}))
	if err != nil || rej.Msg.Submission.State != marketplacev1.VersionState_VERSION_STATE_REJECTED {
		t.Fatalf("reject: %v %v", rej, err)
	}
	mine, err := e.client(e.dev).ListSubmissions(ctx, connect.NewRequest(&marketplacev1.ListSubmissionsRequest{}))
	if err != nil || len(mine.Msg.Submissions) != 2 || mine.Msg.Submissions[0].ReviewNote != "does nothing" {
		t.Fatalf("the developer's submissions: %v %v", mine, err)
	}
	if resp, _ := http.Get(e.URL + "/marketplace/packages/tagger/1.1.0.mairust-plugin"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("download of a rejected version: %d", resp.StatusCode)
	}
}

// TestUploadLimit: a package over marketplace.max_package_bytes is
// refused, saying so.
func TestUploadLimit(t *testing.T) {
	e := start(t, 1<<20)
	big := plugin(t, "big", "1.0.0", "", map[string]string{"data.bin": string(randomBytes(2 << 20))})
	if code, res := e.upload(t, e.dev, big); code != http.StatusRequestEntityTooLarge || !strings.Contains(res["error"].(string), "larger than 1 MiB") {
		t.Fatalf("a 2 MiB package: %d %v", code, res)
	}
}

// listen opens a loopback listener.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// randomBytes are n bytes that do not compress.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// tenant makes a tenant and returns its id.
func (e *env) tenant(t *testing.T, name string) string {
	t.Helper()
	var id string
	if err := e.Owner.QueryRow(t.Context(), `INSERT INTO tenants (name) VALUES ($1) RETURNING id`, name).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// join makes an account of role in tenant and returns its session.
func (e *env) join(t *testing.T, tenant, email, role string) string {
	t.Helper()
	session := e.account(t, email)
	p, _ := e.Keys.Parse(session)
	if _, err := e.Owner.Exec(t.Context(), `INSERT INTO memberships (tenant_id, account_id, role) VALUES ($1, $2, $3)`, tenant, p.AccountID, role); err != nil {
		t.Fatal(err)
	}
	return session
}

// TestInstallations: a tenant admin installs an approved version (the
// newest by default) once the permissions are accepted; its agents' config
// version moves; a viewer cannot, another tenant's admin sees nothing; an
// uninstall removes it.
func TestInstallations(t *testing.T) {
	e := start(t, 0)
	ctx := t.Context()
	for _, v := range []string{"1.0.0", "1.2.0", "1.10.0"} {
		if code, res := e.upload(t, e.dev, plugin(t, "tagger", v, "read_headers = true\nwrite_tags = true\n", nil)); code != http.StatusCreated {
			t.Fatalf("upload %s: %d %v", v, code, res)
		}
		if v != "1.10.0" { // pending: not installable
			if _, err := e.client(e.reviewer).ReviewSubmission(ctx, connect.NewRequest(&marketplacev1.ReviewSubmissionRequest{PluginId: "tagger", Version: v, Approve: true})); err != nil {
				t.Fatal(err)
			}
		}
	}
	tn := e.tenant(t, "a")
	admin, viewer := e.join(t, tn, "admin@a.test", "admin"), e.join(t, tn, "viewer@a.test", "viewer")
	stranger := e.join(t, e.tenant(t, "b"), "admin@b.test", "admin")
	install := func(session, version string, accepted bool) (*marketplacev1.Installation, error) {
		r, err := e.client(session).InstallPlugin(ctx, connect.NewRequest(&marketplacev1.InstallPluginRequest{TenantId: tn, PluginId: "tagger", Version: version, PermissionsAccepted: accepted}))
		if err != nil {
			return nil, err
		}
		return r.Msg.Installation, nil
	}
	_, err := install(admin, "", false)
	cptest.WantCode(t, "install without accepting", err, connect.CodeFailedPrecondition, "accept these permissions")
	_, err = install(viewer, "", true)
	cptest.WantCode(t, "install by a viewer", err, connect.CodePermissionDenied, "")
	_, err = install(stranger, "", true)
	cptest.WantCode(t, "install by another tenant's admin", err, connect.CodeNotFound, "")
	_, err = install(admin, "1.10.0", true)
	cptest.WantCode(t, "a pending version", err, connect.CodeNotFound, "no approved version 1.10.0")

	var before int64
	e.Owner.QueryRow(ctx, `SELECT coalesce((SELECT version FROM config_versions WHERE tenant_id = $1), 0)`, tn).Scan(&before)
	inst, err := install(admin, "", true)
	if err != nil || inst.Version != "1.2.0" || !inst.Enabled || len(inst.Permissions) == 0 {
		t.Fatalf("install: %v %v", inst, err)
	}
	var after int64
	e.Owner.QueryRow(ctx, `SELECT version FROM config_versions WHERE tenant_id = $1`, tn).Scan(&after)
	if after <= before {
		t.Errorf("config version %d → %d: the agents are not told", before, after)
	}
	if inst, err := install(admin, "1.0.0", true); err != nil || inst.Version != "1.0.0" {
		t.Fatalf("install 1.0.0 over 1.2.0: %v %v", inst, err)
	}
	list, err := e.client(viewer).ListInstallations(ctx, connect.NewRequest(&marketplacev1.ListInstallationsRequest{TenantId: tn}))
	if err != nil || len(list.Msg.Installations) != 1 || list.Msg.Installations[0].Version != "1.0.0" {
		t.Fatalf("installations: %v %v", list, err)
	}
	_, err = e.client(stranger).ListInstallations(ctx, connect.NewRequest(&marketplacev1.ListInstallationsRequest{TenantId: tn}))
	cptest.WantCode(t, "another tenant's list", err, connect.CodeNotFound, "")
	if _, err := e.client(admin).UninstallPlugin(ctx, connect.NewRequest(&marketplacev1.UninstallPluginRequest{TenantId: tn, PluginId: "tagger"})); err != nil {
		t.Fatal(err)
	}
	_, err = e.client(admin).UninstallPlugin(ctx, connect.NewRequest(&marketplacev1.UninstallPluginRequest{TenantId: tn, PluginId: "tagger"}))
	cptest.WantCode(t, "uninstall twice", err, connect.CodeNotFound, "no plugin")
}

// TestRecalls: a reviewer recalls a version; the signed list moves every
// tenant's configuration version, verifies with the marketplace's key, and
// the admins of the tenants that installed it are mailed; a withdrawal
// signs a new, empty list. Only reviewers recall.
func TestRecalls(t *testing.T) {
	e := start(t, 0)
	ctx := t.Context()
	for _, v := range []string{"1.0.0", "1.1.0"} {
		if code, res := e.upload(t, e.dev, plugin(t, "tagger", v, "read_headers = true\n", nil)); code != http.StatusCreated {
			t.Fatalf("upload: %d %v", code, res)
		}
		if _, err := e.client(e.reviewer).ReviewSubmission(ctx, connect.NewRequest(&marketplacev1.ReviewSubmissionRequest{PluginId: "tagger", Version: v, Approve: true})); err != nil {
			t.Fatal(err)
		}
	}
	a, b := e.tenant(t, "a"), e.tenant(t, "b")
	admin := e.join(t, a, "admin@a.test", "admin")
	e.join(t, b, "admin@b.test", "admin")
	if _, err := e.client(admin).InstallPlugin(ctx, connect.NewRequest(&marketplacev1.InstallPluginRequest{TenantId: a, PluginId: "tagger", Version: "1.0.0", PermissionsAccepted: true})); err != nil {
		t.Fatal(err)
	}
	version := func(tenant string) (v int64) {
		e.Owner.QueryRow(ctx, `SELECT coalesce((SELECT version FROM config_versions WHERE tenant_id = $1), 0)`, tenant).Scan(&v)
		return v
	}
	beforeA, beforeB := version(a), version(b)
	_, err := e.client(e.dev).RecallPlugin(ctx, connect.NewRequest(&marketplacev1.RecallPluginRequest{PluginId: "tagger", Reason: "x"}))
	cptest.WantCode(t, "a recall by a developer", err, connect.CodePermissionDenied, "reviewers")
	_, err = e.client(e.reviewer).RecallPlugin(ctx, connect.NewRequest(&marketplacev1.RecallPluginRequest{PluginId: "tagger"}))
	cptest.WantCode(t, "a recall without a reason", err, connect.CodeInvalidArgument, "reason")
	rec, err := e.client(e.reviewer).RecallPlugin(ctx, connect.NewRequest(&marketplacev1.RecallPluginRequest{PluginId: "tagger", Versions: []string{"1.0.0"}, Reason: "sends mail away"}))
	if err != nil || rec.Msg.RecallVersion != 1 {
		t.Fatalf("recall: %v %v", rec, err)
	}
	if version(a) <= beforeA || version(b) <= beforeB {
		t.Errorf("config versions %d→%d and %d→%d: not every tenant's agents are told", beforeA, version(a), beforeB, version(b))
	}
	mails := e.mail.Mails()
	if len(mails) != 1 || mails[0].To != "admin@a.test" || !strings.Contains(mails[0].Body, "sends mail away") || !strings.Contains(mails[0].Subject, "recalled") {
		t.Fatalf("recall mails %+v; want one to the admin of the tenant that installed it", mails)
	}
	list, err := e.client("").ListRecalls(ctx, connect.NewRequest(&marketplacev1.ListRecallsRequest{}))
	if err != nil || len(list.Msg.Recalls) != 1 || list.Msg.RecallVersion != 1 {
		t.Fatalf("recalls: %v %v", list, err)
	}

	// The list as agents get it verifies with the marketplace's key only.
	var sig []byte
	var keyID string
	e.Owner.QueryRow(ctx, `SELECT signature, key_id FROM recall_list`).Scan(&sig, &keyID)
	want := []pack.Recall{{PluginID: "tagger", Version: "1.0.0", Reason: "sends mail away"}}
	trust := pack.Trust{Keys: []pack.TrustedKey{{Role: pack.Marketplace, Key: e.key.Public()}}}
	if err := pack.VerifyRecalls(trust, keyID, sig, 1, want, time.Now()); err != nil {
		t.Fatalf("the signed list: %v", err)
	}
	if err := pack.VerifyRecalls(trust, keyID, sig, 1, nil, time.Now()); err == nil {
		t.Fatal("a list stripped of its recall verifies")
	}
	if err := pack.VerifyRecalls(trust, keyID, sig, 0, want, time.Now()); err == nil {
		t.Fatal("a list with an older version verifies")
	}

	w, err := e.client(e.reviewer).WithdrawRecall(ctx, connect.NewRequest(&marketplacev1.WithdrawRecallRequest{Id: rec.Msg.Recall.Id}))
	if err != nil || w.Msg.RecallVersion != 2 {
		t.Fatalf("withdraw: %v %v", w, err)
	}
	e.Owner.QueryRow(ctx, `SELECT signature, key_id FROM recall_list`).Scan(&sig, &keyID)
	if err := pack.VerifyRecalls(trust, keyID, sig, 2, nil, time.Now()); err != nil {
		t.Fatalf("the list after the withdrawal: %v", err)
	}
	_, err = e.client(e.reviewer).WithdrawRecall(ctx, connect.NewRequest(&marketplacev1.WithdrawRecallRequest{Id: rec.Msg.Recall.Id}))
	cptest.WantCode(t, "withdraw twice", err, connect.CodeNotFound, "no recall")
}

// TestKeys: the agents get the signing key and the previous ones with
// their end dates (rotation).
func TestKeys(t *testing.T) {
	e := &env{Env: cptest.New(t, "cpkeys")}
	cur, _ := pack.GenerateKey("ed25519")
	old, _ := pack.GenerateKey("ed25519")
	dir := t.TempDir()
	curPEM, _ := cur.MarshalPEM()
	oldPEM, _ := old.Public().MarshalPEM()
	os.WriteFile(filepath.Join(dir, "cur.key"), curPEM, 0o600)
	os.WriteFile(filepath.Join(dir, "old.pub"), oldPEM, 0o644)
	cfg := config.Default().Marketplace
	cfg.SigningKeyFile = filepath.Join(dir, "cur.key")
	cfg.PreviousKeys = []config.TrustedKey{{PublicKeyFile: filepath.Join(dir, "old.pub"), NotAfter: "2027-06-30T00:00:00Z"}}
	svc, err := catalog.New(e.Store, e.Keys, cfg, "http://cp.test", nil, e.Log)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := svc.Keys()
	if err != nil || len(keys) != 2 || keys[0].KeyId != cur.KeyID() || keys[0].NotAfter != nil ||
		keys[1].KeyId != old.KeyID() || keys[1].NotAfter.AsTime() != time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC) {
		t.Fatalf("keys %v %v", keys, err)
	}
	cfg.PreviousKeys[0].PublicKeyFile = filepath.Join(dir, "missing.pub")
	if svc, _ := catalog.New(e.Store, e.Keys, cfg, "", nil, e.Log); svc != nil {
		if _, err := svc.Keys(); err == nil || !strings.Contains(err.Error(), "marketplace.previous_keys[0]") {
			t.Fatalf("a missing previous key: %v", err)
		}
	}
}
