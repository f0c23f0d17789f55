package billing_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/mairust/mairust/controlplane/access"
	"github.com/mairust/mairust/controlplane/auth"
	"github.com/mairust/mairust/controlplane/billing"
	"github.com/mairust/mairust/controlplane/cptest"
	"github.com/mairust/mairust/controlplane/mailer"
	"github.com/mairust/mairust/controlplane/server"
	"github.com/mairust/mairust/controlplane/store"
	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/stripetest"
	billingv1 "github.com/mairust/mairust/proto/mairust/billing/v1"
	"github.com/mairust/mairust/proto/mairust/billing/v1/billingv1connect"
)

const whsec = "whsec_mairust_test"

// env is billing against stripe-mock, its webhook served on loopback.
type env struct {
	*cptest.Env
	svc    *billing.Service
	mail   *mailer.Recorder
	stripe *stripetest.Recorder
	hook   string // the webhook's URL
}

func start(t *testing.T) *env {
	t.Helper()
	e := &env{Env: cptest.New(t, "cpbilling"), mail: &mailer.Recorder{}, stripe: stripetest.StartRecorder(t)}
	cfg := config.Default().Billing
	cfg.StripeSecretKey, cfg.StripeAPIURL, cfg.WebhookSecret = stripetest.Key, e.stripe.URL, whsec
	cfg.GracePeriod = time.Hour
	cfg.Plans[1].PriceID, cfg.Plans[2].PriceID = "price_pro", "price_business"
	cfg.Plans[0].MonthlyMessages = 10
	e.svc = billing.New(e.Store, cfg, cptest.PublicURL+"/console/", e.mail, e.Log)
	srv := httptest.NewServer(e.svc.Webhook())
	t.Cleanup(srv.Close)
	e.hook = srv.URL + billing.WebhookPath
	return e
}

// tenant makes a tenant owned by a new account owner@<name>.test.
func (e *env) tenant(t *testing.T, name string) string {
	t.Helper()
	id, _ := e.tenantWithOwner(t, name)
	return id
}

// member adds an account with role to tenant and returns its session.
func (e *env) member(t *testing.T, tenant, email, role string) string {
	t.Helper()
	var account string
	if err := e.Owner.QueryRow(t.Context(), `INSERT INTO accounts (email, password_hash, email_verified_at) VALUES ($1, 'x', now()) RETURNING id`, email).Scan(&account); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Owner.Exec(t.Context(), `INSERT INTO memberships (tenant_id, account_id, role) VALUES ($1, $2, $3)`, tenant, account, role); err != nil {
		t.Fatal(err)
	}
	return e.session(t, account)
}

