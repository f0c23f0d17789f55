package spamlearn

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/agent/accounts/accountstest"
	"github.com/mairust/mairust/agent/mailparse"
	"github.com/mairust/mairust/agent/mailstore"
	"github.com/mairust/mairust/agent/mailstore/storetest"
	"github.com/mairust/mairust/agent/spam"
	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/jobs"
	"github.com/mairust/mairust/internal/rspamdtest"
)

// TestMoveLearns moves a delivered message into Junk and out of it with the
// jobs running against a real rspamd, and reads the events recorded.
func TestMoveLearns(t *testing.T) {
	ctx := t.Context()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rs := rspamdtest.Start(t)
	pool := accountstest.NewDatabase(t, "spamlearn", "alice@example.test")
	if err := jobs.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	alice, err := accounts.New(pool).Lookup(ctx, "alice@example.test")
	if err != nil {
		t.Fatal(err)
	}
	store, blobs := storetest.New(t, pool)
	settings := config.Default().Spam
	settings.LearnURL, settings.Password = rs.ControllerURL, rspamdtest.Password
	scanner, err := spam.New(settings, log)
	if err != nil {
		t.Fatal(err)
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &Worker{Pool: pool, Store: store, Blobs: blobs, Scanner: scanner})
	client, err := jobs.Start(ctx, pool, workers, nil, jobs.Options{}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Stop(context.Background()) })
	done, stop := client.Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed, river.EventKindJobCancelled)
	defer stop()
	store.OnJunkMove(Enqueue(client, scanner))

	// rspamd's Bayes wants a body of some length.
	data := []byte("From: a@remote.test\r\nTo: alice@example.test\r\nSubject: offer\r\nDate: Mon, 02 Jan 2006 15:04:05 +0900\r\nMessage-ID: <offer@remote.test>\r\n\r\n" +
		strings.Repeat("cheap pharmacy discount pills online casino winner lottery prize claim bitcoin wallet ", 3) + "\r\n")
	ids, err := store.Deliver(ctx, mailstore.Delivery{MailFrom: "a@remote.test", Recipients: []accounts.Recipient{alice}, Data: data, Header: mailparse.Header{Subject: "offer"}})
	if err != nil {
		t.Fatal(err)
	}
	id := ids[0]
	// move moves the message and, when want is not "", waits for its job
	// and checks the event it recorded.
	move := func(folder string, wantSpam bool, want string) {
		t.Helper()
		if _, err := store.Move(ctx, alice.UserID, id, folder); err != nil {
			t.Fatal(err)
		}
		if want == "" {
			return
		}
		// A failed attempt that River will retry is how the agent rides out
		// a passing refusal from rspamd: wait for the retry. River sets such
		// a job retryable, or straight back to available when the retry is
		// due within its scheduler interval; only a discarded or cancelled
		// job is not retried.
	wait:
		for {
			select {
			case ev := <-done:
				if ev.Kind == river.EventKindJobFailed && ev.Job.State != rivertype.JobStateDiscarded && ev.Job.State != rivertype.JobStateCancelled {
					t.Logf("job %s failed (%s), retried: %v", ev.Job.Kind, ev.Job.State, ev.Job.Errors)
					continue
				}
				if ev.Kind != river.EventKindJobCompleted || ev.Job.Kind != "spam_learn" {
					t.Fatalf("job %s %s: %v", ev.Job.Kind, ev.Kind, ev.Job.Errors)
				}
				break wait
			case <-time.After(2 * time.Minute):
				t.Fatal("the job did not complete within 2 minutes")
			}
		}
		var actor string
		var spamDetail bool
		var msgID int64
		var result string
		err := pool.QueryRow(ctx, `
			SELECT actor, (detail->>'message_id')::bigint, (detail->>'spam')::boolean, detail->>'result'
			FROM events WHERE kind = 'spam.learn' ORDER BY id DESC LIMIT 1`).Scan(&actor, &msgID, &spamDetail, &result)
		if err != nil || actor != "alice@example.test" || msgID != id || spamDetail != wantSpam || result != want {
			t.Fatalf("move to %s: event %s %d %v %q, %v; want spam %v, %q", folder, actor, msgID, spamDetail, result, err, wantSpam, want)
		}
	}
	move("Junk", true, "learned")
	// rspamd has the message: learning it again changes nothing.
	if err := scanner.Learner().Learn(ctx, true, data); !errors.Is(err, spam.ErrAlreadyLearned) {
		t.Fatalf("learning again after the job: %v", err)
	}
	move("INBOX", false, "learned")
	move("Junk", true, "learned")
	move("Junk", true, "") // no change of junk-ness: no job

	// Without learn_url nothing is enqueued.
	settings.LearnURL = ""
	if err := scanner.Apply(settings); err != nil {
		t.Fatal(err)
	}
	move("INBOX", false, "")
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'spam_learn'`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("%d learn jobs, %v; want 3", n, err)
	}
}

// TestWorkerRetriesOnRspamdError works a job against rspamd's controller
// with a wrong password: the error goes back to River and nothing is
// recorded.
func TestWorkerRetriesOnRspamdError(t *testing.T) {
	ctx := t.Context()
	rs := rspamdtest.Start(t)
	pool := accountstest.NewDatabase(t, "spamlearn", "alice@example.test")
	alice, err := accounts.New(pool).Lookup(ctx, "alice@example.test")
	if err != nil {
		t.Fatal(err)
	}
	store, blobs := storetest.New(t, pool)
	settings := config.Default().Spam
	settings.LearnURL, settings.Password = rs.ControllerURL, "wrong"
	scanner, err := spam.New(settings, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := store.Deliver(ctx, mailstore.Delivery{MailFrom: "a@remote.test", Recipients: []accounts.Recipient{alice}, Data: []byte("Subject: x\r\n\r\nx\r\n")})
	if err != nil {
		t.Fatal(err)
	}
	w := &Worker{Pool: pool, Store: store, Blobs: blobs, Scanner: scanner}
	err = w.Work(ctx, &river.Job[Args]{Args: Args{MessageID: ids[0], UserID: alice.UserID, Spam: true}})
	var re *spam.Error
	if !errors.As(err, &re) || re.Status != 403 && re.Status != 401 {
		t.Fatalf("learning with a wrong password: %v", err)
	}
	// A message deleted since the move: the job is cancelled.
	if err := store.Delete(ctx, alice.UserID, ids[0]); err != nil {
		t.Fatal(err)
	}
	err = w.Work(ctx, &river.Job[Args]{Args: Args{MessageID: ids[0], UserID: alice.UserID, Spam: true}})
	if !errors.Is(err, mailstore.ErrNotFound) {
		t.Fatalf("learning a deleted message: %v", err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE kind = 'spam.learn'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d events, %v; want none", n, err)
	}
}
