package mailstore

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/agent/accounts/accountstest"
	"github.com/mairust/mairust/agent/blobstore"
	"github.com/mairust/mairust/agent/mailparse"
)

type fixture struct {
	store      *Store
	blobs      *blobstore.Local
	alice, bob accounts.Recipient
}

func setup(t *testing.T) fixture {
	t.Helper()
	ctx := context.Background()
	pool := accountstest.NewDatabase(t, "mailstore", "alice@example.test", "bob@example.test")
	acc := accounts.New(pool)
	var f fixture
	var err error
	f.alice, _ = acc.Lookup(ctx, "alice@example.test")
	f.bob, _ = acc.Lookup(ctx, "bob@example.test")
	if f.blobs, err = blobstore.OpenLocal(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	f.store = New(pool, f.blobs)
	t.Cleanup(func() { f.store.Close(); f.blobs.Close() })
	return f
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func (f fixture) deliver(t *testing.T, data string, to ...accounts.Recipient) []int64 {
	t.Helper()
	ids, err := f.store.Deliver(context.Background(), Delivery{MailFrom: "s@remote.test", Recipients: to, Data: []byte(data), Header: mailparse.Header{Subject: "s"}})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func (f fixture) blobExists(key string) bool {
	r, err := f.blobs.Get(context.Background(), key)
	if err == nil {
		r.Close()
	}
	return err == nil
}

func TestDeletionLifecycle(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	shared := f.deliver(t, "shared content\r\n", f.alice, f.bob)
	key := blobstore.Key([]byte("shared content\r\n"))
	if len(shared) != 2 || !f.blobExists(key) {
		t.Fatalf("ids %v, blob stored %v", shared, f.blobExists(key))
	}
	// A user cannot delete another user's message.
	if err := f.store.Delete(ctx, f.bob.UserID, shared[0]); err == nil {
		t.Fatal("bob deleted alice's message")
	}
	if err := f.store.Delete(ctx, f.alice.UserID, shared[0]); err != nil {
		t.Fatal(err)
	}
	if err := f.store.Delete(ctx, f.alice.UserID, shared[0]); err == nil {
		t.Fatal("deleting twice succeeded")
	}
	// Within retention nothing goes.
	res, err := f.store.Purge(ctx, time.Now().Add(-time.Hour), time.Now().Add(-time.Hour), quiet())
	if err != nil || res != (PurgeResult{}) {
		t.Fatalf("purge within retention: %+v %v", res, err)
	}
	// Past retention alice's row goes, the blob stays for bob.
	res, err = f.store.Purge(ctx, time.Now().Add(time.Second), time.Now().Add(-time.Hour), quiet())
	if err != nil || res.Messages != 1 || res.Blobs != 0 || !f.blobExists(key) {
		t.Fatalf("purge of one reference: %+v %v, blob there %v", res, err, f.blobExists(key))
	}
	// With its last reference gone, the blob goes too.
	f.store.Delete(ctx, f.bob.UserID, shared[1])
	res, err = f.store.Purge(ctx, time.Now().Add(time.Second), time.Now().Add(-time.Hour), quiet())
	if err != nil || res.Messages != 1 || res.Blobs != 1 || f.blobExists(key) {
		t.Fatalf("purge of last reference: %+v %v, blob there %v", res, err, f.blobExists(key))
	}
	// The same content can be delivered again afterwards.
	f.deliver(t, "shared content\r\n", f.bob)
	if !f.blobExists(key) {
		t.Fatal("redelivered blob missing")
	}
}

func TestDeliveryBacksOffWhileBlobIsCollected(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	data := []byte("being collected\r\n")
	key := blobstore.Key(data)
	f.store.pool.Exec(ctx, `INSERT INTO blobs(key, size, deleting) VALUES($1, $2, true)`, key, len(data))
	_, err := f.store.Deliver(ctx, Delivery{MailFrom: "s@x", Recipients: []accounts.Recipient{f.alice}, Data: data})
	if !errors.Is(err, ErrBlobBusy) {
		t.Fatalf("got %v, want ErrBlobBusy", err)
	}
	var n int
	f.store.pool.QueryRow(ctx, `SELECT count(*) FROM messages`).Scan(&n)
	if n != 0 {
		t.Fatalf("%d message rows written for a busy blob", n)
	}
	// The cleanup finishes the half-done collection.
	res, err := f.store.Purge(ctx, time.Now(), time.Now().Add(-time.Hour), quiet())
	if err != nil || res.Blobs != 1 {
		t.Fatalf("purge: %+v %v", res, err)
	}
	f.deliver(t, string(data), f.alice)
}
