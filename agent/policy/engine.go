package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

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

// Engine evaluates submissions; safe for concurrent use. Close it before
// the process exits, so that the evaluations it records in the background
// are written (see Close).
type Engine struct {
	pool     *pgxpool.Pool
	now      func() time.Time
	settings atomic.Pointer[compiled]

	tick        func() time.Time // real time, for the cache's freshness
	maxAccounts int
	w           *writer

	mu       sync.Mutex
	accounts map[string]*entry

	stop     chan struct{} // closed by Close: the refresher stops
	stopped  chan struct{} // closed when the refresher has stopped
	stopOnce sync.Once
}

// New returns an engine; now is the clock (time.Now in production). It
// starts the background writer and the cache's refresher.
func New(pool *pgxpool.Pool, s Settings, now func() time.Time) (*Engine, error) {
	return newEngine(pool, s, now, time.Now, refreshEvery)
}

// newEngine is New with the cache's clock and the refresher's period; 0:
// no refresher (for tests, which call its steps themselves).
func newEngine(pool *pgxpool.Pool, s Settings, now, tick func() time.Time, every time.Duration) (*Engine, error) {
	if now == nil {
		now = time.Now
	}
	e := &Engine{pool: pool, now: now, tick: tick, maxAccounts: maxAccounts, accounts: map[string]*entry{},
		stop: make(chan struct{}), stopped: make(chan struct{})}
	if err := e.Apply(s); err != nil {
		return nil, err
	}
	e.w = newWriter(pool)
	if every > 0 {
		go e.refresh(every)
	} else {
		close(e.stopped)
	}
	return e, nil
}

// Close stops the refresher and waits until every evaluation is written;
// Evaluate fails afterwards. When ctx ends first (PostgreSQL unreachable),
// the evaluations not yet written are lost and Close says how many.
//
// What a crash loses: the allowed and refused evaluations not yet written
// (normally those of the last few milliseconds; at most the backlog while
// PostgreSQL is unreachable), and, since they are committed with
// synchronous_commit off, a crash of PostgreSQL loses those of its last
// moments too. The restarted engine rebuilds its cache from the tables, so
// those messages do not count in its windows. Warnings and suspensions are
// committed durably before Evaluate returns.
func (e *Engine) Close(ctx context.Context) error {
	e.stopOnce.Do(func() { close(e.stop) })
	<-e.stopped
	return e.w.close(ctx)
}

// Flush returns when the evaluations made before it are written.
func (e *Engine) Flush(ctx context.Context) error { return e.w.wait(ctx, e.w.last()) }

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
	// releasedAt is when an administrator last released the account: the
	// rate windows count only messages after it.
	releasedAt *time.Time
}

// rowColumns are the columns of outbound_accounts that scan reads.
const rowColumns = `state, soft_until, suspended_at, reason, changed_by, updated_at, released_at`

