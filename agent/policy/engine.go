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
	At       time.Time // when it was made

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
	found       bool // false: the account has no state row yet
	state       State
	softUntil   *time.Time
	suspendedAt *time.Time
	reason, by  string
	updatedAt   time.Time
}

// inTx runs one transaction in two round trips: BEGIN with the statements
// read queues (their callbacks fill in what write needs), then the
// statements write queues with COMMIT. On an error it is rolled back.
func (e *Engine) inTx(ctx context.Context, read func(*pgx.Batch), write func(*pgx.Batch) error) error {
	conn, err := e.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// A connection still in a transaction when released (the rollback
	// failed too, ctx done for instance) is closed by the pool, which rolls
	// it back as well.
	defer conn.Release()
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	read(b)
	err = conn.SendBatch(ctx, b).Close()
	if err == nil {
		b = &pgx.Batch{}
		if err = write(b); err == nil {
			b.Queue("COMMIT")
			err = conn.SendBatch(ctx, b).Close()
		}
	}
	if err != nil && conn.Conn().PgConn().TxStatus() != 'I' {
		conn.Exec(ctx, "ROLLBACK")
	}
	return err
}

// queueCreate queues the creation of the account's state row when missing.
func queueCreate(b *pgx.Batch, account, tenant string, now time.Time) {
	b.Queue(`INSERT INTO outbound_accounts(account, tenant_id, updated_at) VALUES($1, $2, $3)
		ON CONFLICT (account) DO NOTHING`, account, tenant, now)
}

