package api

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/agent/blobstore"
	"github.com/mairust/mairust/agent/mailparse"
	"github.com/mairust/mairust/agent/mailstore"
)

// page is any admin listing.
type page struct {
	Domains []accounts.Domain   `json:"domains"`
	Users   []accounts.MailUser `json:"users"`
	Aliases []accounts.Alias    `json:"aliases"`
	Events  []logEvent          `json:"events"`
	HasMore bool                `json:"has_more"`
}

// otherTenant adds the tenant "other" with the domain other.test, a user
// dave and an admin erin (passwords "pw-" + address, like the harness's).
func (e *env) otherTenant() {
	e.t.Helper()
	ctx := e.t.Context()
	acc := accounts.New(e.pool)
	tenant, err := acc.EnsureTenant(ctx, "other")
	if err != nil {
		e.t.Fatal(err)
	}
	if err := acc.CreateDomain(ctx, tenant, "other.test"); err != nil {
		e.t.Fatal(err)
	}
	for _, u := range []string{"dave@other.test", "erin@other.test"} {
		if err := acc.CreateUser(ctx, u, "pw-"+u, u == "erin@other.test"); err != nil {
			e.t.Fatal(err)
		}
	}
}

// wantProblem sends a request and checks that it is answered with problem
// JSON of status naming field.
func (e *env) wantProblem(method, path, token string, body any, status int, field string) Problem {
	e.t.Helper()
	var p Problem
	resp := e.call(method, path, token, body, &p)
	if resp.StatusCode != status || p.Status != status || p.Field != field || p.Detail == "" || resp.Header.Get("Content-Type") != "application/problem+json" {
		e.t.Errorf("%s %s %v: %d %+v, want %d naming %q", method, path, body, resp.StatusCode, p, status, field)
	}
	return p
}

// list fetches a listing and fails the test unless it answers 200.
func (e *env) list(path, token string) page {
	e.t.Helper()
	var p page
	if resp := e.call("GET", path, token, nil, &p); resp.StatusCode != 200 {
		e.t.Fatalf("GET %s: %d", path, resp.StatusCode)
	}
	return p
}

// loginStatus returns the status of a login with address and password.
func (e *env) loginStatus(address, password string) int {
	e.t.Helper()
	return e.call("POST", "/api/v1/auth/login", "", loginRequest{Address: address, Password: password}, nil).StatusCode
}

func domainNames(p page) []string {
	var names []string
	for _, d := range p.Domains {
		names = append(names, d.Name)
	}
	return names
}

func userAddresses(p page) []string {
	var addrs []string
	for _, u := range p.Users {
		addrs = append(addrs, u.Address)
	}
	return addrs
}

func aliasAddresses(p page) []string {
	var addrs []string
	for _, a := range p.Aliases {
		addrs = append(addrs, a.Address)
	}
	return addrs
}

// domainID returns the id of the domain called name in a listing.
func domainID(t *testing.T, p page, name string) int64 {
	t.Helper()
	for _, d := range p.Domains {
		if d.Name == name {
			return d.ID
		}
	}
	t.Fatalf("domain %s not in %v", name, domainNames(p))
	return 0
}

// userID returns the id of the user with address in a listing.
func userID(t *testing.T, p page, address string) int64 {
	t.Helper()
	for _, u := range p.Users {
		if u.Address == address {
			return u.ID
		}
	}
	t.Fatalf("user %s not in %v", address, userAddresses(p))
	return 0
}

// eventKinds returns the kinds of the events of tenant by actor, oldest first.
func (e *env) eventKinds(tenant, actor string) []string {
	e.t.Helper()
	rows, err := e.pool.Query(e.t.Context(), `
		SELECT kind FROM events WHERE tenant_id = (SELECT id FROM tenants WHERE name = $1) AND actor = $2 ORDER BY id`, tenant, actor)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var kinds []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			e.t.Fatal(err)
		}
		kinds = append(kinds, k)
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return kinds
}

