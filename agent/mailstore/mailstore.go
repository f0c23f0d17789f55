// Package mailstore turns an accepted SMTP transaction into stored mail: the
// blob first (durable), then one statement that commits the blob row and a
// message row per recipient. It also runs the deletion lifecycle. It owns the
// messages and blobs tables; it does not parse SMTP or manage accounts.
package mailstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/agent/blobstore"
	"github.com/mairust/mairust/agent/mailparse"
)

// ErrBlobBusy means the content's blob is being removed by the cleanup job
// at this moment; the delivery should be retried later (4xx).
var ErrBlobBusy = errors.New("blob is being collected; retry later")

// Store delivers and deletes messages.
type Store struct {
	pool  *pgxpool.Pool
	blobs blobstore.Store
}

// New returns a Store writing metadata to pool and content to blobs.
func New(pool *pgxpool.Pool, blobs blobstore.Store) *Store {
	return &Store{pool: pool, blobs: blobs}
}

// Delivery is one accepted transaction: the raw message (with our Received
// header already in front), its envelope and its parsed header.
type Delivery struct {
	MailFrom   string
	Recipients []accounts.Recipient
	Data       []byte
	Header     mailparse.Header
}

var commitSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
	Namespace: "mairust",
	Subsystem: "mailstore",
	Name:      "commit_seconds",
	Help:      "Latency of the metadata commit of a delivery.",
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
	key := blobstore.Key(d.Data)
	size := int64(len(d.Data))
	if err := s.blobs.Put(ctx, key, size, bytes.NewReader(d.Data)); err != nil {
		return nil, fmt.Errorf("mailstore: store blob: %w", err)
	}
	tenants := make([]string, len(d.Recipients))
	users := make([]int64, len(d.Recipients))
	folders := make([]int64, len(d.Recipients))
	rcpts := make([]string, len(d.Recipients))
	for i, r := range d.Recipients {
		tenants[i], users[i], folders[i], rcpts[i] = r.TenantID, r.UserID, r.InboxID, r.Address
	}
	var date *time.Time
	if !d.Header.Date.IsZero() {
		date = &d.Header.Date
	}
	start := time.Now()
	// One statement, so one round trip and one atomic commit. The blob upsert
	// locks the blob row; if the cleanup job has marked it for deletion, no
	// message row is written and the caller answers 4xx.
	rows, err := s.pool.Query(ctx, `
		WITH b AS (
			INSERT INTO blobs(key, size) VALUES($1, $2)
			ON CONFLICT (key) DO UPDATE SET size = EXCLUDED.size
			RETURNING deleting)
		INSERT INTO messages(tenant_id, user_id, folder_id, blob_key, size, mail_from, rcpt_to,
			from_addr, to_addrs, cc_addrs, subject, date, message_id)
		SELECT r.t, r.u, r.f, $1, $2, $3, r.rcpt, $7, $8, $9, $10, $11, $12
		FROM unnest($4::uuid[], $5::bigint[], $6::bigint[], $13::text[]) AS r(t, u, f, rcpt), b
		WHERE NOT b.deleting
		RETURNING id`,
		key, size, d.MailFrom, tenants, users, folders,
		d.Header.From, d.Header.To, d.Header.Cc, d.Header.Subject, date, d.Header.MessageID, rcpts)
	if err != nil {
		return nil, fmt.Errorf("mailstore: commit: %w", err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("mailstore: commit: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mailstore: commit: %w", err)
	}
	commitSeconds.Observe(time.Since(start).Seconds())
	if len(ids) == 0 {
		return nil, ErrBlobBusy
	}
	return ids, nil
}
