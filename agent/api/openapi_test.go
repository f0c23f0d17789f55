package api

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/mairust/mairust/internal/config"
)

func TestOpenAPIIsCommitted(t *testing.T) {
	committed, err := os.ReadFile("../../docs/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(committed, OpenAPI()) {
		t.Fatal("docs/openapi.json is stale; run: go run ./cmd/mairust api openapi > docs/openapi.json")
	}
}

func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatalf("the document is not JSON: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi = %q, want 3.1.0", doc.OpenAPI)
	}
	n := 0
	for _, ops := range doc.Paths {
		n += len(ops)
	}
	routes := (&Server{}).routes()
	if n != len(routes) {
		t.Errorf("the document has %d operations, the route table %d", n, len(routes))
	}

	// A server without a database: every route is registered, and the
	// description answers without authentication.
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rate, err := newRateLimits(config.Default().RateLimit, log)
	if err != nil {
		t.Fatal(err)
	}
	h := (&Server{log: log, rate: rate}).Handler()
	for _, rt := range routes {
		if _, ok := doc.Paths[rt.path][strings.ToLower(rt.method)]; !ok {
			t.Errorf("%s %s is not in the document", rt.method, rt.path)
		}
		path := pathParam.ReplaceAllString(rt.path, "1")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(rt.method, path, nil))
		if w.Code == http.StatusNotFound || w.Code == http.StatusMethodNotAllowed {
			t.Errorf("%s %s: %d, the route is not registered", rt.method, path, w.Code)
		}
		if rt.auth == authNone && rt.method == "GET" && w.Code != http.StatusOK {
			t.Errorf("%s %s without authentication: %d, want 200", rt.method, path, w.Code)
		}
	}

	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/api/v1/docs", nil))
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("the reference page's CSP is %q", csp)
	}
	if body := w.Body.String(); !strings.Contains(body, "/api/v1/messages/{id}/raw") || !strings.Contains(body, "MessageView") {
		t.Errorf("the reference page does not list the routes:\n%s", body)
	}
}
