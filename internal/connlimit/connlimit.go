// Package connlimit counts a server's open connections, all together and
// per client IP address, and refuses those over the limits at accept.
package connlimit

import (
	"net"
	"sync"
	"time"

	"github.com/mairust/mairust/internal/clientip"
)

// Counter is safe for concurrent use; the zero value is ready.
type Counter struct {
	mu    sync.Mutex
	open  int
	perIP map[string]int
}

// Acquire takes a slot for a connection from ip unless max connections are
// open or maxPerIP are open from ip; full reports that the server-wide
// limit refused it.
func (c *Counter) Acquire(ip string, max, maxPerIP int) (ok, full bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open >= max {
		return false, true
	}
	if c.perIP[ip] >= maxPerIP {
		return false, false
	}
	if c.perIP == nil {
		c.perIP = map[string]int{}
	}
	c.open++
	c.perIP[ip]++
	return true, false
}

// Release gives back a slot taken for ip.
func (c *Counter) Release(ip string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open--
	if c.perIP[ip]--; c.perIP[ip] <= 0 {
		delete(c.perIP, ip)
	}
}

// Listener hands out the connections within Counter's limits. A refused
// connection is sent Refusal's text (the protocol's reply before the
// greeting) and closed; an accepted one is a *Conn that gives its slot
// back when closed.
type Listener struct {
	net.Listener
	Counter *Counter
	Limits  func() (max, maxPerIP int)
	Refusal func(full bool) string // also where refusals are counted
	// Opened and Closed, if set, are called for each accepted connection.
	Opened, Closed func(*Conn)
}

// Accept implements net.Listener.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := clientip.Of(c.RemoteAddr())
		max, perIP := l.Limits()
		ok, full := l.Counter.Acquire(ip, max, perIP)
		if !ok {
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			c.Write([]byte(l.Refusal(full)))
			c.Close()
			continue
		}
		lc := &Conn{Conn: c, IP: ip, l: l}
		if l.Opened != nil {
			l.Opened(lc)
		}
		return lc, nil
	}
}

// Conn is an accepted connection holding a slot.
type Conn struct {
	net.Conn
	IP   string
	l    *Listener
	once sync.Once
}

// Close closes the connection and gives its slot back, once.
func (c *Conn) Close() error {
	c.once.Do(func() {
		c.l.Counter.Release(c.IP)
		if c.l.Closed != nil {
			c.l.Closed(c)
		}
	})
	return c.Conn.Close()
}
