package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/mairust/mairust/agent/hooks/event"
	"github.com/mairust/mairust/agent/hooks/runner"
	"github.com/mairust/mairust/agent/mailstore"
	"github.com/mairust/mairust/agent/plugins/manifest"
	"github.com/mairust/mairust/agent/plugins/sdk"
)

// PostReceiveArgs is a plugin's post_receive calls for messages stored
// in one delivery transaction (up to maxBatch). A job of one message is
// retried by River; in a job of several, a message whose call fails goes
// on alone in a job of its own, with its attempts counted, so that the
// others' results are kept.
type PostReceiveArgs struct {
	MessageIDs []int64 `json:"message_ids"`
	PluginID   string  `json:"plugin_id"`
	// PriorAttempts are the calls made for the message in the batch it
	// came from.
	PriorAttempts int `json:"prior_attempts,omitempty"`
}

// maxBatch bounds the messages of one job: River's per-job cost (insert,
// fetch, completion) is shared by them, and a job's run stays short.
const maxBatch = 32

// Kind implements river.JobArgs.
func (PostReceiveArgs) Kind() string { return "post_receive" }

// postReceiveWorker runs PostReceiveArgs jobs.
type postReceiveWorker struct {
	river.WorkerDefaults[PostReceiveArgs]
	m *Manager
}

// NextRetry waits plugins.retry_backoff before each retry.
func (w *postReceiveWorker) NextRetry(job *river.Job[PostReceiveArgs]) time.Time {
	return time.Now().Add(w.m.backoff(attempt(job)))
}

// attempt is the number of the job's current call of its message(s).
func attempt(job *river.Job[PostReceiveArgs]) int { return job.Args.PriorAttempts + job.Attempt }

// Timeout leaves the plugin its own timeout per message and the rest of
// the job time to read the messages and apply the results.
func (w *postReceiveWorker) Timeout(job *river.Job[PostReceiveArgs]) time.Duration {
	if p := w.m.get(job.Args.PluginID); p != nil {
		return time.Duration(len(job.Args.MessageIDs))*p.installed.Manifest.Timeout + 30*time.Second
	}
	return time.Minute
}

// errPermission is a result the plugin may not give.
var errPermission = errors.New("plugin answered with what its permissions do not allow")

// outcome is one message's call: its result to apply, or why not.
type outcome struct {
	id     int64
	userID int64
	res    sdk.Result
	err    error // the call failed
	gone   bool  // the message is gone: nothing to do
}

// Work calls the plugin for each message and applies the results. A failed
// call of a one-message job goes back to River (retried with backoff, then
// permanent-failed); a result beyond the plugin's permissions, or a
// message gone since, ends the job.
func (w *postReceiveWorker) Work(ctx context.Context, job *river.Job[PostReceiveArgs]) error {
	m, a := w.m, job.Args
	p := m.get(a.PluginID)
	if p == nil {
		skipped.WithLabelValues(a.PluginID, "not_enabled").Add(float64(len(a.MessageIDs)))
		m.log.Info("post_receive skipped: plugin not enabled", "plugin_id", a.PluginID, "message_ids", a.MessageIDs)
		return nil
	}
	owned, err := m.store.WithOwners(ctx, a.MessageIDs)
	if err != nil {
		return err
	}
	var done []outcome
	for _, id := range a.MessageIDs {
		o, err := w.call(ctx, job, p, id, owned)
		if err != nil {
			return err // nothing is applied: the job runs again
		}
		if o != nil {
			done = append(done, *o)
		}
	}
	if len(a.MessageIDs) == 1 && len(done) == 1 {
		switch o := done[0]; {
		case o.gone:
			return river.JobCancel(fmt.Errorf("message %d is gone: nothing to do", o.id))
		case o.err != nil:
			return w.failed(job, o.id, o.err)
		}
	}
	return w.apply(ctx, job, done)
}

