package submission

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/internal/clientip"
	"github.com/mairust/mairust/internal/smtputil"
)

// dbTimeout bounds checking a password, recording a sign-in and checking
// a sender's aliases.
const dbTimeout = 10 * time.Second

func reply(code int, enh smtp.EnhancedCode, format string, args ...any) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: fmt.Sprintf(format, args...)}
}

// The fixed refusals.
var (
	errTLSRequired        = reply(530, smtp.EnhancedCode{5, 7, 0}, "Must issue a STARTTLS command first")
	errAuthRequired       = reply(530, smtp.EnhancedCode{5, 7, 0}, "Authentication required")
	errEncryptionRequired = reply(538, smtp.EnhancedCode{5, 7, 11}, "Encryption required for requested authentication mechanism")
	errBadCredentials     = reply(535, smtp.EnhancedCode{5, 7, 8}, "Authentication credentials invalid")
	errAuthTemporary      = reply(454, smtp.EnhancedCode{4, 7, 0}, "Temporary authentication failure; try again later")
	errNullSender         = reply(553, smtp.EnhancedCode{5, 7, 1}, "The null sender <> is not accepted for submission; send from your own address")
	errTemporary          = reply(451, smtp.EnhancedCode{4, 3, 0}, "Temporary failure, message not accepted; try again later")
)

// session is one connection after EHLO; STARTTLS ends it and the next EHLO
// starts another.
type session struct {
	s    *Server
	c    *smtp.Conn
	id   string
	ip   string
	log  *slog.Logger
	user *accounts.User // nil until AUTH succeeds

	from  string
	utf8  bool
	rcpts []string
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	ss := &session{s: s, c: c, id: rand.Text(), ip: clientip.Of(c.Conn().RemoteAddr())}
	ss.log = s.log.With("request_id", ss.id, "client_ip", ss.ip)
	return ss, nil
}

func (ss *session) tls() bool {
	_, ok := ss.c.TLSConnectionState()
	return ok
}

