package deliver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Status is one recipient's outcome.
type Status int

const (
	// TempFail: 4xx, connection trouble, timeouts; retry later.
	TempFail Status = iota
	// Delivered: the remote accepted the message for this recipient.
	Delivered
	// PermFail: 5xx or a permanent routing failure; bounce.
	PermFail
)

func (s Status) String() string {
	switch s {
	case Delivered:
		return "delivered"
	case PermFail:
		return "permfail"
	default:
		return "tempfail"
	}
}

// Attempt is one delivery of a message to recipients of one domain.
type Attempt struct {
	MailFrom   string // "" for the null sender (bounces)
	Recipients []string
	Data       []byte // the message, CRLF line endings
	HeloName   string // overrides Client.HeloName
}

// RecipientResult is the outcome for one recipient.
type RecipientResult struct {
	Recipient string
	Status    Status
	Code      int    // SMTP reply code, 0 when no reply (connection error)
	Enhanced  string // enhanced status code, e.g. "5.1.1"; always set for failures
	Message   string // remote text or local error description
	Host      string // host that answered (MX name), "" if none
}

// Result is the outcome of one Attempt.
type Result struct {
	Recipients []RecipientResult
	Host       string // host of the last session
	Addr       string // ip:port of the last session
	TLS        bool
	TLSVersion string // e.g. "TLS 1.3"
}

// Client delivers messages over SMTP. The zero value is usable (MX routing
// through the system resolver), but set HeloName.
type Client struct {
	Router   *Router  // nil means MX routing through the system resolver
	Limiter  *Limiter // optional: caps concurrent sessions per Route.Key
	HeloName string   // default "localhost"

	DialTimeout    time.Duration // default 30s
	CommandTimeout time.Duration // per command, default 5m
	DataTimeout    time.Duration // waiting for the reply to the final dot, default 10m

	// TLSConfig is the base for STARTTLS and implicit TLS. Opportunistic
	// STARTTLS to MX hosts never verifies certificates (RFC 7435); hops
	// with RequireTLS verify against TLSConfig.RootCAs (system roots when
	// nil) unless InsecureSkipVerify is set here.
	TLSConfig *tls.Config
	// DisableSTARTTLS never upgrades opportunistically.
	DisableSTARTTLS bool
	// PlainFallback reconnects without TLS when the STARTTLS handshake
	// fails (not for hops with RequireTLS).
	PlainFallback bool

	// Dial overrides the dialer (tests).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (c *Client) helo(a Attempt) string {
	if a.HeloName != "" {
		return a.HeloName
	}
	if c.HeloName != "" {
		return c.HeloName
	}
	return "localhost"
}

