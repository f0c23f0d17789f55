package policy

import (
	"context"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// refreshEvery is the period of the refresher: it re-reads the state
	// rows of the cached accounts, reloads the histories due and drops the
	// idle entries.
	refreshEvery = time.Second
	// stateTTL bounds the age of the state row an evaluation uses: an
	// evaluation re-reads an older one itself (when the refresher lags).
	stateTTL = 3 * time.Second
	// historyTTL bounds the age of an entry's history: the refresher
	// reloads that of an entry used since its load when half as old, an
	// evaluation reloads an older one itself, and an entry unused this long
	// is dropped.
	historyTTL = 30 * time.Second
	// maxAccounts bounds the entries; beyond it the least recently used
	// are dropped.
	maxAccounts = 10000
)

// entry is the engine's cache of one account: what its evaluations read,
// so that an evaluation normally makes no round trip to PostgreSQL, which
// stays the source of truth (an entry is loaded from it in one round trip,
// and a restarted engine rebuilds the same entries).
//
// The entry holds the state row, the counted messages of the last 24
// hours, the hourly counts of the last baseline_days (at least 7), the
// bounces, complaints, warnings and suspensions of the last 30 days, and
// every recipient the account has sent to. The evaluations, Status, Release,
// RecordFeedback and Purge of this engine update it as they update the
// tables.
//
// What other processes write is seen within bounds. A release made
// elsewhere (the CLI, the admin API of another engine) counts at the next
// evaluation: the state row of an account cached as suspended is read each
// time. Another change of the state (a suspension by another replica, an
// operator's UPDATE) counts within stateTTL, the refresher normally seeing
// it within refreshEvery; Status reads the row and updates the entry. The
// messages, recipients, feedback and events that other replicas record
// count within historyTTL, when the history is reloaded: until then each
// replica enforces the caps on its own counts plus those it last loaded, so
// replicas sharing an account can together exceed a cap by what the others
// let through in the last historyTTL.
//
// mu serializes everything done for the account in this engine, and so its
// evaluations: two concurrent submissions cannot both slip under a cap.
// Memory: about 16 bytes per message of the last 24 hours and 100 per
// recipient; at most maxAccounts entries (plus those whose records are
// still being written), each dropped historyTTL after its last use.
type entry struct {
	mu      sync.Mutex
	dead    bool      // dropped from the cache: look the account up again
	usedAt  time.Time // guarded by Engine.mu: real time of the last acquire
	loaded  bool
	lastSeq uint64 // the writer's sequence number of the account's last record

	row      row
	stateAt  time.Time // real time from which row is known to be current
	loadedAt time.Time // real time of the load of history
	history
}

// history is what an entry holds besides the state row. Times are
// microseconds since the Unix epoch, the precision of PostgreSQL.
type history struct {
	sent        []sent      // counted messages since 24 hours before the load, by time
	hourly      []hourCount // counted messages per clock hour since span before the load, by hour
	span        time.Duration
	bounces     []int64 // since 30 days before the load, sorted, as the three below
	complaints  []int64
	warnings    []int64
	suspensions []int64
	// rcpts maps every recipient the account has sent to to when this
	// engine last did (0: before the load).
	rcpts map[string]int64
	base  baseline
}

type sent struct {
	at       int64
	newRcpts int32
}

type hourCount struct {
	hour     int64
	messages int32
}

// baseline memoizes the median hourly count of the hours [from, to).
type baseline struct {
	from, to int64
	ok       bool
	v        *float64
}

// span is how far back the hourly counts must go: baseline_days, and the
// week's volume.
func (c *compiled) span() time.Duration {
	return time.Duration(max(c.BaselineDays, 7)) * 24 * time.Hour
}

// acquire returns the account's entry, locked; it is created empty when
// missing.
func (e *Engine) acquire(account string) *entry {
	for {
		e.mu.Lock()
		en := e.accounts[account]
		if en == nil {
			if len(e.accounts) >= e.maxAccounts {
				e.evictLocked(e.maxAccounts * 9 / 10)
			}
			en = &entry{}
			e.accounts[account] = en
		}
		en.usedAt = e.tick()
		e.mu.Unlock()
		en.mu.Lock()
		if !en.dead {
			return en
		}
		en.mu.Unlock()
	}
}

