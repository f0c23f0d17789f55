// Package monitor tells the monitor service of the Outbound Policy
// Engine's warnings and suspensions: JSON notices POSTed by one background
// sender, rate-limited per account and overall. It never delays the
// submission that caused a notice: Notify only queues, in memory, and a
// notice that cannot be sent is dropped and counted. It keeps no state
// beyond memory and touches neither the database nor the policy.
package monitor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mairust/mairust/agent/policy"
	"github.com/mairust/mairust/internal/config"
)

const (
	queueSize   = 64               // notices waiting for the sender
	accountGap  = 10 * time.Minute // between two notices of one account
	accountDay  = 24               // notices of one account in 24 hours
	overallGap  = time.Second      // between two notices in all
	logInterval = time.Minute      // between two log lines of one kind of trouble
)

// notice is the JSON body of a notification.
type notice struct {
	policy.Notice
	Agent string `json:"agent"` // the sending agent's host name
}

// Notifier sends notices to the monitor service; safe for concurrent use.
type Notifier struct {
	settings atomic.Pointer[config.Monitor]
	sender   atomic.Pointer[Sender]
	agent    string
	now      func() time.Time
	log      *slog.Logger
	client   *http.Client
	queue    chan policy.Notice
	cancel   context.CancelFunc
	done     chan struct{}
	closing  sync.Once

	mu       sync.Mutex             // guards what follows
	last     time.Time              // the last notice let through
	accounts map[string][]time.Time // per account, its notices let through in the last 24 hours
	swept    time.Time              // when accounts was last cleared of idle ones
	fullLog  throttle
}

// New starts a notifier with the settings c; agent is this agent's host
// name, sent in every notice. Close stops it.
func New(c config.Monitor, agent string, log *slog.Logger) *Notifier {
	return start(c, agent, log, time.Now)
}

func start(c config.Monitor, agent string, log *slog.Logger, now func() time.Time) *Notifier {
	ctx, cancel := context.WithCancel(context.Background())
	m := &Notifier{agent: agent, now: now, log: log.With("component", "monitor"), client: &http.Client{},
		queue: make(chan policy.Notice, queueSize), cancel: cancel, done: make(chan struct{}), accounts: map[string][]time.Time{}}
	m.Apply(c)
	go m.run(ctx)
	return m
}

// Sender sends one notice some other way than monitor.url: to the control
// plane's monitor service, for an enrolled agent.
type Sender func(ctx context.Context, n policy.Notice) error

// SetSender makes notices go through send when monitor.url is empty.
func (m *Notifier) SetSender(send Sender) { m.sender.Store(&send) }

// Apply replaces the settings (hot reload); they were validated with the
// configuration.
func (m *Notifier) Apply(c config.Monitor) { m.settings.Store(&c) }

// Notify queues n for sending, when the monitor is enabled, and returns
// at once. Over a rate limit or with the queue full, n is dropped and
// counted.
func (m *Notifier) Notify(n policy.Notice) {
	if !m.settings.Load().Enabled {
		return
	}
	now := m.now()
	m.mu.Lock()
	ok := m.allow(n.Account, now)
	m.mu.Unlock()
	if !ok {
		notifications.WithLabelValues("dropped_rate").Inc()
		return
	}
	select {
	case m.queue <- n:
		return
	default:
	}
	notifications.WithLabelValues("dropped_full").Inc()
	m.mu.Lock()
	ok, missed := m.fullLog.ready(now)
	m.mu.Unlock()
	if ok {
		m.log.Warn("monitor notification dropped: the queue is full (the monitor is slow or down)", "account", n.Account, "kind", n.Kind, "not_logged", missed)
	}
}

// allow takes a slot for a notice of account at now, when it is at least
// overallGap after the last one, accountGap after the account's last one,
// and the account had fewer than accountDay in the last 24 hours.
func (m *Notifier) allow(account string, now time.Time) bool {
	if now.Sub(m.swept) >= time.Hour {
		for a, sent := range m.accounts {
			if now.Sub(sent[len(sent)-1]) >= 24*time.Hour {
				delete(m.accounts, a)
			}
		}
		m.swept = now
	}
	sent := m.accounts[account]
	for len(sent) > 0 && now.Sub(sent[0]) >= 24*time.Hour {
		sent = sent[1:]
	}
	if now.Sub(m.last) < overallGap || len(sent) >= accountDay || len(sent) > 0 && now.Sub(sent[len(sent)-1]) < accountGap {
		if len(sent) > 0 {
			m.accounts[account] = sent
		}
		return false
	}
	m.last = now
	m.accounts[account] = append(sent, now)
	return true
}

// Close stops the sender: a notice being sent is abandoned, and those
// still queued are dropped (logged). Later calls do nothing.
func (m *Notifier) Close() {
	m.closing.Do(func() {
		m.cancel()
		<-m.done
		if n := len(m.queue); n > 0 {
			m.log.Warn("monitor notifications not sent at shutdown", "count", n)
		}
	})
}

// run sends the queued notices one at a time until Close. Each one is
// counted once it is dealt with, log included.
func (m *Notifier) run(ctx context.Context) {
	defer close(m.done)
	var failLog throttle
	failures := 0 // since the last success
	for {
		select {
		case <-ctx.Done():
			return
		case n := <-m.queue:
			s := m.settings.Load()
			err := m.send(ctx, s, n)
			if ctx.Err() != nil {
				return // abandoned by Close
			}
			if err != nil {
				failures++
				if ok, missed := failLog.ready(m.now()); ok {
					m.log.Error("monitor notification failed", "url", s.URL, "account", n.Account, "kind", n.Kind, "error", err, "not_logged", missed)
				}
				notifications.WithLabelValues("failed").Inc()
				continue
			}
			if failures > 0 {
				m.log.Info("monitor notifications sent again", "failed_before", failures)
				failures = 0
			}
			notifications.WithLabelValues("sent").Inc()
		}
	}
}

// send sends one notice to monitor.url, or through the Sender when the URL
// is empty, within monitor.timeout.
func (m *Notifier) send(ctx context.Context, s *config.Monitor, n policy.Notice) error {
	if s.URL != "" {
		return m.post(ctx, s, n)
	}
	send := m.sender.Load()
	if send == nil {
		return errors.New("monitor.url is empty and this agent is not enrolled into a control plane: set monitor.url or run mairust agent enroll")
	}
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	return (*send)(ctx, n)
}

// post sends one notice under the settings s.
func (m *Notifier) post(ctx context.Context, s *config.Monitor, n policy.Notice) error {
	body, err := json.Marshal(notice{Notice: n, Agent: m.agent})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if s.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.Token)
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("the monitor answered %s", resp.Status)
	}
	return nil
}

// throttle lets one log line through per logInterval.
type throttle struct {
	next   time.Time
	missed int
}

// ready reports whether to log at now and, if so, how many lines were
// held back since the last one.
func (t *throttle) ready(now time.Time) (bool, int) {
	if now.Before(t.next) {
		t.missed++
		return false, 0
	}
	missed := t.missed
	t.next, t.missed = now.Add(logInterval), 0
	return true, missed
}
