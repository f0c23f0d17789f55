package billing

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/stripe/stripe-go/v76"

	"github.com/mairust/mairust/controlplane/store"
)

// customerBatch is how many tenants get a customer per round.
const customerBatch = 50

// pendingTenant is a tenant without a Stripe customer.
type pendingTenant struct{ id, name, email string }

// syncCustomers gives each tenant without one a Stripe customer. The
// idempotency key is derived from the tenant id, so that a retry after a
// lost answer, or another replica doing the same, gets the same customer.
func (s *Service) syncCustomers(ctx context.Context) error {
	var pending []pendingTenant
	err := s.st.Tx(ctx, store.Scope{}, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `SELECT id, name, email FROM tenants_without_customer($1)`, customerBatch)
		var err error
		pending, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (pendingTenant, error) {
			var t pendingTenant
			err := r.Scan(&t.id, &t.name, &t.email)
			return t, err
		})
		return err
	})
	if err != nil {
		return err
	}
	for _, t := range pending {
		if err := s.createCustomer(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

// createCustomer makes t's customer and records it with the default plan.
func (s *Service) createCustomer(ctx context.Context, t pendingTenant) error {
	params := &stripe.CustomerParams{Name: stripe.String(t.name), Metadata: map[string]string{"tenant_id": t.id}}
	if t.email != "" {
		params.Email = stripe.String(t.email)
	}
	params.SetIdempotencyKey("mairust-tenant-customer-" + t.id)
	params.Context = ctx
	c, err := s.sc.Customers.New(params)
	if err != nil {
		return fmt.Errorf("customer of tenant %s: %w", t.id, err)
	}
	err = s.st.Tx(ctx, store.Scope{TenantID: t.id}, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO tenant_billing (tenant_id, customer_id, plan) VALUES ($1, $2, $3)
			ON CONFLICT (tenant_id) DO UPDATE SET customer_id = excluded.customer_id, updated_at = now()
			WHERE tenant_billing.customer_id IS NULL`, t.id, c.ID, s.cfg.DefaultPlan)
		return err
	})
	if err != nil {
		return fmt.Errorf("record customer %s of tenant %s: %w", c.ID, t.id, err)
	}
	s.log.Info("Stripe customer created", "tenant_id", t.id, "customer", c.ID)
	return nil
}
