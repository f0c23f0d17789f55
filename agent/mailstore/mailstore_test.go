package mailstore

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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

func TestMoveCallsJunkHookInItsTransaction(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	if _, err := f.store.pool.Exec(ctx, `INSERT INTO folders(tenant_id, user_id, name) VALUES($1, $2, 'Work')`, f.alice.TenantID, f.alice.UserID); err != nil {
		t.Fatal(err)
	}
	id := f.deliver(t, "to be moved\r\n", f.alice)[0]
	type call struct {
		user, id int64
		folder   string
		spam     bool
	}
	var calls []call
	var fail error
	f.store.OnJunkMove(func(ctx context.Context, tx pgx.Tx, user int64, m Message, spam bool) error {
		// The hook sees the move, uncommitted, through tx.
		var folder string
		if err := tx.QueryRow(ctx, `SELECT f.name FROM messages m JOIN folders f ON f.id = m.folder_id WHERE m.id = $1`, m.ID).Scan(&folder); err != nil {
			return err
		}
		calls = append(calls, call{user, m.ID, folder, spam})
		return fail
	})
	for _, step := range []struct {
		folder string
		want   []call
	}{
		{"Work", nil},
		{"Junk", []call{{f.alice.UserID, id, "Junk", true}}},
		{"Junk", nil},
		{"inbox", []call{{f.alice.UserID, id, "INBOX", false}}},
		{"Trash", nil},
		{"Junk", []call{{f.alice.UserID, id, "Junk", true}}},
		{"Work", []call{{f.alice.UserID, id, "Work", false}}},
	} {
		calls = nil
		m, err := f.store.Move(ctx, f.alice.UserID, id, step.folder)
		if err != nil || m.Folder != FolderName(step.folder) {
			t.Fatalf("move to %s: %+v %v", step.folder, m, err)
		}
		if !slices.Equal(calls, step.want) {
			t.Fatalf("move to %s: hook calls %+v, want %+v", step.folder, calls, step.want)
		}
	}

	// A failing hook rolls the move back.
	fail = errors.New("queue down")
	if _, err := f.store.Move(ctx, f.alice.UserID, id, "Junk"); !errors.Is(err, fail) {
		t.Fatalf("move with a failing hook: %v", err)
	}
	if m, err := f.store.Get(ctx, f.alice.UserID, id); err != nil || m.Folder != "Work" {
		t.Fatalf("after the failed move: %+v %v", m, err)
	}
	// Errors stay as they were, without calling the hook.
	calls = nil
	if _, err := f.store.Move(ctx, f.alice.UserID, id, "Nowhere"); !errors.Is(err, ErrNoFolder) {
		t.Errorf("move to a missing folder: %v", err)
	}
	if _, err := f.store.Move(ctx, f.bob.UserID, id, "Junk"); !errors.Is(err, ErrNotFound) {
		t.Errorf("bob moving alice's message: %v", err)
	}
	if len(calls) != 0 {
		t.Errorf("hook called on failed moves: %+v", calls)
	}
}

// WithOwners returns each live message with its owner, whoever that is,
// and leaves out the deleted and the missing.
func TestWithOwners(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	ids := f.deliver(t, "for both\r\n", f.alice, f.bob)
	gone := f.deliver(t, "deleted\r\n", f.alice)[0]
	if err := f.store.Delete(ctx, f.alice.UserID, gone); err != nil {
		t.Fatal(err)
	}
	got, err := f.store.WithOwners(ctx, append(ids, gone, 999999))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d messages, want 2: %+v", len(got), got)
	}
	for i, r := range []accounts.Recipient{f.alice, f.bob} {
		o := got[ids[i]]
		if o.ID != ids[i] || o.UserID != r.UserID || o.Address != r.Address || o.Folder != "INBOX" || o.MailFrom != "s@remote.test" {
			t.Errorf("message %d: %+v, want %s's", ids[i], o, r.Address)
		}
	}
}
