package billing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/mairust/mairust/controlplane/store"
)

// WebhookPath is where Stripe posts events (configure it in Stripe's
// dashboard under the control plane's public URL).
const WebhookPath = "/billing/stripe/webhook"

// maxEventBytes bounds an event's body; Stripe's are well below.
const maxEventBytes = 1 << 20

// Webhook serves WebhookPath: it verifies the Stripe-Signature (secret
// and billing.webhook_tolerance), then applies the event once (by id).
// Bad signatures and stale timestamps get 400, a failure to apply 500
// (Stripe sends it again later).
func (s *Service) Webhook() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeJSON(w, http.StatusMethodNotAllowed, "POST the events of Stripe here")
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxEventBytes))
		if err != nil {
			writeJSON(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is over %d bytes or was cut: %v", maxEventBytes, err))
			return
		}
		ev, err := webhook.ConstructEventWithOptions(body, r.Header.Get("Stripe-Signature"), s.cfg.WebhookSecret,
			webhook.ConstructEventOptions{Tolerance: s.cfg.WebhookTolerance, IgnoreAPIVersionMismatch: true})
		if err != nil {
			s.log.Warn("Stripe webhook refused", "error", err, "remote", r.RemoteAddr)
			writeJSON(w, http.StatusBadRequest, "Stripe-Signature: "+err.Error()+" (check billing.stripe_webhook_secret and the clock)")
			return
		}
		if err := s.apply(r.Context(), ev); err != nil {
			s.log.Error("Stripe event not applied; Stripe will send it again", "event", ev.ID, "type", ev.Type, "error", err)
			writeJSON(w, http.StatusInternalServerError, "the event could not be applied now; send it again later")
			return
		}
		writeJSON(w, http.StatusOK, "")
	})
}

// writeJSON answers {"received": true} for status 200, else {"error": msg}.
func writeJSON(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if status == http.StatusOK {
		w.Write([]byte(`{"received":true}` + "\n"))
		return
	}
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// billingRow is a tenant's tenant_billing row.
type billingRow struct {
	plan, state  string
	subscription *string
	pastDueSince *time.Time
	lastEventAt  *time.Time
	hold         *string // why outbound mail is held
}

// change is what an event does to a tenant's billing: the fields set.
type change func(b *billingRow, at time.Time)

// apply records ev and, the first time its id is seen, applies it to the
// tenant of its customer. An event older than the last one applied to the
// tenant is recorded and ignored.
func (s *Service) apply(ctx context.Context, ev stripe.Event) error {
	customer, tenant, do, err := s.decode(ev)
	if err != nil {
		return err
	}
	at := time.Unix(ev.Created, 0)
	var before, after billingRow
	err = s.st.Tx(ctx, store.Scope{}, func(tx pgx.Tx) error {
		if tenant == "" && customer != "" {
			var t *string
			if err := tx.QueryRow(ctx, `SELECT billing_tenant($1)::text`, customer).Scan(&t); err != nil {
				return err
			}
			if t != nil {
				tenant = *t
			}
		}
		if _, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1, true)`, tenant); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO stripe_events (id, type, tenant_id) VALUES ($1, $2, nullif($3, '')::uuid) ON CONFLICT DO NOTHING`,
			ev.ID, string(ev.Type), tenant)
		if err != nil || tag.RowsAffected() == 0 || tenant == "" || do == nil {
			return err // a replay, or nothing to do
		}
		err = tx.QueryRow(ctx, `SELECT plan, state, subscription_id, past_due_since, last_event_at, hold_reason FROM tenant_billing WHERE tenant_id = $1 FOR UPDATE`, tenant).
			Scan(&before.plan, &before.state, &before.subscription, &before.pastDueSince, &before.lastEventAt, &before.hold)
		if errors.Is(err, pgx.ErrNoRows) {
			s.log.Warn("Stripe event for a tenant without billing; ignored", "event", ev.ID, "tenant_id", tenant)
			return nil
		}
		if err != nil || before.lastEventAt != nil && at.Before(*before.lastEventAt) {
			return err // or older than what is applied
		}
		after = before
		do(&after, at)
		after.lastEventAt = &at
		switch {
		case after.state == Restricted:
			after.hold = s.billHold()
		case before.state == Restricted: // paid: a plan's limit is applied again by the next pass
			after.hold = nil
		}
		_, err = tx.Exec(ctx, `UPDATE tenant_billing SET plan = $2, state = $3, subscription_id = $4, past_due_since = $5, last_event_at = $6,
			hold_reason = $7, updated_at = now() WHERE tenant_id = $1`, tenant, after.plan, after.state, after.subscription, after.pastDueSince, after.lastEventAt, after.hold)
		return err
	})
	if err != nil {
		return err
	}
	if after.state != before.state && after.state != "" {
		s.log.Info("tenant billing state changed", "tenant_id", tenant, "from", before.state, "to", after.state, "plan", after.plan, "event", ev.ID)
		s.tell(ctx, tenant, after.state)
	}
	return nil
}

