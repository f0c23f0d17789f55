package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"

	"github.com/mairust/mairust/agent/policy"
	"github.com/mairust/mairust/agent/submission"
	"github.com/mairust/mairust/internal/ratelimit"
)

// fakeSender keeps what it is given and answers err.
type fakeSender struct {
	got []submission.Submission
	err error
}

func (f *fakeSender) Submit(_ context.Context, s submission.Submission) error {
	f.got = append(f.got, s)
	return f.err
}

// unlimited lets every request through.
type unlimited struct{}

func (unlimited) Allow(context.Context, string, ratelimit.Limit) (ratelimit.Decision, error) {
	return ratelimit.Decision{Allowed: true}, nil
}

// sendEnv is an env whose API sends to a fakeSender (and has no outbound
// admin), with alice's access token. It has no rate limits: the tests send
// more than the endpoint's burst.
func sendEnv(t *testing.T) (*env, *fakeSender, string) {
	e := newEnv(t)
	fs := &fakeSender{}
	e.srv.SetSending(fs, nil)
	e.srv.rate.store = unlimited{}
	return e, fs, e.login("alice@example.test").AccessToken
}

func TestSendRateLimited(t *testing.T) {
	e := newEnv(t)
	e.srv.SetSending(&fakeSender{}, nil)
	alice := e.login("alice@example.test").AccessToken
	for i := range 10 {
		if resp := e.call("POST", "/api/v1/send", alice, sendRequest{To: []string{"bob@example.test"}}, nil); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("message %d: %d", i, resp.StatusCode)
		}
	}
	e.wantProblem("POST", "/api/v1/send", alice, sendRequest{To: []string{"bob@example.test"}}, 429, "")
}

func TestSendBuildsTheMessage(t *testing.T) {
	e, fs, alice := sendEnv(t)
	req := sendRequest{
		To: []string{"Bob <bob@example.test>", "x@remote.test"}, Cc: []string{"山田 <yamada@remote.test>", "X@remote.test"},
		Bcc: []string{"hidden@remote.test"}, Subject: "日本語の件名", Text: "こんにちは\nsecond line", HTML: "<p>こんにちは</p>",
		InReplyTo: "<orig@remote.test>",
	}
	var out sendResponse
	if resp := e.call("POST", "/api/v1/send", alice, req, &out); resp.StatusCode != http.StatusAccepted || len(fs.got) != 1 {
		t.Fatalf("send: %d %+v, %d submissions", resp.StatusCode, out, len(fs.got))
	}
	sub := fs.got[0]
	if sub.ID != out.ID || sub.Address != "alice@example.test" || sub.MailFrom != sub.Address || sub.UserID == 0 || sub.TenantID == "" || sub.ClientIP != "127.0.0.1" || sub.UTF8 {
		t.Errorf("submission %+v, answer %+v", sub, out)
	}
	// Each address once in the envelope (x@ and X@ are one), Bcc included.
	if want := []string{"bob@example.test", "x@remote.test", "yamada@remote.test", "hidden@remote.test"}; !slices.Equal(sub.Recipients, want) {
		t.Errorf("envelope %v, want %v", sub.Recipients, want)
	}
	if i := bytes.IndexFunc(sub.Data, func(r rune) bool { return r > 0x7e }); i >= 0 {
		t.Errorf("the message is not 7-bit at %d:\n%s", i, sub.Data)
	}

	mr, err := mail.CreateReader(bytes.NewReader(sub.Data))
	if err != nil {
		t.Fatal(err)
	}
	h := mr.Header
	raw := h.Get("Subject")
	subject, _ := h.Subject()
	if !strings.HasPrefix(strings.ToLower(raw), "=?utf-8?") || subject != req.Subject {
		t.Errorf("Subject %q decodes to %q", raw, subject)
	}
	from, _ := h.AddressList("From")
	to, _ := h.AddressList("To")
	cc, _ := h.AddressList("Cc")
	if fmt.Sprint(addrs(from), addrs(to), addrs(cc)) != "[alice@example.test] [bob@example.test x@remote.test] [yamada@remote.test X@remote.test]" || cc[0].Name != "山田" {
		t.Errorf("From %v To %v Cc %v", from, to, cc)
	}
	id, _ := h.MessageID()
	reply, _ := h.MsgIDList("In-Reply-To")
	refs, _ := h.MsgIDList("References")
	date, _ := h.Date()
	if id != out.MessageID || !strings.HasSuffix(id, "@example.test") || fmt.Sprint(reply, refs) != "[orig@remote.test] [orig@remote.test]" || date.IsZero() {
		t.Errorf("Message-Id %q (answer %q), In-Reply-To %v, References %v, Date %v", id, out.MessageID, reply, refs, date)
	}
	if h.Has("Bcc") || bytes.Contains(sub.Data, []byte("hidden@")) {
		t.Errorf("the Bcc recipient shows in the message:\n%s", sub.Data)
	}
	if ct, _, _ := h.ContentType(); ct != "multipart/alternative" || h.Get("Mime-Version") != "1.0" {
		t.Errorf("Content-Type %q, MIME-Version %q", ct, h.Get("Mime-Version"))
	}
	for _, want := range []string{"text/plain;utf-8: こんにちは\nsecond line", "text/html;utf-8: <p>こんにちは</p>"} {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("part %q: %v", want, err)
		}
		ct, params, _ := p.Header.(*mail.InlineHeader).ContentType()
		body, _ := io.ReadAll(p.Body)
		if got := ct + ";" + params["charset"] + ": " + strings.ReplaceAll(string(body), "\r\n", "\n"); got != want {
			t.Errorf("part %q, want %q", got, want)
		}
	}
	if _, err := mr.NextPart(); err != io.EOF {
		t.Errorf("a third part: %v", err)
	}
}

