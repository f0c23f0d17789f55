package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Action is what happens to a submitted message.
type Action string

const (
	Allow   Action = "allow"   // sent
	Warn    Action = "warn"    // sent; the account is soft-limited
	Suspend Action = "suspend" // refused (550); the account is now suspended
	Refuse  Action = "refuse"  // refused: suspended (550) or over a cap (450)
)

// State is an account's sending state.
type State string

const (
	Allowed     State = "allowed"
	SoftLimited State = "soft_limited"
	Suspended   State = "suspended"
)

// Submission is one message submitted for sending.
type Submission struct {
	Account    string
	TenantID   string
	Recipients []string
	SpamScore  float64
	SpamReject float64 // the scanner's reject threshold; ≤ 0 when not scanned
}

// Decision is the engine's verdict on a submission.
type Decision struct {
	Action  Action
	Score   float64
	Factors Factors
	Counts  Counts
	Profile string // the whitelist profile applied, if any
	Reason  string // for logs and the event log
	// Message is the text for the submitter when the message is refused
	// (SMTPCode 550 or 450); empty otherwise.
	Message  string
	SMTPCode int

	newRecipients int // this message's recipients the account never sent to
}

// Sent reports whether the message may be queued.
func (d Decision) Sent() bool { return d.Action == Allow || d.Action == Warn }

// Status is an account's sending state.
type Status struct {
	Account     string
	State       State
	SoftUntil   time.Time // when SoftLimited
	SuspendedAt time.Time // when Suspended
	Reason      string
	By          string
	UpdatedAt   time.Time
}

// Engine evaluates submissions; safe for concurrent use.
type Engine struct {
	pool     *pgxpool.Pool
	now      func() time.Time
	settings atomic.Pointer[compiled]
}

// New returns an engine; now is the clock (time.Now in production).
func New(pool *pgxpool.Pool, s Settings, now func() time.Time) (*Engine, error) {
	if now == nil {
		now = time.Now
	}
	e := &Engine{pool: pool, now: now}
	if err := e.Apply(s); err != nil {
		return nil, err
	}
	return e, nil
}

// Apply replaces the settings (hot reload) when they are valid; on error the
// old ones stay.
func (e *Engine) Apply(s Settings) error {
	c, err := s.compile()
	if err != nil {
		return err
	}
	e.settings.Store(c)
	return nil
}

// Settings returns the settings in force.
func (e *Engine) Settings() Settings { return e.settings.Load().Settings }

type row struct {
	state       State
	softUntil   *time.Time
	suspendedAt *time.Time
	reason, by  string
	updatedAt   time.Time
}

// lock takes the account's state row FOR UPDATE (creating it), so that
// evaluations of one account are serialized, and applies the transitions
// that time alone causes (end of a soft limit, automatic re-enable).
func (e *Engine) lock(ctx context.Context, tx pgx.Tx, c *compiled, account, tenant string, now time.Time) (row, error) {
	if _, err := tx.Exec(ctx, `INSERT INTO outbound_accounts(account, tenant_id, updated_at) VALUES($1, $2, $3)
		ON CONFLICT (account) DO NOTHING`, account, tenant, now); err != nil {
		return row{}, err
	}
	var r row
	var st string
	if err := tx.QueryRow(ctx, `SELECT state, soft_until, suspended_at, reason, changed_by, updated_at
		FROM outbound_accounts WHERE account=$1 FOR UPDATE`, account).Scan(&st, &r.softUntil, &r.suspendedAt, &r.reason, &r.by, &r.updatedAt); err != nil {
		return row{}, err
	}
	r.state = State(st)
	if r.state == Suspended && c.AutoReenableAfterHours > 0 && r.suspendedAt != nil &&
		!now.Before(r.suspendedAt.Add(time.Duration(c.AutoReenableAfterHours)*time.Hour)) {
		until := now.Add(time.Duration(c.SoftLimitHours) * time.Hour)
		why := fmt.Sprintf("automatically re-enabled after %d hours", c.AutoReenableAfterHours)
		if err := e.transition(ctx, tx, account, now, "auto_reenable", Suspended, SoftLimited, "system", why, nil, &until); err != nil {
			return row{}, err
		}
		r = row{state: SoftLimited, softUntil: &until, reason: why, by: "system", updatedAt: now}
	}
	if r.state == SoftLimited && (r.softUntil == nil || !now.Before(*r.softUntil)) {
		if err := e.transition(ctx, tx, account, now, "soft_limit_end", SoftLimited, Allowed, "system", "soft limit expired", nil, nil); err != nil {
			return row{}, err
		}
		r = row{state: Allowed, reason: "soft limit expired", by: "system", updatedAt: now}
	}
	return r, nil
}

