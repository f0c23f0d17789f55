package policy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNotSuspended is returned by Release for an account that is not
// suspended.
var ErrNotSuspended = errors.New("policy: account is not suspended")

// Status returns the account's sending state, after the transitions that
// time alone causes; an account never seen is Allowed.
func (e *Engine) Status(ctx context.Context, account string) (Status, error) {
	c := e.settings.Load()
	now := e.now()
	account = normalize(account)
	var r row
	err := e.inTx(ctx, func(b *pgx.Batch) { queueLock(b, account, &r) }, func(w *pgx.Batch) error {
		var err error
		r, err = expire(w, c, account, r, now)
		return err
	})
	if err != nil {
		return Status{}, fmt.Errorf("policy: status %s: %w", account, err)
	}
	if !r.found {
		return Status{Account: account, State: Allowed}, nil
	}
	st := Status{Account: account, State: r.state, Reason: r.reason, By: r.by, UpdatedAt: r.updatedAt}
	if r.softUntil != nil {
		st.SoftUntil = *r.softUntil
	}
	if r.suspendedAt != nil {
		st.SuspendedAt = *r.suspendedAt
	}
	return st, nil
}

// Release lifts a suspension: the account is allowed again; by and why are
// logged.
func (e *Engine) Release(ctx context.Context, account, by, why string) error {
	c := e.settings.Load()
	now := e.now()
	account = normalize(account)
	var r row
	err := e.inTx(ctx, func(b *pgx.Batch) { queueLock(b, account, &r) }, func(w *pgx.Batch) error {
		r, err := expire(w, c, account, r, now)
		if err != nil {
			return err
		}
		if r.state != Suspended {
			return ErrNotSuspended
		}
		return transition(w, account, now, "release", Suspended, Allowed, by, why, nil, nil)
	})
	if err != nil {
		return fmt.Errorf("policy: release %s: %w", account, err)
	}
	return nil
}

// Feedback is a report against an account's mail.
type Feedback string

const (
	Bounce    Feedback = "bounce"
	Complaint Feedback = "complaint"
)

// RecordFeedback notes a bounce or a complaint for the history factor.
func (e *Engine) RecordFeedback(ctx context.Context, account string, kind Feedback) error {
	if kind != Bounce && kind != Complaint {
		return fmt.Errorf("policy: unknown feedback %q", kind)
	}
	_, err := e.pool.Exec(ctx, `INSERT INTO outbound_feedback(account, at, kind) VALUES($1, $2, $3)`,
		normalize(account), e.now(), string(kind))
	if err != nil {
		return fmt.Errorf("policy: feedback: %w", err)
	}
	return nil
}

// Purged counts the rows a Purge deleted.
type Purged struct {
	Messages, Recipients, Hourly, Feedback, Events, Daily int64
}

// Purge deletes per-message records (and recipients, hourly counts,
// feedback) older than record_retention_days, and daily statistics and
// transition events older than stats_retention_days.
func (e *Engine) Purge(ctx context.Context) (Purged, error) {
	c := e.settings.Load()
	now := e.now()
	recCut := now.Add(-time.Duration(c.RecordRetentionDays) * 24 * time.Hour)
	statCut := now.Add(-time.Duration(c.StatsRetentionDays) * 24 * time.Hour)
	var p Purged
	steps := []struct {
		n   *int64
		sql string
		arg any
	}{
		{&p.Messages, `DELETE FROM outbound_messages WHERE at < $1`, recCut},
		{&p.Recipients, `DELETE FROM outbound_recipients WHERE last_at < $1`, recCut},
		{&p.Hourly, `DELETE FROM outbound_hourly WHERE hour < $1`, recCut},
		{&p.Feedback, `DELETE FROM outbound_feedback WHERE at < $1`, recCut},
		{&p.Events, `DELETE FROM outbound_events WHERE at < $1`, statCut},
		{&p.Daily, `DELETE FROM outbound_daily WHERE day < $1::date`, statCut.UTC().Format("2006-01-02")},
	}
	for _, s := range steps {
		tag, err := e.pool.Exec(ctx, s.sql, s.arg)
		if err != nil {
			return p, fmt.Errorf("policy: purge: %w", err)
		}
		*s.n = tag.RowsAffected()
	}
	return p, nil
}
