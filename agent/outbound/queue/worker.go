package queue

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/mairust/mairust/agent/outbound/deliver"
)

// deliverArgs is a delivery job: one attempt for the recipients of one
// domain that are still to be delivered.
//
// Retries are new jobs, not River's: the job that defers recipients
// completes, and inserts the job of the next attempt scheduled along
// NextRetry, in the transaction that records the attempt. The attempts are
// therefore counted in outbound_queue_recipients whatever River does, and
// River's own retries are left for failures to run the job at all (the
// database down); River's attempt counter does not grow with each delivery
// attempt.
type deliverArgs struct {
	QueueID int64  `json:"queue_id"`
	Domain  string `json:"domain"`
}

// Kind implements river.JobArgs.
func (deliverArgs) Kind() string { return "outbound_deliver" }

// InsertOpts puts the job in QueueName.
func (deliverArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{Queue: QueueName} }

// deliverWorker runs deliverArgs jobs.
type deliverWorker struct {
	river.WorkerDefaults[deliverArgs]
	q *Queue
}

// Timeout leaves the attempt its own bound and a minute to record it.
func (w *deliverWorker) Timeout(*river.Job[deliverArgs]) time.Duration {
	return w.q.cfg.AttemptTimeout + time.Minute
}

// pending is a job's message with the recipients of its domain still to
// be delivered.
type pending struct {
	id                   int64
	tenantID             string
	userID               int64 // 0: none
	mailFrom             string
	data                 []byte
	createdAt, expiresAt time.Time
	rcpts                []string
	attempts             int // the most attempts made for one of rcpts
}

// outcome is a recipient's result and its state after the attempt.
type outcome struct {
	deliver.RecipientResult
	state string // delivered, deferred or failed
}

// Work makes one attempt and records it with the job's completion. An
// error is returned only when the attempt could not be read or recorded:
// River then runs the job again (and recipients delivered by an attempt
// whose record failed get the message twice).
func (w *deliverWorker) Work(ctx context.Context, job *river.Job[deliverArgs]) error {
	q := w.q
	p, err := q.load(ctx, job.Args)
	if err != nil || p == nil { // nil: every recipient is final already
		return err
	}
	actx, cancel := context.WithTimeout(ctx, q.cfg.AttemptTimeout)
	res := q.cfg.Client.Deliver(actx, deliver.Attempt{MailFrom: p.mailFrom, Recipients: p.rcpts, Data: p.data})
	cancel()
	now := time.Now()
	outs, retryAt := q.judge(p, res, now)
	jobs := q.followUps(job.Args, p, outs, retryAt, now)
	err = pgx.BeginFunc(ctx, q.pool, func(tx pgx.Tx) error {
		if err := q.record(ctx, tx, p, outs, retryAt, res.TLS); err != nil {
			return err
		}
		if len(jobs) > 0 {
			if _, err := q.jobs.InsertManyTx(ctx, tx, jobs); err != nil {
				return err
			}
		}
		_, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job)
		return err
	})
	if err != nil {
		return fmt.Errorf("queue: record attempt for message %d: %w", p.id, err)
	}
	q.report(p, outs, retryAt)
	return nil
}

// followUps are the jobs an attempt leaves: the next attempt when it
// deferred some recipient, a bounce when it failed some.
func (q *Queue) followUps(args deliverArgs, p *pending, outs []outcome, retryAt, now time.Time) []river.InsertManyParams {
	var jobs []river.InsertManyParams
	if !retryAt.IsZero() {
		opts := &river.InsertOpts{}
		if retryAt.After(time.Now()) { // else due already: available at once
			opts.ScheduledAt = retryAt
		}
		jobs = append(jobs, river.InsertManyParams{Args: args, InsertOpts: opts})
	}
	if b := q.bounce(p, outs, now); b != nil {
		jobs = append(jobs, river.InsertManyParams{Args: *b})
	}
	return jobs
}

