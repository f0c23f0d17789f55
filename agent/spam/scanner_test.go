package spam

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/proctest"
	"github.com/mairust/mairust/internal/rspamdtest"
)

func newScanner(t *testing.T, cfg config.Spam) (*Scanner, *proctest.Output) {
	t.Helper()
	logs := &proctest.Output{}
	s, err := New(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return s, logs
}

func spamConfig(url string) config.Spam {
	c := config.Default().Spam
	c.RspamdURL = url
	return c
}

func TestScannerRulesOnly(t *testing.T) {
	s, _ := newScanner(t, spamConfig(""))
	before := testutil.ToFloat64(scansTotal.WithLabelValues("reject"))
	v, err := s.Scan(context.Background(), inbound, mail("test", rspamdtest.GTUBE))
	if err != nil || v.Action != Reject || !v.Scanned {
		t.Fatalf("GTUBE: %+v %v", v, err)
	}
	if n := testutil.ToFloat64(scansTotal.WithLabelValues("reject")) - before; n != 1 {
		t.Errorf("scans_total{action=reject} grew by %v", n)
	}
}

func TestScannerWithRspamd(t *testing.T) {
	rs := rspamdtest.Start(t)
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	os.WriteFile(rules, []byte("rules:\n  - name: LOCAL_BLOCK\n    header: Subject\n    regex: blocked-here\n    action: reject\n  - name: LOCAL_SCORE\n    header: Subject\n    regex: add-header\n    score: 0.5\n"), 0o600)
	cfg := spamConfig(rs.URL)
	cfg.RulesFile = rules
	s, _ := newScanner(t, cfg)
	ctx := context.Background()

	v, err := s.Scan(ctx, inbound, mail(rspamdtest.SubjectAddHeader, "x"))
	if err != nil || v.Action != AddHeader || !v.Scanned {
		t.Fatalf("add header: %+v %v", v, err)
	}
	if v.Symbols["LOCAL_SCORE"] != 0.5 || v.Symbols["MAIRUST_TEST_ADD_HEADER"] == 0 {
		t.Errorf("symbols of rules and rspamd not merged: %v", v.Symbols)
	}
	// A message the rules refuse does not go to rspamd: no rspamd symbol.
	v, err = s.Scan(ctx, inbound, mail("blocked-here "+rspamdtest.SubjectAddHeader, "x"))
	if _, asked := v.Symbols["MAIRUST_TEST_ADD_HEADER"]; err != nil || v.Action != Reject || asked || len(v.Symbols) != 2 {
		t.Fatalf("refused by the rules: %+v %v", v, err)
	}
	// rspamd's reject wins over the rules' no action.
	v, _ = s.Scan(ctx, inbound, mail("hello", rspamdtest.GTUBE))
	if v.Action != Reject || v.Message != "Gtube pattern" {
		t.Errorf("GTUBE: %+v", v)
	}
}

func TestScannerFailOpenAndTempfail(t *testing.T) {
	rs := rspamdtest.Start(t)
	s, logs := newScanner(t, spamConfig(rs.URL))
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.failures.now = func() time.Time { return clock }
	ctx := context.Background()
	if v, err := s.Scan(ctx, inbound, mail("hello", "x")); err != nil || !v.Scanned {
		t.Fatalf("with rspamd up: %+v %v", v, err)
	}
	rs.Stop()

	unscanned, connectErrs := testutil.ToFloat64(unscannedTotal), testutil.ToFloat64(errorsTotal.WithLabelValues("connect"))
	for i := 0; i < 3; i++ {
		v, err := s.Scan(ctx, inbound, msg("hi\r\n", "Subject: no date"))
		if err != nil || v.Scanned || v.Action != NoAction || v.Symbols["MISSING_DATE"] != 1 {
			t.Fatalf("rspamd down: %+v %v; want the rules' verdict, unscanned", v, err)
		}
	}
	if n := testutil.ToFloat64(unscannedTotal) - unscanned; n != 3 {
		t.Errorf("unscanned_total grew by %v, want 3", n)
	}
	if n := testutil.ToFloat64(errorsTotal.WithLabelValues("connect")) - connectErrs; n != 3 {
		t.Errorf("rspamd_errors_total{reason=connect} grew by %v, want 3", n)
	}
	// Logged once for the three; again once the interval has passed, with
	// the count of those not logged.
	if n := strings.Count(logs.String(), "rspamd failed; delivering unscanned"); n != 1 {
		t.Errorf("%d log lines for three failures within the interval, want 1", n)
	}
	clock = clock.Add(failureLogInterval)
	s.Scan(ctx, inbound, mail("hello", "x"))
	if n := strings.Count(logs.String(), "failures_not_logged=2"); n != 1 {
		t.Errorf("after the interval: %d lines with failures_not_logged=2\n%s", n, logs.String())
	}

	// tempfail: an error for the caller to answer 451; the rules still
	// refuse on their own without asking rspamd.
	cfg := spamConfig(rs.URL)
	cfg.OnError = "tempfail"
	if err := s.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Scan(ctx, inbound, mail("hello", "x")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("tempfail: %v, want ErrUnavailable", err)
	}
	if v, err := s.Scan(ctx, inbound, mail("hello", rspamdtest.GTUBE)); err != nil || v.Action != Reject {
		t.Errorf("tempfail, GTUBE: %+v %v", v, err)
	}
}

// TestScannerBrokenRspamd covers the other ways rspamd fails: silence, an
// error status and a reply that is not rspamd's.
func TestScannerBrokenRspamd(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>not rspamd</html>")) }))
	defer garbage.Close()
	unknown := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"action":"quarantine","score":1}`))
	}))
	defer unknown.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"Unauthorized"}`, http.StatusForbidden)
	}))
	defer failing.Close()

	for _, tt := range []struct {
		name, url, reason string
	}{
		{"silent", "http://" + silent.Addr().String(), "timeout"},
		{"not JSON", garbage.URL, "reply"},
		{"unknown action", unknown.URL, "reply"},
		{"error status", failing.URL, "status"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := spamConfig(tt.url)
			cfg.Timeout = 300 * time.Millisecond
			s, _ := newScanner(t, cfg)
			before := testutil.ToFloat64(errorsTotal.WithLabelValues(tt.reason))
			v, err := s.Scan(context.Background(), inbound, mail("hello", "x"))
			if err != nil || v.Scanned {
				t.Fatalf("got %+v %v, want delivered unscanned", v, err)
			}
			if n := testutil.ToFloat64(errorsTotal.WithLabelValues(tt.reason)) - before; n != 1 {
				t.Errorf("rspamd_errors_total{reason=%s} grew by %v", tt.reason, n)
			}
		})
	}
}

func TestScannerApplyRules(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	write := func(s string) {
		if err := os.WriteFile(rules, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("rules:\n  - name: ONE\n    body: one\n    score: 1\n")
	cfg := spamConfig("")
	cfg.RulesFile = rules
	s, _ := newScanner(t, cfg)
	check := func(body, symbol string) {
		t.Helper()
		v, _ := s.Scan(context.Background(), inbound, msg(body))
		if _, ok := v.Symbols[symbol]; !ok {
			t.Errorf("%q: symbols %v, want %s", body, v.Symbols, symbol)
		}
	}
	check("one", "ONE")

	write("rules:\n  - name: TWO\n    body: two\n    score: 1\n")
	if err := s.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	check("two", "TWO")

	write("rules:\n  - name: THREE\n    body: '(['\n    score: 1\n")
	if err := s.Apply(cfg); err == nil || !strings.Contains(err.Error(), "spam.rules_file: "+rules+":2: rule THREE") {
		t.Fatalf("invalid rules applied: %v", err)
	}
	check("two", "TWO") // the previous rules stay

	if _, err := New(cfg, slog.Default()); err == nil {
		t.Error("New accepted an invalid rules file")
	}
}
