package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/emersion/go-message/mail"

	"github.com/mairust/mairust/agent/plugins"
	"github.com/mairust/mairust/agent/policy"
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
	text := func(sel string) string { t.Helper(); return pageText(t, ctx, sel) }
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

// TestWebmailComposeInChromium: alice sends a message with a Japanese
// subject from the compose form to a remote address; once her account is
// suspended she sees the banner, in English and in Japanese, and her next
// message is refused with the policy's exact text.
func TestWebmailComposeInChromium(t *testing.T) {
	sk, sinkAddr := newSink(t)
	cfgPath, _, pool := setup(t, "outbound:\n  routes: [\"remote.test="+sinkAddr+"\"]\n")
	p := startAgent(t, cfgPath)
	ctx := browser(t)
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	compose := func(to, subject, body string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(
			chromedp.Click(css(`#compose-link`)),
			chromedp.WaitVisible(css(`#compose-form`)),
			chromedp.SendKeys(css(`#compose-form input[name=to]`), to),
			chromedp.SendKeys(css(`#compose-form input[name=subject]`), subject),
			chromedp.SendKeys(css(`#compose-form textarea[name=text]`), body),
			chromedp.Click(css(`#compose-form button[type=submit]`)),
		)
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			page, _ := chromedp.Run(context.WithoutCancel(ctx), chromedp.Text(css(`body`)))
			t.Fatalf("browser, %s: %v\npage: %s\n%s", what, err, page, p.logs())
		}
	}
	text := func(sel string) string { t.Helper(); return pageText(t, ctx, sel) }
	do("sending",
		chromedp.Navigate("http://"+p.api+"/"),
		chromedp.SendKeys(css(`#login-form input[name=address]`), "alice@example.test"),
		chromedp.SendKeys(css(`#login-form input[name=password]`), "pw-alice@example.test"),
		chromedp.Click(css(`#login-form button[type=submit]`)),
		chromedp.WaitVisible(css(`#compose-link`)),
		compose("bob@remote.test", "日本語のテスト", "本文です"),
		chromedp.Poll[chromedp.Void](`!document.getElementById('mail-view').hidden || document.getElementById('compose-error').textContent`),
	)
	if refused := text(`#compose-error`); refused != "" {
		t.Fatalf("the message was refused: %s\n%s", refused, p.logs())
	}
	m := sk.wait(t)
	msg, err := mail.CreateReader(bytes.NewReader(m.data))
	if err != nil {
		t.Fatal(err)
	}
	if subject, _ := msg.Header.Subject(); m.from != "alice@example.test" || fmt.Sprint(m.to) != "[bob@remote.test]" || subject != "日本語のテスト" {
		t.Fatalf("the sink got from %q to %v, subject %q:\n%s", m.from, m.to, subject, m.data)
	}
	if shown, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!document.getElementById('suspended-banner').hidden`)); err != nil || shown {
		t.Fatalf("the suspension banner shows (%v, %v) for an account that may send", shown, err)
	}

	if _, err := pool.Exec(context.Background(), `INSERT INTO outbound_accounts(account, state, suspended_at, reason, changed_by)
		VALUES('alice@example.test', 'suspended', now(), 'test', 'policy')
		ON CONFLICT (account) DO UPDATE SET state = 'suspended', suspended_at = now()`); err != nil {
		t.Fatal(err)
	}
	do("reloading while suspended", chromedp.Reload(), chromedp.WaitVisible(css(`#suspended-banner`)))
	banner := text(`#suspended-banner`)
	do("sending while suspended", compose("bob@remote.test", "again", "refused"), chromedp.WaitVisible(css(`#compose-error:not(:empty)`)))
	refused := text(`#compose-error`)
	screenshot(t, ctx, "webmail-suspended.png")
	do("switching to Japanese", chromedp.Click(css(`#lang`)))
	if bannerJa := text(`#suspended-banner`); banner != "Sending from your account is suspended" || bannerJa != "あなたのアカウントは送信一時停止中です" || refused != policy.SuspendedText {
		t.Fatalf("banner %q, in Japanese %q; the refusal shows %q", banner, bannerJa, refused)
	}
}

// pageText is the text of the element sel.
func pageText(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("browser, reading %s: %v", sel, err)
	}
	return s
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
// the log of sign-ins, adds a domain from the page, disables the installed
// plugin, and lifts the suspension of an account, saying why.
func TestAdminPagesInChromium(t *testing.T) {
	// The page loads every admin list at once, again after each action:
	// more than the default admin burst from one address in this test.
	cfgPath, dataDir, pool := setup(t, "ratelimit:\n  admin_ip_per_minute: 1000\n")
	if _, err := pool.Exec(context.Background(), `UPDATE mail_users SET is_admin = true WHERE address = 'alice@example.test'`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(context.Background(), `INSERT INTO outbound_accounts(account, state, suspended_at, reason, changed_by)
		VALUES('alice@example.test', 'suspended', now(), 'test', 'policy')`); err != nil {
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
		chromedp.SendKeys(css(`#outbound-form input[name=account]`), "alice@example.test"),
		chromedp.Click(css(`#outbound-form button[type=submit]`)),
		chromedp.WaitVisible(css(`#release-form`)),
		chromedp.SendKeys(css(`#release-form input[name=why]`), "password reset with alice"),
		chromedp.Click(css(`#release-form button[type=submit]`)),
		chromedp.Poll[chromedp.Void](`document.querySelector('#outbound-state').textContent.includes('allowed')`),
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
	var state, why string
	if err := pool.QueryRow(context.Background(), `SELECT a.state, e.detail->>'why' FROM outbound_accounts a, events e
		WHERE a.account = 'alice@example.test' AND e.kind = 'admin.outbound.release' AND e.actor = a.account`).Scan(&state, &why); err != nil ||
		state != "allowed" || why != "password reset with alice" {
		t.Fatalf("after the release from the page: state %q, logged why %q, %v", state, why, err)
	}
}
