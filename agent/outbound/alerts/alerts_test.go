package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/mairust/mairust/agent/accounts/accountstest"
	"github.com/mairust/mairust/agent/plugins/sdk"
	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/jobs"
	"github.com/mairust/mairust/internal/pgtest"
)

// mailer records the alerts queued through it; fail makes it fail.
type mailer struct {
	mu   sync.Mutex
	sent []sentMail
	fail error
}

type sentMail struct {
	purpose, tenant, to string
	data                []byte
}

func (m *mailer) NoticeTx(_ context.Context, _ pgx.Tx, purpose, tenantID, to string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.sent = append(m.sent, sentMail{purpose, tenantID, to, data})
	return nil
}

type world struct {
	pool     *pgxpool.Pool
	mail     *mailer
	a        *Alerter
	settings config.OutboundAlerts
}

func newWorld(t *testing.T, s config.OutboundAlerts) *world {
	t.Helper()
	ctx := context.Background()
	pool, err := accountstest.Open(ctx, pgtest.NewDatabase(t, "alerts"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := jobs.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	w := &world{pool: pool, mail: &mailer{}, settings: s}
	if w.a, err = New(pool, w.mail, func() config.OutboundAlerts { return w.settings }, "mx1.example.test", slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO outbound_accounts(account, tenant_id, state) VALUES('alice@example.test', 't1', 'suspended')`); err != nil {
		t.Fatal(err)
	}
	return w
}

// event records a transition of alice's as the policy engine does.
func (w *world) event(t *testing.T, kind, from, to, actor string) {
	t.Helper()
	_, err := w.pool.Exec(context.Background(), `INSERT INTO outbound_events(account, at, kind, from_state, to_state, actor, reason, score, factors)
		VALUES('alice@example.test', $1, $2, $3, $4, $5, 'because', CASE WHEN $5 = 'policy' THEN 0.85 END, '{"factors":{"rate":1}}')`,
		time.Date(2030, 3, 4, 10, 0, 0, 0, time.UTC), kind, from, to, actor)
	if err != nil {
		t.Fatal(err)
	}
}

func (w *world) scan(t *testing.T) int {
	t.Helper()
	n, err := w.a.Scan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// webhookJobs returns the webhook jobs queued, oldest first.
func (w *world) webhookJobs(t *testing.T) []*river.Job[webhookArgs] {
	t.Helper()
	rows, err := w.pool.Query(context.Background(), `SELECT args FROM river_job WHERE kind = 'outbound_alert_webhook' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	args, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		t.Fatal(err)
	}
	var jobs []*river.Job[webhookArgs]
	for _, a := range args {
		j := &river.Job[webhookArgs]{JobRow: &rivertype.JobRow{Attempt: 1}}
		if err := json.Unmarshal(a, &j.Args); err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	return jobs
}

// Every transition of a kind alerted gets a mail and a webhook job, once;
// the end of a soft limit only a log line.
func TestScanAlertsEachTransitionOnce(t *testing.T) {
	w := newWorld(t, config.OutboundAlerts{Email: "admin@example.test", WebhookURL: "http://127.0.0.1:1/hook", Kinds: config.AlertKinds})
	w.event(t, "warn", "allowed", "soft_limited", "policy")
	w.event(t, "soft_limit_end", "soft_limited", "allowed", "system")
	w.event(t, "suspend", "allowed", "suspended", "policy")
	w.event(t, "release", "suspended", "allowed", "root@example.test")
	if n := w.scan(t); n != 4 {
		t.Fatalf("scan read %d events, want 4", n)
	}
	if n := w.scan(t); n != 0 {
		t.Fatalf("a second scan read %d events, want none", n)
	}
	var subjects []string
	for _, m := range w.mail.sent {
		if m.purpose != "alert" || m.tenant != "t1" || m.to != "admin@example.test" {
			t.Fatalf("mail %+v", m)
		}
		r, err := mail.CreateReader(bytes.NewReader(m.data))
		if err != nil {
			t.Fatal(err)
		}
		s, _ := r.Header.Subject()
		subjects = append(subjects, s)
		if r.Header.Get("Auto-Submitted") != "auto-generated" || r.Header.Get("Message-Id") == "" {
			t.Errorf("headers %v", r.Header)
		}
	}
	want := "[MaiRust] Sending soft-limited: alice@example.test|[MaiRust] Sending suspended: alice@example.test|[MaiRust] Sending released: alice@example.test"
	if got := strings.Join(subjects, "|"); got != want {
		t.Fatalf("subjects %s\nwant %s", got, want)
	}
	if body := string(w.mail.sent[1].data); !strings.Contains(body, "mairust admin outbound release alice@example.test") || !strings.Contains(body, "Score:    0.85") {
		t.Errorf("the suspension mail does not say how to release:\n%s", body)
	}
	jobs := w.webhookJobs(t)
	var kinds []string
	for _, j := range jobs {
		kinds = append(kinds, j.Args.Event.Kind)
	}
	if strings.Join(kinds, ",") != "warn,suspend,release" {
		t.Fatalf("webhook jobs %v", kinds)
	}
	e := jobs[1].Args.Event
	if e.Account != "alice@example.test" || e.TenantID != "t1" || e.Actor != "policy" || e.Score == nil || *e.Score != 0.85 ||
		e.Agent != "mx1.example.test" || !strings.Contains(e.Text, "suspended") || !strings.Contains(string(e.Details), `"rate"`) {
		t.Fatalf("event %+v", e)
	}
}

// Kinds filters; with neither email nor webhook set, events are only
// marked.
func TestScanKindsAndNoChannel(t *testing.T) {
	w := newWorld(t, config.OutboundAlerts{Email: "admin@example.test", Kinds: []string{"suspend"}})
	w.event(t, "warn", "allowed", "soft_limited", "policy")
	w.event(t, "suspend", "soft_limited", "suspended", "policy")
	w.scan(t)
	if len(w.mail.sent) != 1 || !strings.Contains(string(w.mail.sent[0].data), "Sending suspended") {
		t.Fatalf("sent %d mails", len(w.mail.sent))
	}
	w.settings = config.OutboundAlerts{Kinds: config.AlertKinds}
	w.event(t, "release", "suspended", "allowed", "root@example.test")
	if n := w.scan(t); n != 1 || len(w.mail.sent) != 1 || len(w.webhookJobs(t)) != 0 {
		t.Fatalf("without channels: read %d, mails %d, jobs %d", n, len(w.mail.sent), len(w.webhookJobs(t)))
	}
}

// A failure to queue an alert leaves the events to the next scan.
func TestScanFailureKeepsEvents(t *testing.T) {
	w := newWorld(t, config.OutboundAlerts{Email: "admin@example.test", WebhookURL: "http://127.0.0.1:1/hook", Kinds: config.AlertKinds})
	w.event(t, "suspend", "allowed", "suspended", "policy")
	w.mail.fail = errors.New("disk full")
	if _, err := w.a.Scan(context.Background()); err == nil {
		t.Fatal("scan with a failing mailer succeeded")
	}
	if len(w.webhookJobs(t)) != 0 {
		t.Fatal("webhook job queued although the scan failed")
	}
	w.mail.fail = nil
	if n := w.scan(t); n != 1 || len(w.mail.sent) != 1 || len(w.webhookJobs(t)) != 1 {
		t.Fatalf("after the failure: read %d, mails %d", n, len(w.mail.sent))
	}
}

// The webhook gets the event as JSON, signed with the secret; an answer
// other than 2xx is an error for River to retry, and counted.
func TestWebhookSignedAndRetried(t *testing.T) {
	var mu sync.Mutex
	var got []*http.Request
	var bodies [][]byte
	status := http.StatusNoContent
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		got, bodies = append(got, r), append(bodies, b)
		rw.WriteHeader(status)
	}))
	defer srv.Close()
	w := newWorld(t, config.OutboundAlerts{WebhookURL: srv.URL + "/hook", WebhookSecret: "s3cret", Kinds: config.AlertKinds})
	w.event(t, "suspend", "allowed", "suspended", "policy")
	w.scan(t)
	jobs := w.webhookJobs(t)
	if len(jobs) != 1 {
		t.Fatalf("%d jobs", len(jobs))
	}
	worker := &webhookWorker{a: w.a}
	sent := testutil.ToFloat64(webhooks.WithLabelValues("sent"))
	if err := worker.Work(context.Background(), jobs[0]); err != nil {
		t.Fatal(err)
	}
	if err := sdk.Verify(got[0].Header, bodies[0], SignerID, []byte("s3cret"), time.Now()); err != nil {
		t.Fatalf("signature: %v", err)
	}
	var e Event
	if err := json.Unmarshal(bodies[0], &e); err != nil || e.Kind != "suspend" || e.Account != "alice@example.test" || got[0].URL.Path != "/hook" {
		t.Fatalf("body %s: %v", bodies[0], err)
	}
	if testutil.ToFloat64(webhooks.WithLabelValues("sent")) != sent+1 {
		t.Error("sent not counted")
	}
	status = http.StatusBadGateway
	failed := testutil.ToFloat64(webhooks.WithLabelValues("failed"))
	if err := worker.Work(context.Background(), jobs[0]); err == nil || !strings.Contains(err.Error(), "502") {
		t.Fatalf("a 502 gave %v", err)
	}
	if testutil.ToFloat64(webhooks.WithLabelValues("failed")) != failed+1 {
		t.Error("failure not counted")
	}
	// Unset meanwhile: dropped, no request.
	w.settings.WebhookURL = ""
	if err := worker.Work(context.Background(), jobs[0]); err != nil || len(got) != 2 {
		t.Fatalf("with the URL unset: %v, %d requests", err, len(got))
	}
}
