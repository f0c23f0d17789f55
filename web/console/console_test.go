package console_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mairust/mairust/web/console"
)

func TestHandler(t *testing.T) {
	h := console.Handler()
	for _, tc := range []struct {
		method, path string
		status       int
		contentType  string // its prefix
		cache        string
		body         string // a part of it
	}{
		{"GET", "/console/", 200, "text/html", "no-store", `<script type="module" src="/console/app.js">`},
		{"GET", "/console/verify", 200, "text/html", "no-store", `id="v-verify"`},
		{"GET", "/console/tenants/0b7e3c1a-0000-4000-8000-000000000000", 200, "text/html", "no-store", `id="v-tenant"`},
		{"HEAD", "/console/login", 200, "text/html", "no-store", ""},
		{"GET", "/console/store", 200, "text/html", "no-store", `id="v-store"`},
		{"GET", "/console/store/acme.spam-tagger", 200, "text/html", "no-store", `id="v-plugin"`}, // a plugin's id may have dots
		{"GET", "/console/store.js", 200, "text/javascript", "no-cache", "GetPlugin"},
		{"GET", "/console/developer", 200, "text/html", "no-store", `id="v-developer"`},
		{"GET", "/console/review", 200, "text/html", "no-store", `id="v-review"`},
		{"GET", "/console/developer.js", 200, "text/javascript", "no-cache", "GetSubmission"},
		{"GET", "/console/review.js", 200, "text/javascript", "no-cache", "ReviewSubmission"},
		{"GET", "/console/app.js", 200, "text/javascript", "no-cache", "import"},
		{"GET", "/console/tenant.js", 200, "text/javascript", "no-cache", "ListAgents"},
		{"GET", "/console/style.css", 200, "text/css", "no-cache", "body"},
		{"GET", "/console/nothing.js", 404, "text/plain", "", "not found"},
		{"GET", "/console/static/app.js", 404, "text/plain", "", "not found"},
		{"GET", "/elsewhere.js", 404, "text/plain", "", "not found"},
		{"POST", "/console/", 405, "text/plain", "", "GET"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		res := rec.Result()
		what := tc.method + " " + tc.path
		if res.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", what, res.StatusCode, tc.status)
		}
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.contentType) {
			t.Errorf("%s: Content-Type %q, want %s…", what, ct, tc.contentType)
		}
		if cc := res.Header.Get("Cache-Control"); cc != tc.cache {
			t.Errorf("%s: Cache-Control %q, want %q", what, cc, tc.cache)
		}
		if !strings.Contains(rec.Body.String(), tc.body) {
			t.Errorf("%s: the body has no %q", what, tc.body)
		}
		csp := res.Header.Get("Content-Security-Policy")
		for _, d := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "form-action 'none'"} {
			if !strings.Contains(csp, d) {
				t.Errorf("%s: Content-Security-Policy %q lacks %s", what, csp, d)
			}
		}
		for k, v := range map[string]string{"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"} {
			if got := res.Header.Get(k); got != v {
				t.Errorf("%s: %s %q, want %q", what, k, got, v)
			}
		}
	}
}

// TestMounted: on a mux as the control plane mounts it, /console goes to
// /console/ and the API's paths stay the API's.
func TestMounted(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("/", http.NotFoundHandler())
	mux.Handle(console.Prefix, console.Handler())
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/console", nil))
	if rec.Code/100 != 3 || rec.Header().Get("Location") != "/console/" {
		t.Errorf("/console: %d to %q", rec.Code, rec.Header().Get("Location"))
	}
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("POST", "/mairust.accounts.v1.AccountsService/LogIn", nil))
	if rec.Header().Get("Content-Security-Policy") != "" {
		t.Error("the console's handler answered an API call")
	}
}