func TestAdminOnlyForAdmins(t *testing.T) {
	e := newEnv(t)
	alice := e.login("alice@example.test").AccessToken
	endpoints := []struct {
		method, path string
		body         any
	}{
		{"GET", "/api/v1/admin/domains", nil},
		{"POST", "/api/v1/admin/domains", map[string]any{"name": "new.test"}},
		{"PATCH", "/api/v1/admin/domains/1", map[string]any{"disabled": true}},
		{"DELETE", "/api/v1/admin/domains/1", nil},
		{"GET", "/api/v1/admin/users", nil},
		{"POST", "/api/v1/admin/users", map[string]any{"address": "x@example.test", "password": "12345678"}},
		{"PATCH", "/api/v1/admin/users/1", map[string]any{"admin": true}},
		{"DELETE", "/api/v1/admin/users/1", nil},
		{"GET", "/api/v1/admin/aliases", nil},
		{"POST", "/api/v1/admin/aliases", map[string]any{"address": "x@example.test", "user": "alice@example.test"}},
		{"DELETE", "/api/v1/admin/aliases/1", nil},
		{"GET", "/api/v1/admin/logs", nil},
	}
	for _, ep := range endpoints {
		e.wantProblem(ep.method, ep.path, alice, ep.body, 403, "")
		e.wantProblem(ep.method, ep.path, "", ep.body, 401, "Authorization")
	}
	var n int
	e.pool.QueryRow(t.Context(), `SELECT (SELECT count(*) FROM domains) + (SELECT count(*) FROM mail_users WHERE is_admin)
		+ (SELECT count(*) FROM mail_aliases) + (SELECT count(*) FROM events WHERE kind LIKE 'admin.%')`).Scan(&n)
	if n != 3 {
		t.Fatalf("refused requests changed something: %d domains, admins, aliases and admin events, want 2 + 1 + 0 + 0", n)
	}

	// An API token of an admin works; the admin flag is read at each
	// request, so that a demoted admin's access token stops working.
	carol := e.login("carol@admin.test").AccessToken
	var tok apiToken
	e.call("POST", "/api/v1/tokens", carol, createTokenRequest{Name: "admin script"}, &tok)
	e.list("/api/v1/admin/domains", tok.Token)
	e.pool.Exec(t.Context(), `UPDATE mail_users SET is_admin = false WHERE address = 'carol@admin.test'`)
	e.wantProblem("GET", "/api/v1/admin/domains", carol, nil, 403, "")
	e.wantProblem("GET", "/api/v1/admin/domains", tok.Token, nil, 403, "")
	e.pool.Exec(t.Context(), `UPDATE mail_users SET is_admin = true, disabled = true WHERE address = 'carol@admin.test'`)
	e.wantProblem("GET", "/api/v1/admin/domains", carol, nil, 401, "Authorization")
}

