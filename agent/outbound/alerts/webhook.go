package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/riverqueue/river"

	"github.com/mairust/mairust/agent/outbound/queue"
	"github.com/mairust/mairust/agent/plugins/sdk"
)

const (
	webhookTimeout = 10 * time.Second
	// webhookAttempts, with River's backoff (attempt⁴ seconds), retries a
	// webhook for about 80 minutes.
	webhookAttempts = 8
	// SignerID is the X-MaiRust-Plugin-Id of signed alerts: a receiver
	// checks them with sdk.Verify(header, body, SignerID, secret, now).
	SignerID = "outbound-alerts"
)

// webhookArgs is the job that POSTs one event to the webhook.
type webhookArgs struct {
	Event Event `json:"event"`
}

// Kind implements river.JobArgs.
func (webhookArgs) Kind() string { return "outbound_alert_webhook" }

// InsertOpts puts the job in the outbound queue.
func (webhookArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: queue.QueueName, MaxAttempts: webhookAttempts}
}

// webhookWorker runs webhookArgs jobs.
type webhookWorker struct {
	river.WorkerDefaults[webhookArgs]
	a *Alerter
}

// Register adds the Alerter's webhook worker.
func (a *Alerter) Register(w *river.Workers) { river.AddWorker(w, &webhookWorker{a: a}) }

// Work POSTs the event to webhook_url as it is now (dropped when unset
// since), signed when webhook_secret is set; an answer other than 2xx is
// an error, for River to retry.
func (w *webhookWorker) Work(ctx context.Context, job *river.Job[webhookArgs]) error {
	a, s := w.a, w.a.settings()
	e := job.Args.Event
	if s.WebhookURL == "" {
		a.log.Warn("outbound alert webhook dropped: outbound_alerts.webhook_url is no longer set", "event", e.ID)
		return nil
	}
	body, err := json.Marshal(e)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if s.WebhookSecret != "" {
		sdk.Sign(req, SignerID, []byte(s.WebhookSecret), body, time.Now())
	}
	resp, err := a.client.Do(req)
	if err == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			err = fmt.Errorf("answered %s", resp.Status)
		}
	}
	if err != nil {
		webhooks.WithLabelValues("failed").Inc()
		a.log.Warn("outbound alert webhook failed; retried later", "event", e.ID, "attempt", job.Attempt, "of", webhookAttempts, "error", err)
		return fmt.Errorf("alerts: webhook for event %d: %w", e.ID, err)
	}
	webhooks.WithLabelValues("sent").Inc()
	return nil
}
