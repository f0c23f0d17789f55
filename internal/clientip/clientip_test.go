package clientip

import (
	"net"
	"testing"
)

func TestOf(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 25}, "192.0.2.7"},
		{&net.TCPAddr{IP: net.ParseIP("::1"), Port: 993}, "::1"},
		{&net.UnixAddr{Name: "/run/x.sock", Net: "unix"}, "/run/x.sock"},
		{&net.IPAddr{IP: net.ParseIP("198.51.100.1")}, "198.51.100.1"},
	} {
		if got := Of(tc.addr); got != tc.want {
			t.Errorf("Of(%v) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}