// load reads what the job delivers, or nil when nothing is left.
func (q *Queue) load(ctx context.Context, a deliverArgs) (*pending, error) {
	p := &pending{id: a.QueueID}
	var addr string
	var attempts int
	rows, err := q.pool.Query(ctx, `
		SELECT address, attempts FROM outbound_queue_recipients
		WHERE queue_id = $1 AND domain = $2 AND status IN ('pending', 'deferred')
		ORDER BY id`, a.QueueID, a.Domain)
	if err == nil {
		_, err = pgx.ForEachRow(rows, []any{&addr, &attempts}, func() error {
			p.rcpts = append(p.rcpts, addr)
			p.attempts = max(p.attempts, attempts)
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("queue: read message %d: %w", a.QueueID, err)
	}
	if len(p.rcpts) == 0 {
		return nil, nil
	}
	err = q.pool.QueryRow(ctx, `
		SELECT tenant_id::text, coalesce(user_id, 0), mail_from, data, created_at, expires_at
		FROM outbound_queue WHERE id = $1`, a.QueueID).Scan(&p.tenantID, &p.userID, &p.mailFrom, &p.data, &p.createdAt, &p.expiresAt)
	if err != nil {
		return nil, fmt.Errorf("queue: read message %d: %w", a.QueueID, err)
	}
	return p, nil
}

// judge gives each recipient its state after the attempt, and says when
// the deferred ones are tried again (zero when none is). A temporary
// failure fails for good once NextRetry says the lifetime has run out, or
// the message's expiry has passed (the agent was down meanwhile).
func (q *Queue) judge(p *pending, res deliver.Result, now time.Time) ([]outcome, time.Time) {
	next, expired := q.cfg.NextRetry(p.attempts+1, p.createdAt, p.expiresAt.Sub(p.createdAt))
	expired = expired || !now.Before(p.expiresAt)
	var retryAt time.Time
	outs := make([]outcome, len(res.Recipients))
	for i, r := range res.Recipients {
		if r.Host == "" {
			r.Host = res.Host
		}
		r.Message = clean(r.Message)
		o := outcome{RecipientResult: r, state: "failed"}
		switch {
		case r.Status == deliver.Delivered:
			o.state = "delivered"
		case r.Status == deliver.TempFail && !expired:
			o.state, retryAt = "deferred", next
		}
		outs[i] = o
	}
	return outs, retryAt
}

// clean makes remote text storable: valid UTF-8 without NUL.
func clean(s string) string {
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
}

// record writes the attempt: each recipient's state and log row, then the
// message's status, dropping its bytes once every recipient is final. The
// message row is locked first, so that the jobs of its other domains
// record one after the other and the last one sees every state.
func (q *Queue) record(ctx context.Context, tx pgx.Tx, p *pending, outs []outcome, retryAt time.Time, tls bool) error {
	n := len(outs)
	addrs, states, enhanced, texts, hosts := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	codes := make([]int, n)
	for i, o := range outs {
		addrs[i], states[i], codes[i], enhanced[i], texts[i], hosts[i] = o.Recipient, o.state, o.Code, o.Enhanced, o.Message, o.Host
	}
	var next *time.Time
	if !retryAt.IsZero() {
		next = &retryAt
	}
	var b pgx.Batch
	b.Queue(`SELECT FROM outbound_queue WHERE id = $1 FOR UPDATE`, p.id)
	b.Queue(`
		WITH x AS (
			SELECT * FROM unnest($4::text[], $5::text[], $6::int[], $7::text[], $8::text[], $9::text[])
				WITH ORDINALITY AS x(address, state, code, enhanced, text, host, n)),
		u AS (
			UPDATE outbound_queue_recipients r SET status = x.state, attempts = r.attempts + 1,
				last_code = x.code, last_enhanced = x.enhanced, last_text = x.text, remote_host = x.host,
				next_attempt_at = CASE WHEN x.state = 'deferred' THEN $10::timestamptz END, updated_at = now()
			FROM x WHERE r.queue_id = $3 AND r.address = x.address AND r.status IN ('pending', 'deferred'))
		INSERT INTO outbound_delivery_log(tenant_id, user_id, queue_id, recipient, status, code, enhanced, text, host, tls)
		SELECT $1, NULLIF($2::bigint, 0), $3, address, state, code, enhanced, text, host, $11 FROM x ORDER BY n`,
		p.tenantID, p.userID, p.id, addrs, states, codes, enhanced, texts, hosts, next, tls)
	b.Queue(`
		UPDATE outbound_queue q SET status = s.status, data = CASE WHEN s.status = 'queued' THEN q.data END
		FROM (SELECT CASE
				WHEN bool_or(status IN ('pending', 'deferred')) THEN 'queued'
				WHEN bool_and(status = 'delivered') THEN 'delivered'
				WHEN bool_and(status = 'failed') THEN 'failed'
				ELSE 'partial' END AS status
			FROM outbound_queue_recipients WHERE queue_id = $1) s
		WHERE q.id = $1`, p.id)
	return tx.SendBatch(ctx, &b).Close()
}

// report counts and logs the recorded attempt.
func (q *Queue) report(p *pending, outs []outcome, retryAt time.Time) {
	for _, o := range outs {
		recipientResults.WithLabelValues(o.state).Inc()
		attrs := []any{"queue_id", p.id, "recipient", o.Recipient, "attempt", p.attempts + 1,
			"code", o.Code, "enhanced", o.Enhanced, "host", o.Host, "text", o.Message}
		switch o.state {
		case "delivered":
			q.log.Info("outbound delivered", attrs...)
		case "deferred":
			q.log.Warn("outbound deferred", append(attrs, "retry_at", retryAt)...)
		default:
			q.log.Warn("outbound failed", attrs...)
		}
	}
}
