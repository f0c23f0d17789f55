package mailer

import (
	"context"
	"errors"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/tlsconfig"
)

// received is one message a relay took.
type received struct {
	from, to string
	data     []byte
	tls      bool
}

// relay is a go-smtp server on loopback that keeps what it receives and
// refuses the recipient refuse.
type relay struct {
	mu     sync.Mutex
	got    []received
	refuse string
}

func (r *relay) NewSession(c *smtp.Conn) (smtp.Session, error) {
	_, tls := c.TLSConnectionState()
	return &session{r: r, msg: received{tls: tls}}, nil
}

type session struct {
	r   *relay
	msg received
}

func (s *session) Reset()        {}
func (s *session) Logout() error { return nil }
func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.msg.from = from
	return nil
}
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if to == s.r.refuse {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	s.msg.to = to
	return nil
}
func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.msg.data = b
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	s.r.got = append(s.r.got, s.msg)
	return nil
}

// messages returns what the relay has taken.
func (r *relay) messages() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

// startRelay serves a relay on 127.0.0.1, offering STARTTLS with a
// self-signed certificate when withTLS.
func startRelay(t *testing.T, withTLS bool) (*relay, string) {
	t.Helper()
	r := &relay{refuse: "nobody@example.test"}
	srv := smtp.NewServer(r)
	srv.Domain = "relay.test"
	if withTLS {
		tc, err := tlsconfig.SelfSigned(t.TempDir(), "relay.test")
		if err != nil {
			t.Fatal(err)
		}
		srv.TLSConfig = tc
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return r, ln.Addr().String()
}

func TestSend(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "starttls"}[withTLS], func(t *testing.T) {
			r, addr := startRelay(t, withTLS)
			m, err := NewSMTP(config.ControlPlane{SMTPRelay: addr, MailFrom: "noreply@cp.example.test", PublicURL: "https://cp.example.test"})
			if err != nil {
				t.Fatal(err)
			}
			subject := "Vérifiez votre adresse — MaiRust"
			body := "Bonjour,\nouvrez ce lien : https://cp.example.test/console/verify?token=" + strings.Repeat("A", 43) + "\n"
			if err := m.Send(context.Background(), "Alice@Example.test", subject, body); err != nil {
				t.Fatal(err)
			}
			msgs := r.messages()
			if len(msgs) != 1 {
				t.Fatalf("the relay got %d messages", len(msgs))
			}
			got := msgs[0]
			if got.from != "noreply@cp.example.test" || got.to != "Alice@Example.test" || got.tls != withTLS {
				t.Fatalf("envelope %q → %q, TLS %v", got.from, got.to, got.tls)
			}
			if strings.Contains(strings.ReplaceAll(string(got.data), "\r\n", ""), "\n") {
				t.Fatal("a bare LF in the message")
			}
			msg, err := mail.ReadMessage(strings.NewReader(string(got.data)))
			if err != nil {
				t.Fatal(err)
			}
			h := msg.Header
			dec := new(mime.WordDecoder)
			gotSubject, err := dec.DecodeHeader(h.Get("Subject"))
			if err != nil || gotSubject != subject {
				t.Errorf("Subject %q (%v)", gotSubject, err)
			}
			if _, err := h.Date(); err != nil {
				t.Errorf("Date: %v", err)
			}
			for name, want := range map[string]string{"From": "<noreply@cp.example.test>", "To": "<Alice@Example.test>", "MIME-Version": "1.0",
				"Content-Type": "text/plain; charset=utf-8", "Auto-Submitted": "auto-generated"} {
				if h.Get(name) != want {
					t.Errorf("%s: %q, want %q", name, h.Get(name), want)
				}
			}
			if id := h.Get("Message-ID"); !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@cp.example.test>") {
				t.Errorf("Message-ID %q", id)
			}
			b, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
			if err != nil || strings.ReplaceAll(string(b), "\r\n", "\n") != body {
				t.Errorf("body %q (%v)", b, err)
			}
		})
	}
}

func TestSendRefused(t *testing.T) {
	_, addr := startRelay(t, true)
	m, err := NewSMTP(config.ControlPlane{SMTPRelay: addr, MailFrom: "noreply@cp.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	var se *smtp.SMTPError
	if err := m.Send(context.Background(), "nobody@example.test", "s", "b"); !errors.As(err, &se) || se.Code != 550 || !strings.Contains(err.Error(), "controlplane.smtp_relay") {
		t.Fatalf("refused recipient: %v", err)
	}
	for _, tc := range []struct{ to, subject string }{
		{"not an address", "s"},
		{"Bob <bob@example.test>", "s"},
		{"bob@example.test", "s\r\nBcc: eve@example.test"},
	} {
		if err := m.Send(context.Background(), tc.to, tc.subject, "b"); err == nil {
			t.Errorf("Send(%q, %q) succeeded", tc.to, tc.subject)
		}
	}
}

func TestNewSMTPRefusesBadConfig(t *testing.T) {
	for _, cfg := range []config.ControlPlane{
		{SMTPRelay: "127.0.0.1:25", MailFrom: "nobody"},
		{SMTPRelay: "127.0.0.1", MailFrom: "noreply@example.test"},
	} {
		if _, err := NewSMTP(cfg); err == nil {
			t.Errorf("NewSMTP(%+v) succeeded", cfg)
		}
	}
}

// Certificates are checked except on loopback.
func TestTLSConfig(t *testing.T) {
	for host, insecure := range map[string]bool{"127.0.0.1": true, "::1": true, "localhost": true, "relay.example.test": false, "192.0.2.1": false} {
		if c := tlsConfig(host); c.InsecureSkipVerify != insecure || c.ServerName != host {
			t.Errorf("%s: InsecureSkipVerify %v, ServerName %q", host, c.InsecureSkipVerify, c.ServerName)
		}
	}
}
