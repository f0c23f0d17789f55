package spam

import (
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// msg builds a message with the given header lines and body.
func msg(body string, header ...string) []byte {
	return []byte(strings.Join(header, "\r\n") + "\r\n\r\n" + body)
}

// complete is a header that no default rule objects to.
var complete = []string{"From: a@remote.test", "To: alice@example.test", "Subject: hello", "Date: Mon, 02 Jan 2006 15:04:05 +0900", "Message-ID: <m1@remote.test>"}

var inbound = Envelope{IP: "192.0.2.1", Helo: "mx.remote.test", MailFrom: "a@remote.test", Rcpts: []string{"alice@example.test"}}

func TestDefaultRules(t *testing.T) {
	rs, err := LoadRules("")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		msg     []byte
		action  Action
		score   float64
		symbols []string
	}{
		{"clean", msg("hi\r\n", complete...), NoAction, 0, nil},
		{"GTUBE", msg("XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n", complete...), Reject, 0, []string{"GTUBE"}},
		{"no Date", msg("hi\r\n", complete[0], complete[1], complete[2], complete[4]), NoAction, 1, []string{"MISSING_DATE"}},
		{"no Date, no Message-ID", msg("hi\r\n", complete[:3]...), NoAction, 3.5, []string{"MISSING_DATE", "MISSING_MESSAGE_ID"}},
		{"GTUBE in the header only", msg("hi\r\n", append(slices.Clone(complete), "X-Test: XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X")...), NoAction, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := rs.Check(inbound, tt.msg)
			got := slices.Sorted(maps.Keys(v.Symbols))
			if v.Action != tt.action || v.Score != tt.score || !slices.Equal(got, tt.symbols) || !v.Scanned {
				t.Fatalf("got %+v, want %s score %v symbols %v", v, tt.action, tt.score, tt.symbols)
			}
		})
	}
	if v := rs.Check(inbound, tests[1].msg); v.Message != "Gtube pattern" {
		t.Errorf("GTUBE reply text %q", v.Message)
	}
}

// testRules exercises every condition and every threshold.
const testRules = `
actions:
  greylist: 3
  add_header: 5
  rewrite_subject: 8
  soft_reject: 10
  reject: 20
subject: "[spam] %s"
rules:
  - name: SUBJECT_LOTTERY
    header: subject
    regex: '(?i)lottery'
    score: 5
  - name: SUBJECT_JAPANESE_SPAM
    header: Subject
    regex: '当選'
    score: 8
  - name: BODY_BITCOIN
    body: '(?i)send bitcoin'
    score: 3
  - name: NO_DATE
    missing_header: date
    score: 0.5
  - name: BLOCKED
    senders: ['@blocked.test', 'Bad@Remote.test']
    action: reject
    message: Not from you
  - name: TRUSTED
    senders: ['@partner.test']
    score: -10
  - name: TRAP
    recipients: ['trap@example.test']
    action: soft_reject
  - name: BIG
    size_over: 1000
    score: 15
`