func TestAdminDomains(t *testing.T) {
	e := newEnv(t)
	e.otherTenant()
	carol := e.login("carol@admin.test").AccessToken
	erin := e.login("erin@other.test").AccessToken
	const domains = "/api/v1/admin/domains"

	if got := domainNames(e.list(domains, carol)); !slices.Equal(got, []string{"example.test", "admin.test"}) {
		t.Fatalf("carol lists %v", got)
	}
	theirs := e.list(domains, erin)
	if got := domainNames(theirs); !slices.Equal(got, []string{"other.test"}) {
		t.Fatalf("erin lists %v", got)
	}
	otherID := domainID(t, theirs, "other.test")

	var d accounts.Domain
	if resp := e.call("POST", domains, carol, map[string]any{"name": " New.Test. "}, &d); resp.StatusCode != 201 || d.Name != "new.test" || d.ID == 0 || d.Disabled {
		t.Fatalf("create: %d %+v", resp.StatusCode, d)
	}
	for _, tc := range []struct {
		body   any
		status int
		field  string
	}{
		{map[string]any{"name": "new.test"}, 409, "name"},
		{map[string]any{"name": "OTHER.test"}, 409, "name"}, // erin's
		{map[string]any{"name": ""}, 400, "name"},
		{map[string]any{"name": "a b.test"}, 400, "name"},
		{map[string]any{"name": "user@x.test"}, 400, "name"},
		{map[string]any{"name": "-x.test"}, 400, "name"},
		{map[string]any{"name": "x..test"}, 400, "name"},
		{map[string]any{"name": strings.Repeat("a", 64) + ".test"}, 400, "name"},
		{map[string]any{"name": strings.Repeat("abcdefgh.", 28) + "test"}, 400, "name"},
		{map[string]any{"name": 5}, 400, "name"},
		{map[string]any{"nam": "x.test"}, 400, "nam"},
	} {
		e.wantProblem("POST", domains, carol, tc.body, tc.status, tc.field)
	}
	if got := domainNames(e.list(domains, erin)); !slices.Equal(got, []string{"other.test"}) {
		t.Fatalf("after carol's attempts erin lists %v", got)
	}

	// Keyset pagination.
	first := e.list(domains+"?limit=2", carol)
	rest := e.list(fmt.Sprintf("%s?limit=2&after=%d", domains, first.Domains[1].ID), carol)
	if got := append(domainNames(first), domainNames(rest)...); !first.HasMore || rest.HasMore || !slices.Equal(got, []string{"example.test", "admin.test", "new.test"}) {
		t.Fatalf("pages %v (more %v) then %v (more %v)", domainNames(first), first.HasMore, domainNames(rest), rest.HasMore)
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=x", "after=-1", "after=1.5"} {
		e.wantProblem("GET", domains+"?"+q, carol, nil, 400, strings.Split(q, "=")[0])
	}

	// Disabling a domain stops its users' logins; enabling it restores them.
	example := domainID(t, first, "example.test")
	path := fmt.Sprintf("%s/%d", domains, example)
	if resp := e.call("PATCH", path, carol, map[string]any{"disabled": true}, &d); resp.StatusCode != 200 || !d.Disabled || d.Name != "example.test" {
		t.Fatalf("disable: %d %+v", resp.StatusCode, d)
	}
	if st := e.loginStatus("alice@example.test", "pw-alice@example.test"); st != 401 {
		t.Fatalf("login in a disabled domain: %d", st)
	}
	e.call("PATCH", path, carol, map[string]any{"disabled": false}, &d)
	if st := e.loginStatus("alice@example.test", "pw-alice@example.test"); d.Disabled || st != 200 {
		t.Fatalf("login after enabling the domain: %d", st)
	}
	e.wantProblem("PATCH", path, carol, map[string]any{}, 400, "disabled")
	e.wantProblem("PATCH", path, carol, map[string]any{"disabled": "yes"}, 400, "disabled")
	e.wantProblem("PATCH", domains+"/abc", carol, map[string]any{"disabled": true}, 400, "id")
	e.wantProblem("PATCH", domains+"/0", carol, map[string]any{"disabled": true}, 400, "id")
	e.wantProblem("PATCH", domains+"/999999", carol, map[string]any{"disabled": true}, 404, "id")

	// Every id of the other tenant is unknown: by guessing, each admin
	// changes only its own domains (and not the one of its own address).
	var spare accounts.Domain
	e.call("POST", domains, erin, map[string]any{"name": "spare.other.test"}, &spare)
	for id := int64(1); id <= 10; id++ {
		path := fmt.Sprintf("%s/%d", domains, id)
		want := map[int64]int{otherID: 409, spare.ID: 200}[id]
		if want == 0 {
			want = 404
			e.wantProblem("DELETE", path, erin, nil, 404, "id")
		}
		if st := e.call("PATCH", path, erin, map[string]any{"disabled": true}, nil).StatusCode; st != want {
			t.Errorf("erin PATCH domain %d: %d, want %d", id, st, want)
		}
	}
	e.wantProblem("PATCH", fmt.Sprintf("%s/%d", domains, otherID), carol, map[string]any{"disabled": false}, 404, "id")
	e.wantProblem("DELETE", fmt.Sprintf("%s/%d", domains, spare.ID), carol, nil, 404, "id")
	for _, d := range e.list(domains, carol).Domains {
		if d.Disabled {
			t.Errorf("erin disabled carol's domain %s", d.Name)
		}
	}
	if theirs := e.list(domains, erin); len(theirs.Domains) != 2 || theirs.Domains[0].Disabled || !theirs.Domains[1].Disabled {
		t.Errorf("erin's domains after her PATCHes and carol's attempts: %+v", theirs.Domains)
	}

	// A domain with users is not deleted; an empty one is.
	e.wantProblem("DELETE", path, carol, nil, 409, "id")
	if st := e.loginStatus("bob@example.test", "pw-bob@example.test"); st != 200 {
		t.Fatalf("bob after the refused domain deletion: %d", st)
	}
	newPath := fmt.Sprintf("%s/%d", domains, domainID(t, e.list(domains, carol), "new.test"))
	if resp := e.call("DELETE", newPath, carol, nil, nil); resp.StatusCode != 204 {
		t.Fatalf("delete an empty domain: %d", resp.StatusCode)
	}
	e.wantProblem("DELETE", newPath, carol, nil, 404, "id")
	if got := domainNames(e.list(domains, carol)); !slices.Equal(got, []string{"example.test", "admin.test"}) {
		t.Fatalf("after deletion carol lists %v", got)
	}

	want := []string{"auth.login", "admin.domain.create", "admin.domain.update", "admin.domain.update", "admin.domain.delete"}
	if got := e.eventKinds("test", "carol@admin.test"); !slices.Equal(got, want) {
		t.Errorf("carol's events %v, want %v", got, want)
	}
	if got := e.eventKinds("other", "erin@other.test"); !slices.Equal(got, []string{"auth.login", "admin.domain.create", "admin.domain.update"}) {
		t.Errorf("erin's events %v", got)
	}
}

