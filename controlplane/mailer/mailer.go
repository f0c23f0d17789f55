// Package mailer is the control plane's mail to people: verification links
// and invitations. It checks the addresses mail goes to, makes the one-time
// tokens carried in links (only their hashes are stored), and posts plain
// text messages through an SMTP relay.
package mailer

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/textproto"
	"net/url"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mairust/mairust/internal/config"
)

// Mailer sends one plain text message.
type Mailer interface {
	Send(ctx context.Context, to, subject, body string) error
}

// sendTimeout bounds one delivery to the relay when ctx has no earlier
// deadline.
const sendTimeout = time.Minute

// SMTP posts mail through controlplane.smtp_relay without authentication,
// upgrading with STARTTLS when the relay offers it.
type SMTP struct {
	relay string
	from  *mail.Address
	helo  string
}

// NewSMTP returns the mailer of cfg: SMTPRelay, MailFrom, and PublicURL's
// host as the name it greets the relay with.
func NewSMTP(cfg config.ControlPlane) (*SMTP, error) {
	from, err := mail.ParseAddress(cfg.MailFrom)
	if err != nil {
		return nil, fmt.Errorf("controlplane.mail_from %q: %w (set a mail address, user@domain)", cfg.MailFrom, err)
	}
	if _, _, err := net.SplitHostPort(cfg.SMTPRelay); err != nil {
		return nil, fmt.Errorf("controlplane.smtp_relay %q: %w (set host:port)", cfg.SMTPRelay, err)
	}
	helo := "localhost"
	if u, err := url.Parse(cfg.PublicURL); err == nil && u.Hostname() != "" {
		helo = u.Hostname()
	}
	return &SMTP{relay: cfg.SMTPRelay, from: from, helo: helo}, nil
}

// Send mails body to the address to. It returns once the relay has taken
// the message (250 to DATA).
func (s *SMTP) Send(ctx context.Context, to, subject, body string) error {
	msg, err := s.message(to, subject, body, time.Now())
	if err != nil {
		return err
	}
	if err := s.post(ctx, to, msg); err != nil {
		return fmt.Errorf("mailer: sending to %s through the relay %s (controlplane.smtp_relay): %w", to, s.relay, err)
	}
	return nil
}

// message builds an RFC 5322 message with a quoted-printable UTF-8 body,
// marked as automatically generated (RFC 3834).
func (s *SMTP) message(to, subject, body string, now time.Time) ([]byte, error) {
	if _, err := Address(to); err != nil {
		return nil, fmt.Errorf("mailer: recipient: %w", err)
	}
	if strings.ContainsAny(subject, "\r\n") {
		return nil, errors.New("mailer: the subject has a line break")
	}
	id := make([]byte, 16)
	rand.Read(id)
	_, fromDomain, _ := strings.Cut(s.from.Address, "@")
	var b bytes.Buffer
	header := func(name, value string) { fmt.Fprintf(&b, "%s: %s\r\n", name, value) }
	header("Date", now.Format(time.RFC1123Z))
	header("From", s.from.String())
	header("To", (&mail.Address{Address: to}).String())
	header("Subject", mime.QEncoding.Encode("utf-8", subject))
	header("Message-ID", "<"+hex.EncodeToString(id)+"@"+fromDomain+">")
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "quoted-printable")
	header("Auto-Submitted", "auto-generated")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write([]byte(body)); err != nil {
		return nil, err
	}
	if err := qp.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// post runs one SMTP session that hands msg to the relay.
func (s *SMTP) post(ctx context.Context, to string, msg []byte) error {
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", s.relay)
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c, err := s.open(ctx, conn)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SendMail(s.from.Address, []string{to}, bytes.NewReader(msg)); err != nil {
		return err
	}
	return c.Quit()
}

// open greets the relay and upgrades the connection with STARTTLS when the
// relay offers it. go-smtp cannot start TLS after its own EHLO, so the
// first EHLO is said here and go-smtp takes over the (upgraded)
// connection with a fresh EHLO.
func (s *SMTP) open(ctx context.Context, conn net.Conn) (*smtp.Client, error) {
	tp := textproto.NewConn(conn)
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, err
	}
	if err := tp.PrintfLine("EHLO %s", s.helo); err != nil {
		return nil, err
	}
	_, ext, err := tp.ReadResponse(250)
	if err != nil {
		return nil, err
	}
	if !offers(ext, "STARTTLS") {
		return smtp.NewClient(resumed(conn, tp.R)), nil
	}
	if err := tp.PrintfLine("STARTTLS"); err != nil {
		return nil, err
	}
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, err
	}
	if tp.R.Buffered() > 0 {
		return nil, errors.New("the relay sent data before the TLS handshake (possible injection)")
	}
	host, _, _ := net.SplitHostPort(s.relay)
	tc := tls.Client(conn, tlsConfig(host))
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("STARTTLS handshake: %w (give the relay a certificate for %s)", err, host)
	}
	return smtp.NewClient(resumed(tc, tc)), nil
}

// offers reports whether an EHLO reply announces the extension ext.
func offers(ehlo, ext string) bool {
	for _, line := range strings.Split(ehlo, "\n")[1:] {
		if f := strings.Fields(line); len(f) > 0 && strings.EqualFold(f[0], ext) {
			return true
		}
	}
	return false
}

// tlsConfig verifies the relay's certificate unless the relay is on
// loopback, where a self-signed certificate (an agent's default) is fine.
func tlsConfig(host string) *tls.Config {
	ip := net.ParseIP(host)
	loopback := host == "localhost" || ip != nil && ip.IsLoopback()
	return &tls.Config{ServerName: host, InsecureSkipVerify: loopback, MinVersion: tls.VersionTLS12}
}

// resumed gives go-smtp a connection whose greeting has already been
// read: it reads a stand-in greeting, then r (the connection's reader).
func resumed(c net.Conn, r io.Reader) net.Conn {
	return &prefixConn{Conn: c, r: io.MultiReader(strings.NewReader("220 resumed\r\n"), r)}
}

type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(p []byte) (int, error) { return c.r.Read(p) }