// evictLocked drops the entries unused for historyTTL, then the least
// recently used while more than keep remain; it skips those in use and
// those whose records are not all written, so that a reload sees them.
// e.mu is held.
func (e *Engine) evictLocked(keep int) {
	drop := func(account string, en *entry) {
		if en.mu.TryLock() {
			if e.w.written(en.lastSeq) {
				en.dead = true
				delete(e.accounts, account)
			}
			en.mu.Unlock()
		}
	}
	now := e.tick()
	for a, en := range e.accounts {
		if now.Sub(en.usedAt) > historyTTL {
			drop(a, en)
		}
	}
	if len(e.accounts) <= keep {
		return
	}
	byUse := slices.SortedFunc(maps.Keys(e.accounts), func(a, b string) int {
		return e.accounts[a].usedAt.Compare(e.accounts[b].usedAt)
	})
	for _, a := range byUse {
		if len(e.accounts) <= keep {
			return
		}
		drop(a, e.accounts[a])
	}
}

// ready loads the entry when empty, too old or short of history for c, and
// otherwise re-reads its state row when older than stateTTL or suspended
// (so that a release made elsewhere counts at once; only refusals pay).
func (e *Engine) ready(ctx context.Context, c *compiled, en *entry, account string) error {
	now := e.tick()
	if !en.loaded || now.Sub(en.loadedAt) > historyTTL || en.span < c.span() {
		return e.load(ctx, c, en, account)
	}
	if now.Sub(en.stateAt) > stateTTL || en.row.state == Suspended {
		var r row
		b := &pgx.Batch{}
		queueRow(b, account, &r, false)
		if err := e.pool.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		en.row, en.stateAt = r, now
	}
	return nil
}

// historySQL reads an entry's history: the counted messages since $2 (24
// hours ago), the hourly counts since $3 (span ago), the feedback and the
// warnings and suspensions since $4 (30 days ago), the recipients.
const historySQL = `SELECT m.at, m.new, h.hour, h.n, f.at, f.bounce, ev.at, ev.warn, r.rcpts
	FROM (SELECT array_agg(at ORDER BY at) AS at, array_agg(new_recipients ORDER BY at) AS new
		FROM outbound_messages WHERE account=$1 AND counted AND at > $2) m,
	(SELECT array_agg(hour ORDER BY hour) AS hour, array_agg(messages ORDER BY hour) AS n
		FROM outbound_hourly WHERE account=$1 AND hour >= $3) h,
	(SELECT array_agg(at ORDER BY at) AS at, array_agg(kind = 'bounce' ORDER BY at) AS bounce
		FROM outbound_feedback WHERE account=$1 AND at > $4) f,
	(SELECT array_agg(at ORDER BY at) AS at, array_agg(kind = 'warn' ORDER BY at) AS warn
		FROM outbound_events WHERE account=$1 AND kind IN ('warn', 'suspend') AND at > $4) ev,
	(SELECT array_agg(recipient) AS rcpts FROM outbound_recipients WHERE account=$1) r`

// load reads the entry's state row and history in one round trip, once the
// account's records are written. On error the entry is unchanged.
func (e *Engine) load(ctx context.Context, c *compiled, en *entry, account string) error {
	if err := e.w.wait(ctx, en.lastSeq); err != nil {
		return err
	}
	now, start := e.now(), e.tick()
	h := history{span: c.span(), rcpts: map[string]int64{}}
	var r row
	b := &pgx.Batch{}
	queueRow(b, account, &r, false)
	var sentAt, hours, feedbackAt, eventAt []time.Time
	var newRcpts, messages []int32
	var bounce, warn []bool
	var rcpts []string
	b.Queue(historySQL, account, now.Add(-24*time.Hour), now.Add(-h.span), now.Add(-30*24*time.Hour)).QueryRow(func(row pgx.Row) error {
		return row.Scan(&sentAt, &newRcpts, &hours, &messages, &feedbackAt, &bounce, &eventAt, &warn, &rcpts)
	})
	if err := e.pool.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	for i, t := range sentAt {
		h.sent = append(h.sent, sent{t.UnixMicro(), newRcpts[i]})
	}
	for i, t := range hours {
		h.hourly = append(h.hourly, hourCount{t.UnixMicro(), messages[i]})
	}
	for i, t := range feedbackAt {
		if bounce[i] {
			h.bounces = append(h.bounces, t.UnixMicro())
		} else {
			h.complaints = append(h.complaints, t.UnixMicro())
		}
	}
	for i, t := range eventAt {
		if warn[i] {
			h.warnings = append(h.warnings, t.UnixMicro())
		} else {
			h.suspensions = append(h.suspensions, t.UnixMicro())
		}
	}
	for _, r := range rcpts {
		h.rcpts[r] = 0
	}
	en.history, en.row, en.loaded = h, r, true
	en.loadedAt, en.stateAt = start, start
	return nil
}

