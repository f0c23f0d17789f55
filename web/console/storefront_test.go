package console_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/chromedp/chromedp"

	"github.com/mairust/mairust/controlplane/auth"
	"github.com/mairust/mairust/controlplane/cptest"
	"github.com/mairust/mairust/marketplace/catalog"
	"github.com/mairust/mairust/marketplace/pack"
	marketplacev1 "github.com/mairust/mairust/proto/mairust/marketplace/v1"
	"github.com/mairust/mairust/proto/mairust/marketplace/v1/marketplacev1connect"
)

// session makes a verified account of email and returns a session of it.
func (c *cp) session(t *testing.T, email string) string {
	t.Helper()
	var id string
	if err := c.env.Owner.QueryRow(t.Context(), `INSERT INTO accounts (email, password_hash, email_verified_at) VALUES ($1, 'x', now()) RETURNING id`, email).Scan(&id); err != nil {
		t.Fatal(err)
	}
	tok, _, err := c.env.Keys.Issue(auth.Principal{Kind: auth.KindSession, AccountID: id}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// pluginPackage packs a plugin directory made here of files (path:
// content; the .sh files executable), unsigned, as a developer would
// upload it.
func pluginPackage(t *testing.T, files map[string]string) []byte {
	t.Helper()
	dir := t.TempDir()
	for file, content := range files {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(file, ".sh") {
			mode = 0o755
		}
		path := filepath.Join(dir, filepath.FromSlash(file))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	var pkg bytes.Buffer
	if _, err := pack.Pack(dir, &pkg, nil); err != nil {
		t.Fatal(err)
	}
	return pkg.Bytes()
}

// publish packs a plugin directory made here (id, name, version, the
// permissions table's lines, README.md), uploads it as the developer's
// session dev and approves it as reviewer, the reviewer's session.
func (c *cp) publish(t *testing.T, dev, reviewer, id, name, version, permissions, readme string) {
	t.Helper()
	pkg := bytes.NewReader(pluginPackage(t, map[string]string{
		"plugin.toml": `id = "` + id + `"
name = "` + name + `"
version = "` + version + `"
kind = "stdin"
hooks = ["post_receive"]
command = "run.sh"
network = "none"

[permissions]
` + permissions,
		"README.md": readme,
		"run.sh":    "#!/bin/sh\ncat >/dev/null\n",
	}))
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, c.url+catalog.UploadPath, pkg)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+dev)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var res catalog.UploadResult
	json.NewDecoder(resp.Body).Decode(&res)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || res.State != "pending" {
		t.Fatalf("upload of %s %s: %d %+v", id, version, resp.StatusCode, res)
	}
	client := marketplacev1connect.NewMarketplaceServiceClient(http.DefaultClient, c.url, cptest.Bearer(reviewer))
	if _, err := client.ReviewSubmission(t.Context(), connect.NewRequest(&marketplacev1.ReviewSubmissionRequest{
		PluginId: id, Version: version, Approve: true, Note: "read"})); err != nil {
		t.Fatalf("approving %s %s: %v", id, version, err)
	}
}

// TestStorefrontInChromium goes through the plugin store in a real
// browser: without logging in, browse the approved plugins, search them
// and open a plugin's page (its README as text, the permissions of its
// newest version in plain words, its versions with their downloads);
// then, signed in with a tenant of their own, the person installs it
// (refused until they accept its permissions), sees it in the tenant's
// Plugins card and uninstalls it there.
func TestStorefrontInChromium(t *testing.T) {
	c := marketControlPlane(t)
	dev, reviewer := c.session(t, "dev@market.test"), c.session(t, reviewerEmail)
	const id = "acme.spam-tagger" // with dots: its page is /console/store/acme.spam-tagger
	readme := "# Spam tagger\n\nTags spam nicely, with `scores`.\n\n<img src=x onerror=\"document.title='pwned'\">\n\n" +
		"## Settings\n\n- **threshold**: a score\n- see [the docs](https://example.test/docs)\n"
	c.publish(t, dev, reviewer, id, "Spam tagger", "1.0.0", "read_headers = true\n", readme)
	c.publish(t, dev, reviewer, id, "Spam tagger", "1.1.0", "read_headers = true\nread_body = \"preview\"\nwrite_tags = true\n", readme)
	c.publish(t, dev, reviewer, "archiver", "Archiver", "0.1.0", "read_headers = true\n", "# Archiver\n\nKeeps a copy of mail.\n")

	b := browser{t, chromium(t)}
	b.do("opening the store without logging in",
		chromedp.Navigate(c.url+"/console/store"),
		chromedp.WaitVisible(css(`#store-list li[data-plugin="archiver"]`)),
		chromedp.WaitVisible(css(`#store-list li[data-plugin="`+id+`"]`)),
	)
	card := b.text(`#store-list li[data-plugin="` + id + `"]`)
	for _, want := range []string{"Spam tagger", "1.1.0", "dev@market.test", "Tags spam nicely, with scores."} {
		if !strings.Contains(card, want) {
			t.Errorf("the plugin's card shows %q, want %q in it", card, want)
		}
	}
	if !eval[bool](b, `!document.getElementById('nav-login').hidden && document.getElementById('logout').hidden`) {
		t.Error("without a session the header offers no Log in or offers Log out")
	}

	b.do("searching",
		chromedp.SendKeys(css(`#store-search input[name=q]`), "SPAM tags"),
		chromedp.Click(css(`#store-search button[type=submit]`)),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll('#store-list li').length === 1 && location.search === '?q=SPAM%20tags'`),
	)
	if got := eval[[]string](b, `[...document.querySelectorAll('#store-list li')].map((x) => x.dataset.plugin)`); strings.Join(got, " ") != id {
		t.Errorf("searching lists %q, want only %s", got, id)
	}
	b.do("searching for nothing there",
		chromedp.SendKeys(css(`#store-search input[name=q]`), " nothing"),
		chromedp.Click(css(`#store-search button[type=submit]`)),
		chromedp.WaitVisible(css(`#store-empty`)),
	)
	if n := eval[int](b, `document.querySelectorAll('#store-list li').length`); n != 0 {
		t.Errorf("a search without a match lists %d plugins", n)
	}
	b.do("going back to the search and opening the plugin's page",
		chromedp.Evaluate[chromedp.Void](`history.back()`),
		chromedp.WaitVisible(css(`#store-list li[data-plugin="`+id+`"]`)),
		chromedp.Click(css(`#store-list li[data-plugin="`+id+`"] a`)),
		chromedp.WaitVisible(css(`#plugin-page`)),
	)
	if got := eval[string](b, `location.pathname`); got != "/console/store/"+id {
		t.Errorf("the plugin's page is at %s", got)
	}
	for sel, want := range map[string]string{`#plugin-name`: "Spam tagger", `#plugin-id`: id, `#plugin-developer`: "by dev@market.test",
		`#plugin-readme h3`: "Spam tagger", `#plugin-readme code`: "scores", `#plugin-readme strong`: "threshold"} {
		if got := b.text(sel); got != want {
			t.Errorf("%s shows %q, want %q", sel, got, want)
		}
	}
	if got := b.text(`#plugin-readme`); !strings.Contains(got, `<img src=x onerror="document.title='pwned'">`) || !strings.Contains(got, "the docs (https://example.test/docs)") {
		t.Errorf("the README shows %q, want its markup as text and its link's address", got)
	}
	if eval[int](b, `document.querySelectorAll('#plugin-readme img, #plugin-readme a, #plugin-readme [onerror]').length`) != 0 {
		t.Error("the README's markup became elements")
	}
	perms := b.text(`section[aria-labelledby="h-perms"]`)
	for _, want := range []string{"Version 1.1.0", "This plugin may:", "read the headers of messages", "read the start of message bodies", "tag messages"} {
		if !strings.Contains(perms, want) {
			t.Errorf("the permissions show %q, want %q in it", perms, want)
		}
	}
	if got := eval[[]string](b, `[...document.querySelectorAll('#plugin-versions tbody tr')].map((x) => x.dataset.version)`); strings.Join(got, " ") != "1.1.0 1.0.0" {
		t.Errorf("the versions listed are %q, want 1.1.0 and 1.0.0", got)
	}
	if got := b.text(`#plugin-versions tbody tr[data-version="1.1.0"] td:nth-child(4)`); !strings.Contains(got, "finding") {
		t.Errorf("the review of 1.1.0 shows %q", got)
	}
	download := eval[string](b, `document.querySelector('#plugin-versions tr[data-version="1.1.0"] a').href`)
	if want := c.url + catalog.DownloadPath(id, "1.1.0"); download != want {
		t.Errorf("the download link is %q, want %q", download, want)
	}
	resp, err := http.Get(download)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("downloading %s: %s", download, resp.Status)
	}
	if !eval[bool](b, `!document.getElementById('install-anon').hidden && document.getElementById('install-form').hidden`) {
		t.Error("without a session the page does not ask to log in to install")
	}

	tenant := b.newTenant(c, "owner@example.test", "correct horse battery", "Example")
	b.do("logging out and opening the plugin's page",
		chromedp.Click(css(`#logout`)),
		chromedp.WaitVisible(css(`#login-form`)),
		chromedp.Navigate(c.url+"/console/store/"+id),
		chromedp.WaitVisible(css(`#install-anon`)),
	)
	b.do("logging in to install, back on the plugin's page",
		chromedp.Click(css(`#install-login`)),
		chromedp.WaitVisible(css(`#login-form`)),
		chromedp.SendKeys(css(`#login-form input[name=email]`), "owner@example.test"),
		chromedp.SendKeys(css(`#login-form input[name=password]`), "correct horse battery"),
		chromedp.Click(css(`#login-form button[type=submit]`)),
		chromedp.WaitVisible(css(`#install-form`)),
	)
	if got := eval[string](b, `location.pathname`); got != "/console/store/"+id {
		t.Errorf("after logging in to install the page is at %s", got)
	}
	if got := eval[[]string](b, `[...document.querySelectorAll('#install-form select[name=tenant] option')].map((o) => o.value + ' ' + o.textContent)`); len(got) != 1 || got[0] != tenant+" Example (owner)" {
		t.Errorf("the tenants offered are %q, want only %s Example (owner)", got, tenant)
	}
	if got := b.text(`#install-perms`); !strings.Contains(got, "read the start of message bodies") {
		t.Errorf("the install form shows the permissions %q", got)
	}
	b.do("installing without accepting the permissions",
		chromedp.Click(css(`#install-form button[type=submit]`)),
		chromedp.WaitVisible(css(`#install-error:not(:empty)`)),
	)
	if got := b.text(`#install-error`); !strings.Contains(got, "I accept these permissions") {
		t.Errorf("installing without accepting shows %q", got)
	}
	if !eval[bool](b, `document.getElementById('install-done').hidden`) {
		t.Error("installing without accepting says it installed")
	}
	b.do("accepting the permissions and installing",
		chromedp.Click(css(`#install-form input[name=accept]`)),
		chromedp.Click(css(`#install-form button[type=submit]`)),
		chromedp.WaitVisible(css(`#install-done`)),
	)
	if got, want := b.text(`#install-done`), "Installed 1.1.0 — your agents install it within seconds."; got != want {
		t.Errorf("after installing the page says %q, want %q", got, want)
	}
	if got := b.text(`#install-error`); got != "" {
		t.Errorf("after installing the error says %q", got)
	}

	b.do("seeing it on the tenant's page",
		chromedp.Click(css(`#install-open`)),
		chromedp.WaitVisible(css(`#installations tbody tr[data-plugin="`+id+`"]`)),
	)
	if got := eval[string](b, `location.pathname`); got != "/console/tenants/"+tenant {
		t.Errorf("the tenant's link goes to %s", got)
	}
	if got, want := b.text(`#installations tbody tr[data-plugin="`+id+`"]`), id+"\t1.1.0\tenabled\tUninstall"; got != want {
		t.Errorf("the Plugins card shows %q, want %q", got, want)
	}
	b.do("uninstalling it",
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.Click(css(`#installations tr[data-plugin="`+id+`"] button.uninstall`)),
		chromedp.WaitVisible(css(`#installations-empty`)),
	)
	if n := eval[int](b, `document.querySelectorAll('#installations tbody tr').length`); n != 0 {
		t.Errorf("after uninstalling the Plugins card lists %d plugins", n)
	}
	b.do("going to the store from the header",
		chromedp.Click(css(`#nav-store`)),
		chromedp.WaitVisible(css(`#store-list li[data-plugin="archiver"]`)),
	)
	if !eval[bool](b, `document.getElementById('nav-login').hidden && !document.getElementById('logout').hidden`) {
		t.Error("signed in, the header offers Log in or no Log out")
	}
}
