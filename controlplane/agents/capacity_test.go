package agents_test

// Capacity benchmarks of the AgentsService on loopback over a real
// database: heartbeat throughput, config-change fan-out latency and how
// many config streams one process holds. They run only with -bench:
//
//	go test ./controlplane/agents -run '^$' -bench Heartbeat -benchtime 20000x
//	go test ./controlplane/agents -run '^$' -bench Fanout -benchtime 20x
//	go test ./controlplane/agents -run '^$' -bench Streams -benchtime 1x -timeout 30m
//
// Environment (all optional):
//
//	MAIRUST_BENCH_DB_CONNS        the service's pool size (20; database.max_conns defaults to 40, but
//	                              the test server's 100 connections are shared with other tests)
//	MAIRUST_BENCH_FANOUT_PER_CONN streams per HTTP/2 connection in BenchmarkFanout (100)
//	MAIRUST_BENCH_HB_AGENTS       agents heartbeating in BenchmarkHeartbeat (500)
//	MAIRUST_BENCH_HB_PARALLEL     goroutines per core in BenchmarkHeartbeat (32)
//	MAIRUST_BENCH_FANOUT_AGENTS   agents watching in BenchmarkFanout (1000)
//	MAIRUST_BENCH_STREAMS         streams BenchmarkStreams tries to hold (10000)
//	MAIRUST_BENCH_STREAMS_PER_CONN streams per HTTP/2 connection there (1: each agent its own connection)
//	MAIRUST_BENCH_HOLD            how long it holds them, heartbeating (20s)
//	MAIRUST_BENCH_KEEPALIVE       the streams' keepalive there (15s, the service's default)
//
// Agents are made by inserting their rows as the tables' owner and issuing
// their credentials with the service's keys: 10,000 Enroll calls would each
// take an enrollment token, a console call and a signature, and measure
// enrollment rather than what follows it.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mairust/mairust/controlplane/agents"
	"github.com/mairust/mairust/controlplane/agents/agentstest"
	"github.com/mairust/mairust/controlplane/auth"
	"github.com/mairust/mairust/controlplane/cptest"
	"github.com/mairust/mairust/controlplane/server"
	"github.com/mairust/mairust/controlplane/store"
	agentsv1 "github.com/mairust/mairust/proto/mairust/agents/v1"
	"github.com/mairust/mairust/proto/mairust/agents/v1/agentsv1connect"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// startBench is agentstest.Start with a service pool of
