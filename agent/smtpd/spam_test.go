package smtpd

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mairust/mairust/agent/spam"
	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/rspamdtest"
)

// withScanner starts a server whose messages go through a scanner with the
// built-in rules and, when rspamdURL is set, rspamd.
func withScanner(t *testing.T, rspamdURL, onError string) (*stack, *spam.Scanner) {
	t.Helper()
	cfg := config.Default().Spam
	cfg.RspamdURL, cfg.OnError = rspamdURL, onError
	sc, err := spam.New(cfg, discard())
	if err != nil {
		t.Fatal(err)
	}
	st := start(t, testConfig(), nil)
	st.srv.SetScanner(sc)
	clear(t, st)
	return st, sc
}

// row is a stored message with its folder and verdict.
type row struct {
	folder, subject, blob, action string
	score                         *float64
	symbols                       map[string]float64
	scanned                       bool
}

func rows(t *testing.T, st *stack, rcpt string) []row {
	t.Helper()
	r, err := st.pool.Query(context.Background(), `
		SELECT f.special, m.subject, m.blob_key, m.spam_action, m.spam_score, m.spam_symbols::text, m.scanned
		FROM messages m JOIN folders f ON f.id = m.folder_id WHERE m.rcpt_to = $1 ORDER BY m.id`, rcpt)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []row
	for r.Next() {
		var x row
		var symbols string
		if err := r.Scan(&x.folder, &x.subject, &x.blob, &x.action, &x.score, &symbols, &x.scanned); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(symbols), &x.symbols); err != nil {
			t.Fatal(err)
		}
		out = append(out, x)
	}
	return out
}

