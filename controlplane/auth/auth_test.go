package auth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
)

// call sends a Connect unary request for path with the Authorization
// header h through the middleware and returns the status and the
// principal the handler saw.
func call(t *testing.T, k *Keys, check Checker, path, h string) (int, Principal, bool) {
	t.Helper()
	var seen Principal
	var ok bool
	mw := Middleware(k, map[string]bool{"/x.v1.S/Public": true}, check, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, ok = From(r.Context())
		w.WriteHeader(http.StatusOK)
	}))
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	if h != "" {
		req.Header.Set("Authorization", h)
	}
	rec := httptest.NewRecorder()
	mw.ServeHTTP(rec, req)
	return rec.Code, seen, ok
}

func TestMiddleware(t *testing.T) {
	k, err := NewKeys("", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	session, _, err := k.Issue(Principal{Kind: KindSession, AccountID: "acc-1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	agent, _, _ := k.Issue(Principal{Kind: KindAgent, AgentID: "ag-1", TenantID: "t-1"}, time.Hour)
	other, _ := NewKeys("", t.TempDir())
	forged, _, _ := other.Issue(Principal{Kind: KindSession, AccountID: "acc-1"}, time.Hour)
	k.now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
	expired, _, _ := k.Issue(Principal{Kind: KindSession, AccountID: "acc-1"}, time.Hour)
	k.now = time.Now

	var checked Principal
	check := func(_ context.Context, p Principal) error {
		checked = p
		switch p.AgentID {
		case "revoked":
			return errors.New("this agent was revoked")
		case "unsure":
			return connect.NewError(connect.CodeUnavailable, errors.New("database down"))
		}
		return nil
	}
	revoked, _, _ := k.Issue(Principal{Kind: KindAgent, AgentID: "revoked", TenantID: "t-1"}, time.Hour)
	unsure, _, _ := k.Issue(Principal{Kind: KindAgent, AgentID: "unsure", TenantID: "t-1"}, time.Hour)

	for _, tc := range []struct {
		name, path, header string
		status             int
		want               Principal
	}{
		{"public without a token", "/x.v1.S/Public", "", 200, Principal{}},
		{"private without a token", "/x.v1.S/Private", "", 401, Principal{}},
		{"not bearer", "/x.v1.S/Private", "Basic abc", 401, Principal{}},
		{"garbage", "/x.v1.S/Private", "Bearer abc", 401, Principal{}},
		{"another key", "/x.v1.S/Private", "Bearer " + forged, 401, Principal{}},
		{"expired", "/x.v1.S/Private", "Bearer " + expired, 401, Principal{}},
		{"session", "/x.v1.S/Private", "Bearer " + session, 200, Principal{Kind: KindSession, AccountID: "acc-1"}},
		{"agent", "/x.v1.S/Private", "Bearer " + agent, 200, Principal{Kind: KindAgent, AgentID: "ag-1", TenantID: "t-1"}},
		{"revoked agent", "/x.v1.S/Private", "Bearer " + revoked, 403, Principal{}},
		{"check unavailable", "/x.v1.S/Private", "Bearer " + unsure, 503, Principal{}},
		{"public with a bad token", "/x.v1.S/Public", "Bearer abc", 401, Principal{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, p, ok := call(t, k, check, tc.path, tc.header)
			if status != tc.status || p != tc.want || ok != (tc.want != Principal{}) {
				t.Fatalf("status %d principal %+v (%v); want %d %+v", status, p, ok, tc.status, tc.want)
			}
		})
	}
	if checked.AgentID != "unsure" {
		t.Errorf("the checker was last asked about %+v", checked)
	}
}
