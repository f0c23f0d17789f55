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
	account = normalize(account)
	r, err := e.change(ctx, account, nil)
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
	account = normalize(account)
	_, err := e.change(ctx, account, func(w *pgx.Batch, r row, now time.Time) (row, error) {
		if r.state != Suspended {
			return r, ErrNotSuspended
		}
		return transition(w, account, now, "release", r, Allowed, by, why, nil, nil)
	})
	if err != nil {
		return fmt.Errorf("policy: release %s: %w", account, err)
	}
	return nil
}

// change reads the account's state row locked, applies the transitions
// time alone causes, then act's (nil: none), in one transaction, and
// keeps the resulting row in the account's cache entry.
func (e *Engine) change(ctx context.Context, account string, act func(w *pgx.Batch, r row, now time.Time) (row, error)) (row, error) {
	c := e.settings.Load()
	en := e.acquire(account)
	defer en.mu.Unlock()
	now := e.now()
	var r row
	err := e.inTx(ctx, func(b *pgx.Batch) { queueRow(b, account, &r, true) }, func(w *pgx.Batch) error {
		var err error
		if r, err = expire(w, c, account, r, now); err != nil || act == nil {
			return err
		}
		r, err = act(w, r, now)
		return err
	})
	if err != nil {
		return row{}, err
	}
	en.row, en.stateAt = r, e.tick()
	return r, nil
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
	account = normalize(account)
	en := e.acquire(account)
	defer en.mu.Unlock()
	now := e.now()
	if _, err := e.pool.Exec(ctx, `INSERT INTO outbound_feedback(account, at, kind) VALUES($1, $2, $3)`,
		account, now, string(kind)); err != nil {
		return fmt.Errorf("policy: feedback: %w", err)
	}
	if en.loaded {
		s := &en.complaints
		if kind == Bounce {
			s = &en.bounces
		}
		*s = insertTime(*s, now.UnixMicro())
	}
	return nil
}

// Purged counts the rows a Purge deleted.
type Purged struct {
	Messages, Recipients, Hourly, Feedback, Events, Daily int64
}

// Purge deletes per-message records (and recipients, hourly counts,
// feedback) older than record_retention_days, and daily statistics and
// transition events older than stats_retention_days; the evaluations not
// yet written are written first, and the cache forgets what is deleted.
func (e *Engine) Purge(ctx context.Context) (Purged, error) {
	c := e.settings.Load()
	if err := e.Flush(ctx); err != nil {
		return Purged{}, fmt.Errorf("policy: purge: %w", err)
	}
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
	cached := e.cached()
	gone := map[string][]string{} // the recipients deleted of the cached accounts
	rows, err := e.pool.Query(ctx, `DELETE FROM outbound_recipients WHERE last_at < $1 RETURNING account, recipient`, recCut)
	if err != nil {
		return p, fmt.Errorf("policy: purge: %w", err)
	}
	var a, r string
	if _, err := pgx.ForEachRow(rows, []any{&a, &r}, func() error {
		p.Recipients++
		if cached[a] != nil {
			gone[a] = append(gone[a], r)
		}
		return nil
	}); err != nil {
		return p, fmt.Errorf("policy: purge: %w", err)
	}
	for a, en := range cached {
		en.mu.Lock()
		if en.loaded {
			en.purge(recCut.UnixMicro(), statCut.UnixMicro(), gone[a])
		}
		en.mu.Unlock()
	}
	return p, nil
}
