package controlplane

import (
	"context"
	"log/slog"
	"time"

	"github.com/mairust/mairust/controlplane/store"
	"github.com/mairust/mairust/internal/config"
)

// retentionInterval is how often old reports and notices are deleted.
const retentionInterval = time.Hour

// stripeEventRetention is how long a handled Stripe event's id is kept to
// recognise a replay: well beyond the 3 days Stripe resends for.
const stripeEventRetention = 30 * 24 * time.Hour

// purge deletes the reports, notices and Stripe event ids older than
// their retention, and logs what went.
func purge(ctx context.Context, st *store.Store, c config.ControlPlane, log *slog.Logger) {
	for _, p := range []struct {
		function string
		older    time.Duration
	}{{"purge_agent_reports", c.ReportRetention}, {"purge_notices", c.NoticeRetention}, {"purge_stripe_events", stripeEventRetention}} {
		n, err := st.Purge(ctx, p.function, p.older)
		if err != nil && ctx.Err() == nil {
			log.Error("deleting old rows failed; trying again in an hour", "function", p.function, "deleted", n, "error", err)
		} else if n > 0 {
			log.Info("old rows deleted", "function", p.function, "deleted", n, "older_than", p.older.String())
		}
	}
}

// runRetention purges at start, then every retentionInterval until ctx
// ends. Replicas may purge together: the deletes do not conflict.
func runRetention(ctx context.Context, st *store.Store, c config.ControlPlane, log *slog.Logger) {
	t := time.NewTicker(retentionInterval)
	defer t.Stop()
	for {
		purge(ctx, st, c, log)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
