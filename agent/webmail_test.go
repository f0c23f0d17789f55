package agent_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mairust/mairust/agent/plugins"
)

// browser starts headless Chromium (Debian's chromium) for one test.
func browser(t *testing.T) context.Context {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: run scripts/deps.sh test (apt-get install chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(390, 844), // a phone-width screen
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	// The first Run starts the browser; its context must not carry a
	// timeout (chromedp would stop the browser with it), so start it here
	// and bound the test's actions with a derived context.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	bounded, cancel := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancel)
	return bounded
}

// TestWebmailInChromium logs in with a real browser on a phone-width
// screen, opens a message delivered over SMTP during the test, sees its
// Japanese subject, and deletes it.
func TestWebmailInChromium(t *testing.T) {
	cfgPath, _, pool := setup(t, "")
	p := startAgent(t, cfgPath)
	if err := sendOne(p.smtp, "webmail", "=?UTF-8?B?5pel5pys6Kqe44Gu5Lu25ZCN?="); err != nil {
		t.Fatal(err)
	}
	ctx := browser(t)
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	err := chromedp.Do(ctx,
		chromedp.Navigate("http://"+p.api+"/"),
		chromedp.WaitVisible(css(`#login-form`)),
		chromedp.SendKeys(css(`#login-form input[name=address]`), "alice@example.test"),
		chromedp.SendKeys(css(`#login-form input[name=password]`), "wrong password"),
		chromedp.Click(css(`#login-form button[type=submit]`)),
		chromedp.WaitVisible(css(`#login-error:not(:empty)`)),
		chromedp.SetValue(css(`#login-form input[name=password]`), "pw-alice@example.test"),
		chromedp.Click(css(`#login-form button[type=submit]`)),
		chromedp.WaitVisible(css(`#messages li`)),
	)
	if err != nil {
		t.Fatalf("browser, signing in: %v\n%s", err, p.logs())
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(css(sel)))
		if err != nil {
			t.Fatalf("browser, reading %s: %v", sel, err)
		}
		return s
	}
	if got := text(`#messages li .subj`); got != "日本語の件名" {
		t.Fatalf("list shows subject %q, want 日本語の件名", got)
	}
	if err := chromedp.Do(ctx, chromedp.Click(css(`#messages li`)), chromedp.WaitVisible(css(`#reader`))); err != nil {
		t.Fatalf("browser, opening the message: %v", err)
	}
	if got, body := text(`#r-subject`), text(`#r-text`); got != "日本語の件名" || !strings.Contains(body, "crash test body line") {
		t.Fatalf("reader shows subject %q body %q", got, body)
	}
	if got := text(`#r-spam`); !strings.HasPrefix(got, "Spam score: ") {
		t.Fatalf("reader shows spam line %q, want the built-in rules' score", got)
	}
	screenshot(t, ctx, "webmail-reader.png")
	if err := chromedp.Do(ctx, chromedp.Click(css(`#delete`)), chromedp.WaitVisible(css(`#empty`))); err != nil {
		t.Fatalf("browser, deleting: %v", err)
	}
	var deleted bool
	pool.QueryRow(context.Background(), `SELECT deleted_at IS NOT NULL FROM messages WHERE message_id = 'webmail@remote.test'`).Scan(&deleted)
	if !deleted {
		t.Fatal("the message deleted in the browser is not marked deleted")
	}
}

// screenshot saves the page under MAIRUST_SCREENSHOTS when that is set, for
// a person to look at.
func screenshot(t *testing.T, ctx context.Context, name string) {
	dir := os.Getenv("MAIRUST_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Logf("screenshot: %v", err)
		return
	}
	os.WriteFile(filepath.Join(dir, name), png, 0o644)
}

// TestAdminPagesInChromium: an admin sees the tenant's domains, users and
// the log of sign-ins, adds a domain from the page, and disables the
// installed plugin.
func TestAdminPagesInChromium(t *testing.T) {
	// The page loads every admin list at once, again after each action:
	// more than the default admin burst from one address in this test.
	cfgPath, dataDir, pool := setup(t, "ratelimit:\n  admin_ip_per_minute: 1000\n")
	if _, err := pool.Exec(context.Background(), `UPDATE mail_users SET is_admin = true WHERE address = 'alice@example.test'`); err != nil {
		t.Fatal(err)
	}
	if _, err := plugins.Install(context.Background(), pool, filepath.Join("plugins", "examples", "subject-tagger"), filepath.Join(dataDir, "plugin-files"), plugins.Options{}); err != nil {
		t.Fatal(err)
	}
	p := startAgent(t, cfgPath)
	ctx := browser(t)
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	err := chromedp.Do(ctx,
		chromedp.Navigate("http://"+p.api+"/"),
		chromedp.SendKeys(css(`#login-form input[name=address]`), "alice@example.test"),
		chromedp.SendKeys(css(`#login-form input[name=password]`), "pw-alice@example.test"),
		chromedp.Click(css(`#login-form button[type=submit]`)),
		chromedp.WaitVisible(css(`#admin-link`)),
		chromedp.Click(css(`#admin-link`)),
		chromedp.WaitVisible(css(`#domains li`)),
		chromedp.WaitVisible(css(`#logs li`)),
		chromedp.SendKeys(css(`#domain-form input[name=name]`), "added.test"),
		chromedp.Click(css(`#domain-form button[type=submit]`)),
		chromedp.WaitVisible(css(`#domains li:nth-child(2)`)),
		chromedp.WaitVisible(css(`#plugins li button`)),
		chromedp.Click(css(`#plugins li button:nth-of-type(2)`)), // Log
		chromedp.WaitVisible(css(`#plugin-log`)),
		chromedp.Click(css(`#plugins li button`)), // Disable
		chromedp.Poll[chromedp.Void](`document.querySelector('#plugins li').textContent.includes('disabled')`),
	)
	if err != nil {
		shot, _ := chromedp.Run(context.WithoutCancel(ctx), chromedp.Text(css(`body`)))
		t.Fatalf("browser: %v\npage: %s\n%s", err, shot, p.logs())
	}
	page, err := chromedp.Run(ctx, chromedp.Text(css(`#admin-view`)))
	if err != nil {
		t.Fatal(err)
	}
	screenshot(t, ctx, "admin.png")
	for _, want := range []string{"example.test", "added.test", "alice@example.test", "auth.login", "subject-tagger 1.0.0 (stdin)", "breaker: closed", "(nothing logged yet)"} {
		if !strings.Contains(page, want) {
			t.Errorf("admin page lacks %q:\n%s", want, page)
		}
	}
	var n int
	pool.QueryRow(context.Background(), `SELECT count(*) FROM domains WHERE name = 'added.test'`).Scan(&n)
	if n != 1 {
		t.Fatal("the domain added in the browser is not in the database")
	}
	var on bool
	if err := pool.QueryRow(context.Background(), `SELECT enabled FROM plugins WHERE id = 'subject-tagger'`).Scan(&on); err != nil || on {
		t.Fatalf("plugin enabled %v, %v; want disabled from the page", on, err)
	}
}
