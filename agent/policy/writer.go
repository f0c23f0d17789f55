package policy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

const (
	maxBatch   = 1000    // records written in one transaction
	maxBacklog = 100_000 // records waiting, beyond which Evaluate fails
	retryMin   = 100 * time.Millisecond
	retryMax   = 5 * time.Second
)

// write is what the tables record of one evaluation.
type write struct {
	account, tenant string
	at              time.Time
	rcpts           []string
	d               Decision
}

// writer records the allowed and refused evaluations in the background:
// as soon as the previous batch is committed, all that wait are written in
// one transaction (one round trip), committed with synchronous_commit off,
// in the order of add. A failed batch is retried until it is committed (or
// the writer is abandoned): should a connection break during a COMMIT that
// went through, its records are written twice.
type writer struct {
	pool   *pgxpool.Pool
	ctx    context.Context // canceled to abandon the records left
	cancel context.CancelFunc

	mu      sync.Mutex
	queue   []write
	added   uint64        // sequence number of the last record added
	done    uint64        // sequence number of the last record committed
	closed  bool          // add fails; run returns once queue is empty
	moved   chan struct{} // closed and replaced when done moves
	wake    chan struct{}
	stopped chan struct{} // closed when run returns
}

func newWriter(pool *pgxpool.Pool) *writer {
	w := &writer{pool: pool, moved: make(chan struct{}), wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	go w.run()
	return w
}

var errClosed = errors.New("policy: engine closed")

// usable returns why add would fail, if it would.
func (w *writer) usable() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.unusableLocked()
}

func (w *writer) unusableLocked() error {
	switch {
	case w.closed:
		return errClosed
	case len(w.queue) >= maxBacklog:
		return fmt.Errorf("policy: %d evaluations wait to be recorded (is PostgreSQL reachable?)", len(w.queue))
	}
	return nil
}

// add queues x and returns its sequence number.
func (w *writer) add(x write) (uint64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.unusableLocked(); err != nil {
		return 0, err
	}
	w.queue = append(w.queue, x)
	w.added++
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return w.added, nil
}

// last returns the sequence number of the last record added.
func (w *writer) last() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.added
}

// written reports whether the records up to seq are committed.
func (w *writer) written(seq uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.done >= seq
}

