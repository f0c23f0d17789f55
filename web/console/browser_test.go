package console_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/chromedp"

	"github.com/mairust/mairust/agent/link"
	"github.com/mairust/mairust/controlplane/accounts"
	"github.com/mairust/mairust/controlplane/agents"
	"github.com/mairust/mairust/controlplane/billing"
	"github.com/mairust/mairust/controlplane/cptest"
	"github.com/mairust/mairust/controlplane/mailer"
	"github.com/mairust/mairust/controlplane/server"
	"github.com/mairust/mairust/controlplane/tenants"
	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/stripetest"
	"github.com/mairust/mairust/marketplace/catalog"
	"github.com/mairust/mairust/marketplace/pack"
	"github.com/mairust/mairust/web/console"
)

// cp is a control plane serving the console on loopback.
type cp struct {
	url     string           // its base URL
	mail    *mailer.Recorder // what it mailed
	env     *cptest.Env      // its database
	billing *billing.Service // nil without billing
	market  *catalog.Service // nil without the marketplace
}

// controlPlane serves the console's services on a fresh database with the
// console mounted as the control plane mounts it, on loopback; its mail
// goes to a Recorder. With withBilling, billing is on against a
// stripe-mock: its service is served and its plans' limits apply (the
// default plans, Pro and Business with prices).
func controlPlane(t *testing.T, withBilling bool) *cp {
	t.Helper()
	return startControlPlane(t, withBilling, false)
}

// marketControlPlane is a controlPlane without billing and with the
// plugin marketplace, its upload and downloads mounted as the control
// plane mounts them, a signing key made here, and reviewerEmail its
// reviewer.
func marketControlPlane(t *testing.T) *cp {
	t.Helper()
	return startControlPlane(t, false, true)
}

// reviewerEmail reviews the submissions of a marketControlPlane.
const reviewerEmail = "reviewer@market.test"

func startControlPlane(t *testing.T, withBilling, withMarket bool) *cp {
	t.Helper()
	e := cptest.New(t, "cpconsole")
	srv := httptest.NewUnstartedServer(nil)
	c := &cp{url: "http://" + srv.Listener.Addr().String(), mail: &mailer.Recorder{}, env: e}
	ag, err := agents.New(e.Store, e.Keys, e.Config, e.Log)
	if err != nil {
		t.Fatal(err)
	}
	tn := tenants.New(e.Store, e.Config, c.mail, e.Log)
	opts := e.Options()
	services := []server.Service{accounts.New(e.Store, e.Keys, e.Config, c.mail, e.Log).Service(opts...)}
	if withBilling {
		cfg := config.Default().Billing
		cfg.StripeSecretKey, cfg.StripeAPIURL, cfg.WebhookSecret = stripetest.Key, stripetest.Start(t), "whsec_x"
		cfg.Plans[1].PriceID, cfg.Plans[2].PriceID = "price_pro", "price_business"
		c.billing = billing.New(e.Store, cfg, c.url+"/console/", c.mail, e.Log)
		tn.Limits, ag.Limits = c.billing, c.billing
		services = append(services, c.billing.Service(opts...))
	}
	if withMarket {
		key, err := pack.GenerateKey("ed25519")
		if err != nil {
			t.Fatal(err)
		}
		pem, err := key.MarshalPEM()
		if err != nil {
			t.Fatal(err)
		}
		cfg := config.Default().Marketplace
		cfg.Reviewers, cfg.SigningKeyFile = []string{reviewerEmail}, filepath.Join(t.TempDir(), "marketplace.key")
		if err := os.WriteFile(cfg.SigningKeyFile, pem, 0o600); err != nil {
			t.Fatal(err)
		}
		if c.market, err = catalog.New(e.Store, e.Keys, cfg, c.url, c.mail, e.Log); err != nil {
			t.Fatal(err)
		}
		if ag.MarketplaceKeys, err = c.market.Keys(); err != nil {
			t.Fatal(err)
		}
		services = append(services, c.market.Service(opts...))
	}
	services = append(services, tn.Service(opts...), ag.Service(opts...))
	mux := http.NewServeMux()
	mux.Handle("/", server.New(services, e.Keys, ag.Check, e.Registry))
	mux.Handle(console.Prefix, console.Handler())
	if c.market != nil {
		mux.Handle(catalog.UploadPath, c.market.Upload())
		mux.Handle(catalog.DownloadPrefix, c.market.Download())
	}
	srv.Config = server.HTTPServer(mux)
	srv.Start()
	t.Cleanup(srv.Close)
	return c
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

// browser is a tab of headless Chromium (chromium) in a test.
type browser struct {
	t   *testing.T
	ctx context.Context
}

func css(sel string) chromedp.CSS { return chromedp.CSS(sel) }

// do runs the steps, failing the test with the page's text if one fails.
func (b browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		page, _ := chromedp.Run(context.WithoutCancel(b.ctx), chromedp.Text(css(`body`)))
		b.t.Fatalf("browser, %s: %v\npage: %s", what, err, page)
	}
}

