package mailstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mairust/mairust/agent/accounts"
)

// folderState returns a folder's counters and the UIDs of its messages.
func (f fixture) folderState(t *testing.T, user int64, name string) (Folder, []uint32) {
	t.Helper()
	ctx := context.Background()
	fo, err := f.store.Folder(ctx, user, name)
	if err != nil {
		t.Fatal(err)
	}
	uids, err := f.store.UIDs(ctx, user, fo.ID)
	if err != nil {
		t.Fatal(err)
	}
	return fo, uids
}

// TestUIDsAndTotals: deliveries take the folder's next UID, a move takes a
// new UID in the target folder, deletes and purges keep the totals right,
// and no UID is given twice.
func TestUIDsAndTotals(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	var ids []int64
	for i := range 3 {
		ids = append(ids, f.deliver(t, fmt.Sprintf("message %d", i), f.alice)...)
	}
	f.deliver(t, "for both", f.alice, f.bob)
	inbox, uids := f.folderState(t, f.alice.UserID, "INBOX")
	if inbox.Total != 4 || inbox.UIDNext != 5 || fmt.Sprint(uids) != "[1 2 3 4]" || inbox.UIDValidity == 0 {
		t.Fatalf("alice's INBOX: %+v %v", inbox, uids)
	}
	if bobs, u := f.folderState(t, f.bob.UserID, "INBOX"); bobs.Total != 1 || fmt.Sprint(u) != "[1]" || bobs.UIDValidity == inbox.UIDValidity {
		t.Fatalf("bob's INBOX: %+v %v; want its own UIDs and UIDVALIDITY", bobs, u)
	}
	m, err := f.store.Move(ctx, f.alice.UserID, ids[1], "Junk")
	if err != nil || m.UID != 1 {
		t.Fatalf("move: UID %d, %v; want 1 in Junk", m.UID, err)
	}
	if _, err := f.store.Move(ctx, f.alice.UserID, ids[1], "Junk"); err != nil {
		t.Fatal(err)
	}
	junk, ju := f.folderState(t, f.alice.UserID, "Junk")
	if junk.Total != 1 || fmt.Sprint(ju) != "[1]" {
		t.Fatalf("Junk after the move (and a move to where it already is): %+v %v", junk, ju)
	}
	if err := f.store.Delete(ctx, f.alice.UserID, ids[0]); err != nil {
		t.Fatal(err)
	}
	m, err = f.store.Move(ctx, f.alice.UserID, ids[1], "INBOX")
	if err != nil || m.UID != 5 {
		t.Fatalf("move back: UID %d, %v; want 5, never an old one", m.UID, err)
	}
	inbox, uids = f.folderState(t, f.alice.UserID, "INBOX")
	if inbox.Total != 3 || fmt.Sprint(uids) != "[3 4 5]" {
		t.Fatalf("INBOX after delete and move back: %+v %v", inbox, uids)
	}
	if _, err := f.store.Purge(ctx, time.Now().Add(time.Hour), time.Now().Add(-time.Hour), quiet()); err != nil {
		t.Fatal(err)
	}
	folders, err := f.store.Folders(ctx, f.alice.UserID)
	if err != nil {
		t.Fatal(err)
	}
	for _, fo := range folders {
		want := map[string]int64{"INBOX": 3}[fo.Name]
		if fo.Total != want {
			t.Errorf("%s after purge: total %d, want %d", fo.Name, fo.Total, want)
		}
	}
	msgs, err := f.store.ByUID(ctx, f.alice.UserID, inbox.ID, []uint32{1, 3, 5})
	if err != nil || len(msgs) != 2 || msgs[0].UID != 3 || msgs[1].ID != ids[1] {
		t.Fatalf("ByUID 1,3,5: %+v, %v; want 3 and 5", msgs, err)
	}
	// Another user's folder id gives nothing.
	if msgs, err := f.store.ByUID(ctx, f.bob.UserID, inbox.ID, []uint32{3}); err != nil || len(msgs) != 0 {
		t.Fatalf("bob reads alice's folder by id: %v, %v", msgs, err)
	}
}

// TestConcurrentMovesAndDeliveries moves messages both ways between two
// folders while mail arrives in both: the folder locks are taken in one
// order, so nothing deadlocks, and the totals match the rows.
func TestConcurrentMovesAndDeliveries(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	junk, _ := f.folderState(t, f.alice.UserID, "Junk")
	var ids []int64
	for i := range 20 {
		ids = append(ids, f.deliver(t, fmt.Sprintf("seed %d", i), f.alice)...)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				to := []string{"INBOX", "Junk"}[(g+i)%2]
				if _, err := f.store.Move(ctx, f.alice.UserID, ids[(g*5+i)%len(ids)], to); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				d := Delivery{MailFrom: "s@remote.test", Recipients: []accounts.Recipient{f.alice, f.alice}, Folders: []int64{junk.ID, f.alice.InboxID},
					Data: []byte(fmt.Sprintf("arrival %d %d", g, i))}
				if _, err := f.store.Deliver(ctx, d); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, name := range []string{"INBOX", "Junk"} {
		fo, uids := f.folderState(t, f.alice.UserID, name)
		if fo.Total != int64(len(uids)) || !slices.IsSorted(uids) || len(slices.Compact(slices.Clone(uids))) != len(uids) || uids[len(uids)-1] >= fo.UIDNext {
			t.Errorf("%s: total %d, next %d, %d UIDs", name, fo.Total, fo.UIDNext, len(uids))
		}
	}
}

// TestDeliverHookCommitsWithTheBatch: what the hook writes commits with the
// messages; a failing hook fails the delivery and stores nothing.
func TestDeliverHookCommitsWithTheBatch(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	pool := f.store.pool
	if _, err := pool.Exec(ctx, `CREATE TABLE hook_seen (message_id bigint PRIMARY KEY REFERENCES messages(id))`); err != nil {
		t.Fatal(err)
	}
	f.store.OnDeliver(func(ctx context.Context, tx pgx.Tx, ids []int64) error {
		_, err := tx.Exec(ctx, `INSERT INTO hook_seen SELECT unnest($1::bigint[])`, ids)
		return err
	})
	ids := f.deliver(t, "hooked", f.alice, f.bob)
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM hook_seen WHERE message_id = ANY($1)`, ids).Scan(&n); err != nil || n != 2 {
		t.Fatalf("hook rows for %v: %d, %v", ids, n, err)
	}
	f.store.OnDeliver(func(context.Context, pgx.Tx, []int64) error { return errors.New("hook down") })
	if _, err := f.store.Deliver(ctx, Delivery{MailFrom: "s@remote.test", Recipients: []accounts.Recipient{f.alice}, Data: []byte("refused")}); err == nil || !strings.Contains(err.Error(), "hook down") {
		t.Fatalf("delivery with a failing hook: %v", err)
	}
	f.store.OnDeliver(nil)
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM messages`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d messages after the failed delivery, %v; want the 2 from before", n, err)
	}
	f.deliver(t, "no hook", f.alice)
}
