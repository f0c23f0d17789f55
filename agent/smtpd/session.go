package smtpd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/agent/mailparse"
	"github.com/mairust/mairust/agent/mailstore"
	"github.com/mairust/mairust/agent/spam"
	"github.com/mairust/mairust/internal/smtputil"
)

// session is one SMTP connection after EHLO/HELO.
type session struct {
	s   *Server
	c   *smtp.Conn
	tc  *conn
	id  string
	ip  string
	log *slog.Logger

	from     string
	utf8     bool
	rcpts    []accounts.Recipient
	messages int
}

func smtpErr(code int, enh smtp.EnhancedCode, format string, args ...any) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: fmt.Sprintf(format, args...)}
}

var errTempStorage = smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "Temporary storage failure, message not accepted; please try again later")

// Mail starts a transaction (RFC 5321 4.1.1.2).
func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	if ss.tc != nil && ss.tc.draining.Load() {
		rejected("shutting_down")
		return smtpErr(421, smtp.EnhancedCode{4, 3, 2}, "Server shutting down, try again later")
	}
	if ok, wait := ss.s.rate.Allow(ss.ip); !ok {
		rejected("rate_limited")
		return smtpErr(450, smtp.EnhancedCode{4, 7, 0}, "Too many messages from your address; try again in %d seconds", int(wait.Seconds())+1)
	}
	if opts != nil && opts.Size > ss.s.cfg.MaxMessageBytes {
		rejected("too_large")
		return smtpErr(552, smtp.EnhancedCode{5, 3, 4}, "Message size %d exceeds the limit of %d bytes", opts.Size, ss.s.cfg.MaxMessageBytes)
	}
	if ss.tc != nil {
		ss.tc.setBusy(true)
	}
	ss.from = from
	ss.utf8 = opts != nil && opts.UTF8
	ss.rcpts = ss.rcpts[:0]
	return nil
}

// Rcpt checks one recipient against the local domains and users.
func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := ss.s.rcpts.Lookup(ctx, to)
	switch {
	case errors.Is(err, accounts.ErrForeign):
		rejected("relay_denied")
		return smtpErr(550, smtp.EnhancedCode{5, 7, 1}, "<%s>: relay denied: this server accepts mail only for its own domains", to)
	case errors.Is(err, accounts.ErrUnknownUser):
		rejected("unknown_user")
		return smtpErr(550, smtp.EnhancedCode{5, 1, 1}, "<%s>: no such user here", to)
	case err != nil:
		rejected("lookup_error")
		ss.log.Error("recipient lookup failed", "rcpt", to, "error", err)
		return smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "<%s>: temporary failure checking the recipient; try again later", to)
	}
	for _, have := range ss.rcpts {
		if have.UserID == r.UserID {
			return nil // the same mailbox twice gets one copy
		}
	}
	ss.rcpts = append(ss.rcpts, r)
	return nil
}

// Data receives the message and answers 250 only once it is stored.
func (ss *session) Data(r io.Reader) error {
	start := time.Now()
	received := ss.receivedHeader(start)
	buf := bytes.NewBuffer(make([]byte, 0, len(received)+64<<10))
	buf.WriteString(received)
	if _, err := buf.ReadFrom(r); err != nil {
		if errors.Is(err, smtp.ErrDataTooLarge) {
			rejected("too_large")
		} else {
			rejected("read_error")
		}
		return err
	}
	data := buf.Bytes()
	hdr, err := mailparse.ParseHeader(bytes.NewReader(data[len(received):]))
	if err != nil {
		rejected("bad_header")
		return smtpErr(554, smtp.EnhancedCode{5, 6, 0}, "Message header not acceptable: %v", err)
	}
	d := mailstore.Delivery{MailFrom: ss.from, Recipients: ss.rcpts, Data: data, Header: hdr}
	if sc := ss.s.scanner.Load(); sc != nil {
		if err := ss.scan(*sc, &d); err != nil {
			return err
		}
	}
	storeStart := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	ids, err := ss.s.store.Deliver(ctx, d)
	if err != nil {
		rejected("storage_error")
		ss.log.Error("delivery failed; answered 451", "error", err, "mail_from", ss.from, "rcpts", len(ss.rcpts), "size", len(data))
		return errTempStorage
	}
	ackSeconds.Observe(time.Since(storeStart).Seconds())
	messagesTotal.WithLabelValues("accepted", "").Inc()
	bytesReceived.Add(float64(len(data)))
	ss.messages++
	ss.log.Debug("message stored", "message_ids", ids, "mail_from", ss.from, "rcpts", len(ss.rcpts), "size", len(d.Data), "subject_len", len(hdr.Subject),
		"spam_action", d.Spam.Action, "spam_score", d.Spam.Score, "scanned", d.Spam.Scanned, "duration_ms", time.Since(start).Milliseconds())
	return nil
}