// text returns the text of the element sel.
func (b browser) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(css(sel)))
	if err != nil {
		b.t.Fatalf("browser, reading %s: %v", sel, err)
	}
	return s
}

// eval returns the value of the JavaScript expression js.
func eval[T any](b browser, js string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](js))
	if err != nil {
		b.t.Fatalf("browser, evaluating %s: %v", js, err)
	}
	return v
}

var verifyLink = regexp.MustCompile(`/console/verify\?token=[A-Za-z0-9_-]+`)

// signUp signs up with email and password, verifies the address through
// the mailed link and logs in, typing and clicking; the list of tenants
// is left shown.
func (b browser) signUp(c *cp, email, password string) {
	b.t.Helper()
	before := len(c.mail.Mails())
	b.do("signing up",
		chromedp.Navigate(c.url+"/console/"),
		chromedp.WaitVisible(css(`#login-form`)),
		chromedp.Click(css(`#login-form a[href="/console/signup"]`)),
		chromedp.WaitVisible(css(`#signup-form`)),
		chromedp.SendKeys(css(`#signup-form input[name=email]`), email),
		chromedp.SendKeys(css(`#signup-form input[name=password]`), password),
		chromedp.Click(css(`#signup-form button[type=submit]`)),
		chromedp.WaitVisible(css(`#signup-done`)),
	)
	if got := b.text(`#signup-done`); !strings.Contains(got, email) {
		b.t.Errorf("after signing up the page says %q", got)
	}
	mails := c.mail.Mails()[before:]
	if len(mails) != 1 || mails[0].To != email || !verifyLink.MatchString(mails[0].Body) {
		b.t.Fatalf("mail after signing up: %+v", mails)
	}
	b.do("verifying and logging in",
		chromedp.Navigate(c.url+verifyLink.FindString(mails[0].Body)),
		chromedp.WaitVisible(css(`#verify-login`)),
		chromedp.Click(css(`#verify-login`)),
		chromedp.WaitVisible(css(`#login-form`)),
		chromedp.SendKeys(css(`#login-form input[name=password]`), password), // the address is filled in
		chromedp.Click(css(`#login-form button[type=submit]`)),
		chromedp.WaitVisible(css(`#tenant-form`)),
	)
	if got := b.text(`#who`); got != email {
		b.t.Errorf("logged in as %q", got)
	}
}

// newTenant signs up with email and password (signUp) and creates the
// tenant name, typing and clicking, and returns the tenant's id; its
// page is left shown.
func (b browser) newTenant(c *cp, email, password, name string) (id string) {
	b.t.Helper()
	b.signUp(c, email, password)
	b.do("creating a tenant",
		chromedp.SendKeys(css(`#tenant-form input[name=name]`), name),
		chromedp.Click(css(`#tenant-form button[type=submit]`)),
		chromedp.WaitVisible(css(`#domain-form`)),
		chromedp.Poll[chromedp.Void](`document.getElementById('tenant-name').textContent === `+strconv.Quote(name)),
	)
	id, ok := strings.CutPrefix(eval[string](b, `location.pathname`), "/console/tenants/")
	if !ok {
		b.t.Fatalf("after creating the tenant the page is %s", eval[string](b, `location.href`))
	}
	return id
}

