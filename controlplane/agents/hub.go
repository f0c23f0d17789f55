package agents

import "sync"

// hub wakes the config streams of a tenant. Each stream has a channel of
// capacity one: a wake-up while one is pending is coalesced with it, and
// a slow stream never blocks the others.
type hub struct {
	mu      sync.Mutex
	streams map[string]map[chan struct{}]struct{} // by tenant id
}

// subscribe registers a stream of tenant; call the returned function when
// it ends.
func (h *hub) subscribe(tenant string) (<-chan struct{}, func()) {
	c := make(chan struct{}, 1)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.streams == nil {
		h.streams = map[string]map[chan struct{}]struct{}{}
	}
	if h.streams[tenant] == nil {
		h.streams[tenant] = map[chan struct{}]struct{}{}
	}
	h.streams[tenant][c] = struct{}{}
	return c, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.streams[tenant], c)
		if len(h.streams[tenant]) == 0 {
			delete(h.streams, tenant)
		}
	}
}

// wake wakes the streams of tenant.
func (h *hub) wake(tenant string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.streams[tenant] {
		poke(c)
	}
}

// wakeAll wakes every stream.
func (h *hub) wakeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, cs := range h.streams {
		for c := range cs {
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
