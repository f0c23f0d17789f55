package billing

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mairust/mairust/controlplane/store"
)

// restrictOverdue restricts the tenants past due for longer than
// billing.grace_period, and tells their admins.
func (s *Service) restrictOverdue(ctx context.Context) error {
	var ids []string
	err := s.st.Tx(ctx, store.Scope{}, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `SELECT restrict_overdue(make_interval(secs => $1), $2)::text`, s.cfg.GracePeriod.Seconds(), *s.billHold())
		var err error
		ids, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	for _, id := range ids {
		s.log.Info("tenant restricted: past due beyond the grace period", "tenant_id", id, "grace_period", s.cfg.GracePeriod.String())
		s.tell(ctx, id, Restricted)
	}
	return err
}

// billHold is why a restricted tenant may not send new outbound mail, as
// its senders are told.
func (s *Service) billHold() *string {
	reason := "Sending is paused for this organisation because its bill is unpaid; incoming mail still arrives. An administrator can pay in the console: " + s.consoleURL
	return &reason
}

// tell mails the tenant's owners and admins what its new billing state
// means for them and what to do; a failure is logged.
func (s *Service) tell(ctx context.Context, tenant, state string) {
	var name string
	var to []string
	err := s.st.Tx(ctx, store.Scope{TenantID: tenant}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT name FROM tenants WHERE id = $1`, tenant).Scan(&name); err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `SELECT a.email FROM memberships m JOIN accounts a ON a.id = m.account_id
			WHERE m.tenant_id = $1 AND m.role IN ('owner', 'admin') ORDER BY a.email`, tenant)
		var err error
		to, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		s.log.Error("billing mail not sent: cannot read the tenant's admins", "tenant_id", tenant, "error", err)
		return
	}
	subject, body := s.message(name, state)
	for _, addr := range to {
		if err := s.mail.Send(ctx, addr, subject, body); err != nil {
			s.log.Error("billing mail not sent", "tenant_id", tenant, "to", addr, "error", err)
		}
	}
}

// message is the mail telling a tenant's admins of its new state.
func (s *Service) message(tenant, state string) (subject, body string) {
	billing := s.consoleURL + " (the tenant's Billing page)"
	switch state {
	case PastDue:
		return fmt.Sprintf("MaiRust: a payment for %s failed", tenant), fmt.Sprintf(
			"A payment for the tenant %q failed.\n\nEverything keeps working for %s. After that, the tenant's agents stop accepting new outbound mail until the bill is paid; incoming mail keeps arriving and nothing is lost.\n\nUpdate the payment method in the customer portal: %s\n",
			tenant, span(s.cfg.GracePeriod), billing)
	case Restricted:
		return fmt.Sprintf("MaiRust: outbound mail of %s is paused", tenant), fmt.Sprintf(
			"The bill of the tenant %q is still unpaid, so its agents no longer accept new outbound mail. Incoming mail keeps arriving and nothing is lost.\n\nPay the open invoice or update the payment method in the customer portal: %s\nSending resumes within seconds of the payment.\n",
			tenant, billing)
	default:
		return fmt.Sprintf("MaiRust: %s is in good standing", tenant), fmt.Sprintf(
			"The payment for the tenant %q was received: every service, outbound mail included, is available again.\n\n%s\n", tenant, billing)
	}
}

// span says d in hours (below two days) or days, e.g. "7 days".
func span(d time.Duration) string {
	n, unit := int(d.Round(time.Hour)/time.Hour), "hour"
	if n >= 48 {
		n, unit = n/24, "day"
	}
	if n != 1 {
		unit += "s"
	}
	return fmt.Sprintf("%d %s", n, unit)
}