// after returns the index of the first time in s after t (s sorted).
func after(s []int64, t int64) int {
	i, _ := slices.BinarySearch(s, t+1)
	return i
}

// figures computes what an evaluation at now reads, as the tables hold it.
// The rate windows (hour, day, a profile's) start no earlier than
// releasedAt, when an administrator vouched for the account.
func (h *history) figures(c *compiled, pf *profile, rcpts []string, now time.Time, releasedAt *time.Time) figures {
	ago := func(d time.Duration) int64 { return now.Add(-d).UnixMicro() }
	window := func(d time.Duration) int64 {
		t := ago(d)
		if releasedAt != nil {
			t = max(t, releasedAt.UnixMicro())
		}
		return t
	}
	since := func(t int64) []sent {
		return h.sent[sort.Search(len(h.sent), func(i int) bool { return h.sent[i].at > t }):]
	}
	var f figures
	last := since(window(time.Hour))
	f.hour = len(last)
	for _, m := range last {
		f.newHour += int(m.newRcpts)
	}
	if pf != nil {
		f.window = len(since(window(min(pf.rate.Window, time.Hour))))
	}
	f.day = len(since(window(24 * time.Hour)))
	for _, r := range rcpts {
		if _, ok := h.rcpts[r]; ok {
			f.known++
		}
	}
	f.baseline = h.median(now.Add(-time.Duration(c.BaselineDays)*24*time.Hour), now.Truncate(time.Hour))
	week := ago(7 * 24 * time.Hour)
	for _, hc := range h.hourly[h.hourIndex(week):] {
		f.history.Sent7d += int(hc.messages)
	}
	month := ago(30 * 24 * time.Hour)
	f.history.Bounces7d = len(h.bounces) - after(h.bounces, week)
	f.history.Complaints30d = len(h.complaints) - after(h.complaints, month)
	f.history.Warnings7d = len(h.warnings) - after(h.warnings, week)
	f.history.Suspensions30d = len(h.suspensions) - after(h.suspensions, month)
	return f
}

// hourIndex returns the index of the first hourly count at or after t.
func (h *history) hourIndex(t int64) int {
	return sort.Search(len(h.hourly), func(i int) bool { return h.hourly[i].hour >= t })
}

// median is percentile_cont(0.5) of the hourly counts above zero of the
// hours from from (rounded up to the hour) to before to; nil if none.
func (h *history) median(from, to time.Time) *float64 {
	lo := from.Truncate(time.Hour)
	if lo.Before(from) {
		lo = lo.Add(time.Hour)
	}
	b := baseline{from: lo.UnixMicro(), to: to.UnixMicro(), ok: true}
	if h.base.ok && h.base.from == b.from && h.base.to == b.to {
		return h.base.v
	}
	var v []float64
	for _, hc := range h.hourly[h.hourIndex(b.from):] {
		if hc.hour >= b.to {
			break
		}
		if hc.messages > 0 {
			v = append(v, float64(hc.messages))
		}
	}
	if len(v) > 0 {
		slices.Sort(v)
		pos := 0.5 * float64(len(v)-1)
		i := int(pos)
		j := min(i+1, len(v)-1)
		m := v[i] + (v[j]-v[i])*(pos-float64(i))
		b.v = &m
	}
	h.base = b
	return b.v
}

// record applies to the entry what the tables record of decision d: the
// message, its recipients and hourly count when sent, the warning or
// suspension; and forgets what no window reaches any longer.
func (en *entry) record(d Decision, rcpts []string, now time.Time) {
	t := now.UnixMicro()
	switch d.Action {
	case Warn:
		en.warnings = insertTime(en.warnings, t)
	case Suspend:
		en.suspensions = insertTime(en.suspensions, t)
	}
	if d.Sent() {
		i := sort.Search(len(en.sent), func(i int) bool { return en.sent[i].at > t })
		en.sent = slices.Insert(en.sent, i, sent{t, int32(d.newRecipients)})
		hour := now.Truncate(time.Hour).UnixMicro()
		if i := en.hourIndex(hour); i < len(en.hourly) && en.hourly[i].hour == hour {
			en.hourly[i].messages++
		} else {
			en.hourly = slices.Insert(en.hourly, i, hourCount{hour, 1})
		}
		if hour < en.base.to { // the clock stepped back
			en.base.ok = false
		}
		for _, r := range rcpts {
			en.rcpts[r] = t
		}
	}
	// An hour of slack, should the clock step back.
	month := now.Add(-31 * 24 * time.Hour).UnixMicro()
	en.forget(now.Add(-25*time.Hour).UnixMicro(), now.Add(-en.span-time.Hour).UnixMicro(), month, month)
}

