package agents

import (
	"sync"

	agentsv1 "github.com/mairust/mairust/proto/mairust/agents/v1"
)

// hub wakes the config streams of a tenant, and keeps the newest snapshot
// of each tenant with streams, so that a change is read once for all of
// them. Each stream has a channel of capacity one: a wake-up while one is
// pending is coalesced with it, and a slow stream never blocks the others.
type hub struct {
	mu      sync.Mutex
	tenants map[string]*tenantStreams
}

// tenantStreams are the streams of one tenant.
type tenantStreams struct {
	streams map[chan struct{}]struct{}
	reading sync.Mutex         // held by the stream reading the snapshot
	snap    *agentsv1.Snapshot // the newest read; never modified (hub.mu)
}

// subscribe registers a stream of tenant; call the returned function when
// it ends.
func (h *hub) subscribe(tenant string) (<-chan struct{}, func()) {
	c := make(chan struct{}, 1)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.tenants == nil {
		h.tenants = map[string]*tenantStreams{}
	}
	t := h.tenants[tenant]
	if t == nil {
		t = &tenantStreams{streams: map[chan struct{}]struct{}{}}
		h.tenants[tenant] = t
	}
	t.streams[c] = struct{}{}
	return c, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(t.streams, c)
		if len(t.streams) == 0 {
			delete(h.tenants, tenant)
		}
	}
}

// wake wakes the streams of tenant.
func (h *hub) wake(tenant string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t := h.tenants[tenant]; t != nil {
		for c := range t.streams {
			poke(c)
		}
	}
}

// wakeAll wakes every stream.
func (h *hub) wakeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, t := range h.tenants {
		for c := range t.streams {
			poke(c)
		}
	}
}

func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// cached returns the kept snapshot of tenant when it is version or newer;
// the caller must not modify it.
func (h *hub) cached(tenant string, version int64) *agentsv1.Snapshot {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t := h.tenants[tenant]; t != nil && t.snap != nil && t.snap.Version >= version {
		return t.snap
	}
	return nil
}

// keep keeps snap as tenant's snapshot unless a newer one is kept.
func (h *hub) keep(tenant string, snap *agentsv1.Snapshot) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t := h.tenants[tenant]; t != nil && (t.snap == nil || t.snap.Version < snap.Version) {
		t.snap = snap
	}
}

// reader returns the lock that one stream of tenant (subscribed) holds
// while it reads the snapshot, for the others to wait and take it.
func (h *hub) reader(tenant string) *sync.Mutex {
	h.mu.Lock()
	defer h.mu.Unlock()
	return &h.tenants[tenant].reading
}