// call calls the plugin for one message behind its breaker. It returns
// nil when the breaker is open, an outcome with err set when the call
// failed or gone set when the message is gone, and an error only when the
// message could not be read.
func (w *postReceiveWorker) call(ctx context.Context, job *river.Job[PostReceiveArgs], p *plugin, id int64, owned map[int64]mailstore.Owned) (*outcome, error) {
	m, pid := w.m, job.Args.PluginID
	if ok, _ := m.breakers.Allow(pid); !ok {
		skipped.WithLabelValues(pid, "breaker_open").Inc()
		m.log.Warn("post_receive skipped: circuit breaker open", "plugin_id", pid, "message_id", id)
		return nil, nil
	}
	st, ok := owned[id]
	if !ok {
		m.breakers.Done(pid, true) // the trial, if any, was not the plugin's fault
		m.log.Info("post_receive skipped: the message is gone", "plugin_id", pid, "message_id", id)
		return &outcome{id: id, gone: true}, nil
	}
	msg, err := m.message(ctx, st, p.installed.Manifest.Permissions)
	if err != nil {
		m.breakers.Done(pid, true)
		return nil, err
	}
	ev := sdk.Event{Version: sdk.EventVersion, Hook: string(manifest.PostReceive), PluginID: pid,
		EventID: strconv.FormatInt(job.ID, 10) + "." + strconv.FormatInt(id, 10), Attempt: attempt(job),
		Message: msg, Settings: p.installed.Settings}
	start := time.Now()
	res, err := p.run.Run(ctx, ev)
	callSeconds.WithLabelValues(pid).Observe(time.Since(start).Seconds())
	if err == nil {
		err = allowed(res, p.installed.Manifest.Permissions)
	}
	m.breakers.Done(pid, err == nil)
	return &outcome{id: id, userID: st.UserID, res: res, err: err}, nil
}

// failed counts and logs a failed call of a one-message job. A permission
// error is final; other failures go back to River, and the last one is
// permanent-failed.
func (w *postReceiveWorker) failed(job *river.Job[PostReceiveArgs], id int64, err error) error {
	if w.judge(job, id, err, job.Attempt >= job.MaxAttempts) == refused {
		return river.JobCancel(err)
	}
	return err
}

// verdict is what becomes of a failed call.
type verdict int

const (
	retried   verdict = iota // tried again later
	refused                  // beyond the plugin's permissions: never retried
	permanent                // no retries left: permanent-failed
)

// judge counts and logs a failed call of message id and says what becomes
// of it; last means no retry is left.
func (w *postReceiveWorker) judge(job *river.Job[PostReceiveArgs], id int64, err error, last bool) verdict {
	pid := job.Args.PluginID
	reason := "error"
	var f *runner.Failure
	switch {
	case errors.As(err, &f):
		reason = f.Reason
	case errors.Is(err, errPermission):
		reason = "permission"
	}
	calls.WithLabelValues(pid, reason).Inc()
	switch {
	case reason == "permission":
		w.m.log.Error("post_receive refused", "plugin_id", pid, "message_id", id, "error", err)
		return refused
	case last:
		permanentFailures.WithLabelValues(pid).Inc()
		w.m.log.Error("post_receive permanent-failed", "plugin_id", pid, "message_id", id, "attempts", attempt(job), "error", err)
		return permanent
	}
	w.m.log.Warn("post_receive failed; retrying", "plugin_id", pid, "message_id", id, "attempt", attempt(job), "reason", reason, "error", err)
	return retried
}

// retryAlone is the job that retries a message whose call failed in a
// batch, or nil when the call is not retried (a permission error, or no
// retries are left).
func (w *postReceiveWorker) retryAlone(job *river.Job[PostReceiveArgs], o outcome) *river.InsertManyParams {
	left := w.m.settings.Load().Retries + 1 - attempt(job)
	if w.judge(job, o.id, o.err, left <= 0) != retried {
		return nil
	}
	return &river.InsertManyParams{
		Args: PostReceiveArgs{MessageIDs: []int64{o.id}, PluginID: job.Args.PluginID, PriorAttempts: attempt(job)},
		InsertOpts: &river.InsertOpts{Queue: Queue, MaxAttempts: left,
			ScheduledAt: time.Now().Add(w.m.backoff(attempt(job)))},
	}
}

// allowed refuses a result that does more than the permissions allow.
func allowed(r sdk.Result, p manifest.Permissions) error {
	switch {
	case len(r.Tags) > 0 && !p.WriteTags:
		return fmt.Errorf("%w: tags need write_tags", errPermission)
	case r.MoveTo != "" && !p.MoveMessage:
		return fmt.Errorf("%w: move_to needs move_message", errPermission)
	case len(r.Metadata) > 0 && !p.WriteMetadata:
		return fmt.Errorf("%w: metadata needs write_metadata", errPermission)
	}
	return nil
}

// message builds what the plugin may see of a stored message.
func (m *Manager) message(ctx context.Context, st mailstore.Owned, perms manifest.Permissions) (sdk.Message, error) {
	base := sdk.Message{ID: st.ID, User: st.Address, Folder: st.Folder, MailFrom: st.MailFrom, RcptTo: st.RcptTo, Size: st.Size, ReceivedAt: st.ReceivedAt}
	if !perms.ReadHeaders && perms.ReadBody == manifest.BodyNone && perms.ReadAttachments == manifest.AttachmentsNone {
		return base, nil
	}
	r, err := m.blobs.Get(ctx, st.BlobKey)
	if err != nil {
		return sdk.Message{}, fmt.Errorf("hooks: message %d: %w", st.ID, err)
	}
	defer r.Close()
	raw := bytes.NewBuffer(make([]byte, 0, st.Size+1))
	if _, err := raw.ReadFrom(io.LimitReader(r, st.Size+1)); err != nil {
		return sdk.Message{}, fmt.Errorf("hooks: message %d: %w", st.ID, err)
	}
	return event.Build(raw.Bytes(), base, perms), nil
}

