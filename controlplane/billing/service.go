package billing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/stripe/stripe-go/v76"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mairust/mairust/controlplane/access"
	"github.com/mairust/mairust/controlplane/accounts"
	"github.com/mairust/mairust/controlplane/server"
	"github.com/mairust/mairust/internal/config"
	billingv1 "github.com/mairust/mairust/proto/mairust/billing/v1"
	"github.com/mairust/mairust/proto/mairust/billing/v1/billingv1connect"
)

var _ billingv1connect.BillingServiceHandler = (*Service)(nil)

// Service returns the console's BillingService for server.New.
func (s *Service) Service(opts ...connect.HandlerOption) server.Service {
	path, h := billingv1connect.NewBillingServiceHandler(s, opts...)
	return server.Service{Name: billingv1connect.BillingServiceName, Path: path, Handler: h}
}

// errOff answers the calls that need billing when it is off.
var errOff = connect.NewError(connect.CodeFailedPrecondition, errors.New("billing is not set up on this control plane (billing.stripe_secret_key): there is nothing to pay"))

// states maps a tenant's state to the API's.
var states = map[string]billingv1.BillingState{Active: billingv1.BillingState_BILLING_STATE_ACTIVE,
	PastDue: billingv1.BillingState_BILLING_STATE_PAST_DUE, Restricted: billingv1.BillingState_BILLING_STATE_RESTRICTED}

// account is what the console shows of a tenant's billing row.
type account struct {
	customer, plan, state string
	subscription, hold    *string
	pastDueSince          *time.Time
}

// read returns the tenant's billing row (the default plan, active, before
// its customer is made).
func (s *Service) read(ctx context.Context, tx pgx.Tx, tenant string) (account, error) {
	a := account{plan: s.cfg.DefaultPlan, state: Active}
	var customer *string
	err := tx.QueryRow(ctx, `SELECT customer_id, plan, state, subscription_id, hold_reason, past_due_since FROM tenant_billing WHERE tenant_id = $1`, tenant).
		Scan(&customer, &a.plan, &a.state, &a.subscription, &a.hold, &a.pastDueSince)
	if customer != nil {
		a.customer = *customer
	}
	if errors.Is(err, pgx.ErrNoRows) {
		err = nil
	}
	return a, err
}

// planProto is p for the API.
func planProto(p config.Plan) *billingv1.Plan {
	return &billingv1.Plan{Id: p.ID, Name: p.Name, Domains: int32(p.Domains), MailUsers: int32(p.MailUsers), Agents: int32(p.Agents),
		MonthlyMessages: p.MonthlyMessages, Purchasable: p.PriceID != ""}
}

// GetBilling returns the tenant's plan, state and the plans (viewer).
func (s *Service) GetBilling(ctx context.Context, req *connect.Request[billingv1.GetBillingRequest]) (*connect.Response[billingv1.GetBillingResponse], error) {
	resp := &billingv1.GetBillingResponse{}
	err := access.InTenant(ctx, s.st, req.Msg.TenantId, "viewer", func(tx pgx.Tx, _ string) error {
		if !s.Enabled() {
			return nil
		}
		a, err := s.read(ctx, tx, req.Msg.TenantId)
		if err != nil {
			return err
		}
		resp.Enabled, resp.Plan, resp.State, resp.Subscribed = true, planProto(s.plans[a.plan]), states[a.state], a.subscription != nil
		if a.hold != nil {
			resp.HoldReason = *a.hold
		}
		if a.pastDueSince != nil {
			resp.PastDueSince, resp.RestrictedAt = timestamppb.New(*a.pastDueSince), timestamppb.New(a.pastDueSince.Add(s.cfg.GracePeriod))
		}
		for _, p := range s.cfg.Plans {
			resp.Plans = append(resp.Plans, planProto(p))
		}
		err = tx.QueryRow(ctx, `SELECT messages FROM monthly_messages($2, $1)`, req.Msg.TenantId, monthStart(time.Now())).Scan(&resp.MessagesThisMonth)
		if errors.Is(err, pgx.ErrNoRows) { // no customer yet: nothing counted
			err = nil
		}
		return err
	})
	if err != nil {
		return nil, accounts.Fault(err)
	}
	return connect.NewResponse(resp), nil
}

// customer returns the tenant's Stripe customer for a call that needs one
// (owner or admin), and whether it has a subscription.
func (s *Service) customer(ctx context.Context, tenant string) (account, error) {
	if !s.Enabled() {
		return account{}, errOff
	}
	var a account
	err := access.InTenant(ctx, s.st, tenant, "admin", func(tx pgx.Tx, _ string) (err error) {
		a, err = s.read(ctx, tx, tenant)
		return err
	})
	if err != nil {
		return a, accounts.Fault(err)
	}
	if a.customer == "" {
		return a, connect.NewError(connect.CodeUnavailable, errors.New("the tenant's Stripe customer is being created: try again in a few seconds"))
	}
	return a, nil
}