// session is a console session of account.
func (e *env) session(t *testing.T, account string) string {
	t.Helper()
	tok, _, err := e.Keys.Issue(auth.Principal{Kind: auth.KindSession, AccountID: account}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// tenantWithOwner makes a tenant owned by a new account owner@<name>.test
// and returns its id and the owner's account id.
func (e *env) tenantWithOwner(t *testing.T, name string) (id, account string) {
	t.Helper()
	ctx := t.Context()
	if err := e.Owner.QueryRow(ctx, `INSERT INTO accounts (email, password_hash, email_verified_at) VALUES ($1, 'x', now()) RETURNING id`, "owner@"+name+".test").Scan(&account); err != nil {
		t.Fatal(err)
	}
	if err := e.Owner.QueryRow(ctx, `INSERT INTO tenants (name, created_by) VALUES ($1, $2) RETURNING id`, name, account).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Owner.Exec(ctx, `INSERT INTO memberships (tenant_id, account_id, role) VALUES ($1, $2, 'owner')`, id, account); err != nil {
		t.Fatal(err)
	}
	return id, account
}

// billed makes a tenant and its Stripe customer (one round of billing),
// and returns both ids.
func (e *env) billed(t *testing.T, name string) (tenant, customer string) {
	t.Helper()
	tenant = e.tenant(t, name)
	e.svc.Pass(t.Context())
	customer, _, _, _ = e.state(t, tenant)
	return tenant, customer
}

// clearOfHourEnd waits, when the hour ends within 30 seconds, until it
// has: a test that places usage in hours relative to now must not
// straddle two.
func clearOfHourEnd(t *testing.T) {
	if left := time.Until(time.Now().Truncate(time.Hour).Add(time.Hour)); left < 30*time.Second {
		t.Logf("waiting %v for the hour to end", left.Round(time.Second))
		time.Sleep(left + time.Second)
	}
}

// state is a tenant's billing row: customer, plan, state, subscription.
func (e *env) state(t *testing.T, tenant string) (customer, plan, state, sub string) {
	t.Helper()
	err := e.Owner.QueryRow(t.Context(), `SELECT customer_id, plan, state, coalesce(subscription_id, '') FROM tenant_billing WHERE tenant_id = $1`, tenant).
		Scan(&customer, &plan, &state, &sub)
	if err != nil {
		t.Fatalf("billing of tenant %s: %v", tenant, err)
	}
	return
}

// post sends a Stripe event of type typ about object, signed at signedAt
// with secret, and returns the status.
func (e *env) post(t *testing.T, id, typ string, created time.Time, object map[string]any, secret string, signedAt time.Time) int {
	t.Helper()
	payload, _ := json.Marshal(map[string]any{"id": id, "object": "event", "type": typ, "created": created.Unix(),
		"api_version": "2023-10-16", "data": map[string]any{"object": object}})
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: secret, Timestamp: signedAt})
	req, _ := http.NewRequest(http.MethodPost, e.hook, bytes.NewReader(payload))
	req.Header.Set("Stripe-Signature", signed.Header)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestCustomers: each tenant gets one Stripe customer, on the default
// plan; another round changes nothing.
func TestCustomers(t *testing.T) {
	e := start(t)
	a, b := e.tenant(t, "a"), e.tenant(t, "b")
	e.svc.Pass(t.Context())
	ca, plan, state, _ := e.state(t, a)
	cb, _, _, _ := e.state(t, b)
	if !strings.HasPrefix(ca, "cus_") || !strings.HasPrefix(cb, "cus_") || ca == cb || plan != "free" || state != billing.Active {
		t.Fatalf("customers %q %q, plan %q, state %q; want two cus_ ids on free, active", ca, cb, plan, state)
	}
	e.svc.Pass(t.Context())
	if again, _, _, _ := e.state(t, a); again != ca {
		t.Fatalf("customer changed to %s on the next round", again)
	}
	calls := e.stripe.Requests("/v1/customers")
	if len(calls) != 2 || calls[0].IdempotencyKey != "mairust-tenant-customer-"+a || calls[0].Form.Get("email") != "owner@a.test" || calls[0].Form.Get("metadata[tenant_id]") != a {
		t.Fatalf("customer calls %+v; want one per tenant, keyed by its id", calls)
	}
}

// TestUsage: the messages of the reports of each complete hour (of the
// last 35 days, older ones left out) and the storage sampled go to their
// meters once each, with an identifier per tenant, meter and hour; the
// current hour waits; a plan's monthly limit holds outbound mail until the
// plan allows more.
func TestUsage(t *testing.T) {
	clearOfHourEnd(t)
	e := start(t)
	ctx := t.Context()
	tn, cus := e.billed(t, "a")
	var agent string
	if err := e.Owner.QueryRow(ctx, `INSERT INTO agents (tenant_id, public_key, hostname, version) VALUES ($1, $2, 'mx', 'v') RETURNING id`,
		tn, bytes.Repeat([]byte{7}, 32)).Scan(&agent); err != nil {
		t.Fatal(err)
	}
	hour := time.Now().UTC().Truncate(time.Hour)
	report := func(seq int, at time.Time, in, out int) {
		t.Helper()
		if _, err := e.Owner.Exec(ctx, `INSERT INTO agent_reports (tenant_id, agent_id, sequence, at, received_at, messages_in, messages_out) VALUES ($1, $2, $3, $4, $4, $5, $6)`,
			tn, agent, seq, at, in, out); err != nil {
			t.Fatal(err)
		}
	}
	report(1, hour.Add(-40*24*time.Hour), 100, 0) // beyond Stripe's window
	report(2, hour.Add(-10*24*time.Hour), 7, 0)   // after an outage: sent now
	report(3, hour.Add(-2*time.Hour+time.Minute), 3, 2)
	report(4, hour.Add(-2*time.Hour+30*time.Minute), 1, 0)
	report(5, hour.Add(-time.Hour), 0, 4)
	report(6, hour.Add(time.Second), 9, 9) // the current hour: not yet
	// Storage: two agents' samples (the larger of each agent's in an hour).
	for i, s := range []struct {
		agent string
		at    time.Time
		bytes int64
	}{{agent, hour.Add(-2 * time.Hour), 1e9}, {agent, hour.Add(-2*time.Hour + time.Minute), 2e9}, {agent, hour.Add(-time.Hour), 730e6}} {
		if _, err := e.Owner.Exec(ctx, `INSERT INTO usage_records (tenant_id, agent_id, sequence, metric, quantity, period_start, period_end, received_at)
			VALUES ($1, $2, $3, 'storage_bytes', $4, $5, $5, $5)`, tn, s.agent, 100+i, s.bytes, s.at); err != nil {
			t.Fatal(err)
		}
	}
	e.svc.Pass(ctx)
	e.svc.Pass(ctx)
	sent := map[string]string{}
	for _, r := range e.stripe.Requests("/v1/billing/meter_events") {
		meter := map[string]string{"mairust_messages": "messages", "mairust_storage_gb_months": "storage"}[r.Form.Get("event_name")]
		if r.Status != http.StatusOK || !strings.Contains(r.Form.Get("identifier"), ":"+meter+":") || r.Form.Get("payload[stripe_customer_id]") != cus {
			t.Fatalf("meter event %+v", r)
		}
		if _, twice := sent[r.Form.Get("identifier")]; twice {
			t.Fatalf("identifier %s sent twice", r.Form.Get("identifier"))
		}
		sent[r.Form.Get("identifier")] = r.Form.Get("payload[value]")
	}
	id := func(meter string, h time.Time) string {
		return "mairust:" + tn + ":" + meter + ":" + h.Format("2006-01-02T15")
	}
	want := map[string]string{id("messages", hour.Add(-10*24*time.Hour)): "7", id("messages", hour.Add(-2*time.Hour)): "6", id("messages", hour.Add(-time.Hour)): "4",
		// 2 GB for an hour: 2e9 / 730 / 1000; 0.73 GB: 1000 millionths.
		id("storage", hour.Add(-2*time.Hour)): "2740", id("storage", hour.Add(-time.Hour)): "1000"}
	if fmt.Sprint(sent) != fmt.Sprint(want) {
		t.Fatalf("meter events sent %v, want %v", sent, want)
	}

	// At least the current hour's 18 this month, whatever the day: beyond
	// the free plan's 10; the pro plan allows more.
	e.svc.Pass(ctx)
	var hold *string
	e.Owner.QueryRow(ctx, `SELECT hold_reason FROM tenant_billing WHERE tenant_id = $1`, tn).Scan(&hold)
	if hold == nil || !strings.Contains(*hold, "messages of its Free plan for this month; incoming mail still arrives") {
		t.Fatalf("hold %v over the free plan's monthly messages", hold)
	}
	e.Owner.Exec(ctx, `UPDATE tenant_billing SET plan = 'pro' WHERE tenant_id = $1`, tn)
	e.svc.Pass(ctx)
	e.Owner.QueryRow(ctx, `SELECT hold_reason FROM tenant_billing WHERE tenant_id = $1`, tn).Scan(&hold)
	if hold != nil {
		t.Fatalf("hold %q on the pro plan", *hold)
	}
}

// TestWebhookSignatures: a bad signature, a stale timestamp and a GET are
// refused and change nothing.
func TestWebhookSignatures(t *testing.T) {
	e := start(t)
	tn, cus := e.billed(t, "a")
	failed := map[string]any{"object": "invoice", "id": "in_1", "customer": cus}
	now := time.Now()
	if code := e.post(t, "evt_bad", "invoice.payment_failed", now, failed, "whsec_wrong", now); code != http.StatusBadRequest {
		t.Errorf("bad signature: HTTP %d, want 400", code)
	}
	if code := e.post(t, "evt_old", "invoice.payment_failed", now, failed, whsec, now.Add(-10*time.Minute)); code != http.StatusBadRequest {
		t.Errorf("timestamp 10 minutes old (tolerance 5m): HTTP %d, want 400", code)
	}
	resp, err := http.Get(e.hook)
	if err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %v %v, want 405", resp.Status, err)
	}
	if _, _, state, _ := e.state(t, tn); state != billing.Active {
		t.Fatalf("state %s after refused events, want active", state)
	}
	var n int
	e.Owner.QueryRow(t.Context(), `SELECT count(*) FROM stripe_events`).Scan(&n)
	if n != 0 {
		t.Fatalf("%d refused events recorded", n)
	}
}

