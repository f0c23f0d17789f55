// Package dsn builds RFC 3464 delivery status notifications ("bounces"):
// a multipart/report; report-type=delivery-status message with a
// human-readable part (English and Japanese), a message/delivery-status
// part with per-recipient fields, and the original message's headers
// (text/rfc822-headers). The notification is sent with the null sender
// (MAIL FROM:<>), and a message that itself had the null sender never
// produces one.
package dsn

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/textproto"
	"strings"
	"time"
)

// Action is a recipient's Action field value.
type Action string

const (
	Failed  Action = "failed"
	Delayed Action = "delayed"
)

// ErrNoBounce means no notification must be sent: the original had the
// null sender (never bounce a bounce) or no recipient needs reporting.
var ErrNoBounce = errors.New("dsn: no notification for this message")

// Recipient is one recipient's report.
type Recipient struct {
	FinalRecipient    string // address as used in RCPT TO
	OriginalRecipient string // optional (ORCPT)
	Action            Action
	// Status is the enhanced status code, e.g. "5.1.1". Empty means 5.0.0
	// for failed and 4.0.0 for delayed. A failed recipient with a 4.x.x
	// status (expired after temporary failures) is reported as 5.4.7
	// (delivery time expired); the last 4xx stays in Diagnostic-Code.
	Status         string
	RemoteMTA      string // host that answered, optional
	DiagnosticCode string // remote reply, e.g. "550 5.1.1 no such user"; optional
	LastAttempt    time.Time
	WillRetryUntil time.Time // delayed only, optional
}

// Report describes the notification.
type Report struct {
	ReportingMTA string // our host name
	// OriginalSender is the original envelope MAIL FROM; it receives the
	// notification. Empty (or "<>") means no notification.
	OriginalSender     string
	OriginalEnvelopeID string
	ArrivalDate        time.Time
	Recipients         []Recipient
	// Original is the original message (only its header is included) or
	// just its header.
	Original []byte
	// From is the notification's From address; default
	// MAILER-DAEMON@ReportingMTA.
	From string
	Date time.Time // default time.Now()
}

// Message is a ready-to-queue notification.
type Message struct {
	MailFrom  string // always "" (null sender)
	Recipient string
	Data      []byte // CRLF line endings
}

// Build renders the notification or returns ErrNoBounce.
func Build(r Report) (*Message, error) {
	sender := strings.TrimSpace(r.OriginalSender)
	if sender == "" || sender == "<>" {
		return nil, ErrNoBounce
	}
	sender = strings.Trim(sender, "<>")
	var rcpts []Recipient
	for _, rc := range r.Recipients {
		if rc.Action == Failed || rc.Action == Delayed {
			rcpts = append(rcpts, rc)
		}
	}
	if len(rcpts) == 0 {
		return nil, ErrNoBounce
	}
	if r.ReportingMTA == "" {
		return nil, errors.New("dsn: ReportingMTA is required")
	}
	for _, s := range []string{sender, r.From} {
		if strings.ContainsAny(s, "\r\n") {
			return nil, errors.New("dsn: line break in address")
		}
	}
	date := r.Date
	if date.IsZero() {
		date = time.Now()
	}
	from := r.From
	if from == "" {
		from = "MAILER-DAEMON@" + r.ReportingMTA
	}
	anyFailed := false
	for _, rc := range rcpts {
		if rc.Action == Failed {
			anyFailed = true
		}
	}

	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	var hdr bytes.Buffer
	subject := "Delayed Mail (still being retried) / 配送遅延のお知らせ"
	if anyFailed {
		subject = "Undelivered Mail Returned to Sender / 配送不能のお知らせ"
	}
	fmt.Fprintf(&hdr, "From: Mail Delivery System <%s>\r\n", from)
	fmt.Fprintf(&hdr, "To: <%s>\r\n", sender)
	fmt.Fprintf(&hdr, "Subject: %s\r\n", mime.BEncoding.Encode("UTF-8", subject))
	fmt.Fprintf(&hdr, "Date: %s\r\n", date.Format(time.RFC1123Z))
	fmt.Fprintf(&hdr, "Message-ID: <%s@%s>\r\n", randomID(), r.ReportingMTA)
	hdr.WriteString("Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n")
	fmt.Fprintf(&hdr, "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"%s\"\r\n\r\n", mw.Boundary())

	// 1. Human-readable part.
	h := textproto.MIMEHeader{}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Transfer-Encoding", "quoted-printable")
	h.Set("Content-Description", "Notification")
	pw, err := mw.CreatePart(h)
	if err != nil {
		return nil, err
	}
	qp := quotedprintable.NewWriter(pw)
	if _, err := qp.Write([]byte(humanText(r.ReportingMTA, rcpts))); err != nil {
		return nil, err
	}
	if err := qp.Close(); err != nil {
		return nil, err
	}

	// 2. message/delivery-status.
	h = textproto.MIMEHeader{}
	h.Set("Content-Type", "message/delivery-status")
	h.Set("Content-Description", "Delivery report")
	pw, err = mw.CreatePart(h)
	if err != nil {
		return nil, err
	}
	if _, err := pw.Write(deliveryStatus(r, rcpts)); err != nil {
		return nil, err
	}

	// 3. Original headers.
	orig := headerOf(r.Original)
	h = textproto.MIMEHeader{}
	h.Set("Content-Type", "text/rfc822-headers")
	h.Set("Content-Description", "Undelivered message headers")
	if !ascii(orig) {
		h.Set("Content-Transfer-Encoding", "8bit")
	}
	pw, err = mw.CreatePart(h)
	if err != nil {
		return nil, err
	}
	if _, err := pw.Write(orig); err != nil {
		return nil, err
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	hdr.Write(body.Bytes())
	return &Message{MailFrom: "", Recipient: sender, Data: hdr.Bytes()}, nil
}

func randomID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// field makes a value safe for a single header line: no line breaks, ASCII
// only.
func field(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\r' || r == '\n' || r == '\t':
			b.WriteByte(' ')
		case r < 0x20 || r == 0x7f:
		case r >= 0x80:
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
	}
	return strings.TrimSpace(b.String())
}

