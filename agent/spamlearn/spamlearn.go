// Package spamlearn teaches rspamd from the users' own sorting: a message
// moved into Junk through the API is learned as spam, one moved out of Junk
// as ham. The move commits a River job with it (Enqueue); the Worker sends
// the message to rspamd's controller (spam.learn_url) and records an event.
package spamlearn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/mairust/mairust/agent/blobstore"
	"github.com/mairust/mairust/agent/mailstore"
	"github.com/mairust/mairust/agent/spam"
)

// Args is the job: learn the user's message as spam or ham.
type Args struct {
	MessageID int64 `json:"message_id"`
	UserID    int64 `json:"user_id"`
	Spam      bool  `json:"spam"`
}

// Kind implements river.JobArgs.
func (Args) Kind() string { return "spam_learn" }

// Enqueue returns the mail store's junk-move hook: it inserts the job in
// the move's transaction. Without spam.learn_url nothing is enqueued.
func Enqueue(jobs *river.Client[pgx.Tx], scanner *spam.Scanner) mailstore.JunkMoveHook {
	return func(ctx context.Context, tx pgx.Tx, user int64, m mailstore.Message, isSpam bool) error {
		if scanner.Learner() == nil {
			return nil
		}
		_, err := jobs.InsertTx(ctx, tx, Args{MessageID: m.ID, UserID: user, Spam: isSpam}, nil)
		return err
	}
}

// Worker runs Args jobs. A failure of rspamd is returned, so that River
// retries; a message rspamd already learned counts as done.
type Worker struct {
	river.WorkerDefaults[Args]
	Pool    *pgxpool.Pool
	Store   *mailstore.Store
	Blobs   blobstore.Store
	Scanner *spam.Scanner // its Learner is the current spam.learn_url
}

// Work implements river.Worker.
func (w *Worker) Work(ctx context.Context, job *river.Job[Args]) error {
	a := job.Args
	m, err := w.Store.Get(ctx, a.UserID, a.MessageID)
	if errors.Is(err, mailstore.ErrNotFound) {
		return river.JobCancel(err) // deleted since: nothing to learn
	}
	if err != nil {
		return err
	}
	result := "learned"
	if c := w.Scanner.Learner(); c == nil {
		result = "not configured" // spam.learn_url was removed since the move
	} else {
		data, err := w.blob(ctx, m.BlobKey)
		if err != nil {
			return err
		}
		switch err := c.Learn(ctx, a.Spam, data); {
		case errors.Is(err, spam.ErrAlreadyLearned):
			result = "already learned"
		case errors.Is(err, spam.ErrTooShort):
			result = "too short to learn"
		case err != nil:
			return err
		}
	}
	detail, err := json.Marshal(map[string]any{"message_id": m.ID, "spam": a.Spam, "result": result})
	if err != nil {
		return err
	}
	if _, err := w.Pool.Exec(ctx, `
		INSERT INTO events(tenant_id, kind, actor, detail)
		SELECT tenant_id, 'spam.learn', address, $2 FROM mail_users WHERE id = $1`, a.UserID, detail); err != nil {
		return fmt.Errorf("spamlearn: record event: %w", err)
	}
	return nil
}

// blob reads a message's content.
func (w *Worker) blob(ctx context.Context, key string) ([]byte, error) {
	r, err := w.Blobs.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("spamlearn: %w", err)
	}
	defer r.Close()
	return io.ReadAll(r)
}
