package runner

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mairust/mairust/agent/plugins/manifest"
	"github.com/mairust/mairust/agent/plugins/sdk"
)

var testSecret = []byte("s3cret")

func httpPlugin(t *testing.T, url string, timeout time.Duration) *HTTP {
	t.Helper()
	m := &manifest.Manifest{ID: "test-http", Kind: manifest.KindHTTP, URL: url, Timeout: timeout}
	r, err := NewHTTP(m, testSecret, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func serve(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func TestHTTPGood(t *testing.T) {
	t.Parallel()
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
		}
		if r.Method != http.MethodPost {
			t.Errorf("method %s", r.Method)
		}
		if err := sdk.Verify(r.Header, body, "test-http", testSecret, time.Now()); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var ev sdk.Event
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		json.NewEncoder(w).Encode(sdk.Result{Tags: []string{"subject-" + ev.Message.Headers[0].Value}})
	})
	res, err := httpPlugin(t, srv.URL, 10*time.Second).Run(context.Background(), testEvent("test-http"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tags) != 1 || res.Tags[0] != "subject-Hello" {
		t.Errorf("tags %q", res.Tags)
	}
}

// The SDK's own handler, with another secret, refuses the signature.
func TestHTTPBadSignatureRefused(t *testing.T) {
	t.Parallel()
	h := sdk.HTTPHandler("test-http", []byte("other"), func(context.Context, sdk.Event) (sdk.Result, error) {
		return sdk.Result{}, nil
	})
	srv := serve(t, h.ServeHTTP)
	_, err := httpPlugin(t, srv.URL, 10*time.Second).Run(context.Background(), testEvent("test-http"))
	wantFailure(t, err, ReasonRefused, "401", "bad signature")
}

func TestHTTPRefused(t *testing.T) {
	t.Parallel()
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "database down "+strings.Repeat("x", 1000), http.StatusInternalServerError)
	})
	_, err := httpPlugin(t, srv.URL, 10*time.Second).Run(context.Background(), testEvent("test-http"))
	wantFailure(t, err, ReasonRefused, "500 Internal Server Error", "database down")
	if len(err.Error()) > 400 {
		t.Errorf("error of %d bytes, want a short excerpt", len(err.Error()))
	}
}

func TestHTTPRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	var followed atomic.Bool
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			followed.Store(true)
			w.Write([]byte("{}"))
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	})
	_, err := httpPlugin(t, srv.URL, 10*time.Second).Run(context.Background(), testEvent("test-http"))
	wantFailure(t, err, ReasonRefused, "307")
	if followed.Load() {
		t.Error("the redirect was followed")
	}
}

func TestHTTPGarbage(t *testing.T) {
	t.Parallel()
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>oops</html>")) })
	_, err := httpPlugin(t, srv.URL, 10*time.Second).Run(context.Background(), testEvent("test-http"))
	wantFailure(t, err, ReasonGarbage, "<html>oops")
	if !errors.Is(err, sdk.ErrInvalidResult) {
		t.Errorf("error %v does not wrap sdk.ErrInvalidResult", err)
	}
}

func TestHTTPFlood(t *testing.T) {
	t.Parallel()
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat(" ", 4*sdk.MaxResultBytes) + "{}"))
	})
	_, err := httpPlugin(t, srv.URL, 10*time.Second).Run(context.Background(), testEvent("test-http"))
	wantFailure(t, err, ReasonFlood)
}

func TestHTTPUnreachable(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	_, err := httpPlugin(t, url, 10*time.Second).Run(context.Background(), testEvent("test-http"))
	wantFailure(t, err, ReasonUnreachable, "connection refused")
}

// stall waits until the client goes away. The server notices that only
// once the request body has been read.
func stall(r *http.Request) {
	io.Copy(io.Discard, r.Body)
	select {
	case <-r.Context().Done():
	case <-time.After(10 * time.Second):
	}
}

func TestHTTPTimeout(t *testing.T) {
	t.Parallel()
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		stall(r)
	})
	_, err := httpPlugin(t, srv.URL, 300*time.Millisecond).Run(context.Background(), testEvent("test-http"))
	wantFailure(t, err, ReasonTimeout, "300ms")
}

// The timeout also covers an answer that starts and then stalls.
func TestHTTPTimeoutInBody(t *testing.T) {
	t.Parallel()
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"tags":`))
		w.(http.Flusher).Flush()
		stall(r)
	})
	_, err := httpPlugin(t, srv.URL, 300*time.Millisecond).Run(context.Background(), testEvent("test-http"))
	wantFailure(t, err, ReasonTimeout)
}

func TestHTTPCancelled(t *testing.T) {
	t.Parallel()
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("{}")) })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := httpPlugin(t, srv.URL, 10*time.Second).Run(ctx, testEvent("test-http"))
	if _, ok := errors.AsType[*Failure](err); ok || !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v (%T), want context.Canceled and no Failure", err, err)
	}
}

func TestNewHTTP(t *testing.T) {
	t.Parallel()
	m := &manifest.Manifest{ID: "x", Kind: manifest.KindHTTP, URL: "http://127.0.0.1/", Timeout: time.Second}
	if _, err := NewHTTP(m, nil, nil); err == nil {
		t.Error("NewHTTP accepted no secret")
	}
	client := &http.Client{}
	if _, err := NewHTTP(m, testSecret, client); err != nil {
		t.Fatal(err)
	}
	if client.CheckRedirect != nil {
		t.Error("NewHTTP changed the caller's client")
	}
	m.Kind = manifest.KindStdin
	if _, err := NewHTTP(m, testSecret, nil); err == nil {
		t.Error("NewHTTP accepted a stdin plugin")
	}
}