// transition updates the state row and logs the event.
func (e *Engine) transition(ctx context.Context, tx pgx.Tx, account string, now time.Time, kind string, from, to State, by, why string, d *Decision, softUntil *time.Time) error {
	var suspendedAt *time.Time
	if to == Suspended {
		suspendedAt = &now
	}
	if _, err := tx.Exec(ctx, `UPDATE outbound_accounts SET state=$2, soft_until=$3, suspended_at=$4, reason=$5,
		changed_by=$6, updated_at=$7 WHERE account=$1`, account, string(to), softUntil, suspendedAt, why, by, now); err != nil {
		return err
	}
	var score *float64
	factors := []byte("{}")
	if d != nil {
		score = &d.Score
		var err error
		if factors, err = json.Marshal(map[string]any{"factors": d.Factors, "counts": d.Counts, "profile": d.Profile}); err != nil {
			return err
		}
	}
	_, err := tx.Exec(ctx, `INSERT INTO outbound_events(account, at, kind, from_state, to_state, actor, reason, score, factors)
		VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9)`, account, now, kind, string(from), string(to), by, why, score, factors)
	return err
}

// Evaluate scores a submission, records it and any transition it causes in
// one transaction, and returns the decision. Evaluations of one account are
// serialized by a row lock.
func (e *Engine) Evaluate(ctx context.Context, s Submission) (Decision, error) {
	c := e.settings.Load()
	now := e.now()
	account := normalize(s.Account)
	if account == "" {
		return Decision{}, errors.New("policy: empty account")
	}
	rcpts := uniqueRecipients(s.Recipients)
	var d Decision
	err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		d = Decision{}
		r, err := e.lock(ctx, tx, c, account, s.TenantID, now)
		if err != nil {
			return err
		}
		d, err = e.decide(ctx, tx, c, r, account, s, rcpts, now)
		if err != nil {
			return err
		}
		return e.record(ctx, tx, account, s.TenantID, rcpts, d, now)
	})
	if err != nil {
		return Decision{}, fmt.Errorf("policy: evaluate %s: %w", account, err)
	}
	return d, nil
}