// TestConsoleInChromium goes the console's first steps in a real browser,
// typing and clicking: sign up, verify through the mailed link, log in,
// create a tenant, add a domain (a bad name first) and see its DNS
// records, create an enrollment token, and see an agent enrolled with it
// appear in the list without reloading the page. Without billing, the
// tenant's page shows none.
func TestConsoleInChromium(t *testing.T) {
	c := controlPlane(t, false)
	ctx := chromium(t)
	b := browser{t, ctx}
	const badDomain = "not a domain"
	b.newTenant(c, "owner@example.test", "correct horse battery", "Example")
	b.do("adding a domain",
		chromedp.SendKeys(css(`#domain-form input[name=name]`), badDomain),
		chromedp.Click(css(`#domain-form button[type=submit]`)),
		chromedp.WaitVisible(css(`#domain-error:not(:empty)`)),
	)
	if got := b.text(`#domain-error`); !strings.Contains(got, "name:") {
		t.Errorf("a bad domain name shows %q, want the server's message", got)
	}
	b.do("seeing the DNS records",
		chromedp.SendKeys(css(`#domain-form input[name=name]`), strings.Repeat("\b", len(badDomain))+"example.test"),
		chromedp.Click(css(`#domain-form button[type=submit]`)),
		chromedp.Click(css(`#domains tr[data-domain="example.test"] button.dns`)),
		chromedp.WaitVisible(css(`#dns-records tbody tr`)),
	)
	if got := b.text(`#domain-error`); got != "" {
		t.Errorf("after adding the domain the error says %q", got)
	}
	for purpose, want := range map[string]string{"mx": "MX", "spf": "v=spf1", "dmarc": "v=DMARC1"} {
		if got := b.text(`#dns-records tr[data-purpose="` + purpose + `"]`); !strings.Contains(got, want) {
			t.Errorf("DNS record %s shows %q, want %q in it", purpose, got, want)
		}
	}
	b.do("creating an enrollment token",
		chromedp.Click(css(`#token-create`)),
		chromedp.WaitVisible(css(`#token-box`)),
	)
	token := b.text(`#token`)
	if !strings.HasPrefix(token, "mre_") {
		t.Fatalf("the token shown is %q", token)
	}
	if got, want := b.text(`#enroll-cmd`), "mairust agent enroll --control-plane "+c.url+" --token "+token; got != want {
		t.Errorf("the command shown is %q, want %q", got, want)
	}
	if _, err := (link.Link{DataDir: t.TempDir()}).Enroll(ctx, c.url, token, "mx1.example.test", "9.9.9"); err != nil {
		t.Fatal(err)
	}
	b.do("seeing the agent listed",
		chromedp.WaitVisible(css(`#agents tbody tr`), chromedp.RetryInterval(100*time.Millisecond)),
	)
	if got := b.text(`#agents tbody tr`); !strings.Contains(got, "mx1.example.test") || !strings.Contains(got, "9.9.9") {
		t.Errorf("the agents list shows %q", got)
	}
	if got := b.text(`#agents tbody tr .status`); got != "up" {
		t.Errorf("the agent's status shows %q, want up", got)
	}
	if got := b.text(`#token`); got != token { // the page was not loaded again
		t.Errorf("after the agent appeared the token shows %q", got)
	}
	if !eval[bool](b, `document.getElementById('billing').hidden && document.getElementById('billing-banner').hidden`) {
		t.Error("without billing the tenant's page shows the Billing card or its banner")
	}
}

// stripeSites answers the tab's requests to Stripe's sites (Checkout, the
// customer portal: stripe-mock's is on stripe.me) with a stand-in page,
// so that the test never leaves the machine.
func stripeSites(b browser) {
	b.t.Helper()
	paused := chromedp.Events(b.ctx, fetch.RequestPaused)
	go func() {
		for ev, err := range paused {
			if err != nil {
				return
			}
			chromedp.Call(b.ctx, fetch.FulfillRequest, fetch.FulfillRequestParams{RequestID: ev.RequestID, ResponseCode: 200,
				ResponseHeaders: []*fetch.HeaderEntry{{Name: "Content-Type", Value: "text/html; charset=utf-8"}},
				Body:            []byte("<!doctype html><title>Stripe</title><p>A stand-in for Stripe.")})
		}
	}()
	if _, err := chromedp.Call(b.ctx, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{
		{URLPattern: "https://*.stripe.com/*"}, {URLPattern: "https://*.stripe.me/*"}}}); err != nil {
		b.t.Fatalf("browser, intercepting Stripe's sites: %v", err)
	}
}

// waitLocation waits for the tab to be at an address that want matches,
// and returns it.
func (b browser) waitLocation(want *regexp.Regexp) string {
	b.t.Helper()
	var loc string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var err error
		if loc, err = chromedp.Run(b.ctx, chromedp.Location()); err == nil && want.MatchString(loc) {
			return loc
		}
	}
	b.t.Fatalf("the tab is at %q, want an address matching %s", loc, want)
	return ""
}