// decode returns the customer an event is about (or its tenant, when the
// event names it) and what it changes; nil for an event not handled.
func (s *Service) decode(ev stripe.Event) (customer, tenant string, do change, err error) {
	if ev.Data == nil {
		return "", "", nil, nil
	}
	raw := ev.Data.Raw
	switch ev.Type {
	case "checkout.session.completed":
		var cs stripe.CheckoutSession
		if err := json.Unmarshal(raw, &cs); err != nil {
			return "", "", nil, err
		}
		plan, ok := s.plans[cs.Metadata["plan"]]
		if cs.Subscription == nil || !ok {
			return idOf(cs.Customer), cs.ClientReferenceID, nil, nil
		}
		sub := cs.Subscription.ID
		return idOf(cs.Customer), cs.ClientReferenceID, func(b *billingRow, _ time.Time) {
			b.plan, b.subscription = plan.ID, &sub
		}, nil
	case "customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted":
		var sub stripe.Subscription
		if err := json.Unmarshal(raw, &sub); err != nil {
			return "", "", nil, err
		}
		return idOf(sub.Customer), sub.Metadata["tenant_id"], s.subscriptionChange(ev.Type, &sub), nil
	case "invoice.paid", "invoice.payment_failed":
		var inv stripe.Invoice
		if err := json.Unmarshal(raw, &inv); err != nil {
			return "", "", nil, err
		}
		if ev.Type == "invoice.paid" {
			return idOf(inv.Customer), "", func(b *billingRow, _ time.Time) { b.state, b.pastDueSince = Active, nil }, nil
		}
		return idOf(inv.Customer), "", s.pastDue, nil
	}
	return "", "", nil, nil
}

// pastDue marks a tenant past due from at (restricted at once without a
// grace period), unless it is already past due or restricted.
func (s *Service) pastDue(b *billingRow, at time.Time) {
	if b.state != Active {
		return
	}
	b.state, b.pastDueSince = PastDue, &at
	if s.cfg.GracePeriod == 0 {
		b.state = Restricted
	}
}

// subscriptionChange is what a subscription event does: the plan of its
// price, and the state of its status. A subscription ended (deleted,
// canceled, expired) puts the tenant back on the default plan.
func (s *Service) subscriptionChange(typ stripe.EventType, sub *stripe.Subscription) change {
	ended := typ == "customer.subscription.deleted" || sub.Status == stripe.SubscriptionStatusCanceled ||
		sub.Status == stripe.SubscriptionStatusIncompleteExpired
	plan := ""
	if sub.Items != nil {
		for _, it := range sub.Items.Data {
			if it.Price != nil && s.byPrice[it.Price.ID] != "" {
				plan = s.byPrice[it.Price.ID]
			}
		}
	}
	id := sub.ID
	return func(b *billingRow, at time.Time) {
		switch {
		case ended:
			if b.subscription == nil || *b.subscription == id {
				b.plan, b.subscription, b.state, b.pastDueSince = s.cfg.DefaultPlan, nil, Active, nil
			}
			return
		case plan != "":
			b.plan = plan
		default:
			s.log.Warn("subscription with no price of billing.plans: the plan is kept", "subscription", id)
		}
		b.subscription = &id
		switch sub.Status {
		case stripe.SubscriptionStatusActive, stripe.SubscriptionStatusTrialing:
			b.state, b.pastDueSince = Active, nil
		case stripe.SubscriptionStatusPastDue, stripe.SubscriptionStatusUnpaid:
			s.pastDue(b, at)
		}
	}
}

// idOf is a customer's id, or "".
func idOf(c *stripe.Customer) string {
	if c == nil {
		return ""
	}
	return c.ID
}
