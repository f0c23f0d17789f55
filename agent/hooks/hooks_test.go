package hooks

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/agent/accounts/accountstest"
	"github.com/mairust/mairust/agent/blobstore"
	"github.com/mairust/mairust/agent/mailparse"
	"github.com/mairust/mairust/agent/mailstore"
	"github.com/mairust/mairust/agent/mailstore/storetest"
	"github.com/mairust/mairust/agent/plugins"
	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/jobs"
)

// world is a database with alice, a store, and a hook manager whose River
// client runs the hook jobs.
type world struct {
	t      testing.TB
	pool   *pgxpool.Pool
	store  *mailstore.Store
	blobs  blobstore.Store
	m      *Manager
	cfg    config.Plugins
	client *jobs.Client
	done   <-chan *river.Event
	alice  accounts.Recipient
}

func newWorld(t testing.TB, mutate func(*config.Plugins)) *world {
	t.Helper()
	ctx := context.Background()
	w := &world{t: t, pool: accountstest.NewDatabase(t, "hooks", "alice@example.test", "bob@example.test")}
	if err := jobs.Migrate(ctx, w.pool); err != nil {
		t.Fatal(err)
	}
	w.store, w.blobs = storetest.New(t, w.pool)
	// Plugins run as nobody (the tests run as root): the installed files
	// must be reachable, as under the agent's 0711 data_dir.
	base := t.TempDir()
	for _, d := range []string{base, filepath.Dir(base)} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	w.cfg = config.Default().Plugins
	w.cfg.Dir, w.cfg.WorkDir, w.cfg.LogDir = filepath.Join(base, "files"), filepath.Join(base, "work"), filepath.Join(base, "logs")
	w.cfg.RunAs = "nobody"
	w.cfg.RetryBackoff = "1s"
	if mutate != nil {
		mutate(&w.cfg)
	}
	var err error
	if w.alice, err = accounts.New(w.pool).Lookup(ctx, "alice@example.test"); err != nil {
		t.Fatal(err)
	}
	return w
}

// start loads the installed plugins and runs a River client with the hook
// workers; it is stopped when the test ends.
func (w *world) start() {
	w.t.Helper()
	ctx := context.Background()
	w.m = New(w.cfg, w.pool, w.store, w.blobs, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := w.m.Load(ctx); err != nil {
		w.t.Fatal(err)
	}
	workers := river.NewWorkers()
	w.m.Register(workers)
	client, err := jobs.Start(ctx, w.pool, workers, nil, jobs.Options{Queues: map[string]int{Queue: 4}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		w.t.Fatal(err)
	}
	w.client = client
	done, cancel := client.Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed, river.EventKindJobCancelled)
	w.done = done
	w.t.Cleanup(func() { cancel(); client.Stop(context.Background()) })
	w.m.Start(client)
}

// install installs a stdin plugin made of a manifest and a shell script.
func (w *world) install(id, perms, script string) {
	w.t.Helper()
	dir := w.t.TempDir()
	toml := fmt.Sprintf("id = %q\nname = %q\nversion = \"1.0.0\"\nkind = \"stdin\"\nhooks = [\"post_receive\"]\ncommand = \"run.sh\"\ntimeout = \"2s\"\n\n[permissions]\n%s\n", id, id, perms)
	if err := os.WriteFile(filepath.Join(dir, "plugin.toml"), []byte(toml), 0o644); err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		w.t.Fatal(err)
	}
	if _, err := plugins.Install(context.Background(), w.pool, dir, w.cfg.Dir, plugins.Options{}); err != nil {
		w.t.Fatal(err)
	}
}

