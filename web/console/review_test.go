package console_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// logIn logs in as email from the login form, typing and clicking; the
// list of tenants is left shown.
func (b browser) logIn(email, password string) {
	b.t.Helper()
	b.do("logging in as "+email,
		chromedp.WaitVisible(css(`#login-form`)),
		chromedp.Evaluate[chromedp.Void](`document.getElementById('login-form').email.value = ''`),
		chromedp.SendKeys(css(`#login-form input[name=email]`), email),
		chromedp.SendKeys(css(`#login-form input[name=password]`), password),
		chromedp.Click(css(`#login-form button[type=submit]`)),
		chromedp.WaitVisible(css(`#tenant-form`)),
	)
}

// TestReviewInChromium goes through a plugin's submission and review in
// a real browser: a developer signs up, submits a package on My plugins
// and sees it pending with the automatic review's findings (a second
// upload of the same version shows the server's refusal), then in the
// list with its details; the reviewer, an account signed up here too,
// finds the Review link in the header, sees the submission with its
// permissions and findings grouped by severity, is told by the server
// that a rejection needs a note, and approves it: the store lists the
// plugin, and the developer sees it approved with the reviewer's note.
// The developer gets no Review link and no review page.
func TestReviewInChromium(t *testing.T) {
	c := marketControlPlane(t)
	const (
		id, password = "acme.hello", "correct horse battery"
		dev          = "dev@market.test"
		note         = "Read it: the network access is for the greeting service."
	)
	file := filepath.Join(t.TempDir(), id+"-1.0.0.mairust-plugin")
	pkg := pluginPackage(t, map[string]string{
		"plugin.toml": `id = "` + id + `"
name = "Hello"
version = "1.0.0"
min_mairust_version = "0.1.0"
kind = "stdin"
hooks = ["post_receive"]
command = "run.sh"
network = "unlimited"

[permissions]
read_headers = true
write_tags = true
`,
		"README.md":      "# Hello\n\nSays <b>hello</b> to every message.\n",
		"run.sh":         "#!/bin/sh\ncat >/dev/null\n",
		"tools/extra.sh": "#!/bin/sh\necho extra\n",
	})
	if err := os.WriteFile(file, pkg, 0o644); err != nil {
		t.Fatal(err)
	}
	item := `#submissions li[data-plugin="` + id + `"][data-version="1.0.0"]`

	b := browser{t, chromium(t)}
	b.signUp(c, dev, password)
	b.do("opening My plugins",
		chromedp.WaitVisible(css(`#nav-developer`)),
		chromedp.Click(css(`#nav-developer`)),
		chromedp.WaitVisible(css(`#upload-form`)),
		chromedp.WaitVisible(css(`#submissions-empty`)),
	)
	if got := eval[string](b, `location.pathname`); got != "/console/developer" {
		t.Errorf("My plugins is at %s", got)
	}
	b.do("submitting the package",
		chromedp.SetUploadFiles(css(`#upload-form input[name=package]`), []string{file}),
		chromedp.Click(css(`#upload-form button[type=submit]`)),
		chromedp.WaitVisible(css(`#upload-done`)),
	)
	if got, want := b.text(`#upload-state`), "Submitted "+id+" 1.0.0: pending review."; got != want {
		t.Errorf("after submitting the page says %q, want %q", got, want)
	}
	if got := eval[[]string](b, `[...document.querySelectorAll('#upload-findings section')].map((s) => s.dataset.severity)`); strings.Join(got, " ") != "high medium info" {
		t.Errorf("the findings are grouped as %q, want high, medium, info", got)
	}
	if got := b.text(`#upload-findings li[data-code="file.shell_script"]`); !strings.Contains(got, "run.sh") || !strings.Contains(got, "is a shell script (sh): read it") {
		t.Errorf("the shell script's finding shows %q", got)
	}
	if got := b.text(`#upload-findings section[data-severity="high"] h4`); got != "Severity high (1)" {
		t.Errorf("the high findings' heading is %q", got)
	}
	b.do("seeing it in the list", chromedp.WaitVisible(css(item)))
	if got := b.text(item); !strings.Contains(got, id) || !strings.Contains(got, "pending review") || !strings.Contains(got, "submitted ") {
		t.Errorf("the submission is listed as %q", got)
	}
	b.do("submitting the same version again",
		chromedp.SetUploadFiles(css(`#upload-form input[name=package]`), []string{file}),
		chromedp.Click(css(`#upload-form button[type=submit]`)),
		chromedp.WaitVisible(css(`#upload-error:not(:empty)`)),
	)
	if got := b.text(`#upload-error`); !strings.Contains(got, "was submitted already") {
		t.Errorf("a second upload of 1.0.0 shows %q, want the server's error", got)
	}
	if !eval[bool](b, `document.getElementById('upload-done').hidden`) {
		t.Error("after a refused upload the page still shows the last one's result")
	}
	b.do("opening the submission's details",
		chromedp.Click(css(item+` button.details-toggle`)),
		chromedp.WaitVisible(css(item+` .details li[data-code="permissions.network"]`)),
	)
	details := b.text(item + ` .details`)
	for _, want := range []string{"tools/extra.sh", "read the headers of messages", "tag messages", "Needs MaiRust: 0.1.0"} {
		if !strings.Contains(details, want) {
			t.Errorf("the details show %q, want %q in it", details, want)
		}
	}
	b.do("closing the details",
		chromedp.Click(css(item+` button.details-toggle`)),
		chromedp.WaitNotVisible(css(item+` .details`)),
	)
	b.do("opening the review page as a developer",
		chromedp.Navigate(c.url+"/console/review"),
		chromedp.WaitVisible(css(`#review-error:not(:empty)`)),
	)
	if got := b.text(`#review-error`); !strings.Contains(got, "only the marketplace's reviewers") {
		t.Errorf("the review page shows a developer %q, want the server's refusal", got)
	}
	if !eval[bool](b, `document.getElementById('nav-review').hidden && !document.getElementById('nav-developer').hidden`) {
		t.Error("a developer sees the Review link or no My plugins link")
	}

	b.do("logging out", chromedp.Click(css(`#logout`)), chromedp.WaitVisible(css(`#login-form`)))
	if !eval[bool](b, `document.getElementById('nav-review').hidden && document.getElementById('nav-developer').hidden`) {
		t.Error("logged out, the header shows My plugins or Review")
	}
	b.signUp(c, reviewerEmail, password)
	review := `#review-list li[data-plugin="` + id + `"][data-version="1.0.0"]`
	b.do("opening the review page from the header",
		chromedp.WaitVisible(css(`#nav-review`)),
		chromedp.Click(css(`#nav-review`)),
		chromedp.WaitVisible(css(review)),
	)
	if got := eval[string](b, `location.pathname`); got != "/console/review" {
		t.Errorf("the review page is at %s", got)
	}
	text := b.text(review)
	for _, want := range []string{id, "1.0.0", "Developer", dev, "Needs MaiRust", "0.1.0", "read the headers of messages", "tag messages",
		"asks for unlimited network access", "tools/extra.sh"} {
		if !strings.Contains(text, want) {
			t.Errorf("the submission shows %q, want %q in it", text, want)
		}
	}
	if got := eval[[]string](b, `[...document.querySelectorAll('`+review+` .findings section')].map((s) => s.className)`); strings.Join(got, ",") != "sev sev-high,sev sev-medium,sev sev-info" {
		t.Errorf("the findings are grouped as %q, want high, medium, info marked", got)
	}
	b.do("rejecting without a note",
		chromedp.Click(css(review+` button.reject`)),
		chromedp.WaitVisible(css(review+` .error:not(:empty)`)),
	)
	if got := b.text(review + ` .error`); !strings.Contains(got, "say why the submission is rejected") {
		t.Errorf("rejecting without a note shows %q, want the server's message", got)
	}
	b.do("writing a note and switching the language",
		chromedp.SendKeys(css(review+` textarea`), note),
		chromedp.Click(css(`#lang`)),
		chromedp.Poll[chromedp.Void](`document.querySelector('`+review+` button.approve')?.textContent === '承認'`),
	)
	if got := eval[string](b, `document.querySelector('`+review+` textarea').value`); got != note {
		t.Errorf("after switching the language the note is %q", got)
	}
	b.do("switching back and approving",
		chromedp.Click(css(`#lang`)),
		chromedp.Poll[chromedp.Void](`document.querySelector('`+review+` button.approve')?.textContent === 'Approve'`),
		chromedp.Click(css(review+` button.approve`)),
		chromedp.WaitVisible(css(`#review-done`)),
		chromedp.WaitNotPresent(css(review)),
		chromedp.WaitVisible(css(`#review-empty`)),
	)
	if got, want := b.text(`#review-done`), "Approved "+id+" 1.0.0: the store lists it now."; got != want {
		t.Errorf("after approving the page says %q, want %q", got, want)
	}
	b.do("finding it in the store",
		chromedp.Click(css(`#nav-store`)),
		chromedp.WaitVisible(css(`#store-list li[data-plugin="`+id+`"]`)),
	)

	b.do("logging out", chromedp.Click(css(`#logout`)))
	b.logIn(dev, password)
	b.do("seeing the decision in My plugins",
		chromedp.Click(css(`#nav-developer`)),
		chromedp.WaitVisible(css(item+`[data-state="approved"]`)),
	)
	if got := b.text(item); !strings.Contains(got, "approved") || !strings.Contains(got, "Reviewer’s note: "+note) || !strings.Contains(got, "reviewed ") {
		t.Errorf("the approved submission is listed as %q", got)
	}
}
