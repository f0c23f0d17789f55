package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message/mail"

	"github.com/mairust/mairust/agent/submission"
)

// Sender takes a message for sending; the agent's submit.Submitter is one.
// It returns nil only once the message is durable; a *submission.Reject is
// a refusal (by the outbound policy, or of an unknown local recipient).
type Sender interface {
	Submit(ctx context.Context, s submission.Submission) error
}

// SetSending gives the API the agent's sending side: the sender behind
// POST /api/v1/send and the outbound policy and delivery log behind the
// outbound endpoints. Set it before serving; without it they answer 404.
func (s *Server) SetSending(sender Sender, admin OutboundAdmin) {
	s.sender, s.outbound = sender, admin
}

// Bounds of a message sent through the API.
const (
	maxSendRecipients = 100
	maxSubjectBytes   = 998 // one header line (RFC 5322)
	// maxSendRequest leaves room for a text and an HTML body of
	// maxBodyBytes each, JSON-escaped.
	maxSendRequest = 4 * maxBodyBytes
	// sendTimeout bounds a submission, which goes on when the client
	// hangs up so that it is not left half done.
	sendTimeout = 30 * time.Second
)

// sendRequest is a message to send from the caller's address. Bcc
// recipients get the message but are not in its header.
type sendRequest struct {
	To        []string `json:"to"`
	Cc        []string `json:"cc,omitempty"`
	Bcc       []string `json:"bcc,omitempty"`
	Subject   string   `json:"subject,omitempty"`
	Text      string   `json:"text,omitempty"`
	HTML      string   `json:"html,omitempty"`        // sent with Text as multipart/alternative
	InReplyTo string   `json:"in_reply_to,omitempty"` // the Message-ID answered, with or without <>
}

// sendResponse names a message taken for sending.
type sendResponse struct {
	ID        string `json:"id"`         // the submission's id, in the agent's logs
	MessageID string `json:"message_id"` // the Message-ID header, without <>
}

// send builds a message from the request and hands it to the sender; 202
// means it is queued durably.
func (s *Server) send(w http.ResponseWriter, r *http.Request) error {
	if s.sender == nil {
		return problem(http.StatusNotFound, "", "this agent does not send mail")
	}
	var req sendRequest
	if err := decodeUpTo(w, r, &req, maxSendRequest); err != nil {
		return err
	}
	m, err := req.check()
	if err != nil {
		return err
	}
	u, err := s.currentUser(w, r)
	if err != nil {
		return err
	}
	msgID, data, err := m.build(u.Address, s.now())
	if err != nil {
		return err
	}
	ip, _, _ := net.SplitHostPort(r.RemoteAddr)
	sub := submission.Submission{ID: rand.Text(), UserID: u.ID, TenantID: u.TenantID, Address: u.Address, MailFrom: u.Address,
		Recipients: m.envelope, Data: data, ClientIP: ip, UTF8: !isASCII(u.Address + strings.Join(m.envelope, ""))}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), sendTimeout)
	defer cancel()
	if err := s.sender.Submit(ctx, sub); err != nil {
		return refusal(w, err)
	}
	writeJSON(w, http.StatusAccepted, sendResponse{ID: sub.ID, MessageID: msgID})
	return nil
}

// refusal answers a *submission.Reject: an unknown local recipient 422, a
// permanent refusal (a suspended account) 403, the policy's rate limit (450)
// 429 to retry in an hour, another temporary one 503; all with the
// refusal's text. Other errors are returned as they are.
func refusal(w http.ResponseWriter, err error) error {
	var rej *submission.Reject
	if !errors.As(err, &rej) {
		return err
	}
	switch {
	case rej.Code == 550 && rej.Enhanced == "5.1.1":
		return problem(http.StatusUnprocessableEntity, "to", "%s", rej.Text)
	case rej.Code >= 500 && rej.Code <= 599:
		return problem(http.StatusForbidden, "", "%s", rej.Text)
	case rej.Code == 450:
		w.Header().Set("Retry-After", "3600")
		return problem(http.StatusTooManyRequests, "", "%s", rej.Text)
	case rej.Code >= 400 && rej.Code <= 499:
		return problem(http.StatusServiceUnavailable, "", "%s", rej.Text)
	}
	return err
}

// outgoing is a checked sendRequest.
type outgoing struct {
	sendRequest
	to, cc   []*mail.Address
	envelope []string // to, cc and bcc, each address once
}

