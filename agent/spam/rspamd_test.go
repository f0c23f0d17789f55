package spam

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mairust/mairust/internal/rspamdtest"
)

// mail is a complete message with subject and body, from a@remote.test.
func mail(subject, body string) []byte {
	return msg(body+"\r\n", "From: a@remote.test", "To: alice@example.test", "Subject: "+subject,
		"Date: Mon, 02 Jan 2006 15:04:05 +0900", "Message-ID: <"+strings.ReplaceAll(subject, " ", ".")+"@remote.test>")
}

func TestRspamdCheck(t *testing.T) {
	rs := rspamdtest.Start(t)
	c := NewClient(rs.URL, "", 10*time.Second)
	ctx := context.Background()
	tests := []struct {
		subject, body string
		action        Action
		symbol        string
	}{
		{"hello", "an ordinary message", NoAction, ""},
		{"test", rspamdtest.GTUBE, Reject, "GTUBE"},
		{rspamdtest.SubjectGreylist, "x", Greylist, "MAIRUST_TEST_GREYLIST"},
		{rspamdtest.SubjectAddHeader, "x", AddHeader, "MAIRUST_TEST_ADD_HEADER"},
		{rspamdtest.SubjectRewriteSubject, "x", RewriteSubject, "MAIRUST_TEST_REWRITE_SUBJECT"},
		{rspamdtest.SubjectSoftReject, "x", SoftReject, "MAIRUST_TEST_SOFT_REJECT"},
	}
	for _, tt := range tests {
		t.Run(string(tt.action), func(t *testing.T) {
			v, err := c.Check(ctx, inbound, mail(tt.subject, tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if v.Action != tt.action || !v.Scanned || len(v.Symbols) == 0 {
				t.Fatalf("got %+v, want %s", v, tt.action)
			}
			if _, ok := v.Symbols[tt.symbol]; tt.symbol != "" && !ok {
				t.Errorf("symbol %s missing: %v", tt.symbol, v.Symbols)
			}
		})
	}

	v, _ := c.Check(ctx, inbound, mail("test", rspamdtest.GTUBE))
	if v.Message != "Gtube pattern" {
		t.Errorf("reject message %q", v.Message)
	}
	v, _ = c.Check(ctx, inbound, mail(rspamdtest.SubjectRewriteSubject, "x"))
	if v.Subject != "[SPAM] "+rspamdtest.SubjectRewriteSubject {
		t.Errorf("rewritten subject %q", v.Subject)
	}

	// The envelope reaches rspamd: it compares it with the header.
	withEnv, _ := c.Check(ctx, inbound, mail("hello", "x"))
	noEnv, _ := c.Check(ctx, Envelope{IP: inbound.IP}, mail("hello", "x"))
	for _, s := range []string{"FROM_EQ_ENVFROM", "TO_MATCH_ENVRCPT_ALL"} {
		if _, ok := withEnv.Symbols[s]; !ok {
			t.Errorf("with the envelope, %s is missing: %v", s, withEnv.Symbols)
		}
		if _, ok := noEnv.Symbols[s]; ok {
			t.Errorf("without the envelope, %s is there", s)
		}
	}
}

func TestRspamdLearn(t *testing.T) {
	rs := rspamdtest.Start(t)
	ctx := context.Background()
	c := NewClient(rs.ControllerURL, rspamdtest.Password, 10*time.Second)
	spamText := strings.Repeat("cheap pharmacy discount pills online casino winner lottery prize claim bitcoin wallet ", 3)
	hamText := strings.Repeat("quarterly budget meeting agenda minutes project roadmap milestone review engineering team ", 3)
	// rspamd's Bayes uses only tokens seen at least twice: two spams alike.
	spam, spam2, ham := mail("offer", spamText), mail("offer again", spamText+"urgent"), mail("meeting notes", hamText)

	if err := NewClient(rs.ControllerURL, "wrong", 10*time.Second).Learn(ctx, true, spam); err == nil || !strings.Contains(err.Error(), "Unauthorized") {
		t.Fatalf("learning with a wrong password: %v", err)
	}
	if err := c.Learn(ctx, true, spam); err != nil {
		t.Fatalf("learn spam: %v", err)
	}
	if err := c.Learn(ctx, true, spam2); err != nil {
		t.Fatalf("learn spam: %v", err)
	}
	if err := c.Learn(ctx, false, ham); err != nil {
		t.Fatalf("learn ham: %v", err)
	}
	if err := c.Learn(ctx, true, spam); !errors.Is(err, ErrAlreadyLearned) {
		t.Errorf("learning the same message twice: %v", err)
	}
	if err := c.Learn(ctx, true, mail("x", "x")); !errors.Is(err, ErrTooShort) {
		t.Errorf("learning a one-word message: %v; want ErrTooShort", err)
	}
	if err := NewClient(rs.URL, "", 10*time.Second).Learn(ctx, true, spam); err == nil {
		t.Error("the normal worker took a learn request")
	}
	// The classifier now knows the spam.
	v, err := c.Check(ctx, inbound, spam)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := v.Symbols["BAYES_SPAM"]; !ok {
		t.Errorf("BAYES_SPAM missing after learning: %v", v.Symbols)
	}
}