// counter reads one of the spam package's counters.
func counter(t *testing.T, name string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(spam.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

func TestRspamdVerdictsOverSMTP(t *testing.T) {
	rs := rspamdtest.Start(t)
	st, _ := withScanner(t, rs.URL, "accept")
	to := []string{"alice@example.test", "bob@example.test"}

	// GTUBE: 550 with rspamd's text, nothing stored.
	err := send(st.addr, false, "s@remote.test", to, message("test", rspamdtest.GTUBE))
	if code(err) != 550 || !strings.Contains(err.Error(), "5.7.1 Gtube pattern") {
		t.Fatalf("GTUBE: %v, want 550 5.7.1 Gtube pattern", err)
	}
	for _, tc := range []struct{ subject, reply string }{
		{rspamdtest.SubjectSoftReject, "4.7.1"},
		{rspamdtest.SubjectGreylist, "4.7.1 Greylisted"},
	} {
		if err := send(st.addr, false, "s@remote.test", to, message(tc.subject, "x")); code(err) != 451 || !strings.Contains(err.Error(), tc.reply) {
			t.Errorf("%s: %v, want 451 %s", tc.subject, err, tc.reply)
		}
	}
	if got := rows(t, st, "alice@example.test"); len(got) != 0 {
		t.Fatalf("refused messages stored: %+v", got)
	}

	// add header: each recipient's Junk, with the X-Spam fields.
	if err := send(st.addr, false, "s@remote.test", to, message(rspamdtest.SubjectAddHeader, "x")); err != nil {
		t.Fatal(err)
	}
	// rewrite subject: Junk with the new subject, in the row too.
	if err := send(st.addr, false, "s@remote.test", to[:1], message(rspamdtest.SubjectRewriteSubject, "x")); err != nil {
		t.Fatal(err)
	}
	// no action: INBOX, unchanged.
	if err := send(st.addr, false, "s@remote.test", to[:1], message("hello", "x")); err != nil {
		t.Fatal(err)
	}
	alice, bob := rows(t, st, "alice@example.test"), rows(t, st, "bob@example.test")
	if len(alice) != 3 || len(bob) != 1 {
		t.Fatalf("alice %+v\nbob %+v", alice, bob)
	}
	junk := alice[0]
	if junk.folder != "junk" || bob[0].folder != "junk" || junk.blob != bob[0].blob || junk.action != "add header" || !junk.scanned ||
		junk.score == nil || *junk.score < 200 || junk.symbols["MAIRUST_TEST_ADD_HEADER"] != 250 {
		t.Errorf("add header stored as %+v (bob %+v)", junk, bob[0])
	}
	raw := readBlob(t, st, junk.blob)
	if !strings.HasPrefix(raw, "X-Spam-Score: ") || !strings.Contains(raw, "\r\nX-Spam-Status: Yes, score=") || !strings.Contains(raw, "MAIRUST_TEST_ADD_HEADER") ||
		!strings.HasSuffix(raw, message(rspamdtest.SubjectAddHeader, "x")) {
		t.Errorf("add header blob:\n%s", raw)
	}

	rewritten := alice[1]
	if rewritten.folder != "junk" || rewritten.action != "rewrite subject" || rewritten.subject != "[SPAM] "+rspamdtest.SubjectRewriteSubject {
		t.Errorf("rewrite subject stored as %+v", rewritten)
	}
	if raw := readBlob(t, st, rewritten.blob); strings.Count(raw, "Subject: ") != 1 || !strings.Contains(raw, "Subject: [SPAM] "+rspamdtest.SubjectRewriteSubject+"\r\n") {
		t.Errorf("rewrite subject blob:\n%s", raw)
	}

	clean := alice[2]
	if clean.folder != "inbox" || clean.action != "no action" || !clean.scanned || clean.score == nil || len(clean.symbols) == 0 {
		t.Errorf("clean message stored as %+v", clean)
	}
	if raw := readBlob(t, st, clean.blob); strings.Contains(raw, "X-Spam-") {
		t.Errorf("clean message marked:\n%s", raw)
	}
}

func TestRspamdDownFailsOpen(t *testing.T) {
	rs := rspamdtest.Start(t)
	st, sc := withScanner(t, rs.URL, "accept")
	if err := send(st.addr, false, "s@remote.test", []string{"alice@example.test"}, message("before", "x")); err != nil {
		t.Fatal(err)
	}
	rs.Stop()
	before := counter(t, "mairust_spam_unscanned_total")
	if err := send(st.addr, false, "s@remote.test", []string{"alice@example.test"}, message("during", "x")); err != nil {
		t.Fatalf("with rspamd down: %v, want the message accepted", err)
	}
	if n := counter(t, "mairust_spam_unscanned_total") - before; n != 1 {
		t.Errorf("unscanned_total grew by %v, want 1", n)
	}
	got := rows(t, st, "alice@example.test")
	if len(got) != 2 || !got[0].scanned || got[1].scanned || got[1].folder != "inbox" || got[1].subject != "during" || got[1].action != "no action" {
		t.Fatalf("stored %+v", got)
	}

	// With on_error: tempfail the sender is told to retry.
	cfg := config.Default().Spam
	cfg.RspamdURL, cfg.OnError = rs.URL, "tempfail"
	if err := sc.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	err := send(st.addr, false, "s@remote.test", []string{"alice@example.test"}, message("tempfail", "x"))
	if code(err) != 451 || !strings.Contains(err.Error(), "4.3.0") {
		t.Fatalf("tempfail: %v, want 451 4.3.0", err)
	}
	if got := rows(t, st, "alice@example.test"); len(got) != 2 {
		t.Fatalf("tempfailed message stored: %+v", got)
	}
}

// TestBuiltInRulesOverSMTP runs the default rules alone, without rspamd.
func TestBuiltInRulesOverSMTP(t *testing.T) {
	st, _ := withScanner(t, "", "accept")
	err := send(st.addr, false, "s@remote.test", []string{"alice@example.test"}, message("test", rspamdtest.GTUBE))
	if code(err) != 550 || !strings.Contains(err.Error(), "5.7.1 Gtube pattern") {
		t.Fatalf("GTUBE: %v, want 550 5.7.1", err)
	}
	if err := send(st.addr, false, "s@remote.test", []string{"alice@example.test"}, "Subject: bare\r\n\r\nno date, no id\r\n"); err != nil {
		t.Fatal(err)
	}
	got := rows(t, st, "alice@example.test")
	if len(got) != 1 || got[0].folder != "inbox" || got[0].action != "no action" || !got[0].scanned || *got[0].score != 3.5 ||
		got[0].symbols["MISSING_DATE"] != 1 || got[0].symbols["MISSING_MESSAGE_ID"] != 2.5 {
		t.Fatalf("stored %+v", got)
	}
}