// apply writes the results, puts the failed calls of a batch in jobs of
// their own and completes the job, in one transaction, so a crash cannot
// apply a result twice or lose it.
func (w *postReceiveWorker) apply(ctx context.Context, job *river.Job[PostReceiveArgs], done []outcome) error {
	a := job.Args
	var retries []river.InsertManyParams
	return pgx.BeginFunc(ctx, w.m.pool, func(tx pgx.Tx) error {
		retries = retries[:0]
		var rs results
		for _, o := range done {
			if o.gone {
				continue
			}
			if o.err != nil {
				if r := w.retryAlone(job, o); r != nil {
					retries = append(retries, *r)
				}
				continue
			}
			if o.res.MoveTo != "" {
				_, err := w.m.store.MoveTx(ctx, tx, o.userID, o.id, o.res.MoveTo)
				if errors.Is(err, mailstore.ErrNoFolder) { // nothing written: the result is refused
					w.judge(job, o.id, fmt.Errorf("%w: move_to %q: the user has no such folder", errPermission, o.res.MoveTo), true)
					continue
				}
				if err != nil && !errors.Is(err, mailstore.ErrNotFound) {
					return err
				}
			}
			if err := rs.add(o, attempt(job)); err != nil {
				return err
			}
			calls.WithLabelValues(a.PluginID, "ok").Inc()
		}
		if err := rs.write(ctx, tx, a.PluginID); err != nil {
			return err
		}
		if len(retries) > 0 {
			if _, err := w.m.jobs.Load().InsertManyTx(ctx, tx, retries); err != nil {
				return err
			}
		}
		_, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job)
		return err
	})
}

// results are the rows that a job's results write, for one statement a
// table.
type results struct {
	tagIDs, metaIDs, eventIDs []int64
	tags, keys, values        []string
	details                   [][]byte
}

// add adds one message's result.
func (rs *results) add(o outcome, attempt int) error {
	r := o.res
	detail, err := json.Marshal(map[string]any{"message_id": o.id, "tags": r.Tags, "move_to": r.MoveTo, "metadata": len(r.Metadata), "attempt": attempt, "log": r.Log})
	if err != nil {
		return err
	}
	rs.eventIDs, rs.details = append(rs.eventIDs, o.id), append(rs.details, detail)
	for _, t := range r.Tags {
		rs.tagIDs, rs.tags = append(rs.tagIDs, o.id), append(rs.tags, t)
	}
	for k, v := range r.Metadata {
		rs.metaIDs, rs.keys, rs.values = append(rs.metaIDs, o.id), append(rs.keys, k), append(rs.values, v)
	}
	return nil
}

// write writes the tags, metadata and events in one round trip.
func (rs *results) write(ctx context.Context, tx pgx.Tx, pluginID string) error {
	if len(rs.eventIDs) == 0 {
		return nil
	}
	var b pgx.Batch
	if len(rs.tags) > 0 {
		b.Queue(`INSERT INTO message_tags(message_id, tag, plugin_id) SELECT id, tag, $3 FROM unnest($1::bigint[], $2::text[]) AS x(id, tag)
			ON CONFLICT DO NOTHING`, rs.tagIDs, rs.tags, pluginID)
	}
	if len(rs.keys) > 0 {
		b.Queue(`INSERT INTO message_metadata(message_id, plugin_id, key, value)
			SELECT id, $2, k, v FROM unnest($1::bigint[], $3::text[], $4::text[]) AS x(id, k, v)
			ON CONFLICT (message_id, plugin_id, key) DO UPDATE SET value = EXCLUDED.value`, rs.metaIDs, pluginID, rs.keys, rs.values)
	}
	b.Queue(`INSERT INTO events(tenant_id, kind, actor, detail)
		SELECT m.tenant_id, 'plugin.post_receive', $2, x.detail FROM unnest($1::bigint[], $3::jsonb[]) WITH ORDINALITY AS x(id, detail, n)
		JOIN messages m ON m.id = x.id ORDER BY x.n`, rs.eventIDs, pluginID, rs.details)
	return tx.SendBatch(ctx, &b).Close()
}