// MAIRUST_BENCH_DB_CONNS connections and warnings only in the log.
func startBench(b *testing.B, keepalive time.Duration) *agentstest.Env {
	b.Helper()
	ce := cptest.New(b, "cpbench")
	ce.Log = slog.New(slog.NewTextHandler(b.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := store.Open(b.Context(), ce.Owner.Config().ConnString(), "", int32(envInt("MAIRUST_BENCH_DB_CONNS", 20)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(st.Pool.Close)
	ce.Store = st
	svc, err := agents.New(st, ce.Keys, ce.Config, ce.Log)
	if err != nil {
		b.Fatal(err)
	}
	svc.Keepalive = keepalive
	ce.Serve(b, []server.Service{svc.Service(ce.Options()...)}, svc.Check)
	running, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(running); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	return &agentstest.Env{Env: ce, Service: svc, Client: agentsv1connect.NewAgentsServiceClient(http.DefaultClient, ce.URL)}
}

// benchAgent is an agent with its credential.
type benchAgent struct {
	ID, TenantID, Credential string
}

// makeAgents makes tenants tenants and n agents spread over them.
func makeAgents(b *testing.B, e *agentstest.Env, tenants, n int) ([]agentstest.Tenant, []benchAgent) {
	b.Helper()
	var tns []agentstest.Tenant
	var ags []benchAgent
	for i := range tenants {
		tn := e.Tenant(b, fmt.Sprintf("t%d.example", i))
		tns = append(tns, tn)
		count := n / tenants
		if i < n%tenants {
			count++
		}
		rows, err := e.Owner.Query(b.Context(), `INSERT INTO agents(tenant_id, public_key, hostname, version, last_heartbeat_at)
			SELECT $1::uuid, sha256(convert_to($1::uuid::text || ':' || g, 'UTF8')), 'bench-' || g, '1.0', now() FROM generate_series(1, $2) g RETURNING id`, tn.ID, count)
		if err != nil {
			b.Fatal(err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				b.Fatal(err)
			}
			tok, _, err := e.Keys.Issue(auth.Principal{Kind: auth.KindAgent, AgentID: id, TenantID: tn.ID}, 2*time.Hour)
			if err != nil {
				b.Fatal(err)
			}
			ags = append(ags, benchAgent{ID: id, TenantID: tn.ID, Credential: tok})
		}
		if err := rows.Err(); err != nil {
			b.Fatal(err)
		}
	}
	return tns, ags
}

// h2cClient returns a client speaking cleartext HTTP/2 only, counting its
// connections in dials.
func h2cClient(dials *atomic.Int64) *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	d := &net.Dialer{}
	return &http.Client{Transport: &http.Transport{Protocols: &p, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return d.DialContext(ctx, network, addr)
	}}}
}

// h2cClients returns n clients of their own connection each, connected:
// net/http's transport dials a connection for each of the calls that
// start at once before its first connection is up (and again past the
// server's limit of 250 streams on one), so each is connected with a call
// of its own first, and is given fewer than 250 streams.
func h2cClients(b testing.TB, url string, n int, dials *atomic.Int64) []agentsv1connect.AgentsServiceClient {
	cs := make([]agentsv1connect.AgentsServiceClient, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	var failed atomic.Int64
	for i := range cs {
		hc := h2cClient(dials)
		cs[i] = agentsv1connect.NewAgentsServiceClient(hc, url)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			resp, err := hc.Get(url + "/health")
			if err != nil {
				failed.Add(1)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		})
	}
	wg.Wait()
	if failed.Load() > 0 && b != nil {
		b.Fatalf("%d of %d connections failed", failed.Load(), n)
	}
	return cs
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkHeartbeat measures heartbeat calls per second from many agents
// at once over HTTP/2, and their latency.
func BenchmarkHeartbeat(b *testing.B) {
	e := startBench(b, long)
	_, ags := makeAgents(b, e, 10, envInt("MAIRUST_BENCH_HB_AGENTS", 500))
	var dials atomic.Int64
	client := h2cClients(b, e.URL, 1, &dials)[0]
	parallel := envInt("MAIRUST_BENCH_HB_PARALLEL", 32)
	b.Run(fmt.Sprintf("agents=%d/goroutines=%d", len(ags), parallel*runtime.GOMAXPROCS(0)), func(b *testing.B) {
		var next, errs atomic.Int64
		var mu sync.Mutex
		var lat []time.Duration
		var firstErr error
		b.SetParallelism(parallel)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			var mine []time.Duration
			for pb.Next() {
				a := ags[int(next.Add(1))%len(ags)]
				start := time.Now()
				_, err := client.Heartbeat(context.Background(), cptest.Auth(&agentsv1.HeartbeatRequest{Version: "1.0", UptimeSeconds: 42,
					Health: []*agentsv1.ComponentHealth{{Name: "smtp", Status: agentsv1.HealthStatus_HEALTH_STATUS_OK}}}, a.Credential))
				mine = append(mine, time.Since(start))
				if err != nil {
					if errs.Add(1) == 1 {
						mu.Lock()
						firstErr = err
						mu.Unlock()
					}
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rps")
		b.ReportMetric(ms(quantile(lat, 0.50)), "p50_ms")
		b.ReportMetric(ms(quantile(lat, 0.99)), "p99_ms")
		b.ReportMetric(float64(errs.Load()), "errors")
		b.ReportMetric(float64(dials.Load()), "conns")
		if firstErr != nil {
			b.Errorf("%d heartbeats failed; the first: %v", errs.Load(), firstErr)
		}
	})
}

// snapEvent is a snapshot an agent received.
type snapEvent struct {
	agent   int
	version int64
	at      time.Time
}

// BenchmarkFanout holds one config stream for each of 1,000 agents spread
// over 10 tenants, then changes the configuration and measures, per agent,
// how long its new snapshot takes from just before the change's statement
// (which commits it) to its arrival. all-tenants adds a domain to each of
// the 10 tenants in one statement per iteration, so every agent is woken;
// one-tenant adds one to a single tenant (in turn), waking 100.
func BenchmarkFanout(b *testing.B) {
	n := envInt("MAIRUST_BENCH_FANOUT_AGENTS", 1000)
	const tenants = 10
	e := startBench(b, long)
	tns, ags := makeAgents(b, e, tenants, n)
	var dials atomic.Int64
	perConn := envInt("MAIRUST_BENCH_FANOUT_PER_CONN", 100)
	clients := h2cClients(b, e.URL, (len(ags)+perConn-1)/perConn, &dials)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	events := make(chan snapEvent, 4*n)
	var streamErrs atomic.Int64
	opened := time.Now()
	for i, a := range ags {
		wg.Go(func() {
			s, err := clients[i/perConn].WatchConfig(ctx, cptest.Auth(&agentsv1.WatchConfigRequest{}, a.Credential))
			if err != nil {
				streamErrs.Add(1)
				return
			}
			defer s.Close()
			for s.Receive() {
				if snap := s.Msg().GetSnapshot(); snap != nil {
					select {
					case events <- snapEvent{agent: i, version: snap.Version, at: time.Now()}:
					case <-ctx.Done():
						return
					}
				}
			}
			if ctx.Err() == nil {
				streamErrs.Add(1)
				b.Logf("agent %d: stream ended: %v", i, s.Err())
			}
		})
	}
	timeout := time.After(2 * time.Minute)
	for range ags {
		select {
		case <-events:
		case <-timeout:
			b.Fatalf("the first snapshots did not all arrive in 2 minutes (stream errors: %d)", streamErrs.Load())
		}
	}
	b.Logf("%d streams open with their first snapshot in %s over %d connections", len(ags), time.Since(opened).Round(time.Millisecond), dials.Load())

	byTenant := map[string]int{}
	for i, tn := range tns {
		byTenant[tn.ID] = i
	}
	iteration := 0
	run := func(b *testing.B, changed func(i int) []int) {
		var lat []time.Duration
		var stmt []time.Duration
		b.ResetTimer()
		for range b.N {
			iteration++
			which := changed(iteration)
			ids := make([]string, len(which))
			want := map[int]bool{}
			for k, t := range which {
				ids[k] = tns[t].ID
				for j, a := range ags {
					if byTenant[a.TenantID] == t {
						want[j] = true
					}
				}
			}
			start := time.Now()
			if _, err := e.Owner.Exec(context.Background(), `INSERT INTO domains(tenant_id, name) SELECT id, 'i' || $2::int || '-' || n || '.example'
				FROM unnest($1::uuid[]) WITH ORDINALITY AS u(id, n)`, ids, iteration); err != nil {
				b.Fatal(err)
			}
			stmt = append(stmt, time.Since(start))
			versions := map[int]int64{}
			rows, _ := e.Owner.Query(context.Background(), `SELECT tenant_id, version FROM config_versions WHERE tenant_id = ANY($1::uuid[])`, ids)
			for rows.Next() {
				var id string
				var v int64
				if err := rows.Scan(&id, &v); err != nil {
					b.Fatal(err)
				}
				versions[byTenant[id]] = v
			}
			if err := rows.Err(); err != nil {
				b.Fatal(err)
			}
			deadline := time.After(time.Minute)
			for len(want) > 0 {
				select {
				case ev := <-events:
					if want[ev.agent] && ev.version >= versions[byTenant[ags[ev.agent].TenantID]] {
						delete(want, ev.agent)
						lat = append(lat, ev.at.Sub(start))
					}
				case <-deadline:
					b.Fatalf("iteration %d: %d agents got no new snapshot within a minute (stream errors: %d)", iteration, len(want), streamErrs.Load())
				}
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(len(lat))/float64(b.N), "agents/op")
		b.ReportMetric(ms(quantile(stmt, 0.5)), "insert_p50_ms")
		b.ReportMetric(ms(quantile(lat, 0.50)), "p50_ms")
		b.ReportMetric(ms(quantile(lat, 0.99)), "p99_ms")
		b.ReportMetric(ms(quantile(lat, 1)), "max_ms")
		b.ReportMetric(float64(streamErrs.Load()), "stream_errors")
		b.ReportMetric(float64(dials.Load()), "conns")
	}
	b.Run(fmt.Sprintf("all-tenants/agents=%d", len(ags)), func(b *testing.B) {
		all := make([]int, tenants)
		for i := range all {
			all[i] = i
		}
		run(b, func(int) []int { return all })
	})
	b.Run(fmt.Sprintf("one-tenant/agents=%d", len(ags)/tenants), func(b *testing.B) {
		run(b, func(i int) []int { return []int{i % tenants} })
	})
}

// raiseNoFile raises the limit of open files to at least n, if it can.
func raiseNoFile(n uint64) (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	if l.Cur >= n {
		return l.Cur, nil
	}
	want := syscall.Rlimit{Cur: max(n, l.Cur), Max: max(n, l.Max)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		// Not allowed past the hard limit: go up to it.
		want = syscall.Rlimit{Cur: l.Max, Max: l.Max}
		err2 := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want)
		return want.Cur, errors.Join(err, err2)
	}
	return want.Cur, nil
}

// memStats is what the process holds.
type memStats struct {
	Heap, Stacks, Total, RSS uint64 // bytes: live heap objects, goroutine stacks, all the runtime mapped, resident
	Goroutines               uint64
	CPU                      time.Duration // user + system so far
}

// readMem collects the garbage and returns the freed memory to the
// system first, so that RSS counts what is held.
func readMem() memStats {
	debug.FreeOSMemory()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"},
		{Name: "/memory/classes/total:bytes"}, {Name: "/sched/goroutines:goroutines"}}
	metrics.Read(s)
	m := memStats{Heap: s[0].Value.Uint64(), Stacks: s[1].Value.Uint64(), Total: s[2].Value.Uint64(), Goroutines: s[3].Value.Uint64()}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				m.RSS = kb << 10
			}
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		m.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return m
}

// perStream is the growth from before to after, per stream, in bytes.
func perStream(before, after uint64, n int) float64 {
	return (float64(after) - float64(before)) / float64(max(n, 1))
}

// fleetConfig is what BenchmarkStreams hands to its fleet process.
type fleetConfig struct {
	URL           string
	Agents        []benchAgent
	PerConn       int
	Hold          time.Duration
	Interval      time.Duration // each agent's heartbeat interval
	OpenTimeout   time.Duration
	OpenInFlight  int
	StopOnFailure bool
}

// fleetResult is what the fleet process reports.
type fleetResult struct {
	Held, OpenErrors               int
	FirstOpenError                 string
	OpenSeconds                    float64
	Conns                          int64
	Heartbeats, HeartbeatErrors    int
	FirstHeartbeatError            string
	HeartbeatP50ms, HeartbeatP99ms float64
	HeartbeatMaxms                 float64
	StreamsEnded                   int64 // streams that ended during the hold
	Keepalives                     int64
	AliveAtEnd                     int64
	Before, Held2, After           memStats
	NoFile                         uint64
}

const fleetEnv = "MAIRUST_BENCH_FLEET"

// BenchmarkStreams holds as many config streams as it can, up to 10,000,
// for a bounded time while their agents heartbeat every 30 s (staggered:
// 333/s for 10,000), and reports the streams held, the server's memory per
// stream, the heartbeats' latency and the errors. The agents run in a
// child process (the test binary again, as BenchmarkAgentFleet), so that
// this process's memory is the server's: its growth from before the
// streams open to while they are held, divided by the streams, is what
// the server spends on each (the keepalive is the service's default,
// 15 s, so it re-reads each stream's standing and version every 15 s too).
func BenchmarkStreams(b *testing.B) {
	target := envInt("MAIRUST_BENCH_STREAMS", 10000)
	perConn := envInt("MAIRUST_BENCH_STREAMS_PER_CONN", 1)
	hold := envDuration("MAIRUST_BENCH_HOLD", 20*time.Second)
	nofile, err := raiseNoFile(uint64(target + target/perConn + 4096))
	if err != nil {
		b.Logf("raising the limit of open files: %v (now %d)", err, nofile)
	}
	// One fleet whatever b.N: run with -benchtime 1x.
	streams(b, target, perConn, hold, nofile)
}

func streams(b *testing.B, target, perConn int, hold time.Duration, nofile uint64) {
	e := startBench(b, envDuration("MAIRUST_BENCH_KEEPALIVE", 15*time.Second))
	_, ags := makeAgents(b, e, 10, target)
	cfg := fleetConfig{URL: e.URL, Agents: ags, PerConn: perConn, Hold: hold, Interval: e.Config.HeartbeatInterval,
		OpenTimeout: 10 * time.Minute, OpenInFlight: 64, StopOnFailure: true}
	path := b.TempDir() + "/fleet.json"
	data, err := json.Marshal(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		b.Fatal(err)
	}

	before := readMem()
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^BenchmarkAgentFleet$", "-test.benchtime=1x", "-test.timeout=0")
	cmd.Env = append(os.Environ(), fleetEnv+"="+path)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	}()
	var held, end memStats
	var pool, poolEnd *pgxpool.Stat
	var poolAt, poolEndAt time.Time
	var res fleetResult
	sc := bufio.NewScanner(stdout)
	sc.Buffer(nil, 1<<20)
	got := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "FLEET held "):
			held = readMem()
			pool, poolAt = e.Store.Pool.Stat(), time.Now()
			b.Logf("%s; server: %d goroutines, heap %d MiB, RSS %d MiB", line, held.Goroutines, held.Heap>>20, held.RSS>>20)
		case strings.HasPrefix(line, "FLEET result "):
			end = readMem()
			poolEnd, poolEndAt = e.Store.Pool.Stat(), time.Now()
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "FLEET result ")), &res); err != nil {
				b.Fatal(err)
			}
			got = true
		case strings.HasPrefix(line, "FLEET "):
			b.Log(line)
		}
		if got {
			break
		}
	}
	if !got {
		b.Fatalf("the fleet process ended without a result: %v", sc.Err())
	}
	stdin.Close() // the fleet closes its streams and exits
	if err := cmd.Wait(); err != nil {
		b.Logf("fleet process: %v", err)
	}

	n := res.Held
	b.ReportMetric(float64(n), "streams")
	b.ReportMetric(float64(res.Conns), "conns")
	b.ReportMetric(float64(n)/res.OpenSeconds, "opened/s")
	b.ReportMetric(perStream(before.Heap, held.Heap, n), "srv_heap_B/stream")
	b.ReportMetric(perStream(before.Stacks, held.Stacks, n), "srv_stack_B/stream")
	b.ReportMetric(perStream(before.RSS, held.RSS, n), "srv_rss_B/stream")
	b.ReportMetric(perStream(before.RSS, end.RSS, n), "srv_rss_end_B/stream")
	b.ReportMetric(perStream(before.Goroutines, held.Goroutines, n), "srv_goroutines/stream")
	b.ReportMetric(float64(end.RSS)/(1<<20), "srv_rss_MiB")
	b.ReportMetric((end.CPU-held.CPU).Seconds()/hold.Seconds(), "srv_cores_holding")
	b.ReportMetric(perStream(res.Before.RSS, res.Held2.RSS, n), "cli_rss_B/stream")
	b.ReportMetric(float64(res.Heartbeats), "heartbeats")
	b.ReportMetric(float64(res.Heartbeats)/hold.Seconds(), "hb/s")
	b.ReportMetric(res.HeartbeatP50ms, "hb_p50_ms")
	b.ReportMetric(res.HeartbeatP99ms, "hb_p99_ms")
	b.ReportMetric(res.HeartbeatMaxms, "hb_max_ms")
	b.ReportMetric(float64(res.HeartbeatErrors+res.OpenErrors)+float64(res.StreamsEnded), "errors")
	b.ReportMetric(float64(res.AliveAtEnd), "alive_at_end")
	if pool != nil && poolEnd != nil {
		// Each transaction takes a connection from the pool once; from the
		// streams being held to the fleet's result (the hold and the wait
		// for its last heartbeats).
		acquired := poolEnd.AcquireCount() - pool.AcquireCount()
		b.ReportMetric(float64(acquired)/poolEndAt.Sub(poolAt).Seconds(), "db_tx/s")
		b.ReportMetric(ms((poolEnd.AcquireDuration()-pool.AcquireDuration())/time.Duration(max(acquired, 1))), "db_wait_ms")
	}
	b.Logf("server: before %+v held %+v end %+v (limit of open files %d)", before, held, end, nofile)
	b.Logf("fleet: %+v", fleetSummary(res))
	if n < target {
		b.Logf("held %d of %d streams: %d failed to open, the first: %s", n, target, res.OpenErrors, res.FirstOpenError)
	}
	if res.HeartbeatErrors > 0 {
		b.Logf("%d heartbeats failed; the first: %s", res.HeartbeatErrors, res.FirstHeartbeatError)
	}
}

