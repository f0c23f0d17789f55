package hooks

import (
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

// PostReceiveArgs is one post_receive call: a stored message for a plugin.
type PostReceiveArgs struct {
	MessageID int64  `json:"message_id"`
	PluginID  string `json:"plugin_id"`
}

// Kind implements river.JobArgs.
func (PostReceiveArgs) Kind() string { return "post_receive" }

// postReceiveWorker runs PostReceiveArgs jobs.
type postReceiveWorker struct {
	river.WorkerDefaults[PostReceiveArgs]
	m *Manager
}

// NextRetry waits plugins.retry_backoff before each retry.
func (w *postReceiveWorker) NextRetry(job *river.Job[PostReceiveArgs]) time.Time {
	return time.Now().Add(w.m.backoff(job.Attempt))
}

// Timeout leaves the plugin its own timeout and the rest of the job time
// to read the message and apply the result.
func (w *postReceiveWorker) Timeout(job *river.Job[PostReceiveArgs]) time.Duration {
	if p := w.m.get(job.Args.PluginID); p != nil {
		return p.installed.Manifest.Timeout + 30*time.Second
	}
	return time.Minute
}

// errPermission is a result the plugin may not give.
var errPermission = errors.New("plugin answered with what its permissions do not allow")

// Work calls the plugin and applies its result. A failed call goes back to
// River (retried with backoff, then permanent-failed); a result beyond the
// plugin's permissions, or a message gone since, ends the job.
func (w *postReceiveWorker) Work(ctx context.Context, job *river.Job[PostReceiveArgs]) error {
	m, a := w.m, job.Args
	p := m.get(a.PluginID)
	if p == nil {
		skipped.WithLabelValues(a.PluginID, "not_enabled").Inc()
		m.log.Info("post_receive skipped: plugin not enabled", "plugin_id", a.PluginID, "message_id", a.MessageID)
		return nil
	}
	if ok, _ := m.breakers.Allow(a.PluginID); !ok {
		skipped.WithLabelValues(a.PluginID, "breaker_open").Inc()
		m.log.Warn("post_receive skipped: circuit breaker open", "plugin_id", a.PluginID, "message_id", a.MessageID)
		return nil
	}
	msg, userID, err := m.message(ctx, a.MessageID, p.installed.Manifest.Permissions)
	if errors.Is(err, mailstore.ErrNotFound) {
		m.breakers.Done(a.PluginID, true) // the trial, if any, was not the plugin's fault
		return river.JobCancel(fmt.Errorf("message %d is gone: nothing to do", a.MessageID))
	}
	if err != nil {
		m.breakers.Done(a.PluginID, true)
		return err
	}
	ev := sdk.Event{Version: sdk.EventVersion, Hook: string(manifest.PostReceive), PluginID: a.PluginID,
		EventID: strconv.FormatInt(job.ID, 10), Attempt: job.Attempt, Message: msg, Settings: p.installed.Settings}
	start := time.Now()
	res, err := p.run.Run(ctx, ev)
	callSeconds.WithLabelValues(a.PluginID).Observe(time.Since(start).Seconds())
	if err == nil {
		err = allowed(res, p.installed.Manifest.Permissions)
	}
	if err != nil {
		return w.failed(job, err)
	}
	if err := w.apply(ctx, job, userID, res); err != nil {
		if errors.Is(err, mailstore.ErrNoFolder) {
			return w.failed(job, fmt.Errorf("%w: move_to %q: the user has no such folder", errPermission, res.MoveTo))
		}
		m.breakers.Done(a.PluginID, true)
		return err
	}
	m.breakers.Done(a.PluginID, true)
	calls.WithLabelValues(a.PluginID, "ok").Inc()
	return nil
}

// failed counts and logs a failed call. A permission error is final; other
// failures go back to River, and the last one is permanent-failed.
func (w *postReceiveWorker) failed(job *river.Job[PostReceiveArgs], err error) error {
	m, id := w.m, job.Args.PluginID
	m.breakers.Done(id, false)
	reason := "error"
	var f *runner.Failure
	switch {
	case errors.As(err, &f):
		reason = f.Reason
	case errors.Is(err, errPermission):
		reason = "permission"
	}
	calls.WithLabelValues(id, reason).Inc()
	if reason == "permission" {
		m.log.Error("post_receive refused", "plugin_id", id, "message_id", job.Args.MessageID, "error", err)
		return river.JobCancel(err)
	}
	if job.Attempt >= job.MaxAttempts {
		permanentFailures.WithLabelValues(id).Inc()
		m.log.Error("post_receive permanent-failed", "plugin_id", id, "message_id", job.Args.MessageID, "attempts", job.Attempt, "error", err)
		return err
	}
	m.log.Warn("post_receive failed; retrying", "plugin_id", id, "message_id", job.Args.MessageID, "attempt", job.Attempt, "reason", reason, "error", err)
	return err
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

// message builds what the plugin may see of a stored message, and returns
// its owner.
func (m *Manager) message(ctx context.Context, id int64, perms manifest.Permissions) (sdk.Message, int64, error) {
	st, userID, address, err := m.store.WithOwner(ctx, id)
	if err != nil {
		return sdk.Message{}, 0, err
	}
	base := sdk.Message{ID: st.ID, User: address, Folder: st.Folder, MailFrom: st.MailFrom, RcptTo: st.RcptTo, Size: st.Size, ReceivedAt: st.ReceivedAt}
	if !perms.ReadHeaders && perms.ReadBody == manifest.BodyNone && perms.ReadAttachments == manifest.AttachmentsNone {
		return base, userID, nil
	}
	r, err := m.blobs.Get(ctx, st.BlobKey)
	if err != nil {
		return sdk.Message{}, 0, fmt.Errorf("hooks: message %d: %w", id, err)
	}
	defer r.Close()
	raw, err := io.ReadAll(io.LimitReader(r, st.Size+1))
	if err != nil {
		return sdk.Message{}, 0, fmt.Errorf("hooks: message %d: %w", id, err)
	}
	return event.Build(raw, base, perms), userID, nil
}

// apply writes the result and completes the job in one transaction, so a
// crash cannot apply a result twice or lose it.
func (w *postReceiveWorker) apply(ctx context.Context, job *river.Job[PostReceiveArgs], userID int64, r sdk.Result) error {
	a := job.Args
	detail, err := json.Marshal(map[string]any{"message_id": a.MessageID, "tags": r.Tags, "move_to": r.MoveTo, "metadata": len(r.Metadata), "attempt": job.Attempt, "log": r.Log})
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, w.m.pool, func(tx pgx.Tx) error {
		if r.MoveTo != "" {
			if _, err := w.m.store.MoveTx(ctx, tx, userID, a.MessageID, r.MoveTo); err != nil && !errors.Is(err, mailstore.ErrNotFound) {
				return err
			}
		}
		// Tags, metadata and the event in one round trip.
		var b pgx.Batch
		if len(r.Tags) > 0 {
			b.Queue(`INSERT INTO message_tags(message_id, tag, plugin_id) SELECT $1, unnest($2::text[]), $3
				ON CONFLICT DO NOTHING`, a.MessageID, r.Tags, a.PluginID)
		}
		if len(r.Metadata) > 0 {
			keys, values := make([]string, 0, len(r.Metadata)), make([]string, 0, len(r.Metadata))
			for k, v := range r.Metadata {
				keys, values = append(keys, k), append(values, v)
			}
			b.Queue(`INSERT INTO message_metadata(message_id, plugin_id, key, value)
				SELECT $1, $2, k, v FROM unnest($3::text[], $4::text[]) AS x(k, v)
				ON CONFLICT (message_id, plugin_id, key) DO UPDATE SET value = EXCLUDED.value`, a.MessageID, a.PluginID, keys, values)
		}
		b.Queue(`INSERT INTO events(tenant_id, kind, actor, detail)
			SELECT tenant_id, 'plugin.post_receive', $2, $3 FROM messages WHERE id = $1`, a.MessageID, a.PluginID, detail)
		if err := tx.SendBatch(ctx, &b).Close(); err != nil {
			return err
		}
		_, err = river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job)
		return err
	})
}
