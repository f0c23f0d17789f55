package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNotFound means no queued message has the id.
var ErrNotFound = errors.New("queue: no such message")

// Status is a queued message and its recipients.
type Status struct {
	ID        int64
	TenantID  string
	UserID    int64 // 0: none
	MailFrom  string
	Size      int64
	CreatedAt time.Time
	ExpiresAt time.Time
	// State is queued while some recipient is pending or deferred, then
	// delivered, failed or partial.
	State      string
	Recipients []RecipientStatus
}

// RecipientStatus is one recipient's state and its last attempt's reply.
type RecipientStatus struct {
	Address       string
	State         string // pending, deferred, delivered or failed
	Attempts      int
	Code          int // SMTP reply code, 0 without a reply
	Enhanced      string
	Text          string
	Host          string
	NextAttemptAt *time.Time // deferred only
	UpdatedAt     time.Time
}

// Status returns message id's state; ErrNotFound when there is none.
func (q *Queue) Status(ctx context.Context, id int64) (Status, error) {
	s := Status{ID: id}
	err := q.pool.QueryRow(ctx, `
		SELECT tenant_id::text, coalesce(user_id, 0), mail_from, size, created_at, expires_at, status
		FROM outbound_queue WHERE id = $1`, id).Scan(&s.TenantID, &s.UserID, &s.MailFrom, &s.Size, &s.CreatedAt, &s.ExpiresAt, &s.State)
	if errors.Is(err, pgx.ErrNoRows) {
		return Status{}, fmt.Errorf("queue: message %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Status{}, fmt.Errorf("queue: status of message %d: %w", id, err)
	}
	rows, err := q.pool.Query(ctx, `
		SELECT address, status, attempts, last_code, last_enhanced, last_text, remote_host, next_attempt_at, updated_at
		FROM outbound_queue_recipients WHERE queue_id = $1 ORDER BY id`, id)
	if err != nil {
		return Status{}, fmt.Errorf("queue: status of message %d: %w", id, err)
	}
	s.Recipients, err = pgx.CollectRows(rows, pgx.RowToStructByPos[RecipientStatus])
	if err != nil {
		return Status{}, fmt.Errorf("queue: status of message %d: %w", id, err)
	}
	return s, nil
}

// LogEntry is one attempt for one recipient.
type LogEntry struct {
	ID        int64
	At        time.Time
	QueueID   int64
	UserID    int64 // 0: none
	Recipient string
	Status    string // the recipient's state after the attempt: delivered, deferred or failed
	Code      int
	Enhanced  string
	Text      string
	Host      string
	TLS       bool
}

// MaxLogPage bounds the entries Log returns at once.
const MaxLogPage = 1000

// Log returns a tenant's delivery log newest first, or only userID's
// mail's when userID is not 0. limit is capped at MaxLogPage (and is
// MaxLogPage when not positive).
func (q *Queue) Log(ctx context.Context, tenantID string, userID int64, limit, offset int) ([]LogEntry, error) {
	if limit <= 0 || limit > MaxLogPage {
		limit = MaxLogPage
	}
	where, args := "tenant_id = $1", []any{tenantID, limit, max(offset, 0)}
	if userID != 0 {
		where, args = where+" AND user_id = $4", append(args, userID)
	}
	rows, err := q.pool.Query(ctx, `
		SELECT id, at, queue_id, coalesce(user_id, 0), recipient, status, code, enhanced, text, host, tls
		FROM outbound_delivery_log WHERE `+where+`
		ORDER BY at DESC, id DESC LIMIT $2 OFFSET $3`, args...)
	if err != nil {
		return nil, fmt.Errorf("queue: delivery log: %w", err)
	}
	log, err := pgx.CollectRows(rows, pgx.RowToStructByPos[LogEntry])
	if err != nil {
		return nil, fmt.Errorf("queue: delivery log: %w", err)
	}
	return log, nil
}

// PurgeBefore deletes the delivery log's rows older than before and the
// messages that finished (delivered, failed or partial) and were queued
// before it, with their recipients; it returns how many rows went. Queued
// messages stay whatever their age.
func (q *Queue) PurgeBefore(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, q.pool, func(tx pgx.Tx) error {
		log, err := tx.Exec(ctx, `DELETE FROM outbound_delivery_log WHERE at < $1`, before)
		if err != nil {
			return err
		}
		msgs, err := tx.Exec(ctx, `DELETE FROM outbound_queue WHERE status <> 'queued' AND created_at < $1`, before)
		n = log.RowsAffected() + msgs.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("queue: purge: %w", err)
	}
	return n, nil
}
