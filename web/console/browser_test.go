package console_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mairust/mairust/agent/link"
	"github.com/mairust/mairust/controlplane/accounts"
	"github.com/mairust/mairust/controlplane/agents"
	"github.com/mairust/mairust/controlplane/cptest"
	"github.com/mairust/mairust/controlplane/mailer"
	"github.com/mairust/mairust/controlplane/server"
	"github.com/mairust/mairust/controlplane/tenants"
	"github.com/mairust/mairust/web/console"
)

// controlPlane serves the console's services on a fresh database with the
// console mounted as the control plane mounts it, on loopback; its mail
// goes to the returned Recorder.
func controlPlane(t *testing.T) (url string, mail *mailer.Recorder) {
	t.Helper()
	e := cptest.New(t, "cpconsole")
	mail = &mailer.Recorder{}
	ag, err := agents.New(e.Store, e.Keys, e.Config, e.Log)
	if err != nil {
		t.Fatal(err)
	}
	opts := e.Options()
	api := server.New([]server.Service{
		accounts.New(e.Store, e.Keys, e.Config, mail, e.Log).Service(opts...),
		tenants.New(e.Store, e.Config, mail, e.Log).Service(opts...),
		ag.Service(opts...),
	}, e.Keys, ag.Check, e.Registry)
	mux := http.NewServeMux()
	mux.Handle("/", api)
	mux.Handle(console.Prefix, console.Handler())
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = server.HTTPServer(mux)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL, mail
}

// chromium starts headless Chromium on a phone-width screen and returns
// a context bounding the test's actions to a minute.
func chromium(t *testing.T) context.Context {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: run scripts/deps.sh test")
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true), chromedp.WindowSize(390, 844))...)
	browser, cancelBrowser := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancelBrowser(); cancelAlloc() })
	if err := chromedp.Do(browser); err != nil { // starts it, outside the bound below
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(browser, time.Minute)
	t.Cleanup(cancel)
	return ctx
}

var verifyLink = regexp.MustCompile(`/console/verify\?token=[A-Za-z0-9_-]+`)

// TestConsoleInChromium goes the console's first steps in a real browser,
// typing and clicking: sign up, verify through the mailed link, log in,
// create a tenant, add a domain (a bad name first) and see its DNS
// records, create an enrollment token, and see an agent enrolled with it
// appear in the list without reloading the page.
func TestConsoleInChromium(t *testing.T) {
	base, mail := controlPlane(t)
	ctx := chromium(t)
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			page, _ := chromedp.Run(context.WithoutCancel(ctx), chromedp.Text(css(`body`)))
			t.Fatalf("browser, %s: %v\npage: %s", what, err, page)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(css(sel)))
		if err != nil {
			t.Fatalf("browser, reading %s: %v", sel, err)
		}
		return s
	}
	const email, password, badDomain = "owner@example.test", "correct horse battery", "not a domain"

	do("signing up",
		chromedp.Navigate(base+"/console/"),
		chromedp.WaitVisible(css(`#login-form`)),
		chromedp.Click(css(`#login-form a[href="/console/signup"]`)),
		chromedp.WaitVisible(css(`#signup-form`)),
		chromedp.SendKeys(css(`#signup-form input[name=email]`), email),
		chromedp.SendKeys(css(`#signup-form input[name=password]`), password),
		chromedp.Click(css(`#signup-form button[type=submit]`)),
		chromedp.WaitVisible(css(`#signup-done`)),
	)
	if got := text(`#signup-done`); !strings.Contains(got, email) {
		t.Errorf("after signing up the page says %q", got)
	}
	mails := mail.Mails()
	if len(mails) != 1 || mails[0].To != email || !verifyLink.MatchString(mails[0].Body) {
		t.Fatalf("mail after signing up: %+v", mails)
	}
	do("verifying and logging in",
		chromedp.Navigate(base+verifyLink.FindString(mails[0].Body)),
		chromedp.WaitVisible(css(`#verify-login`)),
		chromedp.Click(css(`#verify-login`)),
		chromedp.WaitVisible(css(`#login-form`)),
		chromedp.SendKeys(css(`#login-form input[name=password]`), password), // the address is filled in
		chromedp.Click(css(`#login-form button[type=submit]`)),
		chromedp.WaitVisible(css(`#tenant-form`)),
	)
	if got := text(`#who`); got != email {
		t.Errorf("logged in as %q", got)
	}
	do("creating a tenant and adding a domain",
		chromedp.SendKeys(css(`#tenant-form input[name=name]`), "Example"),
		chromedp.Click(css(`#tenant-form button[type=submit]`)),
		chromedp.WaitVisible(css(`#domain-form`)),
		chromedp.Poll[chromedp.Void](`document.getElementById('tenant-name').textContent === 'Example'`),
		chromedp.SendKeys(css(`#domain-form input[name=name]`), badDomain),
		chromedp.Click(css(`#domain-form button[type=submit]`)),
		chromedp.WaitVisible(css(`#domain-error:not(:empty)`)),
	)
	if got := text(`#domain-error`); !strings.Contains(got, "name:") {
		t.Errorf("a bad domain name shows %q, want the server's message", got)
	}
	do("seeing the DNS records",
		chromedp.SendKeys(css(`#domain-form input[name=name]`), strings.Repeat("\b", len(badDomain))+"example.test"),
		chromedp.Click(css(`#domain-form button[type=submit]`)),
		chromedp.Click(css(`#domains tr[data-domain="example.test"] button.dns`)),
		chromedp.WaitVisible(css(`#dns-records tbody tr`)),
	)
	if got := text(`#domain-error`); got != "" {
		t.Errorf("after adding the domain the error says %q", got)
	}
	for purpose, want := range map[string]string{"mx": "MX", "spf": "v=spf1", "dmarc": "v=DMARC1"} {
		if got := text(`#dns-records tr[data-purpose="` + purpose + `"]`); !strings.Contains(got, want) {
			t.Errorf("DNS record %s shows %q, want %q in it", purpose, got, want)
		}
	}
	do("creating an enrollment token",
		chromedp.Click(css(`#token-create`)),
		chromedp.WaitVisible(css(`#token-box`)),
	)
	token := text(`#token`)
	if !strings.HasPrefix(token, "mre_") {
		t.Fatalf("the token shown is %q", token)
	}
	if got, want := text(`#enroll-cmd`), "mairust agent enroll --control-plane "+base+" --token "+token; got != want {
		t.Errorf("the command shown is %q, want %q", got, want)
	}
	if _, err := (link.Link{DataDir: t.TempDir()}).Enroll(ctx, base, token, "mx1.example.test", "9.9.9"); err != nil {
		t.Fatal(err)
	}
	do("seeing the agent listed",
		chromedp.WaitVisible(css(`#agents tbody tr`), chromedp.RetryInterval(100*time.Millisecond)),
	)
	if got := text(`#agents tbody tr`); !strings.Contains(got, "mx1.example.test") || !strings.Contains(got, "9.9.9") {
		t.Errorf("the agents list shows %q", got)
	}
	if got := text(`#agents tbody tr .status`); got != "up" {
		t.Errorf("the agent's status shows %q, want up", got)
	}
	if got := text(`#token`); got != token { // the page was not loaded again
		t.Errorf("after the agent appeared the token shows %q", got)
	}
}