// TestStateMachine walks a tenant through checkout, a failed payment
// (past_due, mailed), the grace period (restricted, mailed) and the
// payment (active), with a replayed and a late event changing nothing,
// then a subscription change and its end.
func TestStateMachine(t *testing.T) {
	e := start(t)
	tn, cus := e.billed(t, "a")
	now := time.Now()
	post := func(id, typ string, created time.Time, object map[string]any) {
		t.Helper()
		if code := e.post(t, id, typ, created, object, whsec, time.Now()); code != http.StatusOK {
			t.Fatalf("%s %s: HTTP %d, want 200", id, typ, code)
		}
	}
	want := func(what, plan, state, sub string) {
		t.Helper()
		if _, p, s, sb := e.state(t, tn); p != plan || s != state || sb != sub {
			t.Fatalf("%s: plan %q state %q subscription %q; want %q %q %q", what, p, s, sb, plan, state, sub)
		}
		var hold *string
		e.Owner.QueryRow(t.Context(), `SELECT hold_reason FROM tenant_billing WHERE tenant_id = $1`, tn).Scan(&hold)
		if (state == billing.Restricted) != (hold != nil && strings.Contains(*hold, "bill is unpaid; incoming mail still arrives")) {
			t.Fatalf("%s: state %s with outbound hold %v", what, state, hold)
		}
	}
	post("evt_1", "checkout.session.completed", now.Add(-5*time.Minute), map[string]any{"object": "checkout.session", "id": "cs_1",
		"customer": cus, "subscription": "sub_1", "client_reference_id": tn, "metadata": map[string]string{"plan": "pro"}})
	want("checkout", "pro", billing.Active, "sub_1")

	invoice := map[string]any{"object": "invoice", "id": "in_1", "customer": cus, "subscription": "sub_1"}
	post("evt_2", "invoice.payment_failed", now.Add(-4*time.Minute), invoice)
	want("payment failed", "pro", billing.PastDue, "sub_1")
	if m := e.mail.Mails(); len(m) != 1 || m[0].To != "owner@a.test" || !strings.Contains(m[0].Body, "Everything keeps working for 1 hour.") {
		t.Fatalf("mails after the failed payment: %+v", m)
	}

	e.svc.Pass(t.Context()) // within the grace period
	want("within the grace period", "pro", billing.PastDue, "sub_1")
	e.Owner.Exec(t.Context(), `UPDATE tenant_billing SET past_due_since = now() - interval '2 hours' WHERE tenant_id = $1`, tn)
	e.svc.Pass(t.Context())
	want("after the grace period", "pro", billing.Restricted, "sub_1")
	if m := e.mail.Mails(); len(m) != 2 || !strings.Contains(m[1].Subject, "outbound mail of a is paused") || !strings.Contains(m[1].Body, "Incoming mail keeps arriving") {
		t.Fatalf("mails after the restriction: %+v", m)
	}

	post("evt_3", "invoice.paid", now.Add(-3*time.Minute), invoice)
	want("paid", "pro", billing.Active, "sub_1")
	post("evt_2", "invoice.payment_failed", now.Add(-4*time.Minute), invoice) // replayed
	want("replayed failure", "pro", billing.Active, "sub_1")
	post("evt_late", "invoice.payment_failed", now.Add(-10*time.Minute), invoice) // older than the last applied
	want("late failure", "pro", billing.Active, "sub_1")

	sub := map[string]any{"object": "subscription", "id": "sub_1", "customer": cus, "status": "past_due",
		"items": map[string]any{"object": "list", "data": []any{map[string]any{"object": "subscription_item", "id": "si_1",
			"price": map[string]any{"object": "price", "id": "price_business"}}}}}
	post("evt_4", "customer.subscription.updated", now.Add(-2*time.Minute), sub)
	want("upgraded, past due", "business", billing.PastDue, "sub_1")
	post("evt_5", "customer.subscription.deleted", now.Add(-time.Minute), sub)
	want("subscription ended", "free", billing.Active, "")

	var events int
	e.Owner.QueryRow(t.Context(), `SELECT count(*) FROM stripe_events WHERE tenant_id = $1`, tn).Scan(&events)
	if events != 6 {
		t.Fatalf("%d events recorded, want 6 (each id once)", events)
	}
}