// TestConsoleBillingInChromium shows a tenant's billing in a real
// browser with billing on against stripe-mock: the Billing card with the
// Free plan, its limits and the plans, a failure shown from the server,
// Upgrade going to Stripe Checkout and Manage billing to the portal and
// Stripe's way back, the usage, and the banner of each billing state.
func TestConsoleBillingInChromium(t *testing.T) {
	c := controlPlane(t, true)
	b := browser{t, chromium(t)}
	id := b.newTenant(c, "owner@example.test", "correct horse battery", "Example")
	b.do("opening the portal before the tenant has a Stripe customer",
		chromedp.WaitVisible(css(`#billing`)),
		chromedp.Click(css(`#portal`)),
		chromedp.WaitVisible(css(`#billing-error:not(:empty)`)),
	)
	if got := b.text(`#billing-error`); !strings.Contains(got, "being created") {
		t.Errorf("the portal before the customer exists shows %q, want the server's message", got)
	}

	c.billing.Pass(t.Context()) // the tenant's Stripe customer
	_, err := c.env.Owner.Exec(t.Context(), `INSERT INTO meter_usage (tenant_id, meter, hour, quantity, identifier, sent_at) VALUES
		($1::uuid, 'messages', date_trunc('hour', now()), 1234, 'm-' || $1::text, now()),
		($1::uuid, 'storage', date_trunc('hour', now()), 1500000, 's-' || $1::text, now())`, id)
	if err != nil {
		t.Fatal(err)
	}
	b.do("seeing the billing card",
		chromedp.Reload(),
		chromedp.WaitVisible(css(`#plans tr[data-plan="pro"] button.upgrade`)),
		chromedp.WaitVisible(css(`#usage tbody tr`)),
	)
	for sel, want := range map[string]string{`#plan-name`: "Free", `#plan-domains`: "1", `#plan-users`: "5", `#plan-agents`: "1",
		`#plan-messages`: "1,234 of 10,000", `#plans tr[data-plan="business"] td:nth-child(2)`: "no limit", `#billing-error`: ""} {
		if got := b.text(sel); got != want {
			t.Errorf("%s shows %q, want %q", sel, got, want)
		}
	}
	if got := eval[[]string](b, `[...document.querySelectorAll('#plans button.upgrade')].map((x) => x.dataset.plan)`); strings.Join(got, " ") != "pro business" {
		t.Errorf("Upgrade is offered for %q, want pro and business", got)
	}
	month := time.Now().UTC().Format("2006-01")
	if got, want := b.text(`#usage tbody tr`), month+"\t1,234\t1.50"; got != want {
		t.Errorf("the usage shows %q, want %q", got, want)
	}
	if !eval[bool](b, `document.getElementById('billing-banner').hidden && document.getElementById('plans-note').hidden`) {
		t.Error("an active tenant without a subscription sees the banner or the note on plan changes")
	}

	stripeSites(b)
	b.do("upgrading to Pro", chromedp.Click(css(`#plans tr[data-plan="pro"] button.upgrade`)))
	b.waitLocation(regexp.MustCompile(`^https://checkout\.stripe\.com/`))
	b.do("coming back from Checkout",
		chromedp.Navigate(c.url+"/console/tenants/"+id+"?checkout=done"), // Checkout's success_url
		chromedp.WaitVisible(css(`#billing-done`)),
	)
	if got := eval[string](b, `location.pathname + location.search + location.hash`); got != "/console/tenants/"+id {
		t.Errorf("back from Checkout the page is at %s", got)
	}
	b.do("opening the customer portal", chromedp.Click(css(`#portal`)))
	b.waitLocation(regexp.MustCompile(`^https://[^/]+\.stripe\.(com|me)/`))

	for _, tc := range []struct{ what, update, want string }{
		{"past due", `state = 'past_due', past_due_since = now()`, "A payment failed. Update the payment method before "},
		{"restricted", `state = 'restricted'`, "Outbound mail is paused because the bill is unpaid."},
		{"over the monthly limit", `state = 'active', past_due_since = NULL, hold_reason = 'This organisation has used the 10000 messages'`,
			"Outbound mail is held: This organisation has used the 10000 messages"},
	} {
		if _, err := c.env.Owner.Exec(t.Context(), `UPDATE tenant_billing SET `+tc.update+` WHERE tenant_id = $1`, id); err != nil {
			t.Fatal(err)
		}
		b.do("seeing the banner when "+tc.what,
			chromedp.Navigate(c.url+"/console/tenants/"+id),
			chromedp.WaitVisible(css(`#billing-banner`)),
		)
		if got := b.text(`#billing-banner-text`); !strings.Contains(got, tc.want) {
			t.Errorf("%s: the banner says %q, want %q in it", tc.what, got, tc.want)
		}
	}

	if _, err := c.env.Owner.Exec(t.Context(), `UPDATE tenant_billing SET hold_reason = NULL, subscription_id = 'sub_x', plan = 'pro' WHERE tenant_id = $1`, id); err != nil {
		t.Fatal(err)
	}
	b.do("seeing the subscription",
		chromedp.Navigate(c.url+"/console/tenants/"+id),
		chromedp.WaitVisible(css(`#plans-note`)),
	)
	if got := b.text(`#plan-name`); got != "Pro" {
		t.Errorf("subscribed to Pro, the plan shows %q", got)
	}
	if n := eval[int](b, `document.querySelectorAll('#plans button.upgrade').length + !document.getElementById('billing-banner').hidden`); n != 0 {
		t.Error("a subscribed tenant in good standing is offered Upgrade or sees the banner")
	}
}
