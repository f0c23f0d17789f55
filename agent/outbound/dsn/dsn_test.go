package dsn

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/textproto"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset"
)

const original = "From: Alice <alice@sender.test>\r\nTo: bob@example.test\r\nSubject: =?UTF-8?B?5pel5pys6Kqe?=\r\nMessage-ID: <m1@sender.test>\r\n\r\nbody must not be included\r\n"

func report() Report {
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	return Report{
		ReportingMTA:   "mx.mairust.test",
		OriginalSender: "alice@sender.test",
		ArrivalDate:    at,
		Date:           at.Add(time.Hour),
		Original:       []byte(original),
		Recipients: []Recipient{
			{FinalRecipient: "bob@example.test", Action: Failed, Status: "5.1.1", RemoteMTA: "mx1.example.test", DiagnosticCode: "550 5.1.1 no such user", LastAttempt: at},
			{FinalRecipient: "carol@example.test", Action: Failed, Status: "4.2.2", RemoteMTA: "mx1.example.test", DiagnosticCode: "452 4.2.2 mailbox full\r\nInjected: x"},
			{FinalRecipient: "dave@example.test", Action: Delayed, Status: "4.4.1", WillRetryUntil: at.Add(120 * time.Hour)},
		},
	}
}

func readBlocks(t *testing.T, r io.Reader) []textproto.MIMEHeader {
	t.Helper()
	tr := textproto.NewReader(bufio.NewReader(r))
	var out []textproto.MIMEHeader
	for {
		h, err := tr.ReadMIMEHeader()
		if len(h) > 0 {
			out = append(out, h)
		}
		if err != nil {
			if err != io.EOF {
				t.Fatalf("delivery-status: %v", err)
			}
			return out
		}
	}
}

func TestBuildParses(t *testing.T) {
	m, err := Build(report())
	if err != nil {
		t.Fatal(err)
	}
	if m.MailFrom != "" || m.Recipient != "alice@sender.test" {
		t.Fatalf("envelope: %q → %q", m.MailFrom, m.Recipient)
	}
	e, err := message.Read(bytes.NewReader(m.Data))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := e.Header.ContentType()
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("content type %q %v %v", mt, params, err)
	}
	if subj, err := e.Header.Text("Subject"); err != nil || !strings.Contains(subj, "配送不能") || !strings.Contains(subj, "Undelivered") {
		t.Fatalf("subject %q %v", subj, err)
	}
	if e.Header.Get("Auto-Submitted") != "auto-replied" || e.Header.Get("Message-Id") == "" || e.Header.Get("Date") == "" {
		t.Fatalf("header: %v", e.Header)
	}
	mr := e.MultipartReader()
	if mr == nil {
		t.Fatal("not multipart")
	}
	var types []string
	var human, status, headers []byte
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ct, _, _ := p.Header.ContentType()
		types = append(types, ct)
		b, err := io.ReadAll(p.Body)
		if err != nil {
			t.Fatal(err)
		}
		switch ct {
		case "text/plain":
			human = b
		case "message/delivery-status":
			status = b
		case "text/rfc822-headers":
			headers = b
		}
	}
	if strings.Join(types, ",") != "text/plain,message/delivery-status,text/rfc822-headers" {
		t.Fatalf("parts: %v", types)
	}
	if !utf8.Valid(human) || !strings.Contains(string(human), "配送できませんでした") || !strings.Contains(string(human), "could not be delivered") || !strings.Contains(string(human), "遅れています") {
		t.Fatalf("human part: %q", human)
	}
	blocks := readBlocks(t, bytes.NewReader(status))
	if len(blocks) != 4 {
		t.Fatalf("blocks: %d %q", len(blocks), status)
	}
	if blocks[0].Get("Reporting-MTA") != "dns; mx.mairust.test" || !strings.Contains(blocks[0].Get("Arrival-Date"), "2025") {
		t.Fatalf("per-message: %v", blocks[0])
	}
	b := blocks[1]
	if b.Get("Final-Recipient") != "rfc822; bob@example.test" || b.Get("Action") != "failed" || b.Get("Status") != "5.1.1" ||
		b.Get("Remote-MTA") != "dns; mx1.example.test" || b.Get("Diagnostic-Code") != "smtp; 550 5.1.1 no such user" || b.Get("Last-Attempt-Date") == "" {
		t.Fatalf("bob: %v", b)
	}
	// Expired after temporary failures: failed with 5.4.7; no header injection.
	if c := blocks[2]; c.Get("Status") != "5.4.7" || c.Get("Action") != "failed" || c.Get("Injected") != "" || !strings.Contains(c.Get("Diagnostic-Code"), "452 4.2.2 mailbox full") {
		t.Fatalf("carol: %v", c)
	}
	if d := blocks[3]; d.Get("Action") != "delayed" || d.Get("Status") != "4.4.1" || d.Get("Will-Retry-Until") == "" {
		t.Fatalf("dave: %v", d)
	}
	if !strings.Contains(string(headers), "Message-ID: <m1@sender.test>") || strings.Contains(string(headers), "body must not") {
		t.Fatalf("headers part: %q", headers)
	}
}

func TestNoBounceForNullSender(t *testing.T) {
	for _, s := range []string{"", "<>", "  "} {
		r := report()
		r.OriginalSender = s
		if m, err := Build(r); !errors.Is(err, ErrNoBounce) || m != nil {
			t.Fatalf("sender %q: %v %v", s, m, err)
		}
	}
	r := report()
	r.Recipients = nil
	if _, err := Build(r); !errors.Is(err, ErrNoBounce) {
		t.Fatalf("no recipients: %v", err)
	}
}

func TestDelayedOnly(t *testing.T) {
	r := report()
	r.Recipients = r.Recipients[2:]
	r.OriginalSender = "<alice@sender.test>"
	r.Original = []byte("Subject: no body")
	m, err := Build(r)
	if err != nil {
		t.Fatal(err)
	}
	e, err := message.Read(bytes.NewReader(m.Data))
	if err != nil {
		t.Fatal(err)
	}
	if subj, _ := e.Header.Text("Subject"); !strings.Contains(subj, "Delayed") || m.Recipient != "alice@sender.test" {
		t.Fatalf("subject %q rcpt %q", subj, m.Recipient)
	}
	if !strings.Contains(string(m.Data), "Subject: no body\r\n") || !strings.Contains(string(m.Data), "From: Mail Delivery System <MAILER-DAEMON@mx.mairust.test>") {
		t.Fatalf("data: %s", m.Data)
	}
	if bytes.Contains(bytes.ReplaceAll(m.Data, []byte("\r\n"), nil), []byte("\n")) {
		t.Fatal("bare LF in message")
	}
}