// AuthMechanisms are offered over TLS only.
func (ss *session) AuthMechanisms() []string {
	if !ss.tls() {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth starts an AUTH exchange (RFC 4954).
func (ss *session) Auth(mech string) (sasl.Server, error) {
	if !ss.tls() {
		return nil, errEncryptionRequired
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pw string) error {
			return ss.authenticate(mech, identity, user, pw)
		}), nil
	case sasl.Login:
		return &loginServer{check: func(user, pw string) error {
			return ss.authenticate(mech, "", user, pw)
		}}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// authenticate checks a sign-in, at most LoginsPerIPPerMinute a minute from
// one address, and records it in the admin log. authzid, the user to act
// as, must be empty or user itself.
func (ss *session) authenticate(mech, authzid, user, pw string) error {
	if ok, wait := ss.s.logins.Allow(ss.ip); !ok {
		authTotal.WithLabelValues(mech, "limited").Inc()
		return reply(454, smtp.EnhancedCode{4, 7, 0}, "Too many authentication attempts from your address; try again in %d seconds", int(wait.Seconds())+1)
	}
	u, err := accounts.User{}, accounts.ErrBadCredentials
	if authzid == "" || authzid == user {
		ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
		u, err = ss.s.auth.Authenticate(ctx, user, pw)
		cancel()
	}
	switch {
	case errors.Is(err, accounts.ErrBadCredentials):
		authTotal.WithLabelValues(mech, "failed").Inc()
		ss.record("", user, false)
		return errBadCredentials
	case err != nil:
		authTotal.WithLabelValues(mech, "error").Inc()
		ss.log.Error("could not check a password; answered 454", "error", err)
		return errAuthTemporary
	}
	authTotal.WithLabelValues(mech, "ok").Inc()
	ss.record(u.TenantID, u.Address, true)
	ss.user = &u
	ss.log = ss.log.With("user", u.Address)
	return nil
}

// record adds a sign-in to the admin log; a failure to record is logged.
func (ss *session) record(tenant, actor string, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	if err := ss.s.auth.RecordLogin(ctx, tenant, actor, ok, ss.ip, "submission"); err != nil {
		ss.log.Warn("could not record event", "kind", "auth.login", "error", err)
	}
}

// refuse counts a refused command.
func refuse(reason string, err *smtp.SMTPError) error {
	commandsRefused.WithLabelValues(reason).Inc()
	return err
}

// Mail starts a transaction: over TLS, signed in, from the user's own
// address or one of its aliases.
func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	switch {
	case !ss.tls():
		return refuse("tls_required", errTLSRequired)
	case ss.user == nil:
		return refuse("auth_required", errAuthRequired)
	case from == "":
		return refuse("null_sender", errNullSender)
	}
	if ok, err := ss.owns(from); err != nil {
		ss.log.Error("could not check the sender's aliases; answered 451", "error", err)
		return refuse("sender_check_error", errTemporary)
	} else if !ok {
		return refuse("sender_not_owned", reply(553, smtp.EnhancedCode{5, 7, 1}, "Sender address not owned by the authenticated user: <%s>", printable(from, 256)))
	}
	ss.Reset()
	ss.from = from
	ss.utf8 = opts != nil && opts.UTF8
	return nil
}

// owns reports whether from is the signed-in user's own address or one of
// its aliases, compared the way accounts.Normalize compares addresses (the
// whole of it case-insensitively). The user's own address needs no query.
func (ss *session) owns(from string) (bool, error) {
	a, err := accounts.Normalize(from)
	if err != nil {
		return false, nil
	}
	if a == ss.user.Address {
		return true, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	return ss.s.auth.Owns(ctx, ss.user.ID, a)
}

// Rcpt adds a recipient whose address has a form the relay can deliver to;
// go-smtp refuses those over MaxRecipients.
func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if err := checkAddress(to); err != nil {
		return refuse("bad_recipient", reply(553, smtp.EnhancedCode{5, 1, 3}, "Recipient address not valid: %v", err))
	}
	if !slices.Contains(ss.rcpts, to) {
		ss.rcpts = append(ss.rcpts, to)
	}
	return nil
}

// Data reads the message, adds the Received header and hands the message
// to the submitter; 250 follows only once the submitter has taken it.
func (ss *session) Data(r io.Reader) error {
	received := ss.receivedHeader(time.Now())
	buf := bytes.NewBuffer(make([]byte, 0, len(received)+32<<10))
	buf.WriteString(received)
	if _, err := buf.ReadFrom(r); err != nil {
		if errors.Is(err, smtp.ErrDataTooLarge) {
			commandsRefused.WithLabelValues("too_large").Inc()
		}
		return err
	}
	sub := Submission{
		ID: ss.id, UserID: ss.user.ID, TenantID: ss.user.TenantID, Address: ss.user.Address,
		MailFrom: ss.from, Recipients: ss.rcpts, Data: buf.Bytes(), ClientIP: ss.ip, UTF8: ss.utf8,
	}
	ctx, cancel := context.WithTimeout(context.Background(), ss.s.cfg.SubmitTimeout)
	defer cancel()
	start := time.Now()
	err := ss.s.sub.Submit(ctx, sub)
	answer, result := replyTo(err)
	submissionsTotal.WithLabelValues(result).Inc()
	attrs := []any{"mail_from", sub.MailFrom, "rcpts", len(sub.Recipients), "size", len(sub.Data), "duration_ms", time.Since(start).Milliseconds()}
	switch result {
	case "accepted":
		ss.log.Info("message submitted", attrs...)
		return nil
	case "failed":
		ss.log.Error("submission failed; answered 451", append(attrs, "error", err)...)
	default:
		ss.log.Info("submission refused", append(attrs, "reply", answer.Error())...)
	}
	return answer
}

// replyTo returns the answer to what Submit returned, nil for 250, and the
// result for the metrics. A *Reject is answered as it is, provided its code
// is 4xx or 5xx; anything else is a temporary failure.
func replyTo(err error) (*smtp.SMTPError, string) {
	if err == nil {
		return nil, "accepted"
	}
	var rej *Reject
	if !errors.As(err, &rej) || rej.Code < 400 || rej.Code > 599 {
		return errTemporary, "failed"
	}
	text := printable(rej.Text, 400)
	if text == "" {
		text = "Message not accepted"
	}
	answer := &smtp.SMTPError{Code: rej.Code, EnhancedCode: enhancedCode(rej.Code, rej.Enhanced), Message: text}
	if rej.Code < 500 {
		return answer, "deferred"
	}
	return answer, "rejected"
}

// enhancedCode parses "x.y.z" (RFC 3463) whose class x matches code;
// otherwise go-smtp answers x.0.0.
func enhancedCode(code int, s string) smtp.EnhancedCode {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return smtp.EnhancedCodeNotSet
	}
	var e smtp.EnhancedCode
	for i, p := range parts {
		if len(p) == 0 || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return smtp.EnhancedCodeNotSet
		}
		e[i], _ = strconv.Atoi(p)
	}
	if e[0] != code/100 {
		return smtp.EnhancedCodeNotSet
	}
	return e
}

// receivedHeader builds the trace header (RFC 5321 4.4) naming the
// authenticated user, with the protocol of RFC 3848. It has no "for"
// clause, which would show a Bcc recipient.
func (ss *session) receivedHeader(now time.Time) string {
	proto := "ESMTPSA"
	if ss.utf8 {
		proto = "UTF8SMTPSA"
	}
	ip := ss.ip
	if strings.Contains(ip, ":") {
		ip = "IPv6:" + ip
	}
	return fmt.Sprintf("Received: from %s ([%s])\r\n\t(Authenticated sender: %s)\r\n\tby %s (MaiRust) with %s id %s;\r\n\t%s\r\n",
		smtputil.HeloName(ss.c.Hostname()), ip, ss.user.Address, ss.s.cfg.Hostname, proto, ss.id, now.Format(time.RFC1123Z))
}

// printable makes outside text safe for a reply line: printable ASCII, at
// most max bytes.
func printable(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' {
			return '?'
		}
		return r
	}, s)
	return s[:min(len(s), max)]
}

// Reset ends the transaction (RSET, a new MAIL, or after DATA).
func (ss *session) Reset() {
	ss.from, ss.utf8, ss.rcpts = "", false, nil
}

// Logout ends the session.
func (ss *session) Logout() error { return nil }
