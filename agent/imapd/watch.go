package imapd

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/mairust/mairust/agent/mailstore"
)

// watcher reads the counters (next UID, total) of every folder some session
// has selected, all in one query every interval, and bumps a folder's
// generation when they change. Mail delivered by any agent, or moved and
// deleted through the API, is seen this way within one interval, at the
// cost of one small query per interval however many sessions are idle.
type watcher struct {
	store *mailstore.Store
	every time.Duration
	log   *slog.Logger

	mu      sync.Mutex
	folders map[int64]*watched
	quit    chan struct{}
	done    chan struct{}
}

// watched is one folder's last seen counters and its sessions.
type watched struct {
	state mailstore.Folder
	known bool
	gen   uint64
	subs  map[*watch]struct{}
}

// watch is one session's interest in a folder.
type watch struct {
	w    *watcher
	id   int64
	wake chan struct{}
}

func newWatcher(store *mailstore.Store, every time.Duration, log *slog.Logger) *watcher {
	w := &watcher{store: store, every: every, log: log, folders: map[int64]*watched{}, quit: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

// add starts watching folder id for one session.
func (w *watcher) add(id int64) *watch {
	w.mu.Lock()
	defer w.mu.Unlock()
	f := w.folders[id]
	if f == nil {
		f = &watched{subs: map[*watch]struct{}{}}
		w.folders[id] = f
	}
	h := &watch{w: w, id: id, wake: make(chan struct{}, 1)}
	f.subs[h] = struct{}{}
	return h
}

// generation changes each time the folder's counters are seen to change.
func (h *watch) generation() uint64 {
	h.w.mu.Lock()
	defer h.w.mu.Unlock()
	return h.w.folders[h.id].gen
}

// changed receives when the generation moves on.
func (h *watch) changed() <-chan struct{} { return h.wake }

// close ends the session's interest; the folder is dropped with its last
// watch.
func (h *watch) close() {
	h.w.mu.Lock()
	defer h.w.mu.Unlock()
	f := h.w.folders[h.id]
	delete(f.subs, h)
	if len(f.subs) == 0 {
		delete(h.w.folders, h.id)
	}
}

func (w *watcher) run() {
	defer close(w.done)
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		select {
		case <-w.quit:
			return
		case <-t.C:
			w.check()
		}
	}
}

// check reads the watched folders' counters and wakes the sessions of those
// that changed. A folder seen for the first time counts as changed, so that
// a change between a session's first read and the watcher's is not missed.
func (w *watcher) check() {
	w.mu.Lock()
	ids := slices.Collect(maps.Keys(w.folders))
	w.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.every+5*time.Second)
	defer cancel()
	states, err := w.store.FolderStates(ctx, ids)
	if err != nil {
		w.log.Warn("imap: reading folder counters failed; retrying", "error", err)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, st := range states {
		f := w.folders[id]
		if f == nil || (f.known && f.state.UIDNext == st.UIDNext && f.state.Total == st.Total) {
			continue
		}
		f.state, f.known = st, true
		f.gen++
		for h := range f.subs {
			select {
			case h.wake <- struct{}{}:
			default:
			}
		}
	}
}

func (w *watcher) stop() {
	select {
	case <-w.quit:
	default:
		close(w.quit)
	}
	<-w.done
}
