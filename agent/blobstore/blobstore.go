// Package blobstore keeps message blobs: immutable objects named by the
// SHA-256 of their content, on local disk or in S3. It knows nothing of
// messages, users or the database; the mail store decides what to keep.
package blobstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrNotFound is returned by Get for a key that is not stored.
var ErrNotFound = errors.New("blob not found")

// Store is the one interface every backend implements.
type Store interface {
	// Put stores size bytes of body under key and returns only once they are
	// durable (fsynced, or confirmed by S3). Putting an existing key again
	// is allowed and leaves one object.
	Put(ctx context.Context, key string, size int64, body io.ReadSeeker) error
	// Get opens the object for reading; ErrNotFound when absent.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Delete removes the object; deleting an absent key is not an error.
	Delete(ctx context.Context, key string) error
	// Walk calls fn for every stored key with the time it was written.
	Walk(ctx context.Context, fn func(key string, written time.Time) error) error
	// Close releases the backend's resources; the store is unusable after.
	Close() error
}

// Key returns the content address of data.
func Key(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// ValidKey reports whether k has the form Key produces.
func ValidKey(k string) bool {
	if len(k) != sha256.Size*2 {
		return false
	}
	_, err := hex.DecodeString(k)
	return err == nil
}

// opSeconds measures each backend operation.
var opSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
	Namespace: "mairust",
	Subsystem: "blobstore",
	Name:      "operation_seconds",
	Help:      "Latency of blob store operations, by backend and operation.",
	Buckets:   []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
}, []string{"backend", "op"})

// Collectors returns the package's metrics for registration.
func Collectors() []prometheus.Collector { return []prometheus.Collector{opSeconds} }

// observe records the duration of one operation since start.
func observe(backend, op string, start time.Time) {
	opSeconds.WithLabelValues(backend, op).Observe(time.Since(start).Seconds())
}
