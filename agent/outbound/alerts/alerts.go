// Package alerts tells the administrator of the Outbound Policy Engine's
// transitions (warn, suspend, release, auto_reenable): a message to
// outbound_alerts.email and a JSON POST to outbound_alerts.webhook_url.
//
// It reads the transitions from outbound_events, whoever made them (the
// policy in any agent, an administrator through the API or the CLI, the
// automatic re-enable), and marks each one alerted in the transaction that
// queues its alerts as jobs: every transition is alerted once, within a
// scan interval, and sending mail never waits for it.
package alerts

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/mairust/mairust/internal/config"
)

// batch is the most events one scan reads.
const batch = 100

// Mailer queues a message the agent wrote to one address in tx
// (satisfied by *queue.Queue).
type Mailer interface {
	NoticeTx(ctx context.Context, tx pgx.Tx, purpose, tenantID, to string, data []byte) error
}

// Event is a transition as the webhook receives it.
type Event struct {
	ID       int64           `json:"id"`
	Account  string          `json:"account"`
	TenantID string          `json:"tenant_id"`
	Kind     string          `json:"kind"` // warn, suspend, release or auto_reenable
	From     string          `json:"from_state"`
	To       string          `json:"to_state"`
	Actor    string          `json:"actor"` // policy, system or the administrator
	Reason   string          `json:"reason"`
	Score    *float64        `json:"score,omitempty"`
	Details  json.RawMessage `json:"details"` // the evaluation's factors and counts, {} for others
	At       time.Time       `json:"at"`
	Agent    string          `json:"agent"` // the host name of the agent that alerted
	Text     string          `json:"text"`  // one line for people (chat webhooks show it)
}

// Alerter scans for transitions and sends their alerts.
type Alerter struct {
	pool     *pgxpool.Pool
	mailer   Mailer
	settings func() config.OutboundAlerts
	hostname string
	log      *slog.Logger
	jobs     *river.Client[pgx.Tx] // insert-only
	client   *http.Client
}

// New returns an Alerter; settings gives the outbound_alerts in force
// (hot reload), hostname names this agent in alerts. Register its worker
// with the River client that works queue.QueueName, and Run it.
func New(pool *pgxpool.Pool, mailer Mailer, settings func() config.OutboundAlerts, hostname string, log *slog.Logger) (*Alerter, error) {
	log = log.With("component", "alerts")
	jobs, err := river.NewClient(riverpgxv5.New(pool), &river.Config{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("alerts: %w", err)
	}
	return &Alerter{pool: pool, mailer: mailer, settings: settings, hostname: hostname, log: log, jobs: jobs, client: &http.Client{Timeout: webhookTimeout}}, nil
}

// Run scans every interval until ctx is done.
func (a *Alerter) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for {
			n, err := a.Scan(ctx)
			if err != nil && ctx.Err() == nil {
				a.log.Error("outbound alerts: scan failed; trying again at the next interval", "error", err)
			}
			if err != nil || n < batch {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Scan queues the alerts of up to batch transitions not alerted yet, marks
// them alerted, and returns how many it read. Transitions of a kind not in
// outbound_alerts.kinds, or with neither email nor webhook_url set, are
// only logged.
func (a *Alerter) Scan(ctx context.Context) (int, error) {
	s := a.settings()
	var events []Event
	err := pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `SELECT e.id, e.account, coalesce(a.tenant_id, ''), e.kind, e.from_state, e.to_state,
				e.actor, e.reason, e.score, e.factors, e.at
			FROM outbound_events e LEFT JOIN outbound_accounts a ON a.account = e.account
			WHERE NOT e.alerted ORDER BY e.id LIMIT $1 FOR UPDATE OF e SKIP LOCKED`, batch)
		var err error
		events, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Event, error) {
			var e Event
			err := r.Scan(&e.ID, &e.Account, &e.TenantID, &e.Kind, &e.From, &e.To, &e.Actor, &e.Reason, &e.Score, &e.Details, &e.At)
			return e, err
		})
		if err != nil || len(events) == 0 {
			return err
		}
		ids := make([]int64, len(events))
		var hooks []river.InsertManyParams
		for i := range events {
			e := &events[i]
			ids[i], e.Agent, e.Text = e.ID, a.hostname, summary(*e)
			if !slices.Contains(s.Kinds, e.Kind) {
				continue
			}
			if s.Email != "" {
				if err := a.mailer.NoticeTx(ctx, tx, "alert", e.TenantID, s.Email, a.message(*e, s.Email)); err != nil {
					return err
				}
			}
			if s.WebhookURL != "" {
				hooks = append(hooks, river.InsertManyParams{Args: webhookArgs{Event: *e}})
			}
		}
		if len(hooks) > 0 {
			if _, err := a.jobs.InsertManyTx(ctx, tx, hooks); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, `UPDATE outbound_events SET alerted = true WHERE id = ANY($1)`, ids)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("alerts: scan: %w", err)
	}
	for _, e := range events {
		a.log.Info("outbound sending state changed", "account", e.Account, "kind", e.Kind, "from", e.From, "to", e.To,
			"by", e.Actor, "why", e.Reason, "alerted", slices.Contains(s.Kinds, e.Kind) && (s.Email != "" || s.WebhookURL != ""))
	}
	return len(events), nil
}

// summary is the one line that says what happened.
func summary(e Event) string {
	switch e.Kind {
	case "warn":
		return e.Account + " was warned by the outbound policy and is soft-limited (a lower hourly cap): " + e.Reason
	case "suspend":
		return e.Account + " is suspended from sending by the outbound policy: " + e.Reason
	case "release":
		return e.Account + " may send again: released by " + e.Actor + ": " + e.Reason
	case "auto_reenable":
		return e.Account + " was re-enabled automatically and is soft-limited: " + e.Reason
	}
	return fmt.Sprintf("%s went from %s to %s (%s by %s): %s", e.Account, e.From, e.To, e.Kind, e.Actor, e.Reason)
}

var webhooks = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "mairust", Subsystem: "outbound", Name: "alert_webhooks_total",
	Help: "POSTs of outbound alerts to outbound_alerts.webhook_url, by result: sent (a 2xx answer), failed (retried until the job's attempts run out).",
}, []string{"result"})

// Collectors returns the package's metrics for registration.
func Collectors() []prometheus.Collector { return []prometheus.Collector{webhooks} }