func fleetSummary(r fleetResult) string {
	return fmt.Sprintf("held=%d open_errors=%d open=%.1fs conns=%d heartbeats=%d hb_errors=%d ended=%d keepalives=%d alive_at_end=%d client_rss %d->%d->%d MiB nofile=%d",
		r.Held, r.OpenErrors, r.OpenSeconds, r.Conns, r.Heartbeats, r.HeartbeatErrors, r.StreamsEnded, r.Keepalives, r.AliveAtEnd,
		r.Before.RSS>>20, r.Held2.RSS>>20, r.After.RSS>>20, r.NoFile)
}

// BenchmarkAgentFleet is BenchmarkStreams's fleet of agents, in a process
// of its own; it does nothing unless MAIRUST_BENCH_FLEET names its
// configuration.
func BenchmarkAgentFleet(b *testing.B) {
	path := os.Getenv(fleetEnv)
	if path == "" {
		b.Skip("the fleet of BenchmarkStreams; it runs only as its child process")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	var cfg fleetConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		b.Fatal(err)
	}
	res := runFleet(cfg)
	out, _ := json.Marshal(res)
	fmt.Printf("FLEET result %s\n", out)
	io.Copy(io.Discard, os.Stdin) // hold the streams until the server has measured
}

func runFleet(cfg fleetConfig) fleetResult {
	var res fleetResult
	res.NoFile, _ = raiseNoFile(uint64(len(cfg.Agents) + 4096))
	res.Before = readMem()
	n := len(cfg.Agents)
	var dials atomic.Int64
	var clients []agentsv1connect.AgentsServiceClient
	if cfg.PerConn == 1 {
		// Each agent's stream is the first call on its connection.
		clients = make([]agentsv1connect.AgentsServiceClient, n)
		for i := range clients {
			clients[i] = agentsv1connect.NewAgentsServiceClient(h2cClient(&dials), cfg.URL)
		}
	} else {
		clients = h2cClients(nil, cfg.URL, (n+cfg.PerConn-1)/cfg.PerConn, &dials)
	}
	clientOf := func(i int) agentsv1connect.AgentsServiceClient { return clients[i/cfg.PerConn] }

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var holding atomic.Bool // set once all are open: a stream ending after is counted
	var ended, keepalives, alive atomic.Int64
	var mu sync.Mutex
	var failed atomic.Bool
	sem := make(chan struct{}, cfg.OpenInFlight)
	opened := make([]bool, n)
	var wg sync.WaitGroup
	start := time.Now()
	openCtx, openCancel := context.WithTimeout(ctx, cfg.OpenTimeout)
	defer openCancel()
	for i, a := range cfg.Agents {
		select {
		case sem <- struct{}{}:
		case <-openCtx.Done():
		}
		if openCtx.Err() != nil || (cfg.StopOnFailure && failed.Load()) {
			break
		}
		wg.Add(1)
		go func() {
			first := true
			release := func(err error) {
				if !first {
					return
				}
				first = false
				<-sem
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					res.OpenErrors++
					if res.FirstOpenError == "" {
						res.FirstOpenError = err.Error()
					}
					failed.Store(true)
				} else {
					opened[i] = true
				}
				wg.Done()
			}
			s, err := clientOf(i).WatchConfig(ctx, cptest.Auth(&agentsv1.WatchConfigRequest{}, a.Credential))
			if err != nil {
				release(err)
				return
			}
			defer s.Close()
			for s.Receive() {
				if s.Msg().GetKeepalive() != nil {
					keepalives.Add(1)
				}
				if first {
					alive.Add(1)
					release(nil)
				}
			}
			if first {
				release(fmt.Errorf("the stream ended before its first snapshot: %v", s.Err()))
				return
			}
			alive.Add(-1)
			if ctx.Err() == nil && holding.Load() {
				ended.Add(1)
				mu.Lock()
				if res.FirstOpenError == "" {
					res.FirstOpenError = "a held stream ended: " + fmt.Sprint(s.Err())
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.OpenSeconds = time.Since(start).Seconds()
	res.Conns = dials.Load()
	for _, ok := range opened {
		if ok {
			res.Held++
		}
	}
	holding.Store(true)
	res.Held2 = readMem()
	fmt.Printf("FLEET held %d streams in %.1fs over %d connections (%d failed to open); client RSS %d MiB\n",
		res.Held, res.OpenSeconds, res.Conns, res.OpenErrors, res.Held2.RSS>>20)

	// Heartbeats: each held agent every Interval, staggered evenly.
	var agentsUp []int
	for i, ok := range opened {
		if ok {
			agentsUp = append(agentsUp, i)
		}
	}
	var lat []time.Duration
	var hbWG sync.WaitGroup
	if len(agentsUp) > 0 {
		every := cfg.Interval / time.Duration(len(agentsUp))
		tick := time.NewTicker(every)
		stop := time.After(cfg.Hold)
		began := time.Now()
		next := 0
	loop:
		for {
			select {
			case <-stop:
				break loop
			case <-tick.C:
			}
			// A ticker drops ticks when this process is slow: catch up, so
			// that the rate offered stays len(agentsUp)/Interval.
			for due := int(time.Since(began) / every); next < due; next++ {
				i := agentsUp[next%len(agentsUp)]
				hbWG.Go(func() {
					t0 := time.Now()
					hctx, hcancel := context.WithTimeout(ctx, 30*time.Second)
					defer hcancel()
					_, err := clientOf(i).Heartbeat(hctx, cptest.Auth(&agentsv1.HeartbeatRequest{Version: "1.0", UptimeSeconds: 42}, cfg.Agents[i].Credential))
					d := time.Since(t0)
					mu.Lock()
					defer mu.Unlock()
					lat = append(lat, d)
					res.Heartbeats++
					if err != nil {
						res.HeartbeatErrors++
						if res.FirstHeartbeatError == "" {
							res.FirstHeartbeatError = err.Error()
						}
					}
				})
			}
		}
		tick.Stop()
	}
	hbWG.Wait()
	mu.Lock()
	res.HeartbeatP50ms = ms(quantile(lat, 0.5))
	res.HeartbeatP99ms = ms(quantile(lat, 0.99))
	res.HeartbeatMaxms = ms(quantile(lat, 1))
	mu.Unlock()
	res.StreamsEnded = ended.Load()
	res.Keepalives = keepalives.Load()
	res.AliveAtEnd = alive.Load()
	res.After = readMem()
	return res
}
