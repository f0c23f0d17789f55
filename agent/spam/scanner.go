package spam

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mairust/mairust/internal/config"
)

// ErrUnavailable is returned by Scan when rspamd failed and spam.on_error
// is tempfail: the message must be refused for now (451).
var ErrUnavailable = errors.New("spam: rspamd is unavailable")

// failureLogInterval is how often at most an rspamd failure is logged.
const failureLogInterval = time.Minute

// Scanner scans messages with the rules and, when configured, rspamd,
// under the settings of the last Apply. It is safe for concurrent use.
type Scanner struct {
	log      *slog.Logger
	cur      atomic.Pointer[setup]
	failures failureLog
}

// setup is one generation of settings.
type setup struct {
	cfg    config.Spam
	rules  *Rules
	rspamd *Client // nil without spam.rspamd_url
	learn  *Client // nil without spam.learn_url
}

// New returns a scanner with the settings cfg; an unreadable or invalid
// rules file is an error naming its line.
func New(cfg config.Spam, log *slog.Logger) (*Scanner, error) {
	s := &Scanner{log: log.With("component", "spam"), failures: failureLog{now: time.Now}}
	if err := s.Apply(cfg); err != nil {
		return nil, err
	}
	return s, nil
}

// Apply takes new settings and re-reads the rules file. On error nothing
// changes and the scanner keeps its previous settings.
func (s *Scanner) Apply(cfg config.Spam) error {
	rules, err := LoadRules(cfg.RulesFile)
	if err != nil {
		return fmt.Errorf("spam.rules_file: %w", err)
	}
	next := &setup{cfg: cfg, rules: rules}
	var prev setup
	if p := s.cur.Load(); p != nil {
		prev = *p
	}
	next.rspamd = reuse(prev.rspamd, cfg.RspamdURL, cfg)
	next.learn = reuse(prev.learn, cfg.LearnURL, cfg)
	s.cur.Store(next)
	return nil
}

// reuse returns a client for url under cfg: prev when it has the same
// settings (keeping its connections), nil when url is empty.
func reuse(prev *Client, url string, cfg config.Spam) *Client {
	switch {
	case url == "":
		return nil
	case prev != nil && prev.url == strings.TrimRight(url, "/") && prev.password == cfg.Password && prev.timeout == cfg.Timeout:
		return prev
	}
	return NewClient(url, cfg.Password, cfg.Timeout)
}

// Learner returns the client for rspamd's controller under the current
// settings, nil without spam.learn_url.
func (s *Scanner) Learner() *Client { return s.cur.Load().learn }

// Scan returns the verdict on msg. Rules that refuse the message decide
// alone; otherwise rspamd, when configured, is asked too. When rspamd fails
// the message passes unscanned (Verdict.Scanned false), or with
// spam.on_error: tempfail Scan returns ErrUnavailable.
func (s *Scanner) Scan(ctx context.Context, env Envelope, msg []byte) (Verdict, error) {
	start := time.Now()
	defer func() { scanSeconds.Observe(time.Since(start).Seconds()) }()
	st := s.cur.Load()
	v := st.rules.Check(env, msg)
	if st.rspamd != nil && !v.Action.Refuses() {
		r, err := st.rspamd.Check(ctx, env, msg)
		switch {
		case err == nil:
			v = v.merge(r)
		case st.cfg.OnError == "tempfail":
			s.failed(err, "answering 451 (spam.on_error: tempfail)")
			return Verdict{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
		default:
			s.failed(err, "delivering unscanned (spam.on_error: accept)")
			unscannedTotal.Inc()
			v.Scanned = false
		}
	}
	scansTotal.WithLabelValues(v.Action.label()).Inc()
	return v, nil
}

// failed counts an rspamd failure and logs it, at most once per interval.
func (s *Scanner) failed(err error, outcome string) {
	reason := "connect"
	var re *Error
	if errors.As(err, &re) {
		reason = re.Reason
	}
	errorsTotal.WithLabelValues(reason).Inc()
	if n, ok := s.failures.due(); ok {
		s.log.Warn("rspamd failed; "+outcome, "error", err, "failures_not_logged", n)
	}
}

// failureLog spaces out the logging of repeated failures.
type failureLog struct {
	mu         sync.Mutex
	now        func() time.Time
	last       time.Time
	suppressed int
}

// due reports whether a failure is to be logged now, with how many went
// unlogged since the last one that was.
func (f *failureLog) due() (int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if !f.last.IsZero() && now.Sub(f.last) < failureLogInterval {
		f.suppressed++
		return 0, false
	}
	n := f.suppressed
	f.last, f.suppressed = now, 0
	return n, true
}
