// Package storetest gives tests a mail store over a given database and a
// fresh local blob directory, both closed when the test ends.
package storetest

import (
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mairust/mairust/agent/blobstore"
	"github.com/mairust/mairust/agent/mailstore"
)

// New returns a mail store writing metadata to pool and blobs to a
// temporary directory.
func New(t testing.TB, pool *pgxpool.Pool) (*mailstore.Store, *blobstore.Local) {
	t.Helper()
	blobs, err := blobstore.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := mailstore.New(pool, blobs)
	t.Cleanup(func() { store.Close(); blobs.Close() })
	return store, blobs
}
