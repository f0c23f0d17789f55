// Package connlimit counts a server's open connections, all together and
// per client IP address, for its listener to refuse those over the limits.
package connlimit

import "sync"

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