// scan asks sc for the verdict on d and answers it: a refused message gets
// its SMTP error; spam bound for Junk gets the X-Spam fields and the Junk
// folders; d carries the verdict to the store.
func (ss *session) scan(sc Scanner, d *mailstore.Delivery) error {
	env := spam.Envelope{IP: ss.ip, Helo: ss.c.Hostname(), MailFrom: ss.from, QueueID: ss.id, Rcpts: make([]string, len(ss.rcpts))}
	for i, r := range ss.rcpts {
		env.Rcpts[i] = r.Address
	}
	v, err := sc.Scan(context.Background(), env, d.Data)
	if err != nil {
		rejected("spam_scan_error")
		return smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "Temporary failure scanning the message; please try again later")
	}
	// The scanner's text, in printable ASCII (RFC 5321 4.2).
	reply := func(def string) string {
		if v.Message == "" {
			return def
		}
		return strings.Map(func(r rune) rune {
			if r < 0x20 || r > 0x7e {
				return '?'
			}
			return r
		}, v.Message[:min(len(v.Message), 200)])
	}
	switch v.Action {
	case spam.Reject:
		rejected("spam")
		ss.log.Debug("message refused as spam", "score", v.Score, "mail_from", ss.from)
		return smtpErr(550, smtp.EnhancedCode{5, 7, 1}, "%s", reply("Message refused as spam"))
	case spam.SoftReject:
		rejected("spam_soft_reject")
		return smtpErr(451, smtp.EnhancedCode{4, 7, 1}, "%s", reply("Message deferred; please try again later"))
	case spam.Greylist:
		rejected("greylisted")
		return smtpErr(451, smtp.EnhancedCode{4, 7, 1}, "Greylisted; please try again later")
	}
	d.Spam = v
	d.Data = v.Mark(d.Data)
	if v.Action.Junk() {
		d.Folders = make([]int64, len(d.Recipients))
		for i, r := range d.Recipients {
			d.Folders[i] = r.JunkID
		}
	}
	if v.Action == spam.RewriteSubject {
		if hdr, err := mailparse.ParseHeader(bytes.NewReader(d.Data)); err == nil {
			d.Header.Subject = hdr.Subject
		}
	}
	return nil
}

// receivedHeader builds the trace header (RFC 5321 4.4).
func (ss *session) receivedHeader(now time.Time) string {
	proto := "ESMTP"
	if ss.utf8 {
		proto = "UTF8SMTP"
	}
	if _, ok := ss.c.TLSConnectionState(); ok {
		proto += "S"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Received: from %s ([%s])\r\n\tby %s (MaiRust) with %s id %s", smtputil.HeloName(ss.c.Hostname()), ss.ip, ss.s.cfg.Hostname, proto, ss.id)
	if len(ss.rcpts) == 1 {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", ss.rcpts[0].Address)
	}
	fmt.Fprintf(&b, ";\r\n\t%s\r\n", now.Format(time.RFC1123Z))
	return b.String()
}

// Reset ends the transaction (RSET, or after DATA).
func (ss *session) Reset() {
	ss.from = ""
	ss.rcpts = ss.rcpts[:0]
	if ss.tc != nil {
		ss.tc.setBusy(false)
	}
}

// Logout ends the session.
func (ss *session) Logout() error {
	if ss.tc != nil {
		ss.tc.setBusy(false)
	}
	ss.log.Debug("session closed", "messages", ss.messages)
	return nil
}
