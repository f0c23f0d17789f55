package monitor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/mairust/mairust/agent/plugins/sdk"
	"github.com/mairust/mairust/controlplane/store"
	monitorv1 "github.com/mairust/mairust/proto/mairust/monitor/v1"
)

const (
	// SignerID is the X-MaiRust-Plugin-Id of the webhook's requests: a
	// receiver checks them with sdk.Verify(header, body, SignerID, secret, now).
	SignerID = "monitor"

	pollInterval   = 5 * time.Second  // between two looks for due alerts
	claimBatch     = 20               // alerts leased at once
	lease          = 5 * time.Minute  // longer than one mail and one webhook
	webhookTimeout = 10 * time.Second // for one POST
	// maxAttempts, with a backoff of attempt⁴ seconds, retries an alert
	// for about 80 minutes.
	maxAttempts = 8
)

// alert is a leased row of monitor_alerts.
type alert struct {
	id, tenant, notice, channel, target string
	attempts                            int
}

// Run sends the alerts of stored notices, those of other replicas
// included, until ctx ends: at once after a stored notice, and every few
// seconds for retries. It returns at once when the service is disabled.
func (s *Service) Run(ctx context.Context) {
	if !s.cfg.Enabled {
		return
	}
	t := time.NewTicker(s.poll)
	defer t.Stop()
	for {
		s.sendDue(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
	}
}

// sendDue sends the alerts due now, a batch at a time.
func (s *Service) sendDue(ctx context.Context) {
	for ctx.Err() == nil {
		var due []alert
		err := s.st.Tx(ctx, store.Scope{}, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, `SELECT id, tenant_id, notice_id, channel, target, attempts FROM claim_monitor_alerts($1, $2)`, claimBatch, lease)
			if err != nil {
				return err
			}
			due, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (alert, error) {
				var a alert
				return a, r.Scan(&a.id, &a.tenant, &a.notice, &a.channel, &a.target, &a.attempts)
			})
			return err
		})
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("monitor alerts: cannot read the due ones; trying again shortly", "error", err)
			}
			return
		}
		for _, a := range due {
			s.send(ctx, a)
		}
		if len(due) < claimBatch {
			return
		}
	}
}

// send delivers one alert, then deletes it, or on failure makes it due
// again after a backoff (deleted after maxAttempts).
func (s *Service) send(ctx context.Context, a alert) {
	result, err := s.deliver(ctx, a)
	if ctx.Err() != nil {
		return // shutting down: the lease runs out and it is sent again
	}
	q, args := `DELETE FROM monitor_alerts WHERE id = $1`, []any{a.id}
	switch {
	case err != nil && a.attempts < maxAttempts:
		result = "failed"
		backoff := time.Duration(a.attempts*a.attempts*a.attempts*a.attempts) * time.Second
		q, args = `UPDATE monitor_alerts SET due_at = now() + $2, last_error = $3 WHERE id = $1`, []any{a.id, backoff, err.Error()}
		s.log.Warn("monitor alert failed; retried later", "tenant_id", a.tenant, "notice_id", a.notice, "channel", a.channel,
			"attempt", a.attempts, "of", maxAttempts, "retry_in", backoff, "error", err)
	case err != nil:
		result = "given_up"
		s.log.Error("monitor alert given up after the last attempt", "tenant_id", a.tenant, "notice_id", a.notice, "channel", a.channel, "error", err)
	}
	s.m.alerts.WithLabelValues(a.channel, result).Inc()
	if err := s.st.Tx(ctx, store.Scope{TenantID: a.tenant}, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, q, args...)
		return err
	}); err != nil {
		s.log.Error("monitor alert: cannot record its result; it may be sent again", "tenant_id", a.tenant, "notice_id", a.notice, "error", err)
	}
}

// deliver sends the alert a and returns its result when it did not fail.
func (s *Service) deliver(ctx context.Context, a alert) (string, error) {
	var n *monitorv1.Notice
	var tenant, url, secret string
	err := s.st.Tx(ctx, store.Scope{TenantID: a.tenant}, func(tx pgx.Tx) error {
		var err error
		if n, err = scanNotice(tx.QueryRow(ctx, `SELECT `+noticeColumns+` FROM notices WHERE id = $1`, a.notice)); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT name FROM tenants WHERE id = $1`, a.tenant).Scan(&tenant); err != nil {
			return err
		}
		if a.channel == "webhook" {
			err := tx.QueryRow(ctx, `SELECT url, secret FROM monitor_webhooks WHERE tenant_id = $1`, a.tenant).Scan(&url, &secret)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil // removed since
			}
			return err
		}
		return nil
	})
	switch {
	case err != nil:
		return "", fmt.Errorf("read the notice: %w", err)
	case a.channel == "mail":
		subject, body := s.message(tenant, n)
		return "sent", s.mail.Send(ctx, a.target, subject, body)
	case url == "":
		return "dropped", nil
	}
	return "sent", s.post(ctx, url, secret, n)
}

// message is the alert mail of the notice n of tenant.
func (s *Service) message(tenant string, n *monitorv1.Notice) (subject, body string) {
	did := "warned (soft-limited)"
	if n.Kind == monitorv1.NoticeKind_NOTICE_KIND_SUSPEND {
		did = "suspended from sending"
	}
	subject = fmt.Sprintf("MaiRust: %s %s", n.Account, did)
	var b strings.Builder
	fmt.Fprintf(&b, "The outbound policy of an agent of the tenant %q %s the account %s.\n\n", tenant, did, n.Account)
	fmt.Fprintf(&b, "Score:   %.2f\n", n.Score)
	if len(n.Factors) > 0 {
		fmt.Fprintf(&b, "Factors: %s\n", factorList(n.Factors))
	}
	if n.Reason != "" {
		fmt.Fprintf(&b, "Reason:  %s\n", n.Reason)
	}
	fmt.Fprintf(&b, "At:      %s\n", n.At.AsTime().UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "Agent:   %s\n\n", n.AgentId)
	b.WriteString("If the account was compromised, change its password before releasing it on the agent.\n")
	if s.cfg.ConsoleURL != "" {
		fmt.Fprintf(&b, "The tenant's notices are in the console: %s\n", strings.TrimSuffix(s.cfg.ConsoleURL, "/"))
	}
	b.WriteString("\nYou get this mail as an owner or admin of the tenant.\n")
	return subject, b.String()
}

// post POSTs n as JSON (proto field names) to url, signed with secret.
func (s *Service) post(ctx context.Context, url, secret string, n *monitorv1.Notice) error {
	body, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(n)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook %s: %w", url, err)
	}
	sdk.Sign(req, SignerID, []byte(secret), body, s.now())
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook %s answered %s: it must answer 2xx", url, resp.Status)
	}
	return nil
}