// idle hooks the store to a manager whose River client only inserts: jobs
// are enqueued and nothing works them.
func (w *world) idle() {
	w.t.Helper()
	m := New(w.cfg, w.pool, w.store, w.blobs, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := m.Load(context.Background()); err != nil {
		w.t.Fatal(err)
	}
	insertOnly, err := river.NewClient(riverpgxv5.New(w.pool), &river.Config{})
	if err != nil {
		w.t.Fatal(err)
	}
	m.Start(insertOnly)
}

// deliver stores a message for alice.
func (w *world) deliver(subject, body string) int64 {
	w.t.Helper()
	raw := "From: a@remote.test\r\nTo: alice@example.test\r\nSubject: " + subject + "\r\n\r\n" + body + "\r\n"
	h, _ := mailparse.ParseHeader(strings.NewReader(raw))
	ids, err := w.store.Deliver(context.Background(), mailstore.Delivery{MailFrom: "a@remote.test", Recipients: []accounts.Recipient{w.alice}, Data: []byte(raw), Header: h})
	if err != nil {
		w.t.Fatal(err)
	}
	return ids[0]
}

// wait returns the next finished post_receive job: completed, cancelled, or
// failed for good (discarded); retries are waited through.
func (w *world) wait() *river.Event {
	w.t.Helper()
	for {
		select {
		case ev := <-w.done:
			if ev.Job.Kind != "post_receive" {
				continue
			}
			if ev.Kind == river.EventKindJobFailed && ev.Job.State != rivertype.JobStateDiscarded {
				continue
			}
			return ev
		case <-time.After(time.Minute):
			w.t.Fatal("no post_receive job finished within a minute")
		}
	}
}

func (w *world) tags(id int64) []string {
	w.t.Helper()
	var tags []string
	if err := w.pool.QueryRow(context.Background(), `SELECT coalesce(array_agg(tag ORDER BY tag), '{}') FROM message_tags WHERE message_id = $1`, id).Scan(&tags); err != nil {
		w.t.Fatal(err)
	}
	return tags
}

func TestExampleSubjectTagger(t *testing.T) {
	w := newWorld(t, nil)
	_, file, _, _ := runtime.Caller(0)
	example := filepath.Join(filepath.Dir(file), "..", "plugins", "examples", "subject-tagger")
	if _, err := plugins.Install(context.Background(), w.pool, example, w.cfg.Dir, plugins.Options{Settings: map[string]any{"tag": "bills"}}); err != nil {
		t.Fatal(err)
	}
	w.start()
	invoice := w.deliver("Your INVOICE for March", "pay")
	if ev := w.wait(); ev.Kind != river.EventKindJobCompleted {
		t.Fatalf("job: %s %v", ev.Kind, ev.Job.Errors)
	}
	other := w.deliver("lunch?", "noon")
	if ev := w.wait(); ev.Kind != river.EventKindJobCompleted {
		t.Fatalf("job: %s %v", ev.Kind, ev.Job.Errors)
	}
	if got := w.tags(invoice); fmt.Sprint(got) != "[bills]" {
		t.Errorf("invoice tags %v", got)
	}
	if got := w.tags(other); len(got) != 0 {
		t.Errorf("other tags %v", got)
	}
	var n int
	if err := w.pool.QueryRow(context.Background(), `SELECT count(*) FROM events WHERE kind = 'plugin.post_receive' AND actor = 'subject-tagger'`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d plugin events, %v", n, err)
	}
}

// TestPluginSeesOnlyWhatItMay: a plugin without body permission gets no body
// byte; the event it gets is written to its working directory.
func TestPluginSeesOnlyWhatItMay(t *testing.T) {
	w := newWorld(t, nil)
	w.install("peek", "read_headers = true", `cat > event.json; echo '{}'`)
	w.start()
	w.deliver("hello", "BODY-SECRET-MARKER")
	if ev := w.wait(); ev.Kind != river.EventKindJobCompleted {
		t.Fatalf("job: %s %v", ev.Kind, ev.Job.Errors)
	}
	data, err := os.ReadFile(filepath.Join(w.cfg.WorkDir, "peek", "event.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "BODY-SECRET-MARKER") || !strings.Contains(string(data), `"Subject","value":"hello"`) {
		t.Fatalf("event seen by a plugin with read_headers only: %s", data)
	}
}

// TestResultBeyondPermissionsRefused: tags without write_tags are not
// applied, and the job ends without retries.
func TestResultBeyondPermissionsRefused(t *testing.T) {
	w := newWorld(t, nil)
	w.install("greedy", "read_headers = true", `cat >/dev/null; echo '{"tags":["x"],"move_to":"Junk"}'`)
	w.start()
	id := w.deliver("hello", "body")
	ev := w.wait()
	if ev.Kind != river.EventKindJobCancelled || !strings.Contains(fmt.Sprint(ev.Job.Errors), "tags need write_tags") {
		t.Fatalf("job: %s %v", ev.Kind, ev.Job.Errors)
	}
	if got := w.tags(id); len(got) != 0 {
		t.Fatalf("tags applied anyway: %v", got)
	}
	m, err := w.store.Get(context.Background(), w.alice.UserID, id)
	if err != nil || m.Folder != "INBOX" {
		t.Fatalf("moved anyway: %+v, %v", m, err)
	}
}

// TestFailingPluginRetriesThenBreakerOpens: a crashing plugin is retried
// plugins.retries times, then permanent-failed; enough failures open its
// breaker and later jobs are skipped; an admin reset lets calls through.
func TestFailingPluginRetriesThenBreakerOpens(t *testing.T) {
	w := newWorld(t, func(c *config.Plugins) {
		c.Retries = 1
		c.BreakerFailures = 3
		c.BreakerCoolDown = time.Hour
	})
	w.install("crashy", "", `cat >/dev/null; echo boom >&2; exit 3`)
	w.start()
	w.deliver("one", "1")
	ev := w.wait()
	if ev.Kind != river.EventKindJobFailed || ev.Job.Attempt != 2 || !strings.Contains(fmt.Sprint(ev.Job.Errors), "boom") {
		t.Fatalf("first message: %s after %d attempts, %v; want discarded after 2", ev.Kind, ev.Job.Attempt, ev.Job.Errors)
	}
	w.deliver("two", "2") // third failure: the breaker opens
	if ev := w.wait(); ev.Kind != river.EventKindJobFailed && ev.Kind != river.EventKindJobCompleted {
		t.Fatalf("second message: %s", ev.Kind)
	}
	st := w.m.breakers.Status("crashy")
	if st.State != "open" {
		t.Fatalf("breaker after 3 failures: %+v", st)
	}
	w.deliver("three", "3")
	if ev := w.wait(); ev.Kind != river.EventKindJobCompleted || ev.Job.Attempt != 1 {
		t.Fatalf("while open: %s after %d attempts; want skipped (completed at once)", ev.Kind, ev.Job.Attempt)
	}
	// The second message's retry and the third message were skipped.
	if st := w.m.breakers.Status("crashy"); st.Skipped != 2 {
		t.Fatalf("skipped %d", st.Skipped)
	}
	w.m.ResetBreaker("crashy")
	if st := w.m.breakers.Status("crashy"); st.State != "closed" {
		t.Fatalf("after reset: %+v", st)
	}
	statuses, err := w.m.Statuses(context.Background())
	if err != nil || len(statuses) != 1 || statuses[0].Breaker.State != "closed" || !statuses[0].Enabled {
		t.Fatalf("statuses: %+v, %v", statuses, err)
	}
}

// TestJobsSurviveRestart: jobs enqueued while no worker runs (an agent
// stopped after the 250) run once when it starts again.
func TestJobsSurviveRestart(t *testing.T) {
	w := newWorld(t, nil)
	w.install("counter", "", `cat >/dev/null; echo x >> calls; echo '{}'`)
	ctx := context.Background()
	w.idle()
	for i := range 3 {
		w.deliver(fmt.Sprintf("m%d", i), "x")
	}
	var n int
	if err := w.pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'post_receive' AND state = 'available'`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("%d pending jobs, %v; want 3", n, err)
	}
	w.start()
	for range 3 {
		if ev := w.wait(); ev.Kind != river.EventKindJobCompleted {
			t.Fatalf("job: %s %v", ev.Kind, ev.Job.Errors)
		}
	}
	data, _ := os.ReadFile(filepath.Join(w.cfg.WorkDir, "counter", "calls"))
	if strings.Count(string(data), "x") != 3 {
		t.Fatalf("plugin calls: %q; want exactly 3", data)
	}
}

// TestBatchKeepsGoodResults: the messages of one delivery transaction are
// one job; a message whose call fails goes on alone (retried, then
// permanent-failed) while the others' results are applied.
func TestBatchKeepsGoodResults(t *testing.T) {
	w := newWorld(t, func(c *config.Plugins) { c.Retries = 1 })
	// Fails for bob, tags alice's message; counts its calls per user.
	w.install("picky", "read_headers = true\nwrite_tags = true",
		`ev=$(cat); case "$ev" in *'"user":"bob@'*) echo bob >> calls; exit 3;; esac; echo alice >> calls; echo '{"tags":["seen"]}'`)
	w.start()
	ctx := context.Background()
	bob, err := accounts.New(w.pool).Lookup(ctx, "bob@example.test")
	if err != nil {
		t.Fatal(err)
	}
	raw := "From: a@remote.test\r\nTo: alice@example.test, bob@example.test\r\nSubject: both\r\n\r\nhi\r\n"
	ids, err := w.store.Deliver(ctx, mailstore.Delivery{MailFrom: "a@remote.test", Recipients: []accounts.Recipient{w.alice, bob}, Data: []byte(raw)})
	if err != nil || len(ids) != 2 {
		t.Fatalf("deliver: %v %v", ids, err)
	}
	args := func(ev *river.Event) (a PostReceiveArgs) {
		if err := json.Unmarshal(ev.Job.EncodedArgs, &a); err != nil {
			t.Fatal(err)
		}
		return a
	}
	if ev := w.wait(); ev.Kind != river.EventKindJobCompleted || !slices.Equal(args(ev).MessageIDs, ids) {
		t.Fatalf("batch job: %s %s", ev.Kind, ev.Job.EncodedArgs)
	}
	if got := w.tags(ids[0]); fmt.Sprint(got) != "[seen]" {
		t.Errorf("alice's message tags %v, want [seen]", got)
	}
	alone := w.wait()
	if a := args(alone); alone.Kind != river.EventKindJobFailed || alone.Job.State != rivertype.JobStateDiscarded || alone.Job.Attempt != 1 ||
		!slices.Equal(a.MessageIDs, ids[1:]) || a.PriorAttempts != 1 {
		t.Fatalf("bob's job: %s %s after %d attempts, %s", alone.Kind, alone.Job.State, alone.Job.Attempt, alone.Job.EncodedArgs)
	}
	if got := w.tags(ids[1]); len(got) != 0 {
		t.Errorf("bob's message tags %v", got)
	}
	data, _ := os.ReadFile(filepath.Join(w.cfg.WorkDir, "picky", "calls"))
	if got := strings.Fields(string(data)); strings.Count(string(data), "alice") != 1 || strings.Count(string(data), "bob") != 2 {
		t.Errorf("calls %v: want alice once, bob twice (plugins.retries = 1)", got)
	}
}

// BenchmarkDeliverEnqueue measures what enqueueing post_receive jobs in the
// delivery transaction costs deliveries (no job is worked here):
//
//	go test ./agent/hooks -run xxx -bench DeliverEnqueue -benchtime 4000x
func BenchmarkDeliverEnqueue(b *testing.B) {
	for _, withPlugin := range []bool{false, true} {
		name := map[bool]string{false: "no_plugin", true: "one_plugin"}[withPlugin]
		b.Run(name, func(b *testing.B) {
			w := newWorld(b, nil)
			if withPlugin {
				w.install("bench", "", `cat >/dev/null; echo '{}'`)
			}
			w.idle()
			var seq atomic.Int64
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					n := seq.Add(1)
					raw := fmt.Sprintf("From: a@remote.test\r\nTo: alice@example.test\r\nSubject: m%d\r\n\r\n%s\r\n", n, strings.Repeat("body line\r\n", 900))
					if _, err := w.store.Deliver(context.Background(), mailstore.Delivery{MailFrom: "a@remote.test", Recipients: []accounts.Recipient{w.alice}, Data: []byte(raw)}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
		})
	}
}

// TestExampleClassifierProcessPlugin builds the example go-plugin process
// plugin and runs it as a hook: one long-running process classifies the
// messages, without network (its own namespace), as the run_as user.
func TestExampleClassifierProcessPlugin(t *testing.T) {
	w := newWorld(t, nil)
	_, file, _, _ := runtime.Caller(0)
	example := filepath.Join(filepath.Dir(file), "..", "plugins", "examples", "classifier")
	src := t.TempDir()
	for _, f := range []string{"plugin.toml"} {
		data, err := os.ReadFile(filepath.Join(example, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-o", filepath.Join(src, "classifier"), ".")
	build.Dir = example
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if _, err := plugins.Install(context.Background(), w.pool, src, w.cfg.Dir, plugins.Options{}); err != nil {
		t.Fatal(err)
	}
	w.start()
	t.Cleanup(w.m.Close)
	statuses, err := w.m.Statuses(context.Background())
	if err != nil || len(statuses) != 1 || !statuses[0].Loaded || !strings.Contains(statuses[0].Network, "enforced") {
		t.Fatalf("statuses: %+v, %v", statuses, err)
	}
	spam := w.deliver("WIN a FREE prize now, cheap pills casino lottery", "claim your bitcoin winner reward, click now")
	ham := w.deliver("Minutes of the project meeting", "the roadmap review is on Tuesday with the engineering team")
	for range 2 {
		if ev := w.wait(); ev.Kind != river.EventKindJobCompleted {
			t.Fatalf("job: %s %v", ev.Kind, ev.Job.Errors)
		}
	}
	if got := w.tags(spam); fmt.Sprint(got) != "[likely-spam]" {
		t.Errorf("spam tagged %v", got)
	}
	if got := w.tags(ham); fmt.Sprint(got) != "[likely-ham]" {
		t.Errorf("ham tagged %v", got)
	}
	var score string
	if err := w.pool.QueryRow(context.Background(), `SELECT value FROM message_metadata WHERE message_id = $1 AND key = 'spam_score'`, spam).Scan(&score); err != nil || score == "" {
		t.Fatalf("spam_score %q, %v", score, err)
	}
}
