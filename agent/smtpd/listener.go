package smtpd

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mairust/mairust/internal/clientip"
	"github.com/mairust/mairust/internal/connlimit"
)

// listener enforces the connection limits before the greeting: a client over
// its per-IP share, or any client when the server is full, gets 421 and is
// closed. It also tracks connections for the graceful shutdown.
type listener struct {
	net.Listener
	srv *Server

	limit connlimit.Counter
	mu    sync.Mutex
	conns map[*conn]struct{} // for the drain
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := clientip.Of(c.RemoteAddr())
		ok, full := l.limit.Acquire(ip, l.srv.cfg.MaxConnections, int(l.srv.maxPerIP.Load()))
		if ok {
			tc := &conn{Conn: c, l: l, ip: ip}
			l.mu.Lock()
			l.conns[tc] = struct{}{}
			l.mu.Unlock()
			sessionsActive.Inc()
			return tc, nil
		}
		reason := "too many connections from your address"
		if full {
			reason = "too many connections"
		}
		connectionsRefused.WithLabelValues(map[bool]string{true: "server_full", false: "per_ip"}[full]).Inc()
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("421 4.7.0 " + l.srv.cfg.Hostname + " " + reason + ", try again later\r\n"))
		c.Close()
	}
}

// drain makes idle connections end (421) and marks busy ones to end after
// their transaction.
func (l *listener) drain() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		c.draining.Store(true)
		if !c.busy.Load() {
			c.SetReadDeadline(time.Now())
		}
	}
}

func (l *listener) release(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.conns[c]; !ok {
		return
	}
	delete(l.conns, c)
	l.limit.Release(c.ip)
	sessionsActive.Dec()
}

// conn is an accepted connection. busy is true during a mail transaction;
// once draining, a read outside a transaction fails with a timeout, which
// go-smtp answers with 421 and a close.
type conn struct {
	net.Conn
	l        *listener
	ip       string
	busy     atomic.Bool
	draining atomic.Bool
	once     sync.Once
}

func (c *conn) Read(b []byte) (int, error) {
	if c.draining.Load() && !c.busy.Load() {
		return 0, errDraining
	}
	return c.Conn.Read(b)
}

func (c *conn) Close() error {
	c.once.Do(func() { c.l.release(c) })
	return c.Conn.Close()
}

// setBusy marks the start or end of a transaction.
func (c *conn) setBusy(b bool) {
	c.busy.Store(b)
	if !b && c.draining.Load() {
		c.SetReadDeadline(time.Now())
	}
}

// errDraining is a timeout, so that go-smtp closes the session with a 421.
var errDraining = drainErr{}

type drainErr struct{}

func (drainErr) Error() string   { return "server shutting down" }
func (drainErr) Timeout() bool   { return true }
func (drainErr) Temporary() bool { return true }