// check validates the request, naming the field at fault.
func (req sendRequest) check() (outgoing, error) {
	m := outgoing{sendRequest: req}
	n := 0
	seen := map[string]bool{}
	for _, f := range []struct {
		name string
		list []string
		into *[]*mail.Address
	}{{"to", req.To, &m.to}, {"cc", req.Cc, &m.cc}, {"bcc", req.Bcc, nil}} {
		if n += len(f.list); n > maxSendRecipients {
			return m, problem(http.StatusBadRequest, f.name, "at most %d recipients in to, cc and bcc together", maxSendRecipients)
		}
		for _, v := range f.list {
			a, err := mail.ParseAddress(v)
			if err != nil || !deliverable(a.Address) {
				return m, problem(http.StatusBadRequest, f.name, "%q is not an address; write user@example.org or Name <user@example.org>", v)
			}
			if f.into != nil {
				*f.into = append(*f.into, a)
			}
			if key := strings.ToLower(a.Address); !seen[key] {
				seen[key] = true
				m.envelope = append(m.envelope, a.Address)
			}
		}
	}
	m.InReplyTo = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(req.InReplyTo), "<"), ">")
	switch {
	case n == 0:
		return m, problem(http.StatusBadRequest, "to", "name at least one recipient in to, cc or bcc")
	case len(req.Subject) > maxSubjectBytes || strings.ContainsFunc(req.Subject, isControl):
		return m, problem(http.StatusBadRequest, "subject", "the subject must be one line of at most %d bytes", maxSubjectBytes)
	case len(req.Text) > maxBodyBytes:
		return m, problem(http.StatusRequestEntityTooLarge, "text", "the text is larger than %d bytes", maxBodyBytes)
	case len(req.HTML) > maxBodyBytes:
		return m, problem(http.StatusRequestEntityTooLarge, "html", "the HTML body is larger than %d bytes", maxBodyBytes)
	case len(m.InReplyTo) > maxSubjectBytes || strings.ContainsFunc(m.InReplyTo, func(r rune) bool { return r <= ' ' || r == '<' || r == '>' || r == 0x7f }):
		return m, problem(http.StatusBadRequest, "in_reply_to", "in_reply_to must be one Message-ID, such as <id@example.org>")
	}
	return m, nil
}

// deliverable reports whether addr, as net/mail parsed it, can go in an
// SMTP envelope: at most 254 bytes, no spaces, quotes or controls, and a
// host name for a domain, not an address literal.
func deliverable(addr string) bool {
	at := strings.LastIndexByte(addr, '@')
	return at > 0 && at < len(addr)-1 && len(addr) <= 254 && addr[at+1] != '[' &&
		!strings.ContainsFunc(addr, func(r rune) bool { return r <= ' ' || r == '"' || r == 0x7f })
}

// isControl reports a control character other than tab.
func isControl(r rune) bool { return unicode.IsControl(r) && r != '\t' }

func isASCII(s string) bool { return utf8.RuneCountInString(s) == len(s) }

// build writes the message from the address from, dated now: UTF-8 text,
// multipart/alternative with the HTML body, encoded words in the header
// where it is not ASCII, and a new Message-ID at from's domain (returned).
func (m outgoing) build(from string, now time.Time) (msgID string, data []byte, err error) {
	var h mail.Header
	h.SetDate(now)
	h.SetAddressList("From", []*mail.Address{{Address: from}})
	h.SetAddressList("To", m.to)
	h.SetAddressList("Cc", m.cc)
	h.SetSubject(m.Subject)
	msgID = rand.Text() + from[strings.LastIndexByte(from, '@'):]
	h.SetMessageID(msgID)
	if m.InReplyTo != "" {
		h.SetMsgIDList("In-Reply-To", []string{m.InReplyTo})
		h.SetMsgIDList("References", []string{m.InReplyTo})
	}
	var buf bytes.Buffer
	if err := writeBody(&buf, h, m.Text, m.HTML); err != nil {
		return "", nil, err
	}
	return msgID, buf.Bytes(), nil
}

// utf8Text is the Content-Type parameter of every text part.
var utf8Text = map[string]string{"charset": "utf-8"}

// writeBody writes the message with header h: text alone, or text and html
// as alternatives. Parts are quoted-printable.
func writeBody(buf *bytes.Buffer, h mail.Header, text, html string) error {
	if html == "" {
		h.SetContentType("text/plain", utf8Text)
		w, err := mail.CreateSingleInlineWriter(buf, h)
		if err != nil {
			return err
		}
		return writeClose(w, text)
	}
	iw, err := mail.CreateInlineWriter(buf, h)
	if err != nil {
		return err
	}
	for _, p := range [][2]string{{"text/plain", text}, {"text/html", html}} {
		var ph mail.InlineHeader
		ph.SetContentType(p[0], utf8Text)
		w, err := iw.CreatePart(ph)
		if err != nil {
			return err
		}
		if err := writeClose(w, p[1]); err != nil {
			return err
		}
	}
	return iw.Close()
}

func writeClose(w io.WriteCloser, s string) error {
	_, err := io.WriteString(w, s)
	return errors.Join(err, w.Close())
}