// wait returns when the records up to seq are committed.
func (w *writer) wait(ctx context.Context, seq uint64) error {
	for {
		w.mu.Lock()
		done, moved := w.done, w.moved
		w.mu.Unlock()
		if done >= seq {
			return nil
		}
		select {
		case <-moved:
		case <-w.stopped:
			return errors.New("policy: records abandoned")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// close writes what is queued; when ctx ends first, it is abandoned.
func (w *writer) close(ctx context.Context) error {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	select {
	case <-w.stopped:
		return nil
	case <-ctx.Done():
	}
	w.cancel()
	<-w.stopped
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := len(w.queue); n > 0 {
		return fmt.Errorf("policy: %d evaluations not recorded: %w", n, ctx.Err())
	}
	return nil
}

func (w *writer) run() {
	defer close(w.stopped)
	delay := retryMin
	for {
		w.mu.Lock()
		for len(w.queue) == 0 {
			if w.closed {
				w.mu.Unlock()
				return
			}
			w.mu.Unlock()
			<-w.wake
			w.mu.Lock()
		}
		batch := w.queue[:min(len(w.queue), maxBatch)]
		w.mu.Unlock()
		if err := w.commit(batch); err != nil {
			select {
			case <-time.After(delay):
			case <-w.ctx.Done():
				return
			}
			delay = min(2*delay, retryMax)
			continue
		}
		delay = retryMin
		w.mu.Lock()
		clear(batch) // appends reallocate the queue as it drains
		w.queue = w.queue[len(batch):]
		w.done += uint64(len(batch))
		close(w.moved)
		w.moved = make(chan struct{})
		w.mu.Unlock()
	}
}

func (w *writer) commit(ws []write) error {
	ctx, cancel := context.WithTimeout(w.ctx, 30*time.Second)
	defer cancel()
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue("SET LOCAL synchronous_commit = off")
	queueWrites(b, ws)
	b.Queue("COMMIT")
	return w.pool.SendBatch(ctx, b).Close()
}

// queueWrites queues the records of ws, one statement a table: the state
// rows missing; each message; the recipients (first_at, last_at) and the
// hourly counts of those sent; the daily statistics. Rows are written in
// key order, so that concurrent batches cannot deadlock.
func queueWrites(b *pgx.Batch, ws []write) {
	type key struct {
		account, k string
		t          time.Time
	}
	order := func(a, b key) int {
		return cmp.Or(cmp.Compare(a.account, b.account), cmp.Compare(a.k, b.k), a.t.Compare(b.t))
	}
	type span struct{ first, last time.Time }
	type daily struct {
		tenant                                              string
		messages, rcpts, newRcpts, warned, refused, suspend int32
	}
	accounts, rcpts, hourly, days := map[key]write{}, map[key]*span{}, map[key]int32{}, map[key]*daily{}
	var m struct {
		account, tenant, decision []string
		at                        []time.Time
		rcpts, newRcpts           []int32
		score                     []float64
		counted                   []bool
	}
	one := func(v bool) int32 {
		if v {
			return 1
		}
		return 0
	}
	for _, x := range ws {
		if _, ok := accounts[key{account: x.account}]; !ok {
			accounts[key{account: x.account}] = x
		}
		sent, newRcpts := x.d.Sent(), int32(0)
		if sent {
			newRcpts = int32(x.d.newRecipients)
			for _, r := range x.rcpts {
				k := key{account: x.account, k: r}
				if s := rcpts[k]; s != nil {
					s.last = x.at
				} else {
					rcpts[k] = &span{x.at, x.at}
				}
			}
			hourly[key{account: x.account, t: x.at.Truncate(time.Hour).UTC()}]++
		}
		m.account, m.tenant, m.at = append(m.account, x.account), append(m.tenant, x.tenant), append(m.at, x.at)
		m.rcpts, m.newRcpts = append(m.rcpts, int32(len(x.rcpts))), append(m.newRcpts, newRcpts)
		m.score, m.decision, m.counted = append(m.score, x.d.Score), append(m.decision, string(x.d.Action)), append(m.counted, sent)
		u := x.at.UTC()
		dk := key{account: x.account, t: time.Date(u.Year(), u.Month(), u.Day(), 0, 0, 0, 0, time.UTC)}
		d := days[dk]
		if d == nil {
			d = &daily{tenant: x.tenant}
			days[dk] = d
		}
		d.messages += one(sent)
		if sent {
			d.rcpts += int32(len(x.rcpts))
		}
		d.newRcpts += newRcpts
		d.warned += one(x.d.Action == Warn)
		d.refused += one(x.d.Action == Refuse || x.d.Action == Suspend)
		d.suspend += one(x.d.Action == Suspend)
	}
	var account, tenant []string
	var at []time.Time
	for _, k := range slices.SortedFunc(maps.Keys(accounts), order) {
		x := accounts[k]
		account, tenant, at = append(account, x.account), append(tenant, x.tenant), append(at, x.at)
	}
	b.Queue(`INSERT INTO outbound_accounts(account, tenant_id, updated_at)
		SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[]) ON CONFLICT (account) DO NOTHING`, account, tenant, at)
	if len(rcpts) > 0 {
		var account, rcpt []string
		var first, last []time.Time
		for _, k := range slices.SortedFunc(maps.Keys(rcpts), order) {
			account, rcpt = append(account, k.account), append(rcpt, k.k)
			first, last = append(first, rcpts[k].first), append(last, rcpts[k].last)
		}
		b.Queue(`INSERT INTO outbound_recipients(account, recipient, first_at, last_at)
			SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[])
			ON CONFLICT (account, recipient) DO UPDATE SET last_at = EXCLUDED.last_at`, account, rcpt, first, last)
	}
	if len(hourly) > 0 {
		var account []string
		var hour []time.Time
		var n []int32
		for _, k := range slices.SortedFunc(maps.Keys(hourly), order) {
			account, hour, n = append(account, k.account), append(hour, k.t), append(n, hourly[k])
		}
		b.Queue(`INSERT INTO outbound_hourly(account, hour, messages)
			SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::int[])
			ON CONFLICT (account, hour) DO UPDATE SET messages = outbound_hourly.messages + EXCLUDED.messages`, account, hour, n)
	}
	b.Queue(`INSERT INTO outbound_messages(account, tenant_id, at, recipients, new_recipients, score, decision, counted)
		SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::int[], $5::int[], $6::float8[], $7::text[], $8::bool[])`,
		m.account, m.tenant, m.at, m.rcpts, m.newRcpts, m.score, m.decision, m.counted)
	account, tenant = nil, nil
	var day []time.Time
	var msgs, nr, nn, warned, refused, suspended []int32
	for _, k := range slices.SortedFunc(maps.Keys(days), order) {
		d := days[k]
		account, tenant, day = append(account, k.account), append(tenant, d.tenant), append(day, k.t)
		msgs, nr, nn = append(msgs, d.messages), append(nr, d.rcpts), append(nn, d.newRcpts)
		warned, refused, suspended = append(warned, d.warned), append(refused, d.refused), append(suspended, d.suspend)
	}
	b.Queue(`INSERT INTO outbound_daily AS o (account, day, tenant_id, messages, recipients, new_recipients, warned, refused, suspended)
		SELECT * FROM unnest($1::text[], $2::date[], $3::text[], $4::int[], $5::int[], $6::int[], $7::int[], $8::int[], $9::int[])
		ON CONFLICT (account, day) DO UPDATE SET messages = o.messages + EXCLUDED.messages,
			recipients = o.recipients + EXCLUDED.recipients, new_recipients = o.new_recipients + EXCLUDED.new_recipients,
			warned = o.warned + EXCLUDED.warned, refused = o.refused + EXCLUDED.refused, suspended = o.suspended + EXCLUDED.suspended`,
		account, day, tenant, msgs, nr, nn, warned, refused, suspended)
}