func TestRuleConditionsAndThresholds(t *testing.T) {
	rs, err := ParseRules([]byte(testRules), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	from := func(addr string) Envelope { e := inbound; e.MailFrom = addr; return e }
	to := func(addrs ...string) Envelope { e := inbound; e.Rcpts = addrs; return e }
	subject := func(s string) []byte { return msg("hi\r\n", "Date: x", "Subject: "+s) }
	tests := []struct {
		name    string
		env     Envelope
		msg     []byte
		action  Action
		symbols []string
	}{
		{"nothing", inbound, subject("hello"), NoAction, nil},
		{"header regex, case of the name and of the text", inbound, msg("hi\r\n", "Date: x", "SUBJECT: LOTTERY winner"), AddHeader, []string{"SUBJECT_LOTTERY"}},
		{"folded header", inbound, msg("hi\r\n", "Date: x", "Subject: you won the\r\n lottery"), AddHeader, []string{"SUBJECT_LOTTERY"}},
		{"encoded word decoded (ISO-2022-JP)", inbound, subject("=?ISO-2022-JP?B?GyRCRXZBKhsoQg==?="), RewriteSubject, []string{"SUBJECT_JAPANESE_SPAM"}},
		{"body regex", inbound, msg("please Send Bitcoin now\r\n", "Date: x"), Greylist, []string{"BODY_BITCOIN"}},
		{"body regex not in the header", inbound, msg("hi\r\n", "Date: x", "Subject: send bitcoin"), NoAction, nil},
		{"scores add up", inbound, msg("send bitcoin\r\n", "Subject: lottery"), RewriteSubject, []string{"BODY_BITCOIN", "NO_DATE", "SUBJECT_LOTTERY"}},
		{"missing header", inbound, msg("hi\r\n", "Subject: x"), NoAction, []string{"NO_DATE"}},
		{"sender by domain", from("x@BLOCKED.test"), subject("hi"), Reject, []string{"BLOCKED"}},
		{"sender by address", from("bad@remote.test"), subject("hi"), Reject, []string{"BLOCKED"}},
		{"other sender of the domain", from("good@remote.test"), subject("hi"), NoAction, nil},
		{"subdomain is not the domain", from("x@sub.blocked.test"), subject("hi"), NoAction, nil},
		{"null sender", from(""), subject("hi"), NoAction, nil},
		{"negative score", from("x@partner.test"), msg("send bitcoin\r\n", "Date: x", "Subject: lottery"), NoAction, []string{"BODY_BITCOIN", "SUBJECT_LOTTERY", "TRUSTED"}},
		{"one recipient of several", to("alice@example.test", "TRAP@example.test"), subject("hi"), SoftReject, []string{"TRAP"}},
		{"forced action beats a lower score action", to("trap@example.test"), subject("lottery"), SoftReject, []string{"SUBJECT_LOTTERY", "TRAP"}},
		{"score action beats a lower forced one", to("trap@example.test"), msg(strings.Repeat("x", 1000), "Date: x", "Subject: lottery"), Reject, []string{"BIG", "SUBJECT_LOTTERY", "TRAP"}},
		{"size", inbound, msg(strings.Repeat("x", 1000), "Date: x"), SoftReject, []string{"BIG"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := rs.Check(tt.env, tt.msg)
			got := slices.Sorted(maps.Keys(v.Symbols))
			if v.Action != tt.action || !slices.Equal(got, tt.symbols) {
				t.Fatalf("got %s %v (score %v), want %s %v", v.Action, got, v.Score, tt.action, tt.symbols)
			}
			var sum float64
			for _, s := range v.Symbols {
				sum += s
			}
			if v.Score != sum {
				t.Errorf("score %v is not the sum of the symbols %v", v.Score, v.Symbols)
			}
		})
	}

	v := rs.Check(from("x@blocked.test"), subject("hi"))
	if v.Message != "Not from you" {
		t.Errorf("forced reject: message %q", v.Message)
	}
	v = rs.Check(inbound, subject("=?ISO-2022-JP?B?GyRCRXZBKhsoQg==?="))
	if v.Subject != "[spam] 当選" {
		t.Errorf("rewritten subject %q", v.Subject)
	}
	if v := rs.Check(inbound, msg("hi\r\n", "Date: x", "Subject: lottery")); v.Message != "" || v.Subject != "" {
		t.Errorf("add header carries message %q subject %q", v.Message, v.Subject)
	}
}

func TestRuleFileErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		line int
		msg  string
	}{
		{"empty", "", 0, "rules: []"},
		{"syntax", "rules: [\n", 0, "line"},
		{"not a mapping", "- a\n", 1, "must be a mapping"},
		{"unknown top key", "rules: []\nthreshold: 3\n", 2, `unknown key "threshold"`},
		{"top key twice", "rules: []\nrules: []\n", 2, "twice"},
		{"rules not a list", "rules:\n  name: X\n", 2, "must be a list"},
		{"bad subject", "subject: no placeholder\nrules: []\n", 1, "%s"},
		{"unknown action threshold", "actions:\n  add_header: 5\n  quarantine: 9\nrules: []\n", 3, `"quarantine"`},
		{"threshold twice", "actions:\n  reject: 5\n  reject: 9\n", 3, "twice"},
		{"threshold not a number", "actions:\n  reject: lots\n", 2, `"lots" is not a number`},
		{"rule not a mapping", "rules:\n  - X\n", 2, "must be a mapping"},
		{"unknown rule key", "rules:\n  - name: X\n    scor: 1\n    body: x\n", 3, `unknown key "scor"`},
		{"bad name", "rules:\n  - name: has space\n    score: 1\n    body: x\n", 2, "letters, digits or underscores"},
		{"name twice", "rules:\n  - name: X\n    score: 1\n    body: x\n  - name: X\n    score: 1\n    body: y\n", 5, "rule X: name used twice"},
		{"no score nor action", "rules:\n  - name: X\n    body: x\n", 2, "rule X: needs a score"},
		{"bad action", "rules:\n  - name: X\n    action: drop\n    body: x\n", 2, `rule X: action "drop"`},
		{"no condition", "rules:\n  - name: X\n    score: 1\n", 2, "rule X: needs exactly one condition"},
		{"two conditions", "rules:\n  - name: X\n    score: 1\n    body: x\n    size_over: 5\n", 2, "exactly one condition"},
		{"header without regex", "rules:\n  - name: X\n    score: 1\n    header: Subject\n", 2, "header and regex go together"},
		{"regex without header", "rules:\n  - name: X\n    score: 1\n    body: x\n    regex: y\n", 2, "header and regex go together"},
		{"bad header regex", "rules:\n  - name: X\n    score: 1\n    header: Subject\n    regex: '(['\n", 2, "rule X: regex: error parsing"},
		{"bad body regex", "rules:\n  - name: X\n    score: 1\n    body: 'a**'\n", 2, "rule X: body: error parsing"},
		{"bad sender", "rules:\n  - name: X\n    score: 1\n    senders: [example.com]\n", 2, `rule X: senders: "example.com"`},
		{"empty recipients", "rules:\n  - name: X\n    score: 1\n    recipients: []\n", 2, "recipients: the list is empty"},
		{"negative size", "rules:\n  - name: X\n    score: 1\n    size_over: -5\n", 2, "size_over"},
		{"score not a number", "rules:\n  - name: X\n    score: high\n    body: x\n", 2, "high"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseRules([]byte(tt.yaml), "rules.yaml")
			if err == nil {
				t.Fatal("accepted")
			}
			prefix := "rules.yaml: "
			if tt.line > 0 {
				prefix = "rules.yaml:" + strconv.Itoa(tt.line) + ": "
			}
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %q, want it to start with %q and contain %q", err, prefix, tt.msg)
			}
		})
	}
}

func TestLoadRulesFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(p, []byte("rules: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rs, err := LoadRules(p)
	if err != nil {
		t.Fatal(err)
	}
	if v := rs.Check(inbound, msg("XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X")); v.Action != NoAction || len(v.Symbols) != 0 {
		t.Errorf("rules: [] still matched: %+v", v)
	}
	if _, err := LoadRules(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
	big := filepath.Join(dir, "big.yaml")
	os.WriteFile(big, []byte("# "+strings.Repeat("x", maxRulesBytes)+"\nrules: []\n"), 0o600)
	if _, err := LoadRules(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized file: %v", err)
	}
}

// TestDefaultRulesDocumentEveryKey keeps the default file, which is the
// format's documentation, in step with the parser.
func TestDefaultRulesDocumentEveryKey(t *testing.T) {
	doc := string(DefaultRules)
	for _, k := range append(slices.Clone(fileKeys), ruleKeys...) {
		if k == "name" || k == "description" {
			continue
		}
		if !regexp.MustCompile(`(?m)^\s*#?\s*-?\s*` + k + `:`).MatchString(doc) {
			t.Errorf("default_rules.yaml does not show the key %s", k)
		}
	}
	for _, a := range actions[1:] {
		if !strings.Contains(doc, "#   "+a.label()) {
			t.Errorf("default_rules.yaml does not explain the action %s", a.label())
		}
	}
	// The commented examples are valid rules.
	var examples []string
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "  # ") && (strings.HasPrefix(line, "  # -") || strings.HasPrefix(line, "  #   ")) {
			examples = append(examples, "  "+strings.TrimPrefix(line, "  # "))
		}
	}
	if len(examples) < 10 {
		t.Fatalf("found only %d example lines", len(examples))
	}
	rs, err := ParseRules([]byte("rules:\n"+strings.Join(examples, "\n")+"\n"), "examples")
	if err != nil {
		t.Fatalf("the examples do not parse: %v", err)
	}
	if len(rs.rules) != 6 {
		t.Errorf("%d example rules, want 6", len(rs.rules))
	}
}

func FuzzParseRules(f *testing.F) {
	f.Add(DefaultRules)
	f.Add([]byte(testRules))
	f.Add([]byte("rules:\n  - name: X\n    senders: ['@a']\n    score: 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := ParseRules(data, "fuzz")
		if err != nil {
			return
		}
		v := rs.Check(inbound, data)
		if v.Action.severity() < 0 {
			t.Fatalf("unknown action %q", v.Action)
		}
	})
}

// BenchmarkDefaultRules checks a 10 KB message with the default rules, the
// work every incoming message gets without rspamd.
func BenchmarkDefaultRules(b *testing.B) {
	rs, err := LoadRules("")
	if err != nil {
		b.Fatal(err)
	}
	m := msg(strings.Repeat(strings.Repeat("x", 76)+"\r\n", 130), append(slices.Clone(complete), "Received: from a (b [192.0.2.1])\r\n\tby c; Mon, 02 Jan 2006 15:04:05 +0900")...)
	b.SetBytes(int64(len(m)))
	for b.Loop() {
		rs.Check(inbound, m)
	}
}
