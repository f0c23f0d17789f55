package connlimit

import "testing"

func TestCounter(t *testing.T) {
	var c Counter
	for _, tc := range []struct {
		ip       string
		ok, full bool
	}{
		{"a", true, false}, {"a", true, false}, {"a", false, false}, // per IP: 2
		{"b", true, false}, {"c", false, true}, // server: 3
	} {
		if ok, full := c.Acquire(tc.ip, 3, 2); ok != tc.ok || full != tc.full {
			t.Fatalf("Acquire(%s) = %v %v, want %v %v", tc.ip, ok, full, tc.ok, tc.full)
		}
	}
	c.Release("a")
	if ok, _ := c.Acquire("c", 3, 2); !ok {
		t.Fatal("a released slot was not given again")
	}
	c.Release("a")
	c.Release("b")
	c.Release("c")
	if c.open != 0 || len(c.perIP) != 0 {
		t.Fatalf("after releasing all: open %d, per IP %v", c.open, c.perIP)
	}
}