func addrs(list []*mail.Address) []string {
	var out []string
	for _, a := range list {
		out = append(out, a.Address)
	}
	return out
}

func TestSendTextOnly(t *testing.T) {
	e, fs, alice := sendEnv(t)
	if resp := e.call("POST", "/api/v1/send", alice, sendRequest{To: []string{"bob@example.test"}, Subject: "plain", Text: "hello"}, nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("send: %d", resp.StatusCode)
	}
	m, err := mail.CreateReader(bytes.NewReader(fs.got[0].Data))
	if err != nil {
		t.Fatal(err)
	}
	ct, params, _ := m.Header.ContentType()
	p, err := m.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(p.Body)
	if ct != "text/plain" || params["charset"] != "utf-8" || string(body) != "hello" || m.Header.Get("Subject") != "plain" {
		t.Errorf("%s %v %q:\n%s", ct, params, body, fs.got[0].Data)
	}
}

func TestSendValidation(t *testing.T) {
	e, fs, alice := sendEnv(t)
	many := make([]string, 60)
	for i := range many {
		many[i] = fmt.Sprintf("r%d@remote.test", i)
	}
	to := []string{"bob@example.test"}
	for _, c := range []struct {
		body   any
		status int
		field  string
	}{
		{sendRequest{}, 400, "to"},
		{sendRequest{To: []string{"not an address"}}, 400, "to"},
		{sendRequest{To: to, Cc: []string{"a@[192.0.2.1]"}}, 400, "cc"},
		{sendRequest{To: to, Bcc: []string{`"a b"@remote.test`}}, 400, "bcc"},
		{sendRequest{To: many, Cc: many}, 400, "cc"},
		{sendRequest{To: to, Subject: "two\r\nBcc: x@remote.test"}, 400, "subject"},
		{sendRequest{To: to, Subject: strings.Repeat("あ", 333)}, 400, "subject"},
		{sendRequest{To: to, Text: strings.Repeat("x", maxBodyBytes+1)}, 413, "text"},
		{sendRequest{To: to, HTML: strings.Repeat("x", maxBodyBytes+1)}, 413, "html"},
		{sendRequest{To: to, InReplyTo: "<a b@remote.test>"}, 400, "in_reply_to"},
		{map[string]any{"to": to, "from": "boss@example.test"}, 400, "from"},
		{map[string]any{"to": "bob@example.test"}, 400, "to"},
	} {
		e.wantProblem("POST", "/api/v1/send", alice, c.body, c.status, c.field)
	}
	if len(fs.got) != 0 {
		t.Errorf("%d invalid messages were sent", len(fs.got))
	}
	e.wantProblem("POST", "/api/v1/send", "", sendRequest{To: to}, 401, "Authorization")
	e.srv.SetSending(nil, nil)
	e.wantProblem("POST", "/api/v1/send", alice, sendRequest{To: to}, 404, "")
}

func TestSendRefusals(t *testing.T) {
	e, fs, alice := sendEnv(t)
	for _, c := range []struct {
		err        error
		status     int
		field      string
		retryAfter string
	}{
		{&submission.Reject{Code: 550, Enhanced: "5.7.1", Text: policy.SuspendedText}, 403, "", ""},
		{&submission.Reject{Code: 450, Enhanced: "4.7.1", Text: policy.RateLimitedText}, 429, "", "3600"},
		{&submission.Reject{Code: 451, Enhanced: "4.3.0", Text: "Try again later"}, 503, "", ""},
		{fmt.Errorf("submit: %w", &submission.Reject{Code: 550, Enhanced: "5.1.1", Text: "No such user here: nobody@example.test"}), 422, "to", ""},
		{errors.New("disk on fire"), 500, "", ""},
	} {
		fs.err = c.err
		var p Problem
		resp := e.call("POST", "/api/v1/send", alice, sendRequest{To: []string{"bob@example.test"}, Text: "hi"}, &p)
		var rej *submission.Reject
		wantDetail := "internal error; the agent's log has the details"
		if errors.As(c.err, &rej) {
			wantDetail = rej.Text
		}
		if resp.StatusCode != c.status || p.Status != c.status || p.Field != c.field || p.Detail != wantDetail || resp.Header.Get("Retry-After") != c.retryAfter {
			t.Errorf("%v: %d %+v Retry-After %q; want %d naming %q, detail %q", c.err, resp.StatusCode, p, resp.Header.Get("Retry-After"), c.status, c.field, wantDetail)
		}
	}
}

func TestSendRefusesDisabledUser(t *testing.T) {
	e, fs, alice := sendEnv(t)
	if _, err := e.pool.Exec(t.Context(), `UPDATE mail_users SET disabled = true WHERE address = 'alice@example.test'`); err != nil {
		t.Fatal(err)
	}
	e.wantProblem("POST", "/api/v1/send", alice, sendRequest{To: []string{"bob@example.test"}}, 401, "Authorization")
	if len(fs.got) != 0 {
		t.Error("a disabled user's message was sent")
	}
}

// The header of a Japanese subject is made of encoded words that decode
// back to it whatever their split.
func TestSubjectEncodedWords(t *testing.T) {
	m := outgoing{sendRequest: sendRequest{Subject: strings.Repeat("長い日本語の件名", 10), Text: "x"}}
	_, data, err := m.build("alice@example.test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r, err := mail.CreateReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	raw := r.Header.Get("Subject")
	got, err := new(mime.WordDecoder).DecodeHeader(raw)
	if err != nil || got != m.Subject || strings.Contains(string(data), "長") {
		t.Errorf("Subject %q decodes to %q, %v", raw, got, err)
	}
}
