// Package stripetest gives tests a stripe-mock (Stripe's API as its
// OpenAPI description answers it; stateless) on loopback. It fails, never
// skips, when stripe-mock is not installed.
package stripetest

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/mairust/mairust/internal/proctest"
)

// install is the command that installs the pinned stripe-mock.
const install = "go install github.com/stripe/stripe-mock@v0.203.0"

// Key is a test secret key stripe-mock takes.
const Key = "sk_test_mairust"

// Start runs stripe-mock on a free loopback port until t ends and returns
// its base URL.
func Start(t testing.TB) string {
	t.Helper()
	bin := proctest.GoTool(t, "stripe-mock", install)
	for attempt := 0; ; attempt++ {
		addr := proctest.FreeAddr(t)
		var out proctest.Output
		cmd := exec.Command(bin, "-http-addr", addr)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatalf("start stripe-mock: %v", err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		url := "http://" + addr
		if ready(url, done) {
			t.Cleanup(func() { cmd.Process.Kill(); <-done })
			return url
		}
		cmd.Process.Kill()
		<-done
		// The free port may have been taken before stripe-mock bound it.
		if attempt == 2 {
			t.Fatalf("stripe-mock did not answer on %s:\n%s", addr, out.String())
		}
	}
}

// ready waits up to 15 s for stripe-mock at url to answer, or for it to
// exit (done).
func ready(url string, done <-chan struct{}) bool {
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/customers", nil)
	req.SetBasicAuth(Key, "")
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case <-done:
			return false
		default:
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			return true
		}
	}
	return false
}

// Request is a call that reached stripe-mock through a Recorder.
type Request struct {
	Method, Path   string
	Form           url.Values // the form-encoded body
	IdempotencyKey string
	Status         int // stripe-mock's answer
}

// Recorder is stripe-mock behind a proxy that records the calls.
type Recorder struct {
	URL string // give this to the Stripe client
	mu  sync.Mutex
	log []Request
}

// StartRecorder runs stripe-mock (Start) behind a recording proxy.
func StartRecorder(t testing.TB) *Recorder {
	t.Helper()
	target, _ := url.Parse(Start(t))
	r := &Recorder{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		req := resp.Request
		r.mu.Lock()
		defer r.mu.Unlock()
		r.log = append(r.log, Request{Method: req.Method, Path: req.URL.Path, Form: req.Form, IdempotencyKey: req.Header.Get("Idempotency-Key"), Status: resp.StatusCode})
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.Form, _ = url.ParseQuery(string(body))
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

// Requests returns the calls recorded to path (all: "").
func (r *Recorder) Requests(path string) []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Request
	for _, q := range r.log {
		if path == "" || q.Path == path {
			out = append(out, q)
		}
	}
	return out
}