func dur(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func recipientDomain(rcpt string) string {
	if i := strings.LastIndexByte(rcpt, '@'); i >= 0 {
		return rcpt[i+1:]
	}
	return ""
}

// Deliver routes the attempt's domain (taken from the first recipient) and
// delivers. Every recipient gets exactly one RecipientResult, in order.
func (c *Client) Deliver(ctx context.Context, a Attempt) Result {
	if len(a.Recipients) == 0 {
		return Result{}
	}
	router := c.Router
	if router == nil {
		router = &Router{}
	}
	route, err := router.Route(ctx, recipientDomain(a.Recipients[0]))
	if err != nil {
		st, enh := TempFail, "4.4.3"
		var re *RouteError
		if errors.As(err, &re) {
			enh = re.Status
			if re.Permanent {
				st = PermFail
			}
		}
		return allFail(a.Recipients, st, 0, enh, err.Error(), "")
	}
	return c.DeliverRoute(ctx, route, a)
}

func allFail(rcpts []string, st Status, code int, enh, msg, host string) Result {
	res := Result{}
	for _, r := range rcpts {
		res.Recipients = append(res.Recipients, RecipientResult{Recipient: r, Status: st, Code: code, Enhanced: enh, Message: msg, Host: host})
	}
	return res
}

// DeliverRoute delivers along an already computed route.
func (c *Client) DeliverRoute(ctx context.Context, route Route, a Attempt) Result {
	if c.Limiter != nil {
		release, err := c.Limiter.Acquire(ctx, route.Key)
		if err != nil {
			return allFail(a.Recipients, TempFail, 0, "4.4.5", "waiting for a connection slot: "+err.Error(), "")
		}
		defer release()
	}
	last := allFail(a.Recipients, TempFail, 0, "4.4.1", "no hosts to try", "")
	for _, hop := range route.Hops {
		for _, addr := range hop.Addrs {
			if ctx.Err() != nil {
				return allFail(a.Recipients, TempFail, 0, "4.4.7", ctx.Err().Error(), hop.Host)
			}
			res, next := c.session(ctx, hop, addr, a, !c.DisableSTARTTLS)
			if next && res.tlsFailed && c.PlainFallback && !hop.RequireTLS && !hop.ImplicitTLS {
				res, next = c.session(ctx, hop, addr, a, false)
			}
			last = res.Result
			if !next {
				return last
			}
		}
	}
	return last
}

type sessionResult struct {
	Result
	tlsFailed bool
}

// fail classifies err for all recipients: SMTP replies keep their code,
// anything else is a temporary connection failure.
func fail(rcpts []string, err error, host string) Result {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		st := TempFail
		if se.Code >= 500 {
			st = PermFail
		}
		return allFail(rcpts, st, se.Code, enhanced(se), se.Message, host)
	}
	enh := "4.4.1" // no answer from host
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		enh = "4.4.2" // bad connection
	}
	return allFail(rcpts, TempFail, 0, enh, err.Error(), host)
}

func enhanced(se *smtp.SMTPError) string {
	ec := se.EnhancedCode
	if ec != (smtp.EnhancedCode{}) && ec != smtp.NoEnhancedCode && ec[0] > 0 {
		return fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2])
	}
	switch {
	case se.Code >= 500:
		return "5.0.0"
	case se.Code >= 400:
		return "4.0.0"
	default:
		return "2.0.0"
	}
}

// prefixConn replays bytes already read (a synthetic greeting and any
// buffered input) before reading from the connection.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (p *prefixConn) Read(b []byte) (int, error) { return p.r.Read(b) }

