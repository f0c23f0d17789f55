// Package billing bills the control plane's tenants through Stripe: a
// customer per tenant, plans mapped to Stripe prices (Checkout to change,
// the customer portal to manage), metered usage sent as billing meter
// events, and the signed webhooks that move a tenant between active,
// past_due and restricted. It is off when billing.stripe_secret_key is
// empty, and then nothing depends on it.
//
// It owns the tables tenant_billing and stripe_events.
package billing

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"

	"github.com/mairust/mairust/controlplane/mailer"
	"github.com/mairust/mairust/controlplane/store"
	"github.com/mairust/mairust/internal/config"
)

// The billing states of a tenant.
const (
	Active     = "active"
	PastDue    = "past_due"
	Restricted = "restricted"
)

// Service is billing for one control plane.
type Service struct {
	st   *store.Store
	cfg  config.Billing
	sc   *client.API
	mail mailer.Mailer
	log  *slog.Logger
	// consoleURL is linked in mails and Checkout's return addresses.
	consoleURL string
	plans      map[string]config.Plan // by id
	byPrice    map[string]string      // plan id by Stripe price id
}

// New returns billing as cfg sets it (see Enabled); consoleURL is where
// the console is, for links.
func New(st *store.Store, cfg config.Billing, consoleURL string, m mailer.Mailer, log *slog.Logger) *Service {
	s := &Service{st: st, cfg: cfg, mail: m, log: log.With("component", "billing"), consoleURL: consoleURL,
		plans: map[string]config.Plan{}, byPrice: map[string]string{}}
	for _, p := range cfg.Plans {
		s.plans[p.ID] = p
		if p.PriceID != "" {
			s.byPrice[p.PriceID] = p.ID
		}
	}
	if s.Enabled() {
		s.sc = newClient(cfg, s.log)
	}
	return s
}

// Enabled says whether billing is on (billing.stripe_secret_key is set).
func (s *Service) Enabled() bool { return s.cfg.StripeSecretKey != "" }

// newClient is the Stripe client of cfg, at billing.stripe_api_url when
// set, logging through log.
func newClient(cfg config.Billing, log *slog.Logger) *client.API {
	bc := &stripe.BackendConfig{LeveledLogger: leveled{log}, MaxNetworkRetries: stripe.Int64(2)}
	if cfg.StripeAPIURL != "" {
		bc.URL = stripe.String(cfg.StripeAPIURL)
	}
	return client.New(cfg.StripeSecretKey, &stripe.Backends{
		API:     stripe.GetBackendWithConfig(stripe.APIBackend, bc),
		Connect: stripe.GetBackendWithConfig(stripe.ConnectBackend, bc),
		Uploads: stripe.GetBackendWithConfig(stripe.UploadsBackend, bc),
	})
}

// leveled gives the Stripe client's log to slog: its errors as warnings
// (the caller decides what an error means), the rest at debug level.
type leveled struct{ log *slog.Logger }

func (l leveled) Debugf(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l leveled) Infof(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l leveled) Warnf(format string, v ...any)  { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l leveled) Errorf(format string, v ...any) { l.log.Warn(fmt.Sprintf(format, v...)) }

// Run keeps billing up to date until ctx ends, every
// billing.sync_interval: customers for new tenants, overdue tenants
// restricted, usage sent. It returns at once when billing is off.
func (s *Service) Run(ctx context.Context) {
	if !s.Enabled() {
		return
	}
	t := time.NewTicker(s.cfg.SyncInterval)
	defer t.Stop()
	for {
		s.Pass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Pass does one round of Run's work, logging what fails (it is tried
// again at the next round).
func (s *Service) Pass(ctx context.Context) {
	for _, step := range []struct {
		what string
		fn   func(context.Context) error
	}{{"create Stripe customers", s.syncCustomers}, {"restrict overdue tenants", s.restrictOverdue},
		{"send usage to Stripe's meters", s.sendUsage}, {"apply the plans' monthly message limits", s.holdOverLimit}} {
		if err := step.fn(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("billing: could not "+step.what+"; trying again at the next round", "error", err)
		}
	}
}