func TestAdminUsers(t *testing.T) {
	e := newEnv(t)
	e.otherTenant()
	carol := e.login("carol@admin.test").AccessToken
	erin := e.login("erin@other.test").AccessToken
	const users = "/api/v1/admin/users"

	all := e.list(users, carol)
	if got := userAddresses(all); !slices.Equal(got, []string{"alice@example.test", "bob@example.test", "carol@admin.test"}) {
		t.Fatalf("carol lists %v", got)
	}
	if got := userAddresses(e.list(users+"?domain=Example.test", carol)); !slices.Equal(got, []string{"alice@example.test", "bob@example.test"}) {
		t.Fatalf("carol lists in example.test %v", got)
	}
	theirs := e.list(users, erin)
	if got := userAddresses(theirs); !slices.Equal(got, []string{"dave@other.test", "erin@other.test"}) {
		t.Fatalf("erin lists %v", got)
	}
	e.wantProblem("GET", users+"?domain=other.test", carol, nil, 404, "domain")
	e.wantProblem("GET", users+"?domain=nowhere.test", carol, nil, 404, "domain")
	e.wantProblem("GET", users+"?domain=a%20b", carol, nil, 400, "domain")
	e.wantProblem("GET", users+"?limit=0", carol, nil, 400, "limit")
	first := e.list(users+"?limit=2", carol)
	rest := e.list(fmt.Sprintf("%s?limit=2&after=%d", users, first.Users[1].ID), carol)
	if !first.HasMore || rest.HasMore || len(first.Users) != 2 || userAddresses(rest)[0] != "carol@admin.test" {
		t.Fatalf("pages %v then %v", userAddresses(first), userAddresses(rest))
	}

	// Creation and its validation.
	long := strings.Repeat("p", 1024)
	for _, tc := range []struct {
		body   any
		status int
		field  string
	}{
		{map[string]any{"address": "not-an-address", "password": long}, 400, "address"},
		{map[string]any{"address": "x@other.test", "password": long}, 400, "address"}, // erin's domain
		{map[string]any{"address": "x@nowhere.test", "password": long}, 400, "address"},
		{map[string]any{"address": "alice@EXAMPLE.test", "password": long}, 409, "address"},
		{map[string]any{"address": "x@example.test"}, 400, "password"},
		{map[string]any{"address": "x@example.test", "password": "1234567"}, 400, "password"},
		{map[string]any{"address": "x@example.test", "password": long + "p"}, 400, "password"},
		{map[string]any{"address": "x@example.test", "password": long, "quota_bytes": -1}, 400, "quota_bytes"},
		{map[string]any{"address": "x@example.test", "password": long, "quota_bytes": 1.5}, 400, "quota_bytes"},
		{map[string]any{"address": "x@example.test", "password": long, "admin": "yes"}, 400, "admin"},
		{map[string]any{"address": "x@example.test", "password": long, "role": "admin"}, 400, "role"},
	} {
		e.wantProblem("POST", users, carol, tc.body, tc.status, tc.field)
	}
	if got := userAddresses(e.list(users, erin)); len(got) != 2 {
		t.Fatalf("after carol's attempts erin lists %v", got)
	}
	var u accounts.MailUser
	if resp := e.call("POST", users, carol, map[string]any{"address": " Frank@Example.test", "password": "12345678", "quota_bytes": 1000}, &u); resp.StatusCode != 201 ||
		u.Address != "frank@example.test" || u.QuotaBytes != 1000 || u.Admin || u.Disabled || u.DomainID != domainID(t, e.list("/api/v1/admin/domains", carol), "example.test") {
		t.Fatalf("create: %d %+v", resp.StatusCode, u)
	}
	e.call("POST", users, carol, map[string]any{"address": "grace@admin.test", "password": long, "admin": true}, nil)
	if st := e.loginStatus("grace@admin.test", long); st != 200 {
		t.Fatalf("login of a created user: %d", st)
	}
	var folders int
	e.pool.QueryRow(t.Context(), `SELECT count(*) FROM folders WHERE user_id = $1`, u.ID).Scan(&folders)
	if folders != len(accounts.StandardFolders) {
		t.Fatalf("created user has %d folders", folders)
	}

	// Changes.
	frank := fmt.Sprintf("%s/%d", users, u.ID)
	var session tokenResponse
	e.call("POST", "/api/v1/auth/login", "", loginRequest{Address: "frank@example.test", Password: "12345678"}, &session)
	if resp := e.call("PATCH", frank, carol, map[string]any{"password": "pw-frank@example.test"}, &u); resp.StatusCode != 200 {
		t.Fatalf("new password: %d", resp.StatusCode)
	}
	if e.loginStatus("frank@example.test", "12345678") != 401 || e.loginStatus("frank@example.test", "pw-frank@example.test") != 200 {
		t.Fatal("the new password is not the one that works")
	}
	if resp := e.call("POST", "/api/v1/auth/refresh", "", refreshRequest{session.RefreshToken}, nil); resp.StatusCode != 401 {
		t.Fatalf("a session from before the password change refreshes: %d", resp.StatusCode)
	}
	if resp := e.call("PATCH", frank, carol, map[string]any{"disabled": true}, &u); resp.StatusCode != 200 || !u.Disabled {
		t.Fatalf("disable: %d %+v", resp.StatusCode, u)
	}
	if st := e.loginStatus("frank@example.test", "pw-frank@example.test"); st != 401 {
		t.Fatalf("login of a disabled user: %d", st)
	}
	if resp := e.call("PATCH", frank, carol, map[string]any{"disabled": false, "admin": true, "quota_bytes": 0}, &u); resp.StatusCode != 200 || u.Disabled || !u.Admin || u.QuotaBytes != 0 {
		t.Fatalf("enable, promote, unlimited quota: %d %+v", resp.StatusCode, u)
	}
	e.list("/api/v1/admin/domains", e.login("frank@example.test").AccessToken)
	for _, tc := range []struct {
		path   string
		body   any
		status int
		field  string
	}{
		{frank, map[string]any{}, 400, ""},
		{frank, map[string]any{"password": "short"}, 400, "password"},
		{frank, map[string]any{"quota_bytes": -1}, 400, "quota_bytes"},
		{frank, map[string]any{"disabled": "no"}, 400, "disabled"},
		{frank, map[string]any{"address": "f@example.test"}, 400, "address"},
		{users + "/x", map[string]any{"admin": true}, 400, "id"},
		{users + "/999999", map[string]any{"admin": true}, 404, "id"},
		{fmt.Sprintf("%s/%d", users, userID(t, theirs, "dave@other.test")), map[string]any{"disabled": true}, 404, "id"},
		{fmt.Sprintf("%s/%d", users, userID(t, all, "carol@admin.test")), map[string]any{"disabled": true}, 409, "disabled"},
		{fmt.Sprintf("%s/%d", users, userID(t, all, "carol@admin.test")), map[string]any{"admin": false}, 409, "admin"},
	} {
		e.wantProblem("PATCH", tc.path, carol, tc.body, tc.status, tc.field)
	}
	e.wantProblem("DELETE", fmt.Sprintf("%s/%d", users, userID(t, all, "carol@admin.test")), carol, nil, 409, "id")
	e.wantProblem("DELETE", users+"/999999", carol, nil, 404, "id")

	// By guessing ids, erin changes and deletes only her own tenant's users.
	for id := int64(1); id <= 10; id++ {
		path := fmt.Sprintf("%s/%d", users, id)
		st := e.call("PATCH", path, erin, map[string]any{"quota_bytes": 7}, nil).StatusCode
		if slices.ContainsFunc(theirs.Users, func(m accounts.MailUser) bool { return m.ID == id }) != (st == 200) || (st != 200 && st != 404) {
			t.Errorf("erin PATCH user %d: %d", id, st)
		}
		if st != 200 {
			e.wantProblem("DELETE", path, erin, nil, 404, "id")
		}
	}
	for _, m := range e.list(users, carol).Users {
		if m.QuotaBytes == 7 {
			t.Errorf("erin changed carol's user %s", m.Address)
		}
	}
	for _, m := range e.list(users, erin).Users {
		if m.QuotaBytes != 7 {
			t.Errorf("erin's own user %s was not changed", m.Address)
		}
	}
	if e.loginStatus("alice@example.test", "pw-alice@example.test") != 200 || e.loginStatus("dave@other.test", "pw-dave@other.test") != 200 {
		t.Fatal("a user was disabled or deleted across tenants")
	}

	want := []string{"auth.login", "admin.user.create", "admin.user.create", "admin.user.update", "admin.user.update", "admin.user.update"}
	if got := e.eventKinds("test", "carol@admin.test"); !slices.Equal(got, want) {
		t.Errorf("carol's events %v, want %v", got, want)
	}
	var leaked int
	if err := e.pool.QueryRow(t.Context(), `SELECT count(*) FROM events WHERE detail::text LIKE '%pw-frank@%' OR detail::text LIKE '%12345678%'`).Scan(&leaked); err != nil || leaked != 0 {
		t.Errorf("%d events hold a password (%v)", leaked, err)
	}
}

