package ratelimit

import (
	"context"
	"strconv"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	now := time.Unix(0, 0)
	l := New(3)
	l.mem.now = func() time.Time { return now }
	for i := 0; i < 3; i++ {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatalf("event %d refused within the burst", i)
		}
	}
	ok, wait := l.Allow("a")
	if ok || wait != 20*time.Second {
		t.Fatalf("4th event: ok=%v wait=%v, want refused with 20s", ok, wait)
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Fatal("another key shares the bucket")
	}
	now = now.Add(20 * time.Second)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("token not refilled after 20s")
	}
	l.SetLimit(0)
	for i := 0; i < 10; i++ {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatal("limit 0 must allow everything")
		}
	}
}

func TestLimitDecisionsInMemory(t *testing.T) {
	now := time.Unix(0, 0)
	m := NewMemory()
	m.now = func() time.Time { return now }
	l := Limit{PerMinute: 30, Burst: 3} // a token every 2s
	want := []Decision{
		{Allowed: true, Limit: 3, Remaining: 2, ResetAfter: 2 * time.Second},
		{Allowed: true, Limit: 3, Remaining: 1, ResetAfter: 4 * time.Second},
		{Allowed: true, Limit: 3, Remaining: 0, ResetAfter: 6 * time.Second},
		{Limit: 3, RetryAfter: 2 * time.Second, ResetAfter: 6 * time.Second},
	}
	for i, w := range want {
		if d, _ := m.Allow(context.Background(), "k", l); d != w {
			t.Fatalf("event %d: %+v, want %+v", i, d, w)
		}
	}
	now = now.Add(3 * time.Second) // one token back, half of the next
	if d, _ := m.Allow(context.Background(), "k", l); !d.Allowed || d.Remaining != 0 || d.ResetAfter != 5*time.Second {
		t.Fatalf("after 3s: %+v, want allowed, 0 remaining, full in 5s", d)
	}
	if d, _ := m.Allow(context.Background(), "k", l); d.Allowed || d.RetryAfter != time.Second {
		t.Fatalf("after 3s, 2nd event: %+v, want refused for 1s", d)
	}
}

func TestLimitMemoryEvictsFullBuckets(t *testing.T) {
	now := time.Unix(0, 0)
	m := NewMemory()
	m.now = func() time.Time { return now }
	l := Limit{PerMinute: 60}
	for i := range maxKeys {
		m.tat[strconv.Itoa(i)] = now.Add(time.Duration(i%2) * time.Second) // every other bucket not yet full
	}
	m.Allow(context.Background(), "new", l)
	if len(m.tat) != maxKeys/2+1 {
		t.Fatalf("%d buckets kept, want the %d not full and the new one", len(m.tat), maxKeys/2)
	}
}
