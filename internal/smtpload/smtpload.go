// Package smtpload is a load generator that sends real mail over SMTP and
// measures how fast the server acknowledges it.
package smtpload

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultTimeout is the deadline of a connection setup and of a transaction
// when Options.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// Options describe a run. Zero values take the defaults given.
type Options struct {
	Addr               string        // host:port of the SMTP server (required)
	Conns              int           // concurrent connections (50)
	Messages           int           // messages in total, shared by the connections (10000)
	Size               int           // bytes per message, headers included (10240)
	From               string        // envelope and header sender (bench@localhost)
	To                 []string      // recipients of every message (postmaster@localhost)
	StartTLS           bool          // require STARTTLS before sending
	Auth               string        // "user:password": AUTH PLAIN (after STARTTLS when required)
	InsecureSkipVerify bool          // accept any server certificate
	Helo               string        // EHLO name (localhost)
	Timeout            time.Duration // deadline of a connection setup and of each transaction (30s)
	Duration           time.Duration // stop after this long; 0 means no limit
	Progress           io.Writer     // receives a progress line about once a second; nil for none
}

func (o *Options) defaults() error {
	if o.Addr == "" {
		return errors.New("no server address")
	}
	if _, _, err := net.SplitHostPort(o.Addr); err != nil {
		return fmt.Errorf("server address: %w", err)
	}
	set := func(v *int, def int, name string) error {
		if *v == 0 {
			*v = def
		}
		if *v < 0 {
			return fmt.Errorf("%s must be positive", name)
		}
		return nil
	}
	if err := errors.Join(
		set(&o.Conns, 50, "connections"),
		set(&o.Messages, 10000, "messages"),
		set(&o.Size, 10<<10, "size"),
	); err != nil {
		return err
	}
	if o.From == "" {
		o.From = "bench@localhost"
	}
	if len(o.To) == 0 {
		o.To = []string{"postmaster@localhost"}
	}
	if o.Helo == "" {
		o.Helo = "localhost"
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	o.Conns = min(o.Conns, o.Messages)
	return nil
}

// Run sends o.Messages messages over o.Conns connections and reports the
// outcome. Each connection sends message after message in one session
// (no RSET) and reconnects after an error, except a rejection of the
// message content, which ends the transaction but not the session. Every
// attempt, a failed connection included, uses up one message.
//
// The latency of a message runs from sending MAIL FROM to the 250 reply
// after the final dot, so it includes the envelope round trips.
//
// Run stops early when ctx ends or o.Duration passes; messages in flight
// then are abandoned and counted neither as sent nor as failed. Run returns
// an error only for invalid options.
func Run(ctx context.Context, o Options) (Result, error) {
	if err := o.defaults(); err != nil {
		return Result{}, err
	}
	b, err := newBuilder(o.From, o.To, o.Messages, o.Size)
	if err != nil {
		return Result{}, err
	}
	runCtx := ctx
	if o.Duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}

	r := &runner{o: o, b: b, failures: map[Failure]int{}}
	start := time.Now()
	stopProgress := r.progress(start)
	var wg sync.WaitGroup
	lats := make([][]time.Duration, o.Conns)
	for i := range lats {
		wg.Go(func() { lats[i] = r.worker(runCtx) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	stopProgress()

	res := Result{
		Addr:     o.Addr,
		Conns:    o.Conns,
		Size:     o.Size,
		Messages: o.Messages,
		OK:       int(r.ok.Load()),
		Failed:   int(r.failed.Load()),
		Bytes:    r.ok.Load() * int64(o.Size),
		Elapsed:  elapsed,
	}
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	res.Latency = summarize(all)
	for f, n := range r.failures {
		f.Count = n
		res.Failures = append(res.Failures, f)
	}
	sortFailures(res.Failures)
	if res.OK+res.Failed < res.Messages {
		res.Stopped = "duration"
		if ctx.Err() != nil {
			res.Stopped = "interrupted"
		}
	}
	return res, nil
}

// runner is the state shared by the connections of one run.
type runner struct {
	o          Options
	b          *builder
	next       atomic.Int64 // messages claimed
	ok, failed atomic.Int64

	mu       sync.Mutex
	failures map[Failure]int // keyed with Count zero
}

// claim reserves the next message and returns its number, or false when
// all are taken.
func (r *runner) claim() (int, bool) {
	n := r.next.Add(1)
	return int(n), n <= int64(r.o.Messages)
}

func (r *runner) fail(stage string, err error) {
	f := classify(stage, err)
	r.mu.Lock()
	r.failures[f]++
	r.mu.Unlock()
	r.failed.Add(1)
}

// worker sends messages over one connection at a time until none are left
// or ctx ends, and returns the latencies of the accepted ones.
func (r *runner) worker(ctx context.Context) []time.Duration {
	var lats []time.Duration
	var s *session
	defer func() {
		if s != nil {
			s.close(ctx.Err() == nil)
		}
	}()
	for ctx.Err() == nil {
		n, ok := r.claim()
		if !ok {
			break
		}
		if s == nil {
			var err error
			if s, err = r.dial(ctx); err != nil {
				if ctx.Err() == nil {
					r.fail(stageConnect, err)
				}
				continue
			}
		}
		lat, stage, err := s.send(r.b, n, r.o)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			r.fail(stage, err)
			var te *textproto.Error
			if stage != stageEnd || !errors.As(err, &te) || te.Code == 421 {
				s.close(false)
				s = nil
			}
			continue
		}
		r.ok.Add(1)
		lats = append(lats, lat)
	}
	return lats
}

// Stages of a message at which it can fail.
const (
	stageConnect = "connect"
	stageMail    = "MAIL"
	stageRcpt    = "RCPT"
	stageData    = "DATA"
	stageEnd     = "end of data"
)

// session is one SMTP connection, greeted and ready for MAIL.
type session struct {
	conn    net.Conn
	c       *smtp.Client
	unwatch func() bool
	timeout time.Duration
}

// dial connects, reads the greeting, says EHLO and, if asked, starts TLS.
func (r *runner) dial(ctx context.Context) (*session, error) {
	d := net.Dialer{Timeout: r.o.Timeout}
	conn, err := d.DialContext(ctx, "tcp", r.o.Addr)
	if err != nil {
		return nil, err
	}
	s := &session{conn: conn, timeout: r.o.Timeout}
	// Closing the connection unblocks any I/O in flight when ctx ends.
	s.unwatch = context.AfterFunc(ctx, func() { conn.Close() })
	if err := s.setup(r.o); err != nil {
		s.close(false)
		return nil, err
	}
	return s, nil
}

func (s *session) setup(o Options) error {
	if err := s.conn.SetDeadline(time.Now().Add(s.timeout)); err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(o.Addr)
	c, err := smtp.NewClient(s.conn, host)
	if err != nil {
		return err
	}
	s.c = c
	if err := c.Hello(o.Helo); err != nil {
		return err
	}
	if o.StartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return errors.New("server does not offer STARTTLS")
		}
		cfg := &tls.Config{ServerName: host, InsecureSkipVerify: o.InsecureSkipVerify}
		if err := c.StartTLS(cfg); err != nil {
			return err
		}
	}
	if o.Auth != "" {
		user, pw, _ := strings.Cut(o.Auth, ":")
		return c.Auth(smtp.PlainAuth("", user, pw, host))
	}
	return nil
}

