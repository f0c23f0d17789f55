package submission

import (
	"net"

	"github.com/mairust/mairust/internal/connlimit"
)

// limited is l handing the server the connections within the limits; the
// others get a 421 before the greeting and are closed. kind is the
// metrics label: starttls or implicit_tls.
func (s *Server) limited(l net.Listener, kind string) net.Listener {
	return &connlimit.Listener{Listener: l, Counter: &s.conns,
		Limits: func() (int, int) { return s.cfg.MaxConnections, s.cfg.MaxConnectionsPerIP },
		Refusal: func(full bool) string {
			reason, text := "per_ip", "Too many connections from your address"
			if full {
				reason, text = "server_full", "Too many connections"
			}
			connectionsRefused.WithLabelValues(reason).Inc()
			return "421 4.7.0 " + s.cfg.Hostname + " " + text + ", try again later\r\n"
		},
		Opened: func(c *connlimit.Conn) {
			sessionsTotal.WithLabelValues(kind).Inc()
			s.mu.Lock()
			s.open[c] = struct{}{}
			s.mu.Unlock()
			sessionsActive.Inc()
		},
		Closed: func(c *connlimit.Conn) {
			s.mu.Lock()
			delete(s.open, c)
			s.mu.Unlock()
			sessionsActive.Dec()
		},
	}
}

// closeAll closes every connection still open.
func (s *Server) closeAll() {
	s.mu.Lock()
	open := make([]*connlimit.Conn, 0, len(s.open))
	for c := range s.open {
		open = append(open, c)
	}
	s.mu.Unlock()
	for _, c := range open {
		c.Close()
	}
}
