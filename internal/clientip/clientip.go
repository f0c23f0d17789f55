// Package clientip names the client of a connection by its IP address, the
// key the servers' per-client limits count by.
package clientip

import "net"

// Of returns the IP address of a (a connection's remote address) as text.
func Of(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
