// Package mailstore turns an accepted SMTP transaction into stored mail: the
// blob first (durable), then one statement that commits the blob row and a
// message row per recipient. It also runs the deletion lifecycle. It owns the
// messages and blobs tables; it does not parse SMTP or manage accounts.
package mailstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/agent/blobstore"
	"github.com/mairust/mairust/agent/mailparse"
	"github.com/mairust/mairust/agent/spam"
	"github.com/mairust/mairust/internal/groupcommit"
)

// ErrBlobBusy means the content's blob is being removed by the cleanup job
// at this moment; the delivery should be retried later (4xx).
var ErrBlobBusy = errors.New("blob is being collected; retry later")

// maxCommitBatch bounds the deliveries committed in one transaction.
const maxCommitBatch = 128

// commitTimeout bounds one batch commit.
const commitTimeout = 30 * time.Second

// Store delivers and deletes messages.
type Store struct {
	pool   *pgxpool.Pool
	blobs  blobstore.Store
	commit *groupcommit.Committer[*pending]
	// junkMove is called by Move; nil: nothing to do.
	junkMove JunkMoveHook
	// deliverHook is called in each batch's transaction; nil: none, and
	// the batch commits in one implicit transaction.
	deliverHook atomic.Pointer[DeliverHook]
}

// DeliverHook is called inside the transaction that commits a batch of
// deliveries, with the ids of every message the batch stores, to add what
// must commit with them (follow-up jobs). Its error rolls the batch back:
// every delivery in it fails (451 to the sender).
type DeliverHook func(ctx context.Context, tx pgx.Tx, ids []int64) error

// OnDeliver sets the hook (nil removes it); it may change while the store
// is in use.
func (s *Store) OnDeliver(hook DeliverHook) {
	if hook == nil {
		s.deliverHook.Store(nil)
		return
	}
	s.deliverHook.Store(&hook)
}

// New returns a Store writing metadata to pool and content to blobs. Close
// it to stop its committer.
func New(pool *pgxpool.Pool, blobs blobstore.Store) *Store {
	s := &Store{pool: pool, blobs: blobs}
	s.commit = groupcommit.New("metadata", 1, maxCommitBatch, s.commitBatch)
	return s
}

// Close stops the committer; deliveries after it fail.
func (s *Store) Close() { s.commit.Close() }

// Delivery is one accepted transaction: the raw message (with our Received
// header already in front), its envelope, its parsed header and the spam
// verdict it is stored with.
type Delivery struct {
	MailFrom   string
	Recipients []accounts.Recipient
	Folders    []int64 // target folder of each recipient; nil: their inboxes
	Data       []byte
	Header     mailparse.Header
	Spam       spam.Verdict // the zero Verdict: not scanned
}

// pending is a delivery whose blob is durable, waiting for its metadata
// commit; ids is filled by the commit.
type pending struct {
	d   *Delivery
	key string
	ids []int64
}

var commitSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
	Namespace: "mairust",
	Subsystem: "mailstore",
	Name:      "commit_seconds",
	Help:      "Latency of one metadata commit (a batch of deliveries).",
	Buckets:   []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
})

// Collectors returns the package's metrics for registration.
func Collectors() []prometheus.Collector { return []prometheus.Collector{commitSeconds} }

// Deliver stores d durably and returns the new message ids, one per
// recipient. When it returns nil everything is committed; on error nothing
// is visible (a blob may remain until the orphan sweep removes it).
func (s *Store) Deliver(ctx context.Context, d Delivery) ([]int64, error) {
	if len(d.Recipients) == 0 {
		return nil, errors.New("mailstore: delivery without recipients")
	}
	if d.Folders != nil && len(d.Folders) != len(d.Recipients) {
		return nil, fmt.Errorf("mailstore: %d folders for %d recipients", len(d.Folders), len(d.Recipients))
	}
	key := blobstore.Key(d.Data)
	if err := s.blobs.Put(ctx, key, int64(len(d.Data)), bytes.NewReader(d.Data)); err != nil {
		return nil, fmt.Errorf("mailstore: store blob: %w", err)
	}
	p := &pending{d: &d, key: key}
	if err := s.commit.Do(ctx, p); err != nil {
		return nil, fmt.Errorf("mailstore: commit: %w", err)
	}
	if len(p.ids) == 0 {
		return nil, ErrBlobBusy
	}
	return p.ids, nil
}