func TestAdminAliases(t *testing.T) {
	e := newEnv(t)
	e.otherTenant()
	carol := e.login("carol@admin.test").AccessToken
	erin := e.login("erin@other.test").AccessToken
	const aliases = "/api/v1/admin/aliases"
	ours, theirs := e.list("/api/v1/admin/users", carol), e.list("/api/v1/admin/users", erin)
	alice, dave := userID(t, ours, "alice@example.test"), userID(t, theirs, "dave@other.test")

	// Creation, by the user's address or id, and its validation.
	var pm, abuse accounts.Alias
	if resp := e.call("POST", aliases, carol, map[string]any{"address": " PostMaster@Example.test", "user": "Alice@example.test"}, &pm); resp.StatusCode != 201 ||
		pm.Address != "postmaster@example.test" || pm.User != "alice@example.test" || pm.UserID != alice || pm.DomainID != domainID(t, e.list("/api/v1/admin/domains", carol), "example.test") {
		t.Fatalf("create: %d %+v", resp.StatusCode, pm)
	}
	if resp := e.call("POST", aliases, carol, map[string]any{"address": "abuse@admin.test", "user": fmt.Sprint(alice)}, &abuse); resp.StatusCode != 201 || abuse.UserID != alice {
		t.Fatalf("create by id: %d %+v", resp.StatusCode, abuse)
	}
	for _, tc := range []struct {
		body   any
		status int
		field  string
	}{
		{map[string]any{"address": "not-an-address", "user": "alice@example.test"}, 400, "address"},
		{map[string]any{"address": "x@other.test", "user": "alice@example.test"}, 400, "address"}, // erin's domain
		{map[string]any{"address": "x@nowhere.test", "user": "alice@example.test"}, 400, "address"},
		{map[string]any{"address": "x@example.test", "user": "dave@other.test"}, 400, "user"}, // erin's user
		{map[string]any{"address": "x@example.test", "user": fmt.Sprint(dave)}, 400, "user"},
		{map[string]any{"address": "x@example.test", "user": "nobody@example.test"}, 400, "user"},
		{map[string]any{"address": "x@example.test"}, 400, "user"},
		{map[string]any{"address": "x@example.test", "user": alice}, 400, "user"},
		{map[string]any{"address": "x@example.test", "user": "alice@example.test", "admin": true}, 400, "admin"},
		{map[string]any{"address": "postmaster@EXAMPLE.test", "user": "bob@example.test"}, 409, "address"},
		{map[string]any{"address": "bob@example.test", "user": "alice@example.test"}, 409, "address"},
	} {
		e.wantProblem("POST", aliases, carol, tc.body, tc.status, tc.field)
	}
	e.wantProblem("POST", "/api/v1/admin/users", carol, map[string]any{"address": "postmaster@example.test", "password": "12345678"}, 409, "address")

	// Listing.
	for path, want := range map[string][]string{
		aliases:                                         {"postmaster@example.test", "abuse@admin.test"},
		aliases + "?domain=admin.test":                  {"abuse@admin.test"},
		aliases + "?user=alice@example.test":            {"postmaster@example.test", "abuse@admin.test"},
		aliases + "?user=bob@example.test":              nil,
		aliases + "?address=PostMaster@example.test":    {"postmaster@example.test"},
		aliases + "?limit=1&after=" + fmt.Sprint(pm.ID): {"abuse@admin.test"},
	} {
		if got := aliasAddresses(e.list(path, carol)); !slices.Equal(got, want) {
			t.Errorf("GET %s: %v, want %v", path, got, want)
		}
	}
	if p := e.list(aliases+"?limit=1", carol); !p.HasMore || len(p.Aliases) != 1 || p.Aliases[0] != pm {
		t.Errorf("first page %+v, want postmaster and more", p)
	}
	e.wantProblem("GET", aliases+"?domain=other.test", carol, nil, 404, "domain")
	e.wantProblem("GET", aliases+"?user=dave@other.test", carol, nil, 400, "user")
	e.wantProblem("GET", aliases+"?address=x", carol, nil, 400, "address")
	e.wantProblem("GET", aliases+"?limit=0", carol, nil, 400, "limit")

	// Erin, of the other tenant, neither sees nor touches carol's aliases
	// and cannot point hers at carol's users.
	var info accounts.Alias
	if resp := e.call("POST", aliases, erin, map[string]any{"address": "info@other.test", "user": "dave@other.test"}, &info); resp.StatusCode != 201 {
		t.Fatalf("erin's create: %d", resp.StatusCode)
	}
	if got := aliasAddresses(e.list(aliases, erin)); !slices.Equal(got, []string{"info@other.test"}) {
		t.Errorf("erin lists %v", got)
	}
	if got := aliasAddresses(e.list(aliases+"?address=postmaster@example.test", erin)); got != nil {
		t.Errorf("erin finds carol's alias: %v", got)
	}
	e.wantProblem("GET", aliases+"?user=alice@example.test", erin, nil, 400, "user")
	e.wantProblem("GET", aliases+"?domain=example.test", erin, nil, 404, "domain")
	e.wantProblem("POST", aliases, erin, map[string]any{"address": "x@other.test", "user": "alice@example.test"}, 400, "user")
	e.wantProblem("POST", aliases, erin, map[string]any{"address": "x@other.test", "user": fmt.Sprint(alice)}, 400, "user")
	e.wantProblem("POST", aliases, erin, map[string]any{"address": "x@example.test", "user": "dave@other.test"}, 400, "address")
	for _, id := range []int64{pm.ID, abuse.ID} {
		e.wantProblem("DELETE", fmt.Sprintf("%s/%d", aliases, id), erin, nil, 404, "id")
	}
	if got := aliasAddresses(e.list(aliases, carol)); !slices.Equal(got, []string{"postmaster@example.test", "abuse@admin.test"}) {
		t.Fatalf("after erin's attempts carol lists %v", got)
	}

	// Deletion.
	if resp := e.call("DELETE", fmt.Sprintf("%s/%d", aliases, pm.ID), carol, nil, nil); resp.StatusCode != 204 {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	e.wantProblem("DELETE", fmt.Sprintf("%s/%d", aliases, pm.ID), carol, nil, 404, "id")
	e.wantProblem("DELETE", fmt.Sprintf("%s/%d", aliases, info.ID), carol, nil, 404, "id")
	e.wantProblem("DELETE", aliases+"/x", carol, nil, 400, "id")
	if got := aliasAddresses(e.list(aliases, carol)); !slices.Equal(got, []string{"abuse@admin.test"}) {
		t.Errorf("after the deletion carol lists %v", got)
	}
	if got := aliasAddresses(e.list(aliases, erin)); !slices.Equal(got, []string{"info@other.test"}) {
		t.Errorf("after carol's deletion erin lists %v", got)
	}

	want := []string{"auth.login", "admin.alias.create", "admin.alias.create", "admin.alias.delete"}
	if got := e.eventKinds("test", "carol@admin.test"); !slices.Equal(got, want) {
		t.Errorf("carol's events %v, want %v", got, want)
	}
}

// Deleting a user deletes its mail; the mail store's cleanup then removes
// the blobs no other user's message references.
func TestAdminDeleteUserCollectsBlobs(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	carol := e.login("carol@admin.test").AccessToken
	acc := accounts.New(e.pool)
	alice, _ := acc.Lookup(ctx, "alice@example.test")
	bob, _ := acc.Lookup(ctx, "bob@example.test")
	deliver := func(data string, to ...accounts.Recipient) string {
		if _, err := e.store.Deliver(ctx, mailstore.Delivery{MailFrom: "s@remote.test", Recipients: to, Data: []byte(data), Header: mailparse.Header{Subject: "s"}}); err != nil {
			t.Fatal(err)
		}
		return blobstore.Key([]byte(data))
	}
	own := deliver("for alice only\r\n", alice)
	shared := deliver("for both\r\n", alice, bob)
	aliceToken := e.login("alice@example.test").AccessToken

	if resp := e.call("DELETE", fmt.Sprintf("/api/v1/admin/users/%d", alice.UserID), carol, nil, nil); resp.StatusCode != 204 {
		t.Fatalf("delete alice: %d", resp.StatusCode)
	}
	var left int
	e.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM messages WHERE user_id = $1) + (SELECT count(*) FROM folders WHERE user_id = $1)
		+ (SELECT count(*) FROM refresh_tokens WHERE user_id = $1)`, alice.UserID).Scan(&left)
	if left != 0 {
		t.Fatalf("%d messages, folders and sessions of alice left", left)
	}
	if st := e.loginStatus("alice@example.test", "pw-alice@example.test"); st != 401 {
		t.Fatalf("login of a deleted user: %d", st)
	}
	if resp := e.call("POST", "/api/v1/tokens", aliceToken, createTokenRequest{Name: "x"}, nil); resp.StatusCode == 201 {
		t.Fatal("a deleted user's access token created an API token")
	}
	res, err := e.store.Purge(ctx, time.Time{}, time.Time{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil || res.Blobs != 1 {
		t.Fatalf("purge: %+v %v, want one blob", res, err)
	}
	exists := func(key string) bool {
		r, err := e.blobs.Get(ctx, key)
		if err == nil {
			r.Close()
		}
		return err == nil
	}
	if exists(own) || !exists(shared) {
		t.Fatalf("after purge alice's blob there %v, shared blob there %v; want false, true", exists(own), exists(shared))
	}

	// With its last user gone, the domain can be deleted.
	domain := fmt.Sprintf("/api/v1/admin/domains/%d", domainID(t, e.list("/api/v1/admin/domains", carol), "example.test"))
	e.wantProblem("DELETE", domain, carol, nil, 409, "id")
	e.call("DELETE", fmt.Sprintf("/api/v1/admin/users/%d", bob.UserID), carol, nil, nil)
	if resp := e.call("DELETE", domain, carol, nil, nil); resp.StatusCode != 204 {
		t.Fatalf("delete the emptied domain: %d", resp.StatusCode)
	}
	if got := e.eventKinds("test", "carol@admin.test"); !slices.Equal(got, []string{"auth.login", "admin.user.delete", "admin.user.delete", "admin.domain.delete"}) {
		t.Errorf("carol's events %v", got)
	}
}

func TestAdminLogs(t *testing.T) {
	e := newEnv(t)
	e.otherTenant()
	carol := e.login("carol@admin.test").AccessToken
	erin := e.login("erin@other.test").AccessToken
	for range 3 {
		e.login("alice@example.test")
		e.login("dave@other.test")
	}
	const logs = "/api/v1/admin/logs"

	full := e.list(logs+"?limit=1000", carol)
	if full.HasMore || len(full.Events) != 4 {
		t.Fatalf("carol's log: %d events, more %v; want 4 logins", len(full.Events), full.HasMore)
	}
	for i, ev := range full.Events {
		if ev.Kind != "auth.login" || ev.Detail["ok"] != true || (ev.Actor != "carol@admin.test" && ev.Actor != "alice@example.test") {
			t.Errorf("carol's log shows %+v", ev)
		}
		if i > 0 && ev.ID >= full.Events[i-1].ID {
			t.Errorf("event %d after %d: not newest first", ev.ID, full.Events[i-1].ID)
		}
	}
	if last := full.Events[len(full.Events)-1]; last.Actor != "carol@admin.test" {
		t.Errorf("oldest event by %s, want carol's login", last.Actor)
	}

	// Offset pages put together give the whole log.
	var paged []logEvent
	for offset := 0; ; offset += 3 {
		p := e.list(fmt.Sprintf("%s?limit=3&offset=%d", logs, offset), carol)
		paged = append(paged, p.Events...)
		if !p.HasMore {
			break
		}
	}
	if len(paged) != len(full.Events) || !slices.EqualFunc(paged, full.Events, func(a, b logEvent) bool { return a.ID == b.ID }) {
		t.Fatalf("pages give %d events, want %d", len(paged), len(full.Events))
	}
	if p := e.list(logs+"?offset=4", carol); len(p.Events) != 0 || p.HasMore {
		t.Fatalf("past the end: %+v", p)
	}

	// Erin sees her tenant's events, which carol's admin changes do not join.
	e.call("POST", "/api/v1/admin/domains", carol, map[string]any{"name": "new.test"}, nil)
	theirs := e.list(logs, erin)
	if len(theirs.Events) != 4 {
		t.Fatalf("erin's log has %d events, want 4 logins", len(theirs.Events))
	}
	for _, ev := range theirs.Events {
		if ev.Actor != "erin@other.test" && ev.Actor != "dave@other.test" {
			t.Errorf("erin's log shows %+v", ev)
		}
	}
	if top := e.list(logs+"?limit=1", carol); len(top.Events) != 1 || !top.HasMore || top.Events[0].Kind != "admin.domain.create" || top.Events[0].Detail["name"] != "new.test" {
		t.Fatalf("newest of carol's events: %+v", top)
	}

	for _, q := range []string{"limit=0", "limit=1001", "limit=ten", "offset=-1", "offset=1000001", "offset=1e3"} {
		e.wantProblem("GET", logs+"?"+q, carol, nil, 400, strings.Split(q, "=")[0])
	}
}

// Domains and users the control plane manages are read-only here: the
// answer says where to change them, and nothing changes.
func TestAdminManagedByControlPlane(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	carol := e.login("carol@admin.test").AccessToken
	bob, err := accounts.New(e.pool).Lookup(ctx, "bob@example.test")
	if err != nil {
		t.Fatal(err)
	}
	var domain int64
	if err := e.pool.QueryRow(ctx, `UPDATE mail_users SET managed_by_controlplane = true WHERE id = $1 RETURNING domain_id`, bob.UserID).Scan(&domain); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(ctx, `UPDATE domains SET managed_by_controlplane = true WHERE id = $1`, domain); err != nil {
		t.Fatal(err)
	}
	user, dom := fmt.Sprintf("/api/v1/admin/users/%d", bob.UserID), fmt.Sprintf("/api/v1/admin/domains/%d", domain)
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"PATCH", user, map[string]any{"disabled": true}},
		{"DELETE", user, nil},
		{"PATCH", dom, map[string]any{"disabled": true}},
		{"DELETE", dom, nil},
	} {
		p := e.wantProblem(c.method, c.path, carol, c.body, 409, "id")
		if !strings.Contains(p.Detail, "change it in the console") {
			t.Errorf("%s %s: %q does not say where to change it", c.method, c.path, p.Detail)
		}
	}
	if u, err := accounts.New(e.pool).Lookup(ctx, "bob@example.test"); err != nil || u.UserID != bob.UserID {
		t.Fatalf("bob after the refusals: %+v %v", u, err)
	}
}
