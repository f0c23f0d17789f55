package controlplane_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/mairust/mairust/controlplane/cptest"
	"github.com/mairust/mairust/internal/stripetest"
	tenantsv1 "github.com/mairust/mairust/proto/mairust/tenants/v1"
)

// TestBillingHoldsOutbound: with billing on (stripe-mock), the tenant gets
// a Stripe customer and its plan's domain limit; a failed payment, fed to
// the control plane's webhook as Stripe signs it, makes the tenant past
// due (sending still works), then restricted once the grace period is
// over: its connected agent refuses new outbound submissions saying why,
// while inbound mail still arrives; the payment lifts the hold.
func TestBillingHoldsOutbound(t *testing.T) {
	const secret = "whsec_process_test"
	c := startControlPlane(t, fmt.Sprintf(`billing:
  stripe_secret_key: %s
  stripe_webhook_secret: %s
  stripe_api_url: %s
  sync_interval: 1s
  grace_period: 3s
  plans:
    - {id: free, name: Free, domains: 1}
    - {id: pro, name: Pro, price_id: price_pro}
`, stripetest.Key, secret, stripetest.Start(t)))
	ctx := context.Background()
	cpdb, err := pgx.Connect(ctx, c.db)
	if err != nil {
		t.Fatal(err)
	}
	defer cpdb.Close(ctx)
	var customer string
	waitUntil(t, "the tenant's Stripe customer\n"+c.out.String(), func() bool {
		err := cpdb.QueryRow(ctx, `SELECT customer_id FROM tenant_billing WHERE tenant_id = $1 AND customer_id IS NOT NULL`, c.tenant).Scan(&customer)
		return err == nil
	})
	// The free plan's one domain is example.test.
	_, err = c.tenants().AddDomain(ctx, cptest.Auth(&tenantsv1.AddDomainRequest{TenantId: c.tenant, Name: "second.example"}, c.session))
	cptest.WantCode(t, "a second domain on the free plan", err, connect.CodeResourceExhausted, "domains: the Free plan allows 1 and this tenant has 1; upgrade to Pro")
	a := startAgent(t, c, "")
	a.addUser(t, "bob@example.test")
	if err := a.submit("bob@example.test", "friend@remote.test", "before"); err != nil {
		t.Fatalf("submission before the failed payment: %v\n%s", err, a.log.String())
	}

	event := func(id, typ string) {
		t.Helper()
		payload, _ := json.Marshal(map[string]any{"id": id, "object": "event", "type": typ, "created": time.Now().Unix(),
			"data": map[string]any{"object": map[string]any{"object": "invoice", "id": "in_1", "customer": customer}}})
		signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: secret, Timestamp: time.Now()})
		req, _ := http.NewRequest(http.MethodPost, c.url+"/billing/stripe/webhook", bytes.NewReader(payload))
		req.Header.Set("Stripe-Signature", signed.Header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("webhook %s: %v %v\n%s", typ, resp, err, c.out.String())
		}
		resp.Body.Close()
	}
	state := func() string {
		var st string
		if err := cpdb.QueryRow(ctx, `SELECT state FROM tenant_billing WHERE tenant_id = $1`, c.tenant).Scan(&st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	event("evt_failed", "invoice.payment_failed")
	start := time.Now()
	if st := state(); st != "past_due" {
		t.Fatalf("state %s after the failed payment, want past_due", st)
	}
	if err := a.submit("bob@example.test", "friend@remote.test", "grace"); err != nil && time.Since(start) < 2*time.Second {
		t.Fatalf("submission during the grace period: %v", err)
	}
	var refusal error
	waitUntil(t, "submissions refused\n"+a.log.String(), func() bool {
		refusal = a.submit("bob@example.test", "friend@remote.test", "held")
		return refusal != nil
	})
	t.Logf("outbound held %v after the failed payment (grace period 3s)", time.Since(start).Round(time.Millisecond))
	if st := state(); st != "restricted" {
		t.Fatalf("state %s while held, want restricted", st)
	}
	if !strings.Contains(refusal.Error(), "550") || !strings.Contains(refusal.Error(), "bill is unpaid; incoming mail still arrives") {
		t.Fatalf("refusal %q, want 550 saying the bill is unpaid", refusal)
	}
	a.deliver(t, "bob@example.test") // inbound keeps working
	if n := a.count(t, `SELECT count(*) FROM messages m JOIN folders f ON f.id = m.folder_id WHERE m.rcpt_to = 'bob@example.test' AND m.mail_from = 'sender@remote.test' AND f.special = 'inbox'`); n != 1 {
		t.Fatalf("bob's inbox has %d messages while held, want the 1 delivered", n)
	}

	event("evt_paid", "invoice.paid")
	waitUntil(t, "submissions accepted again\n"+a.log.String(), func() bool {
		return a.submit("bob@example.test", "friend@remote.test", "after") == nil
	})
}