// TestLimits: a plan's limits on domains, mail users and agents (revoked
// ones not counted) refuse one more with the limit and the plan to
// upgrade to; a plan without a limit, or billing off, refuses nothing.
func TestLimits(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	tn, _ := e.billed(t, "a")
	allow := func(svc *billing.Service, kind access.Kind) error {
		return e.Store.Tx(ctx, store.Scope{TenantID: tn}, func(tx pgx.Tx) error { return svc.Allow(ctx, tx, tn, kind) })
	}
	for _, kind := range []access.Kind{access.Domains, access.MailUsers, access.Agents} {
		if err := allow(e.svc, kind); err != nil {
			t.Fatalf("%s with none yet: %v", kind, err)
		}
	}
	e.Exec(t, tn, `INSERT INTO domains (tenant_id, name) VALUES ($1, 'a.test')`, tn)
	cptest.WantCode(t, "a second domain", allow(e.svc, access.Domains), connect.CodeResourceExhausted,
		"domains: the Free plan allows 1 and this tenant has 1; upgrade to Pro (10) on the tenant's Billing page in the console, https://cp.example.test/console/")
	e.Exec(t, tn, `INSERT INTO agents (tenant_id, public_key, hostname, version, revoked_at) VALUES ($1, $2, 'old', 'v', now())`, tn, bytes.Repeat([]byte{1}, 32))
	if err := allow(e.svc, access.Agents); err != nil {
		t.Fatalf("an agent when the only one is revoked: %v", err)
	}
	e.Exec(t, tn, `INSERT INTO agents (tenant_id, public_key, hostname, version) VALUES ($1, $2, 'mx', 'v')`, tn, bytes.Repeat([]byte{2}, 32))
	cptest.WantCode(t, "a second agent", allow(e.svc, access.Agents), connect.CodeResourceExhausted, "agents: the Free plan allows 1 and this tenant has 1")
	e.Owner.Exec(ctx, `UPDATE tenant_billing SET plan = 'business' WHERE tenant_id = $1`, tn)
	if err := allow(e.svc, access.Domains); err != nil {
		t.Fatalf("a domain on the business plan (no limit): %v", err)
	}
	off := billing.New(e.Store, config.Default().Billing, "", e.mail, e.Log)
	e.Owner.Exec(ctx, `UPDATE tenant_billing SET plan = 'free' WHERE tenant_id = $1`, tn)
	if err := allow(off, access.Domains); err != nil {
		t.Fatalf("billing off: %v", err)
	}
}

