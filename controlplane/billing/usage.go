package billing

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stripe/stripe-go/v76"

	"github.com/mairust/mairust/controlplane/store"
)

// meterWindow is how far back usage is sent: Stripe takes meter events
// of the last 35 days; an hour is kept in hand.
const meterWindow = 35*24*time.Hour - time.Hour

// usageBatch is how many hours of usage are read at once to be sent.
const usageBatch = 100

// usage is an hour of a tenant's usage of a meter, to send.
type usage struct {
	tenant, meter, identifier, customer string
	hour                                time.Time
	quantity                            int64
}

// sendUsage collects the messages and storage of the complete hours into
// meter_usage and sends every unsent hour of the last 35 days as a meter
// event, so that usage recorded during an outage (of Stripe or of the
// control plane) is sent afterwards. Each hour has its own identifier: Stripe
// counts a retry once, and an hour marked sent is not sent again.
func (s *Service) sendUsage(ctx context.Context) error {
	since := time.Now().Add(-meterWindow)
	err := s.st.Tx(ctx, store.Scope{}, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `SELECT collect_messages($1), collect_storage($1)`, since)
		return err
	})
	if err != nil {
		return fmt.Errorf("collect usage: %w", err)
	}
	for {
		var batch []usage
		err := s.st.Tx(ctx, store.Scope{}, func(tx pgx.Tx) error {
			rows, _ := tx.Query(ctx, `SELECT tenant_id, meter, hour, quantity, identifier, customer_id FROM unsent_usage($1, $2)`, since, usageBatch)
			var err error
			batch, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (usage, error) {
				var u usage
				err := r.Scan(&u.tenant, &u.meter, &u.hour, &u.quantity, &u.identifier, &u.customer)
				return u, err
			})
			return err
		})
		if err != nil {
			return err
		}
		for _, u := range batch {
			if err := s.send(ctx, u); err != nil {
				return err
			}
		}
		if len(batch) < usageBatch {
			return nil
		}
	}
}

// send sends one hour of usage (nothing for a zero quantity) and marks it
// sent.
func (s *Service) send(ctx context.Context, u usage) error {
	if u.quantity > 0 {
		params := &stripe.BillingMeterEventParams{EventName: stripe.String(s.eventName(u.meter)), Identifier: stripe.String(u.identifier),
			Payload:   map[string]string{"stripe_customer_id": u.customer, "value": strconv.FormatInt(u.quantity, 10)},
			Timestamp: stripe.Int64(u.hour.Unix())}
		params.Context = ctx
		_, err := s.sc.BillingMeterEvents.New(params)
		var se *stripe.Error
		if errors.As(err, &se) && se.Type == stripe.ErrorTypeInvalidRequest && strings.Contains(se.Msg, "identifier") {
			s.log.Info("meter event sent already", "identifier", u.identifier, "stripe", se.Msg)
		} else if err != nil {
			return fmt.Errorf("meter event %s: %w", u.identifier, err)
		}
	}
	return s.st.Tx(ctx, store.Scope{TenantID: u.tenant}, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE meter_usage SET sent_at = now() WHERE tenant_id = $1 AND meter = $2 AND hour = $3`, u.tenant, u.meter, u.hour)
		return err
	})
}

// eventName is the Stripe event name of a meter.
func (s *Service) eventName(meter string) string {
	if meter == "storage" {
		return s.cfg.StorageMeter
	}
	return s.cfg.MessagesMeter
}

// monthStart is the first instant of t's calendar month, in UTC.
func monthStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// holdOverLimit holds the outbound mail of the tenants that have sent
// their plan's monthly messages, and lifts the hold of those that no
// longer have (a new month, a bigger plan). Restricted tenants keep their
// bill's hold.
func (s *Service) holdOverLimit(ctx context.Context) error {
	month := monthStart(time.Now())
	type row struct {
		tenant, plan, state string
		hold                *string
		messages            int64
	}
	var rows []row
	err := s.st.Tx(ctx, store.Scope{}, func(tx pgx.Tx) error {
		r, _ := tx.Query(ctx, `SELECT tenant_id, plan, state, hold_reason, messages FROM monthly_messages($1)`, month)
		var err error
		rows, err = pgx.CollectRows(r, func(r pgx.CollectableRow) (row, error) {
			var x row
			err := r.Scan(&x.tenant, &x.plan, &x.state, &x.hold, &x.messages)
			return x, err
		})
		return err
	})
	if err != nil {
		return err
	}
	for _, r := range rows {
		if r.state == Restricted {
			continue
		}
		plan := s.plans[r.plan]
		var want *string
		if plan.MonthlyMessages > 0 && r.messages >= plan.MonthlyMessages {
			reason := fmt.Sprintf("This organisation has used the %d messages of its %s plan for this month; incoming mail still arrives. An administrator can upgrade in the console: %s", plan.MonthlyMessages, plan.Name, s.consoleURL)
			want = &reason
		}
		if (want == nil) == (r.hold == nil) {
			continue
		}
		var changed bool
		err := s.st.Tx(ctx, store.Scope{}, func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, `SELECT set_limit_hold($1, $2)`, r.tenant, want).Scan(&changed)
		})
		if err != nil {
			return err
		}
		if changed {
			s.log.Info("monthly message limit", "tenant_id", r.tenant, "plan", r.plan, "messages", r.messages, "limit", plan.MonthlyMessages, "held", want != nil)
		}
	}
	return nil
}
