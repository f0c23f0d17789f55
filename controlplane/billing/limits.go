package billing

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"

	"github.com/mairust/mairust/controlplane/access"
	"github.com/mairust/mairust/internal/config"
)

// counted is how the objects of each kind a plan limits are counted, in a
// transaction scoped to the tenant ($1).
var counted = map[access.Kind]struct {
	query string
	limit func(config.Plan) int
	name  string
}{
	access.Domains:   {`SELECT count(*) FROM domains WHERE tenant_id = $1`, func(p config.Plan) int { return p.Domains }, "domains"},
	access.MailUsers: {`SELECT count(*) FROM mail_users WHERE tenant_id = $1`, func(p config.Plan) int { return p.MailUsers }, "mail users"},
	access.Agents:    {`SELECT count(*) FROM agents WHERE tenant_id = $1 AND revoked_at IS NULL`, func(p config.Plan) int { return p.Agents }, "agents"},
}

// Allow implements access.Limits: with billing on, the tenant's plan must
// allow one more object of kind; the error (ResourceExhausted) names the
// limit and the plan to upgrade to.
func (s *Service) Allow(ctx context.Context, tx pgx.Tx, tenantID string, kind access.Kind) error {
	if !s.Enabled() {
		return nil
	}
	c, ok := counted[kind]
	if !ok {
		return fmt.Errorf("billing: no limit on %q", kind)
	}
	planID := s.cfg.DefaultPlan
	err := tx.QueryRow(ctx, `SELECT plan FROM tenant_billing WHERE tenant_id = $1`, tenantID).Scan(&planID)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	plan := s.plans[planID]
	limit := c.limit(plan)
	if limit == 0 {
		return nil
	}
	var n int
	if err := tx.QueryRow(ctx, c.query, tenantID).Scan(&n); err != nil {
		return err
	}
	if n < limit {
		return nil
	}
	return connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("%s: the %s plan allows %d and this tenant has %d; %s", c.name, plan.Name, limit, n, s.upgrade(plan, c.limit)))
}

// upgrade says which plan allows more than plan by limit, and where to
// change.
func (s *Service) upgrade(plan config.Plan, limit func(config.Plan) int) string {
	for _, p := range s.cfg.Plans {
		if l := limit(p); p.ID != plan.ID && p.PriceID != "" && (l == 0 || l > limit(plan)) {
			more := "no limit"
			if l > 0 {
				more = fmt.Sprint(l)
			}
			return fmt.Sprintf("upgrade to %s (%s) on the tenant's Billing page in the console, %s", p.Name, more, s.consoleURL)
		}
	}
	return "remove one first, or ask the operator for a bigger plan"
}