// send runs one transaction for message n and returns its latency, or the
// stage that failed and why.
func (s *session) send(b *builder, n int, o Options) (time.Duration, string, error) {
	start := time.Now()
	if err := s.conn.SetDeadline(start.Add(s.timeout)); err != nil {
		return 0, stageMail, err
	}
	if err := s.c.Mail(o.From); err != nil {
		return 0, stageMail, err
	}
	for _, to := range o.To {
		if err := s.c.Rcpt(to); err != nil {
			return 0, stageRcpt, err
		}
	}
	w, err := s.c.Data()
	if err != nil {
		return 0, stageData, err
	}
	if _, err := w.Write(b.header(n, start)); err != nil {
		return 0, stageEnd, err
	}
	if _, err := w.Write(b.body); err != nil {
		return 0, stageEnd, err
	}
	if err := w.Close(); err != nil {
		return 0, stageEnd, err
	}
	return time.Since(start), "", nil
}

// close ends the session, politely with QUIT if quit is set.
func (s *session) close(quit bool) {
	s.unwatch()
	if quit && s.c != nil {
		if s.conn.SetDeadline(time.Now().Add(s.timeout)) == nil && s.c.Quit() == nil {
			return
		}
	}
	s.conn.Close()
}

// progress prints a line to o.Progress about once a second until the
// returned function is called.
func (r *runner) progress(start time.Time) (stop func()) {
	if r.o.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		last, lastAt := int64(0), start
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				ok, failed := r.ok.Load(), r.failed.Load()
				rate := float64(ok+failed-last) / now.Sub(lastAt).Seconds()
				fmt.Fprintf(r.o.Progress, "sent %d/%d  ok %d  failed %d  %.0f msg/s\n",
					ok+failed, r.o.Messages, ok, failed, rate)
				last, lastAt = ok+failed, now
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}
