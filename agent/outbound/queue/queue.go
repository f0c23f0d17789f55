// Package queue is the durable outbound queue. EnqueueTx stores a submitted
// message, its recipients and one River job per recipient domain in the
// submitter's transaction. The deliver worker hands a domain's pending
// recipients to deliver.Client and records the attempt (delivery log,
// recipient state, the retry job) in one transaction with the job's
// completion; temporary failures are retried along NextRetry until the
// message's lifetime runs out, and recipients that fail for good are
// bounced (package dsn) into the sender's INBOX when the sender is a local
// user, else as a new queued message with the null sender.
//
// It owns the outbound_queue, outbound_queue_recipients and
// outbound_delivery_log tables. It does not route or speak SMTP (package
// deliver), build bounces (dsn), sign (dkim) or decide whether a user may
// send (policy).
//
// The message bytes live in the queue row, not in the blob store: they then
// commit with the row and the jobs in the submitter's transaction, no blob
// reference has to be taught to the mail store's collector, and they are
// dropped as soon as every recipient is final. PostgreSQL takes up to 1 GB
// in one value: far above the default smtp.max_message_bytes (50 MiB), but
// near the 1 GiB the setting allows, EnqueueTx fails. A delivery attempt
// holds the message in memory either way.
package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/agent/mailstore"
	"github.com/mairust/mairust/agent/outbound/deliver"
)

// QueueName is the River queue the delivery and bounce jobs run in; give it
// workers with jobs.Options.Queues.
const QueueName = "outbound"

// DefaultAttemptTimeout bounds one delivery attempt.
const DefaultAttemptTimeout = 30 * time.Minute

// Config is what a Queue needs.
type Config struct {
	// Client delivers; its Router routes and its Limiter caps the sessions
	// per destination.
	Client *deliver.Client
	// Store receives the bounces for local senders.
	Store *mailstore.Store
	// Hostname names this agent in bounces (Reporting-MTA).
	Hostname string
	// Lifetime is how long a message is retried; 0: deliver.DefaultLifetime.
	// It is fixed for each message when it is queued.
	Lifetime time.Duration
	// AttemptTimeout bounds one delivery attempt; 0: DefaultAttemptTimeout.
	// Keep it below jobs.rescue_after.
	AttemptTimeout time.Duration
	// NextRetry says when to try again after attempt (1-based) and whether
	// the lifetime has run out; nil: deliver.DefaultSchedule.Next.
	NextRetry func(attempt int, firstTried time.Time, lifetime time.Duration) (time.Time, bool)
	// Log receives one line per attempt and recipient; nil: slog.Default().
	Log *slog.Logger
}

// Queue queues outbound mail and runs its deliveries.
type Queue struct {
	pool     *pgxpool.Pool
	cfg      Config
	accounts *accounts.Accounts
	// jobs is an insert-only River client: the Queue inserts jobs in its
	// callers' and its own transactions, whoever works them.
	jobs *river.Client[pgx.Tx]
	log  *slog.Logger
}

// New returns a Queue on pool; Register its workers with the River client
// that works QueueName.
func New(pool *pgxpool.Pool, cfg Config) (*Queue, error) {
	if cfg.Client == nil || cfg.Store == nil || cfg.Hostname == "" {
		return nil, errors.New("queue: Client, Store and Hostname are required")
	}
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = deliver.DefaultLifetime
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = DefaultAttemptTimeout
	}
	if cfg.NextRetry == nil {
		cfg.NextRetry = deliver.DefaultSchedule.Next
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	log := cfg.Log.With("component", "outbound")
	jobs, err := river.NewClient(riverpgxv5.New(pool), &river.Config{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	return &Queue{pool: pool, cfg: cfg, accounts: accounts.New(pool), jobs: jobs, log: log}, nil
}

// Register adds the queue's workers.
func (q *Queue) Register(w *river.Workers) {
	river.AddWorker(w, &deliverWorker{q: q})
	river.AddWorker(w, &noticeWorker{q: q})
}

// Message is a message to send.
type Message struct {
	TenantID   string
	UserID     int64  // the submitting user; 0: none (mail the agent sends)
	MailFrom   string // "" for the null sender
	Recipients []string
	Data       []byte // the message, CRLF line endings
}

// EnqueueTx queues m in tx: the message, its recipients and one delivery
// job per recipient domain commit with tx, or nothing does. Recipients are
// deduplicated with their domains lower-cased.
func (q *Queue) EnqueueTx(ctx context.Context, tx pgx.Tx, m Message) (int64, error) {
	addrs, domains, err := splitRecipients(m.Recipients)
	if err != nil {
		return 0, err
	}
	if len(m.Data) == 0 {
		return 0, errors.New("queue: empty message")
	}
	var id int64
	// A user deleted meanwhile leaves the message without one.
	err = tx.QueryRow(ctx, `
		WITH q AS (
			INSERT INTO outbound_queue(tenant_id, user_id, mail_from, data, size, expires_at)
			VALUES($1, (SELECT id FROM mail_users WHERE id = $2), $3, $4, $5, now() + make_interval(secs => $6))
			RETURNING id),
		r AS (
			INSERT INTO outbound_queue_recipients(queue_id, address, domain)
			SELECT q.id, x.a, x.d FROM q, unnest($7::text[], $8::text[]) AS x(a, d))
		SELECT id FROM q`,
		m.TenantID, m.UserID, strings.Trim(m.MailFrom, "<>"), m.Data, len(m.Data), q.cfg.Lifetime.Seconds(), addrs, domains).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("queue: enqueue: %w", err)
	}
	var jobs []river.InsertManyParams
	seen := map[string]bool{}
	for _, d := range domains {
		if !seen[d] {
			seen[d] = true
			jobs = append(jobs, river.InsertManyParams{Args: deliverArgs{QueueID: id, Domain: d}})
		}
	}
	if _, err := q.jobs.InsertManyTx(ctx, tx, jobs); err != nil {
		return 0, fmt.Errorf("queue: enqueue jobs: %w", err)
	}
	return id, nil
}

// splitRecipients returns the distinct recipients, with lower-cased
// domains, and the domain of each.
func splitRecipients(in []string) (addrs, domains []string, err error) {
	seen := map[string]bool{}
	for _, a := range in {
		a = strings.Trim(strings.TrimSpace(a), "<>")
		at := strings.LastIndexByte(a, '@')
		if at <= 0 || at == len(a)-1 || strings.ContainsAny(a, " \t\r\n<>") {
			return nil, nil, fmt.Errorf("queue: recipient %q is not an address of the form user@domain", a)
		}
		d := strings.TrimSuffix(strings.ToLower(a[at+1:]), ".")
		a = a[:at+1] + d
		if !seen[a] {
			seen[a] = true
			addrs, domains = append(addrs, a), append(domains, d)
		}
	}
	if len(addrs) == 0 {
		return nil, nil, errors.New("queue: message without recipients")
	}
	return addrs, domains, nil
}

var (
	recipientResults = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mairust", Subsystem: "outbound", Name: "recipient_attempts_total",
		Help: "Delivery attempts per recipient, by the recipient's state after it: delivered, deferred, failed.",
	}, []string{"result"})
	notices = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mairust", Subsystem: "outbound", Name: "notices_total",
		Help: "Messages the agent wrote (purpose bounce or alert), by where they went: inbox (a local address), queued (a remote one), suppressed (a bounce of a bounce), dropped (a local address without a user).",
	}, []string{"purpose", "to"})
)

// Collectors returns the package's metrics for registration.
func Collectors() []prometheus.Collector { return []prometheus.Collector{recipientResults, notices} }
