package agents

import (
	"testing"

	agentsv1 "github.com/mairust/mairust/proto/mairust/agents/v1"
)

// TestHubKeepsNewestSnapshot: a tenant's streams share the newest snapshot
// read, never an older one, and it goes with the tenant's last stream.
func TestHubKeepsNewestSnapshot(t *testing.T) {
	var h hub
	c1, end1 := h.subscribe("t1")
	_, end2 := h.subscribe("t1")
	if h.cached("t1", 1) != nil {
		t.Fatal("a snapshot before any was read")
	}
	v2 := &agentsv1.Snapshot{Version: 2}
	h.keep("t1", v2)
	h.keep("t1", &agentsv1.Snapshot{Version: 1}) // read earlier, finished later
	if got := h.cached("t1", 2); got != v2 {
		t.Fatalf("cached(2) = %v, want version 2", got)
	}
	if got := h.cached("t1", 1); got != v2 {
		t.Fatalf("cached(1) = %v, want the newer version 2", got)
	}
	if h.cached("t1", 3) != nil || h.cached("t2", 1) != nil {
		t.Fatal("a snapshot older than asked, or of another tenant")
	}
	h.wake("t1")
	select {
	case <-c1:
	default:
		t.Fatal("wake did not reach the tenant's stream")
	}
	end1()
	if h.cached("t1", 2) != v2 {
		t.Fatal("the snapshot went while a stream remains")
	}
	end2()
	h.keep("t1", v2) // after the last stream: not kept
	if _, end := h.subscribe("t1"); h.cached("t1", 1) != nil {
		end()
		t.Fatal("the snapshot outlived the tenant's streams")
	}
}