func (c *Client) dial(ctx context.Context, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, dur(c.DialTimeout, 30*time.Second))
	defer cancel()
	if c.Dial != nil {
		return c.Dial(ctx, "tcp", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

func (c *Client) tlsConfig(hop Hop) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.TLSConfig != nil {
		cfg = c.TLSConfig.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = hop.Host
	}
	if !hop.RequireTLS && !hop.ImplicitTLS {
		cfg.InsecureSkipVerify = true // opportunistic
	}
	return cfg
}

func textprotoErr(err error) error {
	var te *textproto.Error
	if errors.As(err, &te) {
		se := &smtp.SMTPError{Code: te.Code, Message: te.Msg}
		if parts := strings.SplitN(te.Msg, " ", 2); len(parts) == 2 {
			if ec, ok := parseEnhanced(parts[0]); ok {
				se.EnhancedCode, se.Message = ec, parts[1]
			}
		}
		return se
	}
	return err
}

func parseEnhanced(s string) (smtp.EnhancedCode, bool) {
	p := strings.Split(s, ".")
	if len(p) != 3 {
		return smtp.EnhancedCode{}, false
	}
	var ec smtp.EnhancedCode
	for i, x := range p {
		n, err := strconv.Atoi(x)
		if err != nil {
			return smtp.EnhancedCode{}, false
		}
		ec[i] = n
	}
	return ec, true
}

// open connects and negotiates TLS, returning a go-smtp client that has
// not yet said EHLO. tlsFailed reports a failed STARTTLS handshake.
func (c *Client) open(ctx context.Context, hop Hop, addr, helo string, tryTLS bool) (cl *smtp.Client, tlsState *tls.ConnectionState, tlsFailed bool, err error) {
	conn, err := c.dial(ctx, addr)
	if err != nil {
		return nil, nil, false, err
	}
	cmdTimeout := dur(c.CommandTimeout, 5*time.Minute)
	// Closing the connection aborts blocked reads when ctx ends; session
	// installs its own hook once it owns the client.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer func() {
		if err != nil {
			conn.Close()
		}
	}()
	if hop.ImplicitTLS {
		tc := tls.Client(conn, c.tlsConfig(hop))
		_ = conn.SetDeadline(time.Now().Add(cmdTimeout))
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, nil, false, fmt.Errorf("TLS handshake: %w", err)
		}
		_ = conn.SetDeadline(time.Time{})
		st := tc.ConnectionState()
		return c.newClient(tc, cmdTimeout), &st, false, nil
	}

	// Greeting and the first EHLO by hand: go-smtp cannot STARTTLS on a
	// client after a custom EHLO, so it takes over after the upgrade.
	_ = conn.SetDeadline(time.Now().Add(cmdTimeout))
	tp := textproto.NewConn(conn)
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, nil, false, textprotoErr(err)
	}
	if err := tp.PrintfLine("EHLO %s", helo); err != nil {
		return nil, nil, false, err
	}
	_, msg, err := tp.ReadResponse(250)
	starttls := false
	if err != nil {
		var te *textproto.Error
		if !errors.As(err, &te) || te.Code >= 400 && te.Code < 500 {
			return nil, nil, false, textprotoErr(err)
		}
		// 5xx to EHLO: go-smtp retries with HELO below.
	} else {
		for _, line := range strings.Split(msg, "\n")[1:] {
			if strings.EqualFold(strings.Fields(line + " x")[0], "STARTTLS") {
				starttls = true
			}
		}
	}
	if hop.RequireTLS && (!starttls || !tryTLS) {
		return nil, nil, false, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 10}, Message: "TLS required but the server does not offer STARTTLS"}
	}
	if starttls && tryTLS {
		if err := tp.PrintfLine("STARTTLS"); err != nil {
			return nil, nil, false, err
		}
		if _, _, err := tp.ReadResponse(220); err != nil {
			err = textprotoErr(err)
			var se *smtp.SMTPError
			if hop.RequireTLS || !errors.As(err, &se) {
				return nil, nil, false, err
			}
			// Refused STARTTLS: carry on in plain text.
		} else {
			if tp.R.Buffered() > 0 {
				return nil, nil, false, errors.New("data pipelined after STARTTLS (possible injection)")
			}
			tc := tls.Client(conn, c.tlsConfig(hop))
			if err := tc.HandshakeContext(ctx); err != nil {
				return nil, nil, true, fmt.Errorf("STARTTLS handshake: %w", err)
			}
			_ = conn.SetDeadline(time.Time{})
			st := tc.ConnectionState()
			pc := &prefixConn{Conn: tc, r: io.MultiReader(strings.NewReader("220 resumed after STARTTLS\r\n"), tc)}
			return c.newClient(pc, cmdTimeout), &st, false, nil
		}
	}
	_ = conn.SetDeadline(time.Time{})
	pc := &prefixConn{Conn: conn, r: io.MultiReader(strings.NewReader("220 resumed\r\n"), tp.R)}
	return c.newClient(pc, cmdTimeout), nil, false, nil
}

func (c *Client) newClient(conn net.Conn, cmdTimeout time.Duration) *smtp.Client {
	cl := smtp.NewClient(conn)
	cl.CommandTimeout = cmdTimeout
	cl.SubmissionTimeout = dur(c.DataTimeout, 10*time.Minute)
	return cl
}