// queueLock queues the read of the account's state row FOR UPDATE into r,
// so that evaluations of one account are serialized.
func queueLock(b *pgx.Batch, account string, r *row) {
	b.Queue(`SELECT state, soft_until, suspended_at, reason, changed_by, updated_at
		FROM outbound_accounts WHERE account=$1 FOR UPDATE`, account).QueryRow(func(pr pgx.Row) error {
		var st string
		err := pr.Scan(&st, &r.softUntil, &r.suspendedAt, &r.reason, &r.by, &r.updatedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		r.found, r.state = true, State(st)
		return err
	})
}

// expire queues into w the transitions that time alone causes (automatic
// re-enable, end of a soft limit) and returns the row after them.
func expire(w *pgx.Batch, c *compiled, account string, r row, now time.Time) (row, error) {
	if r.state == Suspended && c.AutoReenableAfterHours > 0 && r.suspendedAt != nil &&
		!now.Before(r.suspendedAt.Add(time.Duration(c.AutoReenableAfterHours)*time.Hour)) {
		until := now.Add(time.Duration(c.SoftLimitHours) * time.Hour)
		why := fmt.Sprintf("automatically re-enabled after %d hours", c.AutoReenableAfterHours)
		if err := transition(w, account, now, "auto_reenable", Suspended, SoftLimited, "system", why, nil, &until); err != nil {
			return row{}, err
		}
		r = row{found: true, state: SoftLimited, softUntil: &until, reason: why, by: "system", updatedAt: now}
	}
	if r.state == SoftLimited && (r.softUntil == nil || !now.Before(*r.softUntil)) {
		if err := transition(w, account, now, "soft_limit_end", SoftLimited, Allowed, "system", "soft limit expired", nil, nil); err != nil {
			return row{}, err
		}
		r = row{found: true, state: Allowed, reason: "soft limit expired", by: "system", updatedAt: now}
	}
	return r, nil
}

// transition queues the update of the state row and the event.
func transition(w *pgx.Batch, account string, now time.Time, kind string, from, to State, by, why string, d *Decision, softUntil *time.Time) error {
	var suspendedAt *time.Time
	if to == Suspended {
		suspendedAt = &now
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
	w.Queue(`UPDATE outbound_accounts SET state=$2, soft_until=$3, suspended_at=$4, reason=$5,
		changed_by=$6, updated_at=$7 WHERE account=$1`, account, string(to), softUntil, suspendedAt, why, by, now)
	w.Queue(`INSERT INTO outbound_events(account, at, kind, from_state, to_state, actor, reason, score, factors)
		VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9)`, account, now, kind, string(from), string(to), by, why, score, factors)
	return nil
}

// figures are what an evaluation reads besides the state row: counts of
// counted messages before the one evaluated, and the account's history.
type figures struct {
	hour, day, window, newHour int // sliding windows; window: a profile's, when at most an hour
	known                      int // the message's recipients the account has sent to
	baseline                   *float64
	history                    Counts // Sent7d, Bounces7d, Complaints30d, Warnings7d, Suspensions30d
}

// queueFigures queues the one statement that reads f. The last hour (and a
// profile's window within it) is counted from the per-message records; the
// last 24 hours from them for its first, partial clock hour and from
// outbound_hourly for the rest, so that no count reads more than an hour of
// records; one pass over outbound_hourly gives that, the baseline and the
// week's volume.
func queueFigures(b *pgx.Batch, c *compiled, pf *profile, account string, rcpts []string, now time.Time, f *figures) {
	window := time.Duration(0)
	if pf != nil {
		window = min(pf.rate.Window, time.Hour)
	}
	dayAgo := now.Add(-24 * time.Hour)
	b.Queue(`SELECT m.hour, m.win, m.new_hour, p.n + h.day, r.known, h.baseline, h.week,
			fb.bounces, fb.complaints, ev.warnings, ev.suspensions
		FROM (SELECT count(*) AS hour, count(*) FILTER (WHERE at > $3) AS win, coalesce(sum(new_recipients), 0) AS new_hour
			FROM outbound_messages WHERE account=$1 AND counted AND at > $2) m,
		(SELECT count(*) AS n FROM outbound_messages WHERE account=$1 AND counted AND at > $4 AND at < $5) p,
		(SELECT coalesce(sum(messages) FILTER (WHERE hour >= $5), 0) AS day,
			percentile_cont(0.5) WITHIN GROUP (ORDER BY messages) FILTER (WHERE hour >= $7 AND hour < $8 AND messages > 0) AS baseline,
			coalesce(sum(messages) FILTER (WHERE hour >= $9), 0) AS week
			FROM outbound_hourly WHERE account=$1 AND hour >= least($5, $7, $9)) h,
		(SELECT count(*) AS known FROM outbound_recipients WHERE account=$1 AND recipient = ANY($6)) r,
		(SELECT count(*) FILTER (WHERE kind='bounce' AND at > $9) AS bounces, count(*) FILTER (WHERE kind='complaint') AS complaints
			FROM outbound_feedback WHERE account=$1 AND at > $10) fb,
		(SELECT count(*) FILTER (WHERE kind='warn' AND at > $9) AS warnings, count(*) FILTER (WHERE kind='suspend') AS suspensions
			FROM outbound_events WHERE account=$1 AND kind IN ('warn', 'suspend') AND at > $10) ev`,
		account, now.Add(-time.Hour), now.Add(-window), dayAgo, dayAgo.Truncate(time.Hour).Add(time.Hour), rcpts,
		now.Add(-time.Duration(c.BaselineDays)*24*time.Hour), now.Truncate(time.Hour),
		now.Add(-7*24*time.Hour), now.Add(-30*24*time.Hour)).QueryRow(func(r pgx.Row) error {
		h := &f.history
		return r.Scan(&f.hour, &f.window, &f.newHour, &f.day, &f.known, &f.baseline,
			&h.Sent7d, &h.Bounces7d, &h.Complaints30d, &h.Warnings7d, &h.Suspensions30d)
	})
}

// Evaluate scores a submission, records it and any transition it causes in
// one transaction, and returns the decision. Evaluations of one account are
// serialized by a row lock. It takes two round trips to the database.
func (e *Engine) Evaluate(ctx context.Context, s Submission) (Decision, error) {
	c := e.settings.Load()
	now := e.now()
	account := normalize(s.Account)
	if account == "" {
		return Decision{}, errors.New("policy: empty account")
	}
	rcpts := uniqueRecipients(s.Recipients)
	pf := c.byAccount[account]
	var r row
	var f figures
	var d Decision
	err := e.inTx(ctx, func(b *pgx.Batch) {
		queueCreate(b, account, s.TenantID, now)
		queueLock(b, account, &r)
		queueFigures(b, c, pf, account, rcpts, now, &f)
	}, func(w *pgx.Batch) error {
		r, err := expire(w, c, account, r, now)
		if err != nil {
			return err
		}
		if d, err = decide(w, c, pf, r, account, s, rcpts, f, now); err != nil {
			return err
		}
		if d.Action != Warn && d.Action != Suspend {
			// Only counts are written: they become durable with the
			// message's own commit when it is sent (WAL is flushed in
			// order); a crash of PostgreSQL may lose those of the last
			// refusals.
			w.Queue("SET LOCAL synchronous_commit = off")
		}
		record(w, account, s.TenantID, rcpts, d, now)
		return nil
	})
	if err != nil {
		return Decision{}, fmt.Errorf("policy: evaluate %s: %w", account, err)
	}
	d.At = now
	return d, nil
}

func decide(w *pgx.Batch, c *compiled, pf *profile, r row, account string, s Submission, rcpts []string, f figures, now time.Time) (Decision, error) {
	if r.state == Suspended {
		return Decision{Action: Refuse, Reason: "account suspended: " + r.reason, Message: SuspendedText, SMTPCode: 550}, nil
	}
	var d Decision
	warnAt, suspendAt := c.WarnThreshold, c.SuspendThreshold
	hour, day, win := f.hour, f.day, f.window
	if pf != nil {
		d.Profile = pf.ID
		warnAt, suspendAt = pf.warn, pf.suspend
		if pf.rate.Window > time.Hour {
			win = day
		}
	}
	d.newRecipients = len(rcpts) - f.known
	d.Counts = f.history
	d.Counts.Hour, d.Counts.Day, d.Counts.NewRecipientsHour = hour+1, day+1, f.newHour+d.newRecipients
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

	d.Counts.Baseline = c.BaselineFloor
	if f.baseline != nil && *f.baseline > c.BaselineFloor {
		d.Counts.Baseline = *f.baseline
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
		return d, transition(w, account, now, "suspend", r.state, Suspended, "policy", d.Reason, &d, nil)
	case d.Score >= warnAt:
		d.Action, d.Reason = Warn, why+" ≥ "+fmt.Sprint(warnAt)
		until := now.Add(time.Duration(c.SoftLimitHours) * time.Hour)
		return d, transition(w, account, now, "warn", r.state, SoftLimited, "policy", d.Reason, &d, &until)
	default:
		d.Action, d.Reason = Allow, why
		return d, nil
	}
}

// record queues the writes that count the message: its record, its
// recipients and the hourly and daily aggregates.
func record(w *pgx.Batch, account, tenant string, rcpts []string, d Decision, now time.Time) {
	sent := d.Sent()
	newRcpts := 0
	if sent {
		newRcpts = d.newRecipients
		w.Queue(`INSERT INTO outbound_recipients(account, recipient, first_at, last_at)
			SELECT $1, r, $3, $3 FROM unnest($2::text[]) r
			ON CONFLICT (account, recipient) DO UPDATE SET last_at = EXCLUDED.last_at`, account, rcpts, now)
		w.Queue(`INSERT INTO outbound_hourly(account, hour, messages) VALUES($1, $2, 1)
			ON CONFLICT (account, hour) DO UPDATE SET messages = outbound_hourly.messages + 1`,
			account, now.Truncate(time.Hour))
	}
	w.Queue(`INSERT INTO outbound_messages(account, tenant_id, at, recipients, new_recipients, score, decision, counted)
		VALUES($1, $2, $3, $4, $5, $6, $7, $8)`, account, tenant, now, len(rcpts), newRcpts, d.Score, string(d.Action), sent)
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
	w.Queue(`INSERT INTO outbound_daily AS o (account, day, tenant_id, messages, recipients, new_recipients, warned, refused, suspended)
		VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (account, day) DO UPDATE SET messages = o.messages + EXCLUDED.messages,
			recipients = o.recipients + EXCLUDED.recipients, new_recipients = o.new_recipients + EXCLUDED.new_recipients,
			warned = o.warned + EXCLUDED.warned, refused = o.refused + EXCLUDED.refused, suspended = o.suspended + EXCLUDED.suspended`,
		account, now.UTC().Format("2006-01-02"), tenant, msgs, nr, newRcpts,
		b(d.Action == Warn), b(d.Action == Refuse || d.Action == Suspend), b(d.Action == Suspend))
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