func ascii(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

func status(rc Recipient) string {
	s := field(rc.Status)
	valid := len(s) >= 5 && (s[0] == '2' || s[0] == '4' || s[0] == '5') && s[1] == '.' && strings.Count(s, ".") == 2
	switch {
	case rc.Action == Failed && (!valid || s[0] != '5'):
		if valid && s[0] == '4' {
			return "5.4.7"
		}
		return "5.0.0"
	case !valid:
		return "4.0.0"
	}
	return s
}

// addrType renders an address field. Non-ASCII addresses would need the
// RFC 6533 utf-8 type; they are rendered with '?' for now.
func addrType(a string) string { return "rfc822; " + field(a) }

func deliveryStatus(r Report, rcpts []Recipient) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Reporting-MTA: dns; %s\r\n", field(r.ReportingMTA))
	if r.OriginalEnvelopeID != "" {
		fmt.Fprintf(&b, "Original-Envelope-Id: %s\r\n", field(r.OriginalEnvelopeID))
	}
	if !r.ArrivalDate.IsZero() {
		fmt.Fprintf(&b, "Arrival-Date: %s\r\n", r.ArrivalDate.Format(time.RFC1123Z))
	}
	for _, rc := range rcpts {
		b.WriteString("\r\n")
		if rc.OriginalRecipient != "" {
			fmt.Fprintf(&b, "Original-Recipient: %s\r\n", addrType(rc.OriginalRecipient))
		}
		fmt.Fprintf(&b, "Final-Recipient: %s\r\n", addrType(rc.FinalRecipient))
		fmt.Fprintf(&b, "Action: %s\r\n", rc.Action)
		fmt.Fprintf(&b, "Status: %s\r\n", status(rc))
		if rc.RemoteMTA != "" {
			fmt.Fprintf(&b, "Remote-MTA: dns; %s\r\n", field(rc.RemoteMTA))
		}
		if rc.DiagnosticCode != "" {
			fmt.Fprintf(&b, "Diagnostic-Code: smtp; %s\r\n", field(rc.DiagnosticCode))
		}
		if !rc.LastAttempt.IsZero() {
			fmt.Fprintf(&b, "Last-Attempt-Date: %s\r\n", rc.LastAttempt.Format(time.RFC1123Z))
		}
		if rc.Action == Delayed && !rc.WillRetryUntil.IsZero() {
			fmt.Fprintf(&b, "Will-Retry-Until: %s\r\n", rc.WillRetryUntil.Format(time.RFC1123Z))
		}
	}
	return b.Bytes()
}

func humanText(mta string, rcpts []Recipient) string {
	var failed, delayed []Recipient
	for _, rc := range rcpts {
		if rc.Action == Failed {
			failed = append(failed, rc)
		} else {
			delayed = append(delayed, rc)
		}
	}
	line := func(rc Recipient) string {
		s := "  <" + rc.FinalRecipient + ">"
		if rc.RemoteMTA != "" {
			s += " (" + rc.RemoteMTA + ")"
		}
		if rc.DiagnosticCode != "" {
			s += ": " + field(rc.DiagnosticCode)
		}
		return s + "\r\n"
	}
	var b strings.Builder
	section := func(intro string, rcs []Recipient) {
		if len(rcs) == 0 {
			return
		}
		b.WriteString(intro + "\r\n\r\n")
		for _, rc := range rcs {
			b.WriteString(line(rc))
		}
		b.WriteString("\r\n")
	}
	fmt.Fprintf(&b, "This is the mail system at %s.\r\n\r\n", mta)
	section("Your message could not be delivered to the following recipients.\r\nThis is a permanent error; it will not be retried.", failed)
	section("Delivery to the following recipients has been delayed.\r\nThe mail system will keep trying; no action is needed yet.", delayed)
	b.WriteString("----\r\n\r\n")
	fmt.Fprintf(&b, "%s のメールシステムからのお知らせです。\r\n\r\n", mta)
	section("次の宛先にメールを配送できませんでした。恒久的なエラーのため、再送は行いません。", failed)
	section("次の宛先への配送が遅れています。引き続き再送を試みますので、現時点での対応は不要です。", delayed)
	return b.String()
}

// headerOf returns the header section of msg (up to and including the
// blank line), with CRLF line endings.
func headerOf(msg []byte) []byte {
	s := strings.ReplaceAll(string(msg), "\r\n", "\n")
	if i := strings.Index(s, "\n\n"); i >= 0 {
		s = s[:i+1]
	} else if !strings.HasSuffix(s, "\n") && s != "" {
		s += "\n"
	}
	return []byte(strings.ReplaceAll(s, "\n", "\r\n"))
}