// purge forgets what Purge deleted: the records before recCut, the events
// before statCut, and the recipients gone unless sent to since recCut.
func (h *history) purge(recCut, statCut int64, gone []string) {
	h.forget(recCut, recCut, recCut, statCut)
	for _, r := range gone {
		if h.rcpts[r] < recCut {
			delete(h.rcpts, r)
		}
	}
}

// forget drops the messages before sentCut, the hourly counts before
// hourCut, the feedback before feedbackCut and the events before eventCut.
func (h *history) forget(sentCut, hourCut, feedbackCut, eventCut int64) {
	h.sent = h.sent[sort.Search(len(h.sent), func(i int) bool { return h.sent[i].at >= sentCut }):]
	if i := h.hourIndex(hourCut); i > 0 {
		h.hourly = h.hourly[i:]
		h.base.ok = false
	}
	for _, s := range []*[]int64{&h.bounces, &h.complaints} {
		*s = (*s)[after(*s, feedbackCut-1):]
	}
	for _, s := range []*[]int64{&h.warnings, &h.suspensions} {
		*s = (*s)[after(*s, eventCut-1):]
	}
}

// insertTime inserts t into the sorted s.
func insertTime(s []int64, t int64) []int64 {
	return slices.Insert(s, after(s, t), t)
}

// refresh runs the refresher every period until Close.
func (e *Engine) refresh(every time.Duration) {
	defer close(e.stopped)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-e.stop
		cancel()
	}()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
		}
		// Errors are left for the next round; past the TTLs, evaluations
		// read for themselves.
		e.pollStates(ctx)
		e.reloadDue(ctx, every)
		e.mu.Lock()
		e.evictLocked(e.maxAccounts)
		e.mu.Unlock()
	}
}

// cached returns the cached entries by account.
func (e *Engine) cached() map[string]*entry {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.accounts)
}

// pollStates re-reads the state rows of the cached accounts.
func (e *Engine) pollStates(ctx context.Context) error {
	start := e.tick()
	all := e.cached()
	accounts := make([]string, 0, len(all))
	for a := range all {
		accounts = append(accounts, a)
	}
	for len(accounts) > 0 {
		chunk := accounts[:min(len(accounts), 1000)]
		accounts = accounts[len(chunk):]
		rows := map[string]row{}
		res, err := e.pool.Query(ctx, `SELECT account, `+rowColumns+` FROM outbound_accounts WHERE account = ANY($1)`, chunk)
		if err != nil {
			return err
		}
		for res.Next() {
			var a string
			var r row
			if err := r.scan(res, &a); err != nil {
				res.Close()
				return err
			}
			rows[a] = r
		}
		if err := res.Err(); err != nil {
			return err
		}
		for _, a := range chunk {
			en := all[a]
			en.mu.Lock()
			if en.loaded && en.stateAt.Before(start) {
				en.row, en.stateAt = rows[a], start
			}
			en.mu.Unlock()
		}
	}
	return nil
}

// reloadDue reloads the histories of the entries used since their load
// that are half historyTTL old, for at most budget; those in use wait for
// the next round.
func (e *Engine) reloadDue(ctx context.Context, budget time.Duration) {
	start := e.tick()
	c := e.settings.Load()
	for account, en := range e.cached() {
		if e.tick().Sub(start) > budget || ctx.Err() != nil {
			return
		}
		if !en.mu.TryLock() {
			continue
		}
		e.mu.Lock()
		used := en.usedAt
		e.mu.Unlock()
		if !en.dead && en.loaded && used.After(en.loadedAt) && start.Sub(en.loadedAt) > historyTTL/2 {
			e.load(ctx, c, en, account)
		}
		en.mu.Unlock()
	}
}
