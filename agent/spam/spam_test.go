package spam

import (
	"bytes"
	"strings"
	"testing"

	"github.com/mairust/mairust/agent/mailparse"
)

func TestMark(t *testing.T) {
	original := msg("body\r\n", "Received: from x", "Subject: =?UTF-8?B?5pel5pys?=\r\n continued", "To: a@b.test")
	symbols := map[string]float64{}
	for _, s := range []string{"A_VERY_LONG_SYMBOL_NAME_NUMBER_ONE", "A_VERY_LONG_SYMBOL_NAME_NUMBER_TWO", "SHORT", "MIME_GOOD", "R_DKIM_NA", "ANOTHER_RATHER_LONG_SYMBOL"} {
		symbols[s] = 1
	}

	for _, a := range []Action{NoAction, Greylist, SoftReject, Reject} {
		if got := (Verdict{Action: a, Score: 99, Symbols: symbols}).Mark(original); !bytes.Equal(got, original) {
			t.Errorf("%s changed the message:\n%s", a, got)
		}
	}

	got := string(Verdict{Action: AddHeader, Score: 7.456, Symbols: symbols}.Mark(original))
	header, body, _ := strings.Cut(got, "\r\n\r\n")
	unfolded := strings.ReplaceAll(header, "\r\n\t", " ")
	if !strings.HasPrefix(unfolded, "X-Spam-Score: 7.46\r\nX-Spam-Status: Yes, score=7.46 action=add_header tests=ANOTHER_RATHER_LONG_SYMBOL, A_VERY_LONG_SYMBOL_NAME_NUMBER_ONE, A_VERY_LONG_SYMBOL_NAME_NUMBER_TWO, MIME_GOOD, R_DKIM_NA, SHORT\r\nReceived: from x\r\n") ||
		!strings.HasSuffix(got, string(original)) || body != "body\r\n" {
		t.Fatalf("add header:\n%s", got)
	}
	for _, line := range strings.Split(header, "\r\n") {
		if len(line) > 78 {
			t.Errorf("line of %d characters: %q", len(line), line)
		}
	}
	h, err := mailparse.ParseHeader(strings.NewReader(got))
	if err != nil || h.Subject != "日本 continued" {
		t.Errorf("marked message parses to %+v, %v", h, err)
	}

	rewrite := Verdict{Action: RewriteSubject, Score: 9, Symbols: symbols, Subject: "[SPAM] 日本 continued\r\nBcc: injected@x.test"}
	got = string(rewrite.Mark(original))
	h, err = mailparse.ParseHeader(strings.NewReader(got))
	if err != nil || h.Subject != "[SPAM] 日本 continuedBcc: injected@x.test" {
		t.Fatalf("rewritten subject: %+v %v\n%s", h, err, got)
	}
	if strings.Count(got, "Subject:") != 1 || !strings.Contains(got, "Received: from x\r\nSubject: ") || !strings.Contains(got, "\r\nTo: a@b.test\r\n\r\nbody\r\n") || strings.Contains(got, "\nBcc:") {
		t.Errorf("rewrite changed more than the subject:\n%s", got)
	}
	// Without a Subject, one is added.
	got = string(rewrite.Mark(msg("body\r\n", "To: a@b.test")))
	if h, _ := mailparse.ParseHeader(strings.NewReader(got)); !strings.HasPrefix(h.Subject, "[SPAM] ") {
		t.Errorf("no subject added:\n%s", got)
	}
}