// CreateCheckoutSession starts a subscription to a plan (owner or admin).
// A tenant with a subscription changes it in the customer portal.
func (s *Service) CreateCheckoutSession(ctx context.Context, req *connect.Request[billingv1.CreateCheckoutSessionRequest]) (*connect.Response[billingv1.CreateCheckoutSessionResponse], error) {
	plan, ok := s.plans[req.Msg.PlanId]
	if s.Enabled() && (!ok || plan.PriceID == "") {
		return nil, accounts.InvalidArgument("plan_id", fmt.Errorf("%q is not a plan to subscribe to: give the id of a plan with a price", req.Msg.PlanId))
	}
	a, err := s.customer(ctx, req.Msg.TenantId)
	if err != nil {
		return nil, err
	}
	if a.subscription != nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("this tenant has a subscription: change its plan in the customer portal (Manage billing)"))
	}
	back := s.tenantPage(req.Msg.TenantId)
	params := &stripe.CheckoutSessionParams{
		Customer: stripe.String(a.customer), Mode: stripe.String(string(stripe.CheckoutSessionModeSubscription)),
		LineItems:         []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String(plan.PriceID), Quantity: stripe.Int64(1)}},
		SuccessURL:        stripe.String(back + "?checkout=done"),
		CancelURL:         stripe.String(back),
		ClientReferenceID: stripe.String(req.Msg.TenantId),
		Metadata:          map[string]string{"plan": plan.ID, "tenant_id": req.Msg.TenantId},
		SubscriptionData:  &stripe.CheckoutSessionSubscriptionDataParams{Metadata: map[string]string{"plan": plan.ID, "tenant_id": req.Msg.TenantId}},
	}
	params.Context = ctx
	cs, err := s.sc.CheckoutSessions.New(params)
	if err != nil {
		return nil, stripeFault("start Checkout", err)
	}
	return connect.NewResponse(&billingv1.CreateCheckoutSessionResponse{Url: cs.URL}), nil
}

// CreatePortalSession opens Stripe's customer portal (owner or admin).
func (s *Service) CreatePortalSession(ctx context.Context, req *connect.Request[billingv1.CreatePortalSessionRequest]) (*connect.Response[billingv1.CreatePortalSessionResponse], error) {
	a, err := s.customer(ctx, req.Msg.TenantId)
	if err != nil {
		return nil, err
	}
	params := &stripe.BillingPortalSessionParams{Customer: stripe.String(a.customer), ReturnURL: stripe.String(s.tenantPage(req.Msg.TenantId))}
	params.Context = ctx
	ps, err := s.sc.BillingPortalSessions.New(params)
	if err != nil {
		return nil, stripeFault("open the customer portal", err)
	}
	return connect.NewResponse(&billingv1.CreatePortalSessionResponse{Url: ps.URL}), nil
}

// tenantPage is the tenant's page in the console, where Stripe sends
// people back to.
func (s *Service) tenantPage(tenant string) string {
	return s.consoleURL + "tenants/" + url.PathEscape(tenant)
}

// stripeFault is a failed Stripe call, as the console shows it.
func stripeFault(what string, err error) error {
	return connect.NewError(connect.CodeUnavailable, fmt.Errorf("could not %s at Stripe: %w; try again later", what, err))
}

// Months of usage GetUsage returns: 6 by default, at most 24.
const (
	defaultUsageMonths = 6
	maxUsageMonths     = 24
)

// GetUsage returns the tenant's metered usage by month, newest first
// (viewer): the complete hours sent, or to be sent, to Stripe.
func (s *Service) GetUsage(ctx context.Context, req *connect.Request[billingv1.GetUsageRequest]) (*connect.Response[billingv1.GetUsageResponse], error) {
	n := int(req.Msg.Months)
	if n == 0 {
		n = defaultUsageMonths
	}
	if n < 1 || n > maxUsageMonths {
		return nil, accounts.InvalidArgument("months", fmt.Errorf("%d: give 1 to %d (0: %d)", req.Msg.Months, maxUsageMonths, defaultUsageMonths))
	}
	if !s.Enabled() {
		return nil, errOff
	}
	now := time.Now().UTC()
	first := time.Date(now.Year(), now.Month()-time.Month(n-1), 1, 0, 0, 0, 0, time.UTC)
	resp := &billingv1.GetUsageResponse{}
	err := access.InTenant(ctx, s.st, req.Msg.TenantId, "viewer", func(tx pgx.Tx, _ string) error {
		rows, _ := tx.Query(ctx, `SELECT date_trunc('month', hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS month,
				coalesce(sum(quantity) FILTER (WHERE meter = 'messages'), 0)::bigint,
				coalesce(sum(quantity) FILTER (WHERE meter = 'storage'), 0)::float8 / 1e6
			FROM meter_usage WHERE tenant_id = $1 AND hour >= $2 GROUP BY 1 ORDER BY 1 DESC`, req.Msg.TenantId, first)
		var err error
		resp.Months, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*billingv1.MonthUsage, error) {
			var m billingv1.MonthUsage
			var month time.Time
			err := r.Scan(&month, &m.Messages, &m.StorageGbMonths)
			m.Month = timestamppb.New(month)
			return &m, err
		})
		return err
	})
	if err != nil {
		return nil, accounts.Fault(err)
	}
	return connect.NewResponse(resp), nil
}