func needsUTF8(a Attempt) bool {
	if !isASCII(a.MailFrom) {
		return true
	}
	for _, r := range a.Recipients {
		if !isASCII(r) {
			return true
		}
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// session runs one SMTP session. next reports that the next host should
// be tried (the host could not take responsibility for any recipient).
func (c *Client) session(ctx context.Context, hop Hop, addr string, a Attempt, tryTLS bool) (res sessionResult, next bool) {
	helo := c.helo(a)
	cl, st, tlsFailed, err := c.open(ctx, hop, addr, helo, tryTLS)
	if err != nil {
		r := fail(a.Recipients, err, hop.Host)
		r.Host, r.Addr = hop.Host, addr
		// A 5xx greeting or TLS refusal is about this host: try the next.
		return sessionResult{Result: r, tlsFailed: tlsFailed}, true
	}
	defer cl.Close()
	stop := context.AfterFunc(ctx, func() { cl.Close() })
	defer stop()

	base := Result{Host: hop.Host, Addr: addr}
	if st != nil {
		base.TLS, base.TLSVersion = true, tls.VersionName(st.Version)
	}
	withBase := func(r Result) sessionResult {
		r.Host, r.Addr, r.TLS, r.TLSVersion = base.Host, base.Addr, base.TLS, base.TLSVersion
		return sessionResult{Result: r}
	}

	if err := cl.Hello(helo); err != nil {
		return withBase(fail(a.Recipients, err, hop.Host)), true
	}
	if hop.Username != "" {
		if st == nil && hop.RequireTLS {
			return withBase(allFail(a.Recipients, TempFail, 0, "4.7.10", "refusing AUTH without TLS", hop.Host)), true
		}
		if err := cl.Auth(sasl.NewPlainClient("", hop.Username, hop.Password)); err != nil {
			// Credentials are configuration: retry after it is fixed.
			r := fail(a.Recipients, err, hop.Host)
			for i := range r.Recipients {
				r.Recipients[i].Status = TempFail
				r.Recipients[i].Message = "relay authentication failed: " + r.Recipients[i].Message
			}
			return withBase(r), false
		}
	}
	opts := &smtp.MailOptions{Size: int64(len(a.Data))}
	if needsUTF8(a) {
		if ok, _ := cl.Extension("SMTPUTF8"); !ok {
			return withBase(allFail(a.Recipients, PermFail, 0, "5.6.7", "recipient's server does not support SMTPUTF8 (internationalized addresses)", hop.Host)), false
		}
		opts.UTF8 = true
	}
	if max, ok := cl.MaxMessageSize(); ok && max > 0 && len(a.Data) > max {
		return withBase(allFail(a.Recipients, PermFail, 552, "5.3.4", fmt.Sprintf("message size %d exceeds the server's limit %d", len(a.Data), max), hop.Host)), false
	}
	if err := cl.Mail(a.MailFrom, opts); err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code >= 500 {
			return withBase(fail(a.Recipients, err, hop.Host)), false
		}
		return withBase(fail(a.Recipients, err, hop.Host)), true
	}

	out := Result{Recipients: make([]RecipientResult, len(a.Recipients))}
	var accepted []int
	for i, rcpt := range a.Recipients {
		err := cl.Rcpt(rcpt, nil)
		if err == nil {
			accepted = append(accepted, i)
			continue
		}
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			// Connection trouble: the rest are undecided, temp-fail them.
			r := fail(a.Recipients[i:], err, hop.Host)
			copy(out.Recipients[i:], r.Recipients)
			for _, j := range accepted {
				out.Recipients[j] = RecipientResult{Recipient: a.Recipients[j], Status: TempFail, Enhanced: "4.4.2", Message: "connection lost before DATA: " + err.Error(), Host: hop.Host}
			}
			return withBase(out), false
		}
		out.Recipients[i] = fail([]string{rcpt}, err, hop.Host).Recipients[0]
	}
	if len(accepted) == 0 {
		_ = cl.Quit()
		return withBase(out), false
	}
	setAccepted := func(r RecipientResult) {
		for _, j := range accepted {
			r.Recipient = a.Recipients[j]
			out.Recipients[j] = r
		}
	}
	w, err := cl.Data()
	if err != nil {
		setAccepted(fail([]string{""}, err, hop.Host).Recipients[0])
		return withBase(out), false
	}
	if _, err := w.Write(a.Data); err != nil {
		setAccepted(fail([]string{""}, err, hop.Host).Recipients[0])
		return withBase(out), false
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		setAccepted(fail([]string{""}, err, hop.Host).Recipients[0])
		return withBase(out), false
	}
	setAccepted(RecipientResult{Status: Delivered, Code: 250, Enhanced: "2.0.0", Message: resp.StatusText, Host: hop.Host})
	_ = cl.Quit()
	return withBase(out), false
}
