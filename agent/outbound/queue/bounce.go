package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/agent/mailparse"
	"github.com/mairust/mairust/agent/mailstore"
	"github.com/mairust/mairust/agent/outbound/deliver"
	"github.com/mairust/mairust/agent/outbound/dsn"
)

// bounceArgs is a bounce job: a built notification for the sender of a
// message (QueueID) some of whose recipients failed. It is a job of its
// own, inserted with the attempt that failed them, because a local
// sender's INBOX (the mail store) cannot join that transaction.
type bounceArgs struct {
	QueueID  int64  `json:"queue_id"`
	TenantID string `json:"tenant_id"`
	UserID   int64  `json:"user_id,omitempty"`
	To       string `json:"to"`
	Data     []byte `json:"data"`
}

// Kind implements river.JobArgs.
func (bounceArgs) Kind() string { return "outbound_bounce" }

// InsertOpts puts the job in QueueName.
func (bounceArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{Queue: QueueName} }

// bounce returns the job that bounces the recipients the attempt failed,
// or nil when it failed none or the message was itself a bounce (never
// bounce a bounce).
func (q *Queue) bounce(p *pending, outs []outcome, now time.Time) *bounceArgs {
	var rcpts []dsn.Recipient
	for _, o := range outs {
		if o.state == "failed" {
			rcpts = append(rcpts, dsn.Recipient{FinalRecipient: o.Recipient, Action: dsn.Failed, Status: o.Enhanced,
				RemoteMTA: o.Host, DiagnosticCode: diagnostic(o.RecipientResult), LastAttempt: now})
		}
	}
	if len(rcpts) == 0 {
		return nil
	}
	m, err := dsn.Build(dsn.Report{ReportingMTA: q.cfg.Hostname, OriginalSender: p.mailFrom, ArrivalDate: p.createdAt,
		Recipients: rcpts, Original: p.data, Date: now})
	switch {
	case errors.Is(err, dsn.ErrNoBounce):
		bounces.WithLabelValues("suppressed").Inc()
		q.log.Info("outbound bounce suppressed: the failed message has the null sender", "queue_id", p.id)
		return nil
	case err != nil:
		q.log.Error("outbound bounce not built", "queue_id", p.id, "mail_from", p.mailFrom, "error", err)
		return nil
	}
	return &bounceArgs{QueueID: p.id, TenantID: p.tenantID, UserID: p.userID, To: m.Recipient, Data: m.Data}
}

// diagnostic renders a result as a DSN Diagnostic-Code.
func diagnostic(r deliver.RecipientResult) string {
	if r.Code == 0 {
		return r.Message
	}
	return fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Message)
}

// bounceWorker runs bounceArgs jobs.
type bounceWorker struct {
	river.WorkerDefaults[bounceArgs]
	q *Queue
}

// Work puts the bounce into the INBOX of a local sender, or queues it to a
// remote one with the null sender (completing the job in the same
// transaction). A local domain's address without a user is dropped. A
// failure goes back to River; a bounce stored in an INBOX just before a
// failure to complete the job is stored twice.
func (w *bounceWorker) Work(ctx context.Context, job *river.Job[bounceArgs]) error {
	q, a := w.q, job.Args
	rcpt, err := q.accounts.Lookup(ctx, a.To)
	switch {
	case err == nil:
		// Our own notification parses; were it not to, it is still stored.
		h, _ := mailparse.ParseHeader(bytes.NewReader(a.Data))
		if _, err := q.cfg.Store.Deliver(ctx, mailstore.Delivery{Recipients: []accounts.Recipient{rcpt}, Data: a.Data, Header: h}); err != nil {
			return fmt.Errorf("queue: bounce for message %d into %s: %w", a.QueueID, a.To, err)
		}
		bounces.WithLabelValues("inbox").Inc()
		q.log.Info("outbound bounce stored", "queue_id", a.QueueID, "to", a.To)
		return nil
	case errors.Is(err, accounts.ErrForeign):
		var id int64
		err := pgx.BeginFunc(ctx, q.pool, func(tx pgx.Tx) error {
			var err error
			id, err = q.EnqueueTx(ctx, tx, Message{TenantID: a.TenantID, UserID: a.UserID, Recipients: []string{a.To}, Data: a.Data})
			if err != nil {
				return err
			}
			_, err = river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job)
			return err
		})
		if err != nil {
			return fmt.Errorf("queue: bounce for message %d to %s: %w", a.QueueID, a.To, err)
		}
		bounces.WithLabelValues("queued").Inc()
		q.log.Info("outbound bounce queued", "queue_id", a.QueueID, "to", a.To, "bounce_id", id)
		return nil
	case errors.Is(err, accounts.ErrUnknownUser):
		bounces.WithLabelValues("dropped").Inc()
		q.log.Warn("outbound bounce dropped: the sender's address has no user", "queue_id", a.QueueID, "to", a.To)
		return nil
	}
	return err
}