// scan reads rowColumns, after the values of before, into r.
func (r *row) scan(s pgx.Row, before ...any) error {
	var st string
	if err := s.Scan(append(before, &st, &r.softUntil, &r.suspendedAt, &r.reason, &r.by, &r.updatedAt, &r.releasedAt)...); err != nil {
		return err
	}
	r.found, r.state = true, State(st)
	return nil
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

// queueRow queues the read of the account's state row into r, FOR UPDATE
// when lock, so that transitions of one account are serialized.
func queueRow(b *pgx.Batch, account string, r *row, lock bool) {
	q := `SELECT ` + rowColumns + ` FROM outbound_accounts WHERE account=$1`
	if lock {
		q += ` FOR UPDATE`
	}
	b.Queue(q, account).QueryRow(func(pr pgx.Row) error {
		*r = row{}
		if err := r.scan(pr); !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		return nil
	})
}

// due returns the transition that time alone causes to r now, if any:
// "auto_reenable" or "soft_limit_end".
func due(c *compiled, r row, now time.Time) string {
	switch {
	case r.state == Suspended && c.AutoReenableAfterHours > 0 && r.suspendedAt != nil &&
		!now.Before(r.suspendedAt.Add(time.Duration(c.AutoReenableAfterHours)*time.Hour)):
		return "auto_reenable"
	case r.state == SoftLimited && (r.softUntil == nil || !now.Before(*r.softUntil)):
		return "soft_limit_end"
	}
	return ""
}

// expire queues into w the transitions that time alone causes (automatic
// re-enable, end of a soft limit) and returns the row after them.
func expire(w *pgx.Batch, c *compiled, account string, r row, now time.Time) (row, error) {
	for kind := due(c, r, now); kind != ""; kind = due(c, r, now) {
		var err error
		if kind == "auto_reenable" {
			until := now.Add(time.Duration(c.SoftLimitHours) * time.Hour)
			why := fmt.Sprintf("automatically re-enabled after %d hours", c.AutoReenableAfterHours)
			r, err = transition(w, account, now, kind, r, SoftLimited, "system", why, nil, &until)
		} else {
			r, err = transition(w, account, now, kind, r, Allowed, "system", "soft limit expired", nil, nil)
		}
		if err != nil {
			return row{}, err
		}
	}
	return r, nil
}

// transition queues the update of the state row and the event, and returns
// the row after it.
func transition(w *pgx.Batch, account string, now time.Time, kind string, prev row, to State, by, why string, d *Decision, softUntil *time.Time) (row, error) {
	var suspendedAt *time.Time
	if to == Suspended {
		suspendedAt = &now
	}
	releasedAt := prev.releasedAt
	if kind == "release" {
		releasedAt = &now
	}
	var score *float64
	factors := []byte("{}")
	if d != nil {
		score = &d.Score
		var err error
		if factors, err = json.Marshal(map[string]any{"factors": d.Factors, "counts": d.Counts, "profile": d.Profile}); err != nil {
			return row{}, err
		}
	}
	w.Queue(`UPDATE outbound_accounts SET state=$2, soft_until=$3, suspended_at=$4, reason=$5,
		changed_by=$6, updated_at=$7, released_at=$8 WHERE account=$1`, account, string(to), softUntil, suspendedAt, why, by, now, releasedAt)
	w.Queue(`INSERT INTO outbound_events(account, at, kind, from_state, to_state, actor, reason, score, factors)
		VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9)`, account, now, kind, string(prev.state), string(to), by, why, score, factors)
	return row{found: true, state: to, softUntil: softUntil, suspendedAt: suspendedAt, reason: why, by: by, updatedAt: now, releasedAt: releasedAt}, nil
}

// figures are what an evaluation reads besides the state row: counts of
// counted messages before the one evaluated, and the account's history.
type figures struct {
	hour, day, window, newHour int // sliding windows; window: a profile's, when at most an hour
	known                      int // the message's recipients the account has sent to
	baseline                   *float64
	history                    Counts // Sent7d, Bounces7d, Complaints30d, Warnings7d, Suspensions30d
}

// Evaluate scores a submission, records it and any transition it causes,
// and returns the decision. Evaluations of one account are serialized.
//
// It normally reads nothing from PostgreSQL: the account's figures come from
// the engine's cache (see entry), and an allowed or refused message is
// recorded in the background. A warning, a suspension or a transition that
// time causes is decided again with the state row locked and committed
// durably, with the message's records, before Evaluate returns.
func (e *Engine) Evaluate(ctx context.Context, s Submission) (Decision, error) {
	c := e.settings.Load()
	account := normalize(s.Account)
	if account == "" {
		return Decision{}, errors.New("policy: empty account")
	}
	rcpts := uniqueRecipients(s.Recipients)
	if err := checkText(account, s.TenantID, rcpts); err != nil {
		return Decision{}, fmt.Errorf("policy: evaluate %s: %w", account, err)
	}
	if err := e.w.usable(); err != nil {
		return Decision{}, err
	}
	en := e.acquire(account)
	defer en.mu.Unlock()
	d, err := e.evaluate(ctx, c, en, account, s, rcpts)
	if err != nil {
		return Decision{}, fmt.Errorf("policy: evaluate %s: %w", account, err)
	}
	return d, nil
}

func (e *Engine) evaluate(ctx context.Context, c *compiled, en *entry, account string, s Submission, rcpts []string) (Decision, error) {
	if err := e.ready(ctx, c, en, account); err != nil {
		return Decision{}, err
	}
	now := e.now()
	pf := c.byAccount[account]
	f := en.figures(c, pf, rcpts, now, en.row.releasedAt)
	if due(c, en.row, now) == "" {
		d := decide(c, pf, en.row, s, rcpts, f)
		if d.Action == Allow || d.Action == Refuse {
			seq, err := e.w.add(write{account: account, tenant: s.TenantID, at: now, rcpts: rcpts, d: d})
			if err != nil {
				return Decision{}, err
			}
			en.lastSeq = seq
			en.record(d, rcpts, now)
			d.At = now
			return d, nil
		}
	}
	return e.settle(ctx, c, pf, en, account, s, rcpts, f, now)
}

// settle decides with the state row read FOR UPDATE, after the account's
// earlier records are written, and commits the transitions and the
// message's records in one transaction (durably when there is a warning or
// a suspension).
func (e *Engine) settle(ctx context.Context, c *compiled, pf *profile, en *entry, account string, s Submission, rcpts []string, f figures, now time.Time) (Decision, error) {
	if err := e.w.wait(ctx, en.lastSeq); err != nil {
		return Decision{}, err
	}
	var r row
	var d Decision
	err := e.inTx(ctx, func(b *pgx.Batch) {
		queueCreate(b, account, s.TenantID, now)
		queueRow(b, account, &r, true)
	}, func(w *pgx.Batch) error {
		var err error
		if r, err = expire(w, c, account, r, now); err != nil {
			return err
		}
		d = decide(c, pf, r, s, rcpts, f)
		switch d.Action {
		case Suspend:
			r, err = transition(w, account, now, "suspend", r, Suspended, "policy", d.Reason, &d, nil)
		case Warn:
			until := now.Add(time.Duration(c.SoftLimitHours) * time.Hour)
			r, err = transition(w, account, now, "warn", r, SoftLimited, "policy", d.Reason, &d, &until)
		default:
			// Only counts are written: they become durable with the
			// message's own commit when it is sent (WAL is flushed in
			// order); a crash of PostgreSQL may lose those of the last
			// refusals.
			w.Queue("SET LOCAL synchronous_commit = off")
		}
		if err != nil {
			return err
		}
		queueWrites(w, []write{{account: account, tenant: s.TenantID, at: now, rcpts: rcpts, d: d}})
		return nil
	})
	if err != nil {
		return Decision{}, err
	}
	en.row, en.stateAt = r, e.tick()
	en.record(d, rcpts, now)
	d.At = now
	return d, nil
}

// decide scores the submission against r and f; the caller records the
// decision and the transition it calls for (Warn, Suspend).
func decide(c *compiled, pf *profile, r row, s Submission, rcpts []string, f figures) Decision {
	if r.state == Suspended {
		return Decision{Action: Refuse, Reason: "account suspended: " + r.reason, Message: SuspendedText, SMTPCode: 550}
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
		return refuse(capName + " reached")
	}
	if pf == nil && day >= c.MaxPerDay {
		return refuse("daily limit reached")
	}
	if r.state == SoftLimited {
		soft := int(math.Max(1, math.Floor(c.SoftLimitFraction*float64(capCount))))
		if capWindowCount >= soft {
			return refuse(fmt.Sprintf("soft limit of %d reached (until %s)", soft, r.softUntil.UTC().Format(time.RFC3339)))
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
	case d.Score >= warnAt:
		d.Action, d.Reason = Warn, why+" ≥ "+fmt.Sprint(warnAt)
	default:
		d.Action, d.Reason = Allow, why
	}
	return d
}

// maxText bounds the bytes of an account or a recipient, well within what
// PostgreSQL indexes (RFC 5321 allows 256).
const maxText = 1000

// checkText refuses what PostgreSQL would not store, before it reaches the
// background writer, where it would hold up the records of other messages.
func checkText(account, tenant string, rcpts []string) error {
	for i, s := range append([]string{account, tenant}, rcpts...) {
		if !utf8.ValidString(s) || strings.ContainsRune(s, 0) || (i != 1 && len(s) > maxText) {
			return fmt.Errorf("invalid address or tenant %q", s)
		}
	}
	return nil
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
