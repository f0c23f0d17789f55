package queue

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/agent/accounts/accountstest"
	"github.com/mairust/mairust/agent/blobstore"
	"github.com/mairust/mairust/agent/mailstore/storetest"
	"github.com/mairust/mairust/agent/outbound/deliver"
	"github.com/mairust/mairust/internal/jobs"
)

const original = "From: alice@example.test\r\nTo: bob@remote.test\r\nSubject: hello\r\nMessage-ID: <m1@example.test>\r\n\r\nline one\r\n.a line with a leading dot\r\n"

// received is a message a test server accepted.
type received struct {
	from string
	to   []string
	data string
}

// server is a loopback SMTP server; its nth answer to DATA is
// replies[min(n, len-1)] (nil accepts; no replies accept all).
type server struct {
	addr    string
	replies []error

	mu    sync.Mutex
	tries int
	got   []received
}

func reply(code int, enh smtp.EnhancedCode, text string) error {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: text}
}

var (
	busy   = reply(451, smtp.EnhancedCode{4, 3, 0}, "try again later")
	noUser = reply(550, smtp.EnhancedCode{5, 1, 1}, "no such user here")
)

func newServer(t *testing.T, replies ...error) *server {
	t.Helper()
	s := &server{replies: replies}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{s: s}, nil }))
	srv.Domain = "mx.test"
	srv.ReadTimeout, srv.WriteTimeout = 5*time.Second, 5*time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *server) received() (int, []received) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tries, append([]received(nil), s.got...)
}

type session struct {
	s    *server
	from string
	to   []string
}

func (ss *session) Reset()        { ss.from, ss.to = "", nil }
func (ss *session) Logout() error { return nil }
func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.from = from
	return nil
}
func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}
func (ss *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s := ss.s
	s.mu.Lock()
	defer s.mu.Unlock()
	var answer error
	if len(s.replies) > 0 {
		answer = s.replies[min(s.tries, len(s.replies)-1)]
	}
	s.tries++
	if answer == nil {
		s.got = append(s.got, received{from: ss.from, to: ss.to, data: string(b)})
	}
	return answer
}

// env is a queue on a fresh database (with the local user
// alice@example.test) and a River client working it.
type env struct {
	t      *testing.T
	pool   *pgxpool.Pool
	q      *Queue
	alice  accounts.Recipient
	blobs  blobstore.Store
	events <-chan *river.Event
}

// retryNow retries at once, for ever: the tests do not wait for the real
// schedule.
func retryNow(int, time.Time, time.Duration) (time.Time, bool) { return time.Now(), false }

// newEnv routes each domain of routes to its server; tune adjusts the
// configuration, which retries at once by default.
func newEnv(t *testing.T, routes map[string]*server, tune func(*Config)) *env {
	t.Helper()
	ctx := t.Context()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pool := accountstest.NewDatabase(t, "queue", "alice@example.test")
	if err := jobs.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	alice, err := accounts.New(pool).Lookup(ctx, "alice@example.test")
	if err != nil {
		t.Fatal(err)
	}
	store, blobs := storetest.New(t, pool)
	static := map[string][]string{}
	for d, s := range routes {
		static[d] = []string{s.addr}
	}
	cfg := Config{
		Client:    &deliver.Client{Router: &deliver.Router{Static: static}, Limiter: deliver.NewLimiter(2), CommandTimeout: 5 * time.Second},
		Store:     store,
		Hostname:  "agent.example.test",
		NextRetry: retryNow,
		Log:       log,
	}
	if tune != nil {
		tune(&cfg)
	}
	q, err := New(pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	workers := river.NewWorkers()
	q.Register(workers)
	client, err := jobs.Start(ctx, pool, workers, nil, jobs.Options{Queues: map[string]int{QueueName: 4}}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		client.Stop(ctx)
	})
	events, stop := client.Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed, river.EventKindJobCancelled)
	t.Cleanup(stop)
	return &env{t: t, pool: pool, q: q, alice: alice, blobs: blobs, events: events}
}