func (e *Engine) decide(ctx context.Context, tx pgx.Tx, c *compiled, r row, account string, s Submission, rcpts []string, now time.Time) (Decision, error) {
	if r.state == Suspended {
		return Decision{Action: Refuse, Reason: "account suspended: " + r.reason, Message: SuspendedText, SMTPCode: 550}, nil
	}
	var d Decision
	pf := c.byAccount[account]
	warnAt, suspendAt := c.WarnThreshold, c.SuspendThreshold
	window := time.Duration(0)
	if pf != nil {
		d.Profile = pf.ID
		warnAt, suspendAt = pf.warn, pf.suspend
		window = pf.rate.Window
	}
	// Sliding-window counts, before this message.
	var hour, day, win, newHour int
	if err := tx.QueryRow(ctx, `SELECT
			count(*) FILTER (WHERE at > $2::timestamptz - interval '1 hour'),
			count(*) FILTER (WHERE at > $2::timestamptz - interval '1 day'),
			count(*) FILTER (WHERE at > $2::timestamptz - $3::interval),
			coalesce(sum(new_recipients) FILTER (WHERE at > $2::timestamptz - interval '1 hour'), 0)
		FROM outbound_messages WHERE account=$1 AND counted AND at > $2::timestamptz - interval '1 day'`,
		account, now, window).Scan(&hour, &day, &win, &newHour); err != nil {
		return d, err
	}
	var known int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM outbound_recipients WHERE account=$1 AND recipient = ANY($2)`,
		account, rcpts).Scan(&known); err != nil {
		return d, err
	}
	newRcpts := len(rcpts) - known
	d.newRecipients = newRcpts
	d.Counts = Counts{Hour: hour + 1, Day: day + 1, NewRecipientsHour: newHour + newRcpts}
	if pf != nil {
		d.Counts.Window = win + 1
	}

	// Caps: the absolute limit and, when soft-limited, the soft cap.
	capCount, capWindowCount, capName := c.MaxPerHour, hour, "hourly limit"
	if pf != nil {
		capCount, capWindowCount, capName = pf.rate.Count, win, "max_rate "+pf.rate.String()+" of profile "+pf.ID
	}
	refuse := func(why string) Decision {
		d.Action, d.Reason, d.Message, d.SMTPCode = Refuse, why, RateLimitedText, 450
		return d
	}
	if capWindowCount >= capCount {
		return refuse(capName + " reached"), nil
	}
	if pf == nil && day >= c.MaxPerDay {
		return refuse("daily limit reached"), nil
	}
	if r.state == SoftLimited {
		soft := int(math.Max(1, math.Floor(c.SoftLimitFraction*float64(capCount))))
		if capWindowCount >= soft {
			return refuse(fmt.Sprintf("soft limit of %d reached (until %s)", soft, r.softUntil.UTC().Format(time.RFC3339))), nil
		}
	}

	// Baseline and history.
	var baseline *float64
	if err := tx.QueryRow(ctx, `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY messages) FROM outbound_hourly
		WHERE account=$1 AND hour >= $2 AND hour < $3 AND messages > 0`,
		account, now.Add(-time.Duration(c.BaselineDays)*24*time.Hour), now.Truncate(time.Hour)).Scan(&baseline); err != nil {
		return d, err
	}
	d.Counts.Baseline = c.BaselineFloor
	if baseline != nil && *baseline > c.BaselineFloor {
		d.Counts.Baseline = *baseline
	}
	if err := tx.QueryRow(ctx, `SELECT
		(SELECT coalesce(sum(messages), 0) FROM outbound_hourly WHERE account=$1 AND hour >= $2),
		(SELECT count(*) FROM outbound_feedback WHERE account=$1 AND kind='bounce' AND at > $2),
		(SELECT count(*) FROM outbound_feedback WHERE account=$1 AND kind='complaint' AND at > $3),
		(SELECT count(*) FROM outbound_events WHERE account=$1 AND kind='warn' AND at > $2),
		(SELECT count(*) FROM outbound_events WHERE account=$1 AND kind='suspend' AND at > $3)`,
		account, now.Add(-7*24*time.Hour), now.Add(-30*24*time.Hour)).Scan(
		&d.Counts.Sent7d, &d.Counts.Bounces7d, &d.Counts.Complaints30d, &d.Counts.Warnings7d, &d.Counts.Suspensions30d); err != nil {
		return d, err
	}

	if pf != nil {
		d.Factors.Rate = clamp01(float64(d.Counts.Window) / float64(pf.rate.Count))
	} else {
		d.Factors.Rate = RateFactor(c.Settings, d.Counts)
	}
	d.Factors.Content = ContentFactor(s.SpamScore, s.SpamReject)
	d.Factors.History = HistoryFactor(d.Counts)
	d.Score = c.Weights.Score(d.Factors)
	why := fmt.Sprintf("score %.2f (rate %.2f, content %.2f, history %.2f)", d.Score, d.Factors.Rate, d.Factors.Content, d.Factors.History)
	switch {
	case d.Score >= suspendAt:
		d.Action, d.Reason, d.Message, d.SMTPCode = Suspend, why+" ≥ "+fmt.Sprint(suspendAt), SuspendedText, 550
		return d, e.transition(ctx, tx, account, now, "suspend", r.state, Suspended, "policy", d.Reason, &d, nil)
	case d.Score >= warnAt:
		d.Action, d.Reason = Warn, why+" ≥ "+fmt.Sprint(warnAt)
		until := now.Add(time.Duration(c.SoftLimitHours) * time.Hour)
		return d, e.transition(ctx, tx, account, now, "warn", r.state, SoftLimited, "policy", d.Reason, &d, &until)
	default:
		d.Action, d.Reason = Allow, why
		return d, nil
	}
}

func (e *Engine) record(ctx context.Context, tx pgx.Tx, account, tenant string, rcpts []string, d Decision, now time.Time) error {
	sent := d.Sent()
	newRcpts := 0
	if sent {
		newRcpts = d.newRecipients
		if _, err := tx.Exec(ctx, `INSERT INTO outbound_recipients(account, recipient, first_at, last_at)
			SELECT $1, r, $3, $3 FROM unnest($2::text[]) r
			ON CONFLICT (account, recipient) DO UPDATE SET last_at = EXCLUDED.last_at`, account, rcpts, now); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO outbound_hourly(account, hour, messages) VALUES($1, $2, 1)
			ON CONFLICT (account, hour) DO UPDATE SET messages = outbound_hourly.messages + 1`,
			account, now.Truncate(time.Hour)); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO outbound_messages(account, tenant_id, at, recipients, new_recipients, score, decision, counted)
		VALUES($1, $2, $3, $4, $5, $6, $7, $8)`, account, tenant, now, len(rcpts), newRcpts, d.Score, string(d.Action), sent); err != nil {
		return err
	}
	b := func(v bool) int {
		if v {
			return 1
		}
		return 0
	}
	msgs, nr := b(sent), 0
	if sent {
		nr = len(rcpts)
	}
	_, err := tx.Exec(ctx, `INSERT INTO outbound_daily AS o (account, day, tenant_id, messages, recipients, new_recipients, warned, refused, suspended)
		VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (account, day) DO UPDATE SET messages = o.messages + EXCLUDED.messages,
			recipients = o.recipients + EXCLUDED.recipients, new_recipients = o.new_recipients + EXCLUDED.new_recipients,
			warned = o.warned + EXCLUDED.warned, refused = o.refused + EXCLUDED.refused, suspended = o.suspended + EXCLUDED.suspended`,
		account, now.UTC().Format("2006-01-02"), tenant, msgs, nr, newRcpts,
		b(d.Action == Warn), b(d.Action == Refuse || d.Action == Suspend), b(d.Action == Suspend))
	return err
}

func uniqueRecipients(in []string) []string {
	seen := map[string]bool{}
	out := make([]string, 0, len(in))
	for _, r := range in {
		r = normalize(r)
		if r != "" && !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	sort.Strings(out)
	return out
}
