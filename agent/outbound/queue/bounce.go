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

// noticeArgs is a job that delivers a message the agent wrote itself to
// one address: a bounce for the sender of a message (QueueID) some of
// whose recipients failed, inserted with the attempt that failed them, or
// an alert (NoticeTx). It is a job of its own because a local
// recipient's INBOX (the mail store) cannot join the inserting
// transaction.
type noticeArgs struct {
	Purpose  string `json:"purpose"` // "bounce" or "alert": for the logs and the metrics
	QueueID  int64  `json:"queue_id,omitempty"`
	TenantID string `json:"tenant_id"`
	UserID   int64  `json:"user_id,omitempty"`
	To       string `json:"to"`
	Data     []byte `json:"data"`
}

// Kind implements river.JobArgs.
func (noticeArgs) Kind() string { return "outbound_notice" }

// InsertOpts puts the job in QueueName.
func (noticeArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{Queue: QueueName} }

// NoticeTx queues in tx the delivery of data, a message the agent wrote
// (an alert of purpose "alert"), to the address to: into its INBOX when it
// is a user here, else through the queue with the null sender (tenantID
// pays for it). A local domain's address without a user drops it.
func (q *Queue) NoticeTx(ctx context.Context, tx pgx.Tx, purpose, tenantID, to string, data []byte) error {
	_, err := q.jobs.InsertTx(ctx, tx, noticeArgs{Purpose: purpose, TenantID: tenantID, To: to, Data: data}, nil)
	if err != nil {
		return fmt.Errorf("queue: %s to %s: %w", purpose, to, err)
	}
	return nil
}

// bounce returns the job that bounces the recipients the attempt failed,
// or nil when it failed none or the message was itself a bounce (never
// bounce a bounce).
func (q *Queue) bounce(p *pending, outs []outcome, now time.Time) *noticeArgs {
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
		notices.WithLabelValues("bounce", "suppressed").Inc()
		q.log.Info("outbound bounce suppressed: the failed message has the null sender", "queue_id", p.id)
		return nil
	case err != nil:
		q.log.Error("outbound bounce not built", "queue_id", p.id, "mail_from", p.mailFrom, "error", err)
		return nil
	}
	return &noticeArgs{Purpose: "bounce", QueueID: p.id, TenantID: p.tenantID, UserID: p.userID, To: m.Recipient, Data: m.Data}
}

// diagnostic renders a result as a DSN Diagnostic-Code.
func diagnostic(r deliver.RecipientResult) string {
	if r.Code == 0 {
		return r.Message
	}
	return fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Message)
}

// noticeWorker runs noticeArgs jobs.
type noticeWorker struct {
	river.WorkerDefaults[noticeArgs]
	q *Queue
}

// Work puts the notice into the INBOX of a local recipient, or queues it
// to a remote one with the null sender (completing the job in the same
// transaction). A local domain's address without a user is dropped. A
// failure goes back to River; a notice stored in an INBOX just before a
// failure to complete the job is stored twice.
func (w *noticeWorker) Work(ctx context.Context, job *river.Job[noticeArgs]) error {
	q, a := w.q, job.Args
	what := a.Purpose
	if a.QueueID != 0 {
		what = fmt.Sprintf("%s for message %d", a.Purpose, a.QueueID)
	}
	rcpt, err := q.accounts.Lookup(ctx, a.To)
	switch {
	case err == nil:
		// Our own notice parses; were it not to, it is still stored.
		h, _ := mailparse.ParseHeader(bytes.NewReader(a.Data))
		if _, err := q.cfg.Store.Deliver(ctx, mailstore.Delivery{Recipients: []accounts.Recipient{rcpt}, Data: a.Data, Header: h}); err != nil {
			return fmt.Errorf("queue: %s into %s: %w", what, a.To, err)
		}
		notices.WithLabelValues(a.Purpose, "inbox").Inc()
		q.log.Info("outbound "+a.Purpose+" stored", "queue_id", a.QueueID, "to", a.To)
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
			return fmt.Errorf("queue: %s to %s: %w", what, a.To, err)
		}
		notices.WithLabelValues(a.Purpose, "queued").Inc()
		q.log.Info("outbound "+a.Purpose+" queued", "queue_id", a.QueueID, "to", a.To, "notice_id", id)
		return nil
	case errors.Is(err, accounts.ErrUnknownUser):
		notices.WithLabelValues(a.Purpose, "dropped").Inc()
		q.log.Warn("outbound "+a.Purpose+" dropped: the address is of a domain here but has no user", "queue_id", a.QueueID, "to", a.To)
		return nil
	}
	return err
}