func TestMerge(t *testing.T) {
	rules := Verdict{Action: NoAction, Score: 1, Symbols: map[string]float64{"MISSING_DATE": 1, "BOTH": 0.5}, Scanned: true}
	rspamd := Verdict{Action: AddHeader, Score: 7, Symbols: map[string]float64{"BAYES_SPAM": 6.5, "BOTH": 0.5}, Scanned: true}
	v := rules.merge(rspamd)
	if v.Action != AddHeader || v.Score != 8 || len(v.Symbols) != 3 || v.Symbols["BOTH"] != 1 || !v.Scanned {
		t.Errorf("merge: %+v", v)
	}
	rules.Action, rules.Message = SoftReject, "rule text"
	rspamd.Message = "rspamd text"
	if v := rules.merge(rspamd); v.Action != SoftReject || v.Message != "rule text" {
		t.Errorf("rules' stronger action lost: %+v", v)
	}
	rspamd.Action = Reject
	if v := rules.merge(rspamd); v.Action != Reject || v.Message != "rspamd text" {
		t.Errorf("rspamd's stronger action lost: %+v", v)
	}
	if len(rules.Symbols) != 2 || len(rspamd.Symbols) != 2 {
		t.Error("merge changed its inputs")
	}
}

func TestParseAction(t *testing.T) {
	for _, a := range actions {
		for _, s := range []string{string(a), a.label()} {
			if got, ok := parseAction(s); !ok || got != a {
				t.Errorf("parseAction(%q) = %q, %v", s, got, ok)
			}
		}
	}
	for _, s := range []string{"", "discard", "Reject", "add-header"} {
		if _, ok := parseAction(s); ok {
			t.Errorf("parseAction(%q) accepted", s)
		}
	}
}

// FuzzMark feeds arbitrary messages to the header splitter, the rules and
// Mark: fields stay in order inside the header, and marking changes nothing
// past the header.
func FuzzMark(f *testing.F) {
	f.Add([]byte("Subject: a\r\n b\r\nTo: x\r\n\r\nbody"))
	f.Add([]byte("no header at all"))
	f.Add([]byte(":\n\t\n\nSubject: not a field\n"))
	f.Add([]byte(" continued\r\nSubject:\r\n\r\n"))
	rules, err := LoadRules("")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, m []byte) {
		fields, body := headerFields(m)
		end := 0
		for _, fl := range fields {
			if fl.start < end || fl.colon <= fl.start || fl.end < fl.colon || fl.end > len(m) {
				t.Fatalf("field %+v out of order or bounds (previous end %d, length %d)", fl, end, len(m))
			}
			end = fl.end
		}
		if body < end || body > len(m) {
			t.Fatalf("body at %d, last field ends at %d, length %d", body, end, len(m))
		}
		rules.Check(inbound, m)
		out := Verdict{Action: RewriteSubject, Subject: "[SPAM] x", Symbols: map[string]float64{"A": 1}}.Mark(m)
		if !bytes.HasSuffix(out, m[body:]) || !bytes.HasPrefix(out, []byte("X-Spam-Score: 0.00\r\n")) {
			t.Fatalf("Mark changed the body or lacks the fields:\n%q", out)
		}
	})
}

// TestMarkRemovesSendersSpamFields: a sender cannot vouch for its own mail.
func TestMarkRemovesSendersSpamFields(t *testing.T) {
	msg := []byte("Received: from x\r\nX-Spam-Status: No, score=-100\r\nSubject: hi\r\nx-spam-flag: NO\r\n\tcontinued\r\nX-Spammy: kept\r\n\r\nX-Spam-Status: in the body stays\r\n")
	clean := "Received: from x\r\nSubject: hi\r\nX-Spammy: kept\r\n\r\nX-Spam-Status: in the body stays\r\n"
	if got := string((Verdict{Action: NoAction}).Mark(msg)); got != clean {
		t.Errorf("no action:\n%q\nwant\n%q", got, clean)
	}
	junk := string((Verdict{Action: AddHeader, Score: 7}).Mark(msg))
	if !strings.HasSuffix(junk, clean) || strings.Count(junk, "X-Spam-Status:") != 2 || !strings.HasPrefix(junk, "X-Spam-Score: 7.00\r\nX-Spam-Status: Yes") {
		t.Errorf("add header:\n%q", junk)
	}
	plain := []byte("Subject: hi\r\n\r\nbody\r\n")
	if got := (Verdict{Action: NoAction}).Mark(plain); &got[0] != &plain[0] {
		t.Error("a message without X-Spam fields was copied")
	}
}
