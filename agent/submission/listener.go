package submission

import (
	"net"
	"sync"
	"time"

	"github.com/mairust/mairust/internal/clientip"
)

// limitListener hands the server the connections within the limits; the
// others get a 421 before the greeting and are closed.
type limitListener struct {
	net.Listener
	srv  *Server
	kind string // metrics label: starttls or implicit_tls
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if tc := l.srv.admit(c); tc != nil {
			sessionsTotal.WithLabelValues(l.kind).Inc()
			return tc, nil
		}
	}
}

// admit takes a connection slot for c and tracks it, or refuses c.
func (s *Server) admit(c net.Conn) *trackedConn {
	ip := clientip.Of(c.RemoteAddr())
	ok, full := s.conns.Acquire(ip, s.cfg.MaxConnections, s.cfg.MaxConnectionsPerIP)
	if !ok {
		reason, text := "per_ip", "Too many connections from your address"
		if full {
			reason, text = "server_full", "Too many connections"
		}
		connectionsRefused.WithLabelValues(reason).Inc()
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("421 4.7.0 " + s.cfg.Hostname + " " + text + ", try again later\r\n"))
		c.Close()
		return nil
	}
	tc := &trackedConn{Conn: c, srv: s, ip: ip}
	s.mu.Lock()
	s.open[tc] = struct{}{}
	s.mu.Unlock()
	sessionsActive.Inc()
	return tc
}

// closeAll closes every connection still open.
func (s *Server) closeAll() {
	s.mu.Lock()
	open := make([]*trackedConn, 0, len(s.open))
	for c := range s.open {
		open = append(open, c)
	}
	s.mu.Unlock()
	for _, c := range open {
		c.Close()
	}
}

// trackedConn gives its slot back when closed.
type trackedConn struct {
	net.Conn
	srv  *Server
	ip   string
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		s := c.srv
		s.mu.Lock()
		delete(s.open, c)
		s.mu.Unlock()
		s.conns.Release(c.ip)
		sessionsActive.Dec()
	})
	return c.Conn.Close()
}