// insertDelivery is one delivery's statement. The blob upsert locks the blob
// row; if the cleanup job has marked it for deletion, no message row is
// written and the delivery gets ErrBlobBusy.
const insertDelivery = `
	WITH b AS (
		INSERT INTO blobs(key, size) VALUES($1, $2)
		ON CONFLICT (key) DO UPDATE SET size = EXCLUDED.size
		RETURNING deleting)
	INSERT INTO messages(tenant_id, user_id, folder_id, blob_key, size, mail_from, rcpt_to,
		from_addr, to_addrs, cc_addrs, subject, date, message_id,
		spam_score, spam_action, spam_symbols, scanned)
	SELECT r.t, r.u, r.f, $1, $2, $3, r.rcpt, $7, $8, $9, $10, $11, $12, $14, $15, $16::jsonb, $17
	FROM unnest($4::uuid[], $5::bigint[], $6::bigint[], $13::text[]) AS r(t, u, f, rcpt), b
	WHERE NOT b.deleting
	RETURNING id`

// commitBatch commits the metadata of a batch of deliveries in one implicit
// transaction and one round trip: all of them or none.
func (s *Store) commitBatch(batch []*pending) []error {
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	start := time.Now()
	// The batch locks every folder it delivers to first, in id order: a move
	// locks its two folders in that order too, so the two cannot deadlock.
	var b pgx.Batch
	var folderIDs []int64
	for _, p := range batch {
		for i, r := range p.d.Recipients {
			if p.d.Folders != nil {
				folderIDs = append(folderIDs, p.d.Folders[i])
			} else {
				folderIDs = append(folderIDs, r.InboxID)
			}
		}
	}
	b.Queue(`SELECT FROM folders WHERE id = ANY($1) ORDER BY id FOR UPDATE`, folderIDs)
	for _, p := range batch {
		d := p.d
		n := len(d.Recipients)
		tenants, users, rcpts := make([]string, n), make([]int64, n), make([]string, n)
		for i, r := range d.Recipients {
			tenants[i], users[i], rcpts[i] = r.TenantID, r.UserID, r.Address
		}
		folders := folderIDs[:n]
		folderIDs = folderIDs[n:]
		var date *time.Time
		if !d.Header.Date.IsZero() {
			date = &d.Header.Date
		}
		score, symbols := spamColumns(d.Spam)
		b.Queue(insertDelivery, p.key, int64(len(d.Data)), d.MailFrom, tenants, users, folders,
			d.Header.From, d.Header.To, d.Header.Cc, d.Header.Subject, date, d.Header.MessageID, rcpts,
			score, string(d.Spam.Action), symbols, d.Spam.Scanned)
	}
	err := s.runBatch(ctx, &b, batch)
	errs := make([]error, len(batch))
	if err != nil {
		for i := range errs {
			errs[i] = err
			batch[i].ids = nil
		}
		return errs
	}
	commitSeconds.Observe(time.Since(start).Seconds())
	return errs
}

// spamColumns returns the score (NULL without a verdict) and the symbols
// (a JSON object) of v as stored.
func spamColumns(v spam.Verdict) (*float64, string) {
	if v.Action == "" {
		return nil, "{}"
	}
	symbols, err := json.Marshal(v.Symbols)
	if err != nil || len(v.Symbols) == 0 {
		symbols = []byte("{}")
	}
	return &v.Score, string(symbols)
}

// runBatch sends b (the folder locks, then one statement per delivery) and
// reads each delivery's ids into batch; with a deliver hook, in an explicit
// transaction that the hook joins.
func (s *Store) runBatch(ctx context.Context, b *pgx.Batch, batch []*pending) error {
	hook := s.deliverHook.Load()
	if hook == nil {
		return readIDs(s.pool.SendBatch(ctx, b), batch)
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := readIDs(tx.SendBatch(ctx, b), batch); err != nil {
			return err
		}
		var ids []int64
		for _, p := range batch {
			ids = append(ids, p.ids...)
		}
		return (*hook)(ctx, tx, ids)
	})
}

// readIDs reads the answers to a batch: the folder locks, then each
// delivery's new message ids.
func readIDs(br pgx.BatchResults, batch []*pending) error {
	if _, err := br.Exec(); err != nil {
		br.Close()
		return err
	}
	for _, p := range batch {
		rows, err := br.Query()
		if err != nil {
			br.Close()
			return err
		}
		p.ids, err = pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			br.Close()
			return err
		}
	}
	return br.Close()
}
