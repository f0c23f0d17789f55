package api

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/mairust/mairust/agent/outbound/queue"
	"github.com/mairust/mairust/agent/policy"
)

// fakeOutbound has suspended accounts and three delivery log entries; it
// keeps its releases and the arguments of its last Log.
type fakeOutbound struct {
	suspended map[string]time.Time
	released  []string // "account by why"
	logArgs   string   // "tenant user limit offset"
}

func (f *fakeOutbound) Status(_ context.Context, account string) (policy.Status, error) {
	if at, ok := f.suspended[account]; ok {
		return policy.Status{Account: account, State: policy.Suspended, SuspendedAt: at, Reason: "rate 1.0", By: "policy"}, nil
	}
	return policy.Status{Account: account, State: policy.Allowed}, nil
}

func (f *fakeOutbound) Release(_ context.Context, account, by, why string) error {
	if _, ok := f.suspended[account]; !ok {
		return fmt.Errorf("policy: release %s: %w", account, policy.ErrNotSuspended)
	}
	delete(f.suspended, account)
	f.released = append(f.released, account+" "+by+" "+why)
	return nil
}

func (f *fakeOutbound) Log(_ context.Context, tenantID string, userID int64, limit, offset int) ([]queue.LogEntry, error) {
	f.logArgs = fmt.Sprint(tenantID != "", userID, limit, offset)
	all := []queue.LogEntry{{ID: 3, Recipient: "c@remote.test", Status: "delivered", Code: 250}, {ID: 2, Recipient: "b@remote.test", Status: "deferred", Code: 451}, {ID: 1}}
	return all[min(offset, 3):min(offset+limit, 3)], nil
}

func TestOutboundEndpoints(t *testing.T) {
	e := newEnv(t)
	e.otherTenant()
	alice, carol, erin := e.login("alice@example.test").AccessToken, e.login("carol@admin.test").AccessToken, e.login("erin@other.test").AccessToken
	e.wantProblem("GET", "/api/v1/outbound/status", alice, nil, 404, "")
	suspendedAt := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	fo := &fakeOutbound{suspended: map[string]time.Time{"alice@example.test": suspendedAt, "dave@other.test": suspendedAt}}
	e.srv.SetSending(&fakeSender{}, fo)

	var st outboundStatus
	if resp := e.call("GET", "/api/v1/outbound/status", alice, nil, &st); resp.StatusCode != 200 || st.State != policy.Suspended || st.Account != "alice@example.test" ||
		st.SuspendedAt == nil || !st.SuspendedAt.Equal(suspendedAt) || st.SoftUntil != nil {
		t.Fatalf("own status: %d %+v", resp.StatusCode, st)
	}

	// Only the tenant's administrators, only for the tenant's accounts.
	const aliceAccount = "/api/v1/admin/outbound/accounts/alice@example.test"
	e.wantProblem("GET", aliceAccount, alice, nil, 403, "")
	e.wantProblem("GET", aliceAccount, erin, nil, 404, "account")
	e.wantProblem("POST", aliceAccount+"/release", erin, releaseRequest{Why: "mine now"}, 404, "account")
	e.wantProblem("GET", "/api/v1/admin/outbound/accounts/dave@other.test", carol, nil, 404, "account")
	e.wantProblem("GET", "/api/v1/admin/outbound/accounts/nobody", carol, nil, 400, "account")
	if resp := e.call("GET", "/api/v1/admin/outbound/accounts/ALICE@example.test", carol, nil, &st); resp.StatusCode != 200 || st.State != policy.Suspended {
		t.Fatalf("admin status: %d %+v", resp.StatusCode, st)
	}

	e.wantProblem("POST", aliceAccount+"/release", carol, releaseRequest{}, 400, "why")
	e.wantProblem("POST", aliceAccount+"/release", carol, releaseRequest{Why: "  "}, 400, "why")
	if resp := e.call("POST", aliceAccount+"/release", carol, releaseRequest{Why: "password changed"}, &st); resp.StatusCode != 200 || st.State != policy.Allowed || st.SuspendedAt != nil {
		t.Fatalf("release: %d %+v", resp.StatusCode, st)
	}
	e.wantProblem("POST", aliceAccount+"/release", carol, releaseRequest{Why: "again"}, 409, "account")
	if fmt.Sprint(fo.released) != "[alice@example.test carol@admin.test password changed]" || len(fo.suspended) != 1 {
		t.Fatalf("releases %v, still suspended %v", fo.released, fo.suspended)
	}
	var actor, detail string
	if err := e.pool.QueryRow(t.Context(), `SELECT actor, detail->>'account' || ': ' || (detail->>'why') FROM events WHERE kind = 'admin.outbound.release'`).Scan(&actor, &detail); err != nil ||
		actor != "carol@admin.test" || detail != "alice@example.test: password changed" {
		t.Fatalf("admin event by %q: %q, %v", actor, detail, err)
	}
}

func TestDeliveryLogs(t *testing.T) {
	e := newEnv(t)
	alice, carol := e.login("alice@example.test").AccessToken, e.login("carol@admin.test").AccessToken
	fo := &fakeOutbound{}
	e.srv.SetSending(&fakeSender{}, fo)
	var aliceID int64
	if err := e.pool.QueryRow(t.Context(), `SELECT id FROM mail_users WHERE address = 'alice@example.test'`).Scan(&aliceID); err != nil {
		t.Fatal(err)
	}
	var page deliveryPage
	if resp := e.call("GET", "/api/v1/outbound/log?limit=2", alice, nil, &page); resp.StatusCode != 200 || len(page.Deliveries) != 2 || !page.HasMore ||
		page.Deliveries[0].Recipient != "c@remote.test" || page.Deliveries[1].Code != 451 || fo.logArgs != fmt.Sprint(true, aliceID, 3, 0) {
		t.Fatalf("own log: %d %+v (Log %s)", resp.StatusCode, page, fo.logArgs)
	}
	if resp := e.call("GET", "/api/v1/admin/outbound/log?offset=2", carol, nil, &page); resp.StatusCode != 200 || len(page.Deliveries) != 1 || page.HasMore || fo.logArgs != "true 0 101 2" {
		t.Fatalf("tenant log: %d %+v (Log %s)", resp.StatusCode, page, fo.logArgs)
	}
	e.wantProblem("GET", "/api/v1/admin/outbound/log", alice, nil, 403, "")
	e.wantProblem("GET", "/api/v1/outbound/log?limit=1000", alice, nil, 400, "limit")
	e.wantProblem("GET", "/api/v1/outbound/log?offset=-1", alice, nil, 400, "offset")
	if resp := e.call("GET", "/api/v1/outbound/log?offset=5", alice, nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("past the end: %d", resp.StatusCode)
	}
}
