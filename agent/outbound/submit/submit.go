// Package submit takes the messages users send (over SMTP submission or
// the API) on their way out: it scans them, asks the Outbound Policy
// Engine whether they may go, signs them with the sending domain's DKIM
// key, stores the copies for local recipients, queues the rest durably for
// delivery, and files a copy in the sender's Sent folder.
package submit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/agent/dkim"
	"github.com/mairust/mairust/agent/mailparse"
	"github.com/mairust/mairust/agent/mailstore"
	"github.com/mairust/mairust/agent/outbound/queue"
	"github.com/mairust/mairust/agent/policy"
	"github.com/mairust/mairust/agent/spam"
	"github.com/mairust/mairust/agent/submission"
)

// spamReject is the score the content factor is measured against: rspamd's
// default reject score. A message the scanner would reject counts as 1.
const spamReject = 15

// Scanner scans a message (satisfied by *spam.Scanner).
type Scanner interface {
	Scan(ctx context.Context, env spam.Envelope, msg []byte) (spam.Verdict, error)
}

// Notifier is told of the policy's warnings and suspensions (satisfied by
// *monitor.Notifier); Notify must return at once.
type Notifier interface {
	Notify(policy.Notice)
}

// Submitter implements submission.Submitter.
type Submitter struct {
	Pool     *pgxpool.Pool
	Accounts *accounts.Accounts
	Store    *mailstore.Store
	Queue    *queue.Queue
	Policy   *policy.Engine
	Signer   *dkim.Signer // nil: nothing is signed
	Scanner  Scanner      // nil: the content factor is 0
	Notifier Notifier     // nil: no one is told of warnings and suspensions
	// Hold returns why a tenant may not send new outbound mail now (its
	// control plane's hold: an unpaid bill), "" when it may; nil: never held.
	Hold func(tenantID string) string
	Log  *slog.Logger
}

// Submit scans, evaluates, signs and stores or queues s; it returns nil
// once the message is durable. A refusal by the policy is a
// *submission.Reject with the engine's code and text.
func (sb *Submitter) Submit(ctx context.Context, s submission.Submission) error {
	if sb.Hold != nil {
		if reason := sb.Hold(s.TenantID); reason != "" {
			sb.Log.Warn("submission refused: the control plane holds the tenant's outbound mail", "account", s.Address, "reason", reason)
			return &submission.Reject{Code: 550, Enhanced: "5.7.1", Text: reason}
		}
	}
	ps := policy.Submission{Account: s.Address, TenantID: s.TenantID, Recipients: s.Recipients}
	if sb.Scanner != nil {
		v, err := sb.Scanner.Scan(ctx, spam.Envelope{IP: s.ClientIP, MailFrom: s.MailFrom, Rcpts: s.Recipients, User: s.Address, QueueID: s.ID}, s.Data)
		if err != nil {
			return fmt.Errorf("submit: scan: %w", err)
		}
		if v.Scanned {
			ps.SpamScore, ps.SpamReject = v.Score, spamReject
			if v.Action == spam.Reject {
				ps.SpamScore = max(v.Score, spamReject)
			}
		}
	}
	d, err := sb.Policy.Evaluate(ctx, ps)
	if err != nil {
		return fmt.Errorf("submit: policy: %w", err)
	}
	if n, ok := d.Notice(ps); ok && sb.Notifier != nil {
		sb.Notifier.Notify(n)
	}
	if !d.Sent() {
		sb.Log.Warn("submission refused by the outbound policy", "account", s.Address, "code", d.SMTPCode, "score", d.Score, "reason", d.Reason)
		return &submission.Reject{Code: d.SMTPCode, Enhanced: enhanced(d.SMTPCode), Text: d.Message}
	}
	if d.Action == policy.Warn {
		sb.Log.Warn("outbound policy warning: account soft-limited", "account", s.Address, "score", d.Score, "reason", d.Reason)
	}
	data := sb.sign(ctx, s)
	local, remote, err := sb.split(ctx, s.Recipients)
	if err != nil {
		return err
	}
	header, _ := mailparse.ParseHeader(bytes.NewReader(data))
	if len(local) > 0 {
		if _, err := sb.Store.Deliver(ctx, mailstore.Delivery{MailFrom: s.MailFrom, Recipients: local, Data: data, Header: header}); err != nil {
			return fmt.Errorf("submit: local delivery: %w", err)
		}
	}
	if len(remote) > 0 {
		err := pgx.BeginFunc(ctx, sb.Pool, func(tx pgx.Tx) error {
			_, err := sb.Queue.EnqueueTx(ctx, tx, queue.Message{TenantID: s.TenantID, UserID: s.UserID, MailFrom: s.MailFrom, Recipients: remote, Data: data})
			return err
		})
		if err != nil {
			return fmt.Errorf("submit: queue: %w", err)
		}
	}
	sb.copyToSent(ctx, s, data, header)
	return nil
}

// enhanced is the enhanced status code of a policy refusal.
func enhanced(code int) string {
	if code >= 500 {
		return "5.7.1"
	}
	return "4.7.1"
}

// sign returns the message signed with the sender's domain key, or as it
// is when the domain has none (logged) or signing fails (logged).
func (sb *Submitter) sign(ctx context.Context, s submission.Submission) []byte {
	if sb.Signer == nil {
		return s.Data
	}
	_, domain, _ := strings.Cut(s.MailFrom, "@")
	signed, err := sb.Signer.Sign(ctx, domain, s.Data)
	switch {
	case errors.Is(err, dkim.ErrNoKey):
		sb.Log.Warn("message sent unsigned: the domain has no DKIM key (mairust admin dkim generate "+domain+")", "domain", domain, "id", s.ID)
		return s.Data
	case err != nil:
		sb.Log.Error("message sent unsigned: DKIM signing failed", "domain", domain, "id", s.ID, "error", err)
		return s.Data
	}
	return signed
}

// split sorts the recipients into this agent's users and the rest; an
// address of one of its domains without such a user refuses the message.
func (sb *Submitter) split(ctx context.Context, rcpts []string) (local []accounts.Recipient, remote []string, err error) {
	for _, r := range rcpts {
		u, err := sb.Accounts.Lookup(ctx, r)
		switch {
		case err == nil:
			local = append(local, u)
		case errors.Is(err, accounts.ErrForeign):
			remote = append(remote, r)
		case errors.Is(err, accounts.ErrUnknownUser):
			return nil, nil, &submission.Reject{Code: 550, Enhanced: "5.1.1", Text: "No such user here: " + r}
		default:
			return nil, nil, fmt.Errorf("submit: %w", err)
		}
	}
	return local, remote, nil
}

// copyToSent files the message in the sender's Sent folder. The message is
// already on its way: a failure is logged, not returned.
func (sb *Submitter) copyToSent(ctx context.Context, s submission.Submission, data []byte, header mailparse.Header) {
	sent, err := sb.Store.SpecialFolder(ctx, s.UserID, "sent")
	if err == nil {
		sender := accounts.Recipient{Address: s.Address, TenantID: s.TenantID, UserID: s.UserID, InboxID: sent, JunkID: sent}
		_, err = sb.Store.Deliver(ctx, mailstore.Delivery{MailFrom: s.MailFrom, Recipients: []accounts.Recipient{sender}, Folders: []int64{sent}, Data: data, Header: header})
	}
	if err != nil {
		sb.Log.Error("the copy to Sent failed (the message is sent)", "account", s.Address, "id", s.ID, "error", err)
	}
}