// enqueue queues m in a transaction of its own.
func (e *env) enqueue(m Message) int64 {
	e.t.Helper()
	var id int64
	err := pgx.BeginFunc(e.t.Context(), e.pool, func(tx pgx.Tx) error {
		var err error
		id, err = e.q.EnqueueTx(e.t.Context(), tx, m)
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

// fromAlice is original from the local user to rcpts.
func (e *env) fromAlice(rcpts ...string) Message {
	return Message{TenantID: e.alice.TenantID, UserID: e.alice.UserID, MailFrom: "alice@example.test", Recipients: rcpts, Data: []byte(original)}
}

// wait waits for one job of each kind given (a kind as often as given)
// to complete; any other job, or a failed one, fails the test.
func (e *env) wait(kinds ...string) {
	e.t.Helper()
	want := map[string]int{}
	for _, k := range kinds {
		want[k]++
	}
	timeout := time.After(10 * time.Second)
	for left := len(kinds); left > 0; left-- {
		select {
		case ev := <-e.events:
			if ev.Kind != river.EventKindJobCompleted || want[ev.Job.Kind] == 0 {
				e.t.Fatalf("job %s: %s %v; waiting for %v", ev.Job.Kind, ev.Kind, ev.Job.Errors, want)
			}
			want[ev.Job.Kind]--
		case <-timeout:
			e.t.Fatalf("jobs not done within 10 s: still waiting for %v", want)
		}
	}
}

func (e *env) status(id int64) Status {
	e.t.Helper()
	s, err := e.q.Status(e.t.Context(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) log(userID int64) []LogEntry {
	e.t.Helper()
	l, err := e.q.Log(e.t.Context(), e.alice.TenantID, userID, 0, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	return l
}

func (e *env) count(query string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.pool.QueryRow(e.t.Context(), query, args...).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// inbox returns the messages in alice's INBOX.
func (e *env) inbox() []string {
	e.t.Helper()
	rows, err := e.pool.Query(e.t.Context(), `SELECT blob_key FROM messages WHERE folder_id = $1 ORDER BY id`, e.alice.InboxID)
	if err != nil {
		e.t.Fatal(err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, k := range keys {
		r, err := e.blobs.Get(e.t.Context(), k)
		if err != nil {
			e.t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// states returns each log entry's recipient, status and code, in order.
func states(l []LogEntry) []string {
	var out []string
	for _, e := range l {
		out = append(out, e.Recipient+" "+e.Status+" "+e.Enhanced)
	}
	return out
}

func TestDeliver(t *testing.T) {
	s := newServer(t)
	e := newEnv(t, map[string]*server{"remote.test": s}, nil)
	id := e.enqueue(e.fromAlice("bob@Remote.Test"))
	e.wait("outbound_deliver")

	tries, got := s.received()
	if tries != 1 || len(got) != 1 || got[0].from != "alice@example.test" || strings.Join(got[0].to, ",") != "bob@remote.test" || got[0].data != original {
		t.Fatalf("server got %d tries, %+v", tries, got)
	}
	st := e.status(id)
	if st.State != "delivered" || st.TenantID != e.alice.TenantID || st.UserID != e.alice.UserID || st.Size != int64(len(original)) ||
		len(st.Recipients) != 1 || st.Recipients[0].State != "delivered" || st.Recipients[0].Attempts != 1 || st.Recipients[0].Code != 250 {
		t.Fatalf("status %+v", st)
	}
	l := e.log(0)
	if len(l) != 1 || l[0].QueueID != id || l[0].Status != "delivered" || l[0].Code != 250 || l[0].Host != "127.0.0.1" || l[0].UserID != e.alice.UserID || l[0].TLS {
		t.Fatalf("log %+v", l)
	}
	if l := e.log(e.alice.UserID); len(l) != 1 {
		t.Fatalf("alice's log %+v", l)
	}
	if l := e.log(e.alice.UserID + 1); len(l) != 0 {
		t.Fatalf("another user's log %+v", l)
	}
	if n := e.count(`SELECT count(*) FROM outbound_queue WHERE data IS NOT NULL`); n != 0 {
		t.Fatal("the message's bytes are kept after its delivery")
	}
	if _, err := e.q.Status(t.Context(), id+1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("status of no message: %v", err)
	}
}

// PurgeBefore deletes old log rows and finished messages, and keeps what
// is recent or still queued.
func TestPurgeBefore(t *testing.T) {
	later := func(int, time.Time, time.Duration) (time.Time, bool) { return time.Now().Add(time.Hour), false }
	e := newEnv(t, map[string]*server{"remote.test": newServer(t), "slow.test": newServer(t, busy)},
		func(c *Config) { c.NextRetry = later })
	done := e.enqueue(e.fromAlice("bob@remote.test"))
	e.wait("outbound_deliver")
	recent := e.enqueue(e.fromAlice("carol@remote.test"))
	e.wait("outbound_deliver")
	waiting := e.enqueue(e.fromAlice("dave@slow.test")) // deferred for an hour: stays queued
	e.wait("outbound_deliver")
	old := time.Now().Add(-40 * 24 * time.Hour)
	for _, id := range []int64{done, waiting} {
		if _, err := e.pool.Exec(t.Context(), `UPDATE outbound_queue SET created_at = $2 WHERE id = $1`, id, old); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.pool.Exec(t.Context(), `UPDATE outbound_delivery_log SET at = $2 WHERE queue_id = $1`, done, old); err != nil {
		t.Fatal(err)
	}
	n, err := e.q.PurgeBefore(t.Context(), time.Now().Add(-30*24*time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("purged %d rows, %v; want 2 (the old log row and the old delivered message)", n, err)
	}
	if _, err := e.q.Status(t.Context(), done); !errors.Is(err, ErrNotFound) {
		t.Errorf("the old delivered message: %v", err)
	}
	for _, id := range []int64{recent, waiting} {
		if _, err := e.q.Status(t.Context(), id); err != nil {
			t.Errorf("message %d: %v", id, err)
		}
	}
	if l := e.log(0); len(l) != 2 || l[0].QueueID != waiting || l[1].QueueID != recent {
		t.Errorf("log after the purge %+v; want the recent attempts only", l)
	}
}

func TestRetryThenDeliver(t *testing.T) {
	s := newServer(t, busy, nil)
	e := newEnv(t, map[string]*server{"remote.test": s}, nil)
	id := e.enqueue(e.fromAlice("bob@remote.test"))
	e.wait("outbound_deliver", "outbound_deliver")

	if tries, got := s.received(); tries != 2 || len(got) != 1 || got[0].data != original {
		t.Fatalf("server got %d tries, %+v", tries, got)
	}
	if st := e.status(id); st.State != "delivered" || st.Recipients[0].Attempts != 2 || st.Recipients[0].NextAttemptAt != nil {
		t.Fatalf("status %+v", st)
	}
	l := e.log(0)
	if got := strings.Join(states(l), "; "); got != "bob@remote.test delivered 2.0.0; bob@remote.test deferred 4.3.0" {
		t.Fatalf("log: %s", got)
	}
	if l[1].Code != 451 || !strings.Contains(l[1].Text, "try again later") {
		t.Fatalf("deferral logged as %+v", l[1])
	}
	page, err := e.q.Log(t.Context(), e.alice.TenantID, 0, 1, 1)
	if err != nil || len(page) != 1 || page[0].ID != l[1].ID {
		t.Fatalf("second page of one: %+v, %v", page, err)
	}
}

func TestPermanentFailureBouncesToLocalSender(t *testing.T) {
	s := newServer(t, noUser)
	e := newEnv(t, map[string]*server{"remote.test": s, "one.test": newServer(t)}, nil)
	id := e.enqueue(e.fromAlice("bob@remote.test", "x@one.test"))
	e.wait("outbound_deliver", "outbound_deliver", "outbound_notice")

	st := e.status(id)
	if st.State != "partial" || st.Recipients[0].State != "failed" || st.Recipients[0].Attempts != 1 || st.Recipients[1].State != "delivered" {
		t.Fatalf("status %+v", st)
	}
	if tries, _ := s.received(); tries != 1 {
		t.Fatalf("%d tries, want 1", tries)
	}
	inbox := e.inbox()
	if len(inbox) != 1 {
		t.Fatalf("%d messages in the sender's INBOX, want the bounce", len(inbox))
	}
	for _, want := range []string{"multipart/report", "Final-Recipient: rfc822; bob@remote.test", "Status: 5.1.1", "550 5.1.1 no such user here", "Subject: hello"} {
		if !strings.Contains(inbox[0], want) {
			t.Fatalf("bounce lacks %q:\n%s", want, inbox[0])
		}
	}
	if strings.Contains(inbox[0], "x@one.test") {
		t.Fatalf("bounce names the delivered recipient:\n%s", inbox[0])
	}
	if n := e.count(`SELECT count(*) FROM messages WHERE folder_id = $1 AND mail_from = ''`, e.alice.InboxID); n != 1 {
		t.Fatal("the bounce is not stored with the null sender")
	}
}

func TestLifetimeExpiryBounces(t *testing.T) {
	s := newServer(t, busy)
	e := newEnv(t, map[string]*server{"remote.test": s}, func(c *Config) {
		c.Lifetime, c.NextRetry = time.Millisecond, nil // the real schedule: the first retry is past the lifetime
	})
	id := e.enqueue(e.fromAlice("bob@remote.test"))
	e.wait("outbound_deliver", "outbound_notice")

	st := e.status(id)
	if r := st.Recipients[0]; st.State != "failed" || r.State != "failed" || r.Code != 451 || r.Enhanced != "4.3.0" {
		t.Fatalf("status %+v", st)
	}
	inbox := e.inbox()
	if len(inbox) != 1 || !strings.Contains(inbox[0], "Status: 5.4.7") || !strings.Contains(inbox[0], "451 4.3.0 try again later") {
		t.Fatalf("bounce: %q", inbox)
	}
	if got := strings.Join(states(e.log(0)), "; "); got != "bob@remote.test failed 4.3.0" {
		t.Fatalf("log: %s", got)
	}
}

func TestDomainsAreIndependentJobs(t *testing.T) {
	one, two := newServer(t), newServer(t, busy, nil)
	e := newEnv(t, map[string]*server{"one.test": one, "two.test": two}, nil)
	id := e.enqueue(e.fromAlice("x@one.test", "y@two.test", "z@two.test", "y@two.test"))
	e.wait("outbound_deliver", "outbound_deliver", "outbound_deliver")

	if n := e.count(`SELECT count(DISTINCT args->>'domain') FROM river_job WHERE kind = 'outbound_deliver' AND (args->>'queue_id')::bigint = $1`, id); n != 2 {
		t.Fatalf("jobs for %d domains, want 2", n)
	}
	if tries, got := one.received(); tries != 1 || len(got) != 1 || strings.Join(got[0].to, ",") != "x@one.test" {
		t.Fatalf("one.test got %d tries, %+v", tries, got)
	}
	if tries, got := two.received(); tries != 2 || len(got) != 1 || strings.Join(got[0].to, ",") != "y@two.test,z@two.test" {
		t.Fatalf("two.test got %d tries, %+v", tries, got)
	}
	if st := e.status(id); st.State != "delivered" || len(st.Recipients) != 3 {
		t.Fatalf("status %+v", st)
	}
	if n := len(e.log(0)); n != 5 {
		t.Fatalf("%d log rows, want 1 for one.test and 2×2 for two.test", n)
	}
	if n := e.count(`SELECT count(*) FROM river_job WHERE queue <> $1`, QueueName); n != 0 {
		t.Fatalf("%d jobs outside the %s queue", n, QueueName)
	}
}

func TestBounceToRemoteSenderIsNotBounced(t *testing.T) {
	s := newServer(t, noUser)
	e := newEnv(t, map[string]*server{"remote.test": s, "elsewhere.test": s}, nil)
	m := e.fromAlice("bob@remote.test")
	m.UserID, m.MailFrom = 0, "carol@elsewhere.test"
	id := e.enqueue(m)
	// The message fails, its bounce is queued to carol and fails too.
	e.wait("outbound_deliver", "outbound_notice", "outbound_deliver")

	var bounceID int64
	var from, status string
	err := e.pool.QueryRow(t.Context(), `SELECT id, mail_from, status FROM outbound_queue WHERE id <> $1`, id).Scan(&bounceID, &from, &status)
	if err != nil || from != "" || status != "failed" {
		t.Fatalf("bounce message: %q %s, %v", from, status, err)
	}
	if st := e.status(bounceID); st.Recipients[0].Address != "carol@elsewhere.test" {
		t.Fatalf("bounce status %+v", st)
	}
	if _, got := s.received(); len(got) != 0 {
		t.Fatalf("server accepted %+v", got)
	}
	if n := e.count(`SELECT count(*) FROM outbound_queue`); n != 2 {
		t.Fatalf("%d queued messages, want the message and its one bounce", n)
	}
	if n := e.count(`SELECT count(*) FROM river_job WHERE state <> 'completed' OR queue <> $1`, QueueName); n != 0 {
		t.Fatalf("%d jobs left or outside the %s queue, want none", n, QueueName)
	}
	if n := len(e.inbox()); n != 0 {
		t.Fatalf("%d messages in alice's INBOX", n)
	}
}

func TestEnqueueRollsBackWithCaller(t *testing.T) {
	e := newEnv(t, nil, nil)
	ctx := t.Context()
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.q.EnqueueTx(ctx, tx, e.fromAlice("bob@remote.test", "carol@other.test")); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"outbound_queue", "outbound_queue_recipients", "river_job"} {
		if n := e.count(`SELECT count(*) FROM ` + table); n != 0 {
			t.Fatalf("%d rows in %s after the rollback", n, table)
		}
	}
}

func TestEnqueueRejects(t *testing.T) {
	e := newEnv(t, nil, nil)
	for _, tc := range []struct {
		name  string
		rcpts []string
		data  string
		want  string
	}{
		{"no recipients", nil, original, "without recipients"},
		{"no domain", []string{"bob@"}, original, "not an address"},
		{"no local part", []string{"@remote.test"}, original, "not an address"},
		{"space", []string{"bob smith@remote.test"}, original, "not an address"},
		{"empty message", []string{"bob@remote.test"}, "", "empty message"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := e.fromAlice(tc.rcpts...)
			m.Data = []byte(tc.data)
			err := pgx.BeginFunc(t.Context(), e.pool, func(tx pgx.Tx) error {
				_, err := e.q.EnqueueTx(t.Context(), tx, m)
				return err
			})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}