// TestConsoleCalls: the console's billing calls, for the tenant's members
// only (another tenant's owner gets NotFound, a viewer cannot pay), against
// stripe-mock; and what they say with billing off.
func TestConsoleCalls(t *testing.T) {
	clearOfHourEnd(t)
	e := start(t)
	ctx := t.Context()
	tn, owner := e.tenantWithOwner(t, "a")
	_, otherOwner := e.tenantWithOwner(t, "b")
	e.svc.Pass(ctx)
	cus, _, _, _ := e.state(t, tn)
	e.Serve(t, []server.Service{e.svc.Service(e.Options()...)}, nil)
	client := func(session string) billingv1connect.BillingServiceClient {
		return billingv1connect.NewBillingServiceClient(http.DefaultClient, e.URL, cptest.Bearer(session))
	}
	own, viewer, stranger := client(e.session(t, owner)), client(e.member(t, tn, "viewer@a.test", "viewer")), client(e.session(t, otherOwner))

	b, err := own.GetBilling(ctx, connect.NewRequest(&billingv1.GetBillingRequest{TenantId: tn}))
	if err != nil || !b.Msg.Enabled || b.Msg.Plan.GetId() != "free" || b.Msg.State != billingv1.BillingState_BILLING_STATE_ACTIVE || len(b.Msg.Plans) != 3 ||
		!b.Msg.Plans[1].Purchasable || b.Msg.Plans[0].Purchasable || b.Msg.Subscribed {
		t.Fatalf("GetBilling: %v %v", b, err)
	}
	co, err := own.CreateCheckoutSession(ctx, connect.NewRequest(&billingv1.CreateCheckoutSessionRequest{TenantId: tn, PlanId: "pro"}))
	if err != nil || !strings.HasPrefix(co.Msg.Url, "https://") {
		t.Fatalf("checkout: %v %v", co, err)
	}
	calls := e.stripe.Requests("/v1/checkout/sessions")
	if f := calls[len(calls)-1].Form; f.Get("customer") != cus || f.Get("line_items[0][price]") != "price_pro" || f.Get("client_reference_id") != tn ||
		f.Get("metadata[plan]") != "pro" || f.Get("mode") != "subscription" || f.Get("success_url") != "https://cp.example.test/console/tenants/"+tn+"?checkout=done" || f.Get("cancel_url") != "https://cp.example.test/console/tenants/"+tn {
		t.Fatalf("checkout call %v", f)
	}
	portal, err := own.CreatePortalSession(ctx, connect.NewRequest(&billingv1.CreatePortalSessionRequest{TenantId: tn}))
	if err != nil || portal.Msg.Url == "" {
		t.Fatalf("portal: %v %v", portal, err)
	}
	_, err = own.CreateCheckoutSession(ctx, connect.NewRequest(&billingv1.CreateCheckoutSessionRequest{TenantId: tn, PlanId: "free"}))
	cptest.WantCode(t, "checkout of the free plan", err, connect.CodeInvalidArgument, "plan_id")
	_, err = viewer.CreateCheckoutSession(ctx, connect.NewRequest(&billingv1.CreateCheckoutSessionRequest{TenantId: tn, PlanId: "pro"}))
	cptest.WantCode(t, "checkout by a viewer", err, connect.CodePermissionDenied, "")
	if _, err := viewer.GetBilling(ctx, connect.NewRequest(&billingv1.GetBillingRequest{TenantId: tn})); err != nil {
		t.Fatalf("GetBilling by a viewer: %v", err)
	}
	for name, call := range map[string]func() error{
		"GetBilling": func() error {
			_, err := stranger.GetBilling(ctx, connect.NewRequest(&billingv1.GetBillingRequest{TenantId: tn}))
			return err
		},
		"CreateCheckoutSession": func() error {
			_, err := stranger.CreateCheckoutSession(ctx, connect.NewRequest(&billingv1.CreateCheckoutSessionRequest{TenantId: tn, PlanId: "pro"}))
			return err
		},
		"CreatePortalSession": func() error {
			_, err := stranger.CreatePortalSession(ctx, connect.NewRequest(&billingv1.CreatePortalSessionRequest{TenantId: tn}))
			return err
		},
		"GetUsage": func() error {
			_, err := stranger.GetUsage(ctx, connect.NewRequest(&billingv1.GetUsageRequest{TenantId: tn}))
			return err
		},
	} {
		cptest.WantCode(t, name+" by another tenant's owner", call(), connect.CodeNotFound, "")
	}

	hour := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	e.Exec(t, tn, `INSERT INTO meter_usage (tenant_id, meter, hour, quantity, identifier) VALUES ($1, 'messages', $2, 12, 'm'), ($1, 'storage', $2, 1500000, 's')`, tn, hour)
	u, err := viewer.GetUsage(ctx, connect.NewRequest(&billingv1.GetUsageRequest{TenantId: tn}))
	if err != nil || len(u.Msg.Months) != 1 || u.Msg.Months[0].Messages != 12 || u.Msg.Months[0].StorageGbMonths != 1.5 ||
		u.Msg.Months[0].Month.AsTime() != time.Date(hour.Year(), hour.Month(), 1, 0, 0, 0, 0, time.UTC) {
		t.Fatalf("GetUsage: %v %v", u, err)
	}
	_, err = viewer.GetUsage(ctx, connect.NewRequest(&billingv1.GetUsageRequest{TenantId: tn, Months: 25}))
	cptest.WantCode(t, "25 months", err, connect.CodeInvalidArgument, "months")

	e.Owner.Exec(ctx, `UPDATE tenant_billing SET subscription_id = 'sub_1' WHERE tenant_id = $1`, tn)
	_, err = own.CreateCheckoutSession(ctx, connect.NewRequest(&billingv1.CreateCheckoutSessionRequest{TenantId: tn, PlanId: "pro"}))
	cptest.WantCode(t, "checkout when subscribed", err, connect.CodeFailedPrecondition, "customer portal")
}

// TestConsoleCallsBillingOff: without billing, GetBilling says so and the
// other calls answer FailedPrecondition.
func TestConsoleCallsBillingOff(t *testing.T) {
	e := &env{Env: cptest.New(t, "cpbilloff"), mail: &mailer.Recorder{}}
	e.svc = billing.New(e.Store, config.Default().Billing, "", e.mail, e.Log)
	tn, owner := e.tenantWithOwner(t, "a")
	e.Serve(t, []server.Service{e.svc.Service(e.Options()...)}, nil)
	c := billingv1connect.NewBillingServiceClient(http.DefaultClient, e.URL, cptest.Bearer(e.session(t, owner)))
	b, err := c.GetBilling(t.Context(), connect.NewRequest(&billingv1.GetBillingRequest{TenantId: tn}))
	if err != nil || b.Msg.Enabled || b.Msg.Plan != nil {
		t.Fatalf("GetBilling with billing off: %v %v", b, err)
	}
	_, err = c.CreatePortalSession(t.Context(), connect.NewRequest(&billingv1.CreatePortalSessionRequest{TenantId: tn}))
	cptest.WantCode(t, "portal with billing off", err, connect.CodeFailedPrecondition, "billing is not set up")
}
