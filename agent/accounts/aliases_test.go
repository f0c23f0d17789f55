package accounts

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// aliasWorld is two tenants: acme with example.com and example.org, alice
// and bob; globex with globex.example and gus.
type aliasWorld struct {
	ctx                    context.Context
	acc                    *Accounts
	pool                   *pgxpool.Pool
	acme, globex           string
	alice, bob, gus        int64
	exampleCom, exampleOrg int64
}

func newAliasWorld(t *testing.T) *aliasWorld {
	t.Helper()
	ctx, acc, pool := setup(t)
	w := &aliasWorld{ctx: ctx, acc: acc, pool: pool, acme: mustTenant(t, ctx, acc, "acme"), globex: mustTenant(t, ctx, acc, "globex")}
	for tenant, domains := range map[string][]string{w.acme: {"example.com", "example.org"}, w.globex: {"globex.example"}} {
		for _, d := range domains {
			if err := acc.CreateDomain(ctx, tenant, d); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, u := range []string{"alice@example.com", "bob@example.com", "gus@globex.example"} {
		if err := acc.CreateUser(ctx, u, "pw", false); err != nil {
			t.Fatal(err)
		}
	}
	w.alice, _, _ = folderIDs(t, ctx, pool, "alice@example.com")
	w.bob, _, _ = folderIDs(t, ctx, pool, "bob@example.com")
	w.gus, _, _ = folderIDs(t, ctx, pool, "gus@globex.example")
	if err := pool.QueryRow(ctx, `SELECT (SELECT id FROM domains WHERE name = 'example.com'), (SELECT id FROM domains WHERE name = 'example.org')`).Scan(&w.exampleCom, &w.exampleOrg); err != nil {
		t.Fatal(err)
	}
	return w
}

// add adds an alias that must be accepted.
func (w *aliasWorld) add(t *testing.T, tenant, alias, user string) Alias {
	t.Helper()
	al, err := w.acc.AddAlias(w.ctx, tenant, alias, user)
	if err != nil {
		t.Fatalf("AddAlias(%s, %s): %v", alias, user, err)
	}
	return al
}

func aliasAddresses(list []Alias) []string {
	var out []string
	for _, al := range list {
		out = append(out, al.Address)
	}
	return out
}

// wantInvalid checks that err is an *InvalidError about field.
func wantInvalid(t *testing.T, what string, err error, field string) {
	t.Helper()
	var inv *InvalidError
	if !errors.As(err, &inv) || inv.Field != field || inv.Reason == "" {
		t.Errorf("%s: %v, want an InvalidError about %s", what, err, field)
	}
}

func TestAddAlias(t *testing.T) {
	w := newAliasWorld(t)
	pm := w.add(t, w.acme, " Postmaster@Example.COM ", "Alice@example.com")
	if pm.ID == 0 || pm.Address != "postmaster@example.com" || pm.UserID != w.alice || pm.User != "alice@example.com" || pm.DomainID != w.exampleCom || pm.CreatedAt.IsZero() {
		t.Errorf("alias by address = %+v", pm)
	}
	// By the user's id, in another domain of the tenant.
	abuse := w.add(t, w.acme, "abuse@example.org", strconv.FormatInt(w.alice, 10))
	if abuse.UserID != w.alice || abuse.User != "alice@example.com" || abuse.DomainID != w.exampleOrg {
		t.Errorf("alias by id = %+v", abuse)
	}

	for _, tc := range []struct{ tenant, alias, user, field string }{
		{w.acme, "not-an-address", "alice@example.com", "address"},
		{w.acme, "x@globex.example", "alice@example.com", "address"}, // globex's domain
		{w.acme, "x@nowhere.test", "alice@example.com", "address"},
		{w.acme, "x@example.com", "nobody@example.com", "user"},
		{w.acme, "x@example.com", "gus@globex.example", "user"}, // globex's user
		{w.acme, "x@example.com", strconv.FormatInt(w.gus, 10), "user"},
		{w.acme, "x@example.com", "", "user"},
		{w.acme, "x@example.com", "gus", "user"},
		{w.globex, "x@example.com", "gus@globex.example", "address"}, // acme's domain
		{w.globex, "x@globex.example", "alice@example.com", "user"},  // acme's user
	} {
		_, err := w.acc.AddAlias(w.ctx, tc.tenant, tc.alias, tc.user)
		wantInvalid(t, "AddAlias("+tc.alias+", "+tc.user+")", err, tc.field)
	}

	// An address is a user's or an alias, never both.
	for _, tc := range []struct{ alias, user string }{
		{"POSTMASTER@example.com", "bob@example.com"}, // an alias already
		{"bob@example.com", "alice@example.com"},      // a user
		{"alice@example.com", "alice@example.com"},    // the user itself
	} {
		if _, err := w.acc.AddAlias(w.ctx, w.acme, tc.alias, tc.user); !errors.Is(err, ErrExists) {
			t.Errorf("AddAlias(%s, %s): %v, want ErrExists", tc.alias, tc.user, err)
		}
	}
	if err := w.acc.CreateUser(w.ctx, "Postmaster@example.com", "pw", false); !errors.Is(err, ErrExists) {
		t.Errorf("CreateUser on an alias: %v, want ErrExists", err)
	}
	if _, err := w.acc.AddUser(w.ctx, w.acme, NewUser{Address: "abuse@example.org", Password: "12345678"}); !errors.Is(err, ErrExists) {
		t.Errorf("AddUser on an alias: %v, want ErrExists", err)
	}
	var users, aliases int
	if err := w.pool.QueryRow(w.ctx, `SELECT (SELECT count(*) FROM mail_users), (SELECT count(*) FROM mail_aliases)`).Scan(&users, &aliases); err != nil {
		t.Fatal(err)
	}
	if users != 3 || aliases != 2 {
		t.Fatalf("after the refusals: %d users, %d aliases; want 3 and 2", users, aliases)
	}
}

// The database itself keeps an address a user's or an alias, and an alias
// within one tenant, whoever writes.
func TestAliasDatabaseGuards(t *testing.T) {
	w := newAliasWorld(t)
	w.add(t, w.acme, "postmaster@example.com", "alice@example.com")
	for _, tc := range []struct {
		name, sql, code, constraint string
		args                        []any
	}{
		{"user on an alias", `INSERT INTO mail_users(tenant_id, domain_id, address, password_hash) VALUES($1, $2, 'postmaster@example.com', 'x')`,
			"23505", addressUnique, []any{w.acme, w.exampleCom}},
		{"alias on a user", `INSERT INTO mail_aliases(tenant_id, address, domain_id, user_id) VALUES($1, 'bob@example.com', $2, $3)`,
			"23505", addressUnique, []any{w.acme, w.exampleCom, w.alice}},
		{"alias to another tenant's user", `INSERT INTO mail_aliases(tenant_id, address, domain_id, user_id) VALUES($1, 'x@example.com', $2, $3)`,
			"23503", "", []any{w.acme, w.exampleCom, w.gus}},
		{"alias in another tenant's domain", `INSERT INTO mail_aliases(tenant_id, address, domain_id, user_id) VALUES($1, 'x@example.com', $2, $3)`,
			"23503", "", []any{w.globex, w.exampleCom, w.gus}},
		{"upper case", `INSERT INTO mail_aliases(tenant_id, address, domain_id, user_id) VALUES($1, 'X@example.com', $2, $3)`,
			"23514", "", []any{w.acme, w.exampleCom, w.alice}},
	} {
		_, err := w.pool.Exec(w.ctx, tc.sql, tc.args...)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != tc.code || (tc.constraint != "" && pgErr.ConstraintName != tc.constraint) {
			t.Errorf("%s: %v, want SQLSTATE %s %s", tc.name, err, tc.code, tc.constraint)
		}
	}
}

// A user created while an alias of the same address is being added waits
// for it, then is refused.
func TestAliasUserRace(t *testing.T) {
	w := newAliasWorld(t)
	tx, err := w.pool.Begin(w.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(w.ctx)
	if _, err := tx.Exec(w.ctx, `INSERT INTO mail_aliases(tenant_id, address, domain_id, user_id) VALUES($1, 'race@example.com', $2, $3)`, w.acme, w.exampleCom, w.alice); err != nil {
		t.Fatal(err)
	}
	created := make(chan error, 1)
	go func() { created <- w.acc.CreateUser(w.ctx, "race@example.com", "pw", false) }()
	for waiting := false; !waiting; {
		select {
		case err := <-created:
			t.Fatalf("CreateUser returned %v while the alias was not committed; it should wait", err)
		default:
		}
		if err := w.pool.QueryRow(w.ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO mail_users%')`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(w.ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-created; !errors.Is(err, ErrExists) {
		t.Fatalf("CreateUser after the alias committed: %v, want ErrExists", err)
	}
}

func TestListAliases(t *testing.T) {
	w := newAliasWorld(t)
	pm := w.add(t, w.acme, "postmaster@example.com", "alice@example.com")
	w.add(t, w.acme, "abuse@example.org", "alice@example.com")
	w.add(t, w.acme, "sales@example.com", "bob@example.com")
	w.add(t, w.globex, "info@globex.example", "gus@globex.example")

	for _, tc := range []struct {
		tenant string
		f      AliasFilter
		want   []string
	}{
		{w.acme, AliasFilter{}, []string{"postmaster@example.com", "abuse@example.org", "sales@example.com"}},
		{w.globex, AliasFilter{}, []string{"info@globex.example"}},
		{w.acme, AliasFilter{Domain: "Example.COM"}, []string{"postmaster@example.com", "sales@example.com"}},
		{w.acme, AliasFilter{User: "alice@example.com"}, []string{"postmaster@example.com", "abuse@example.org"}},
		{w.acme, AliasFilter{User: strconv.FormatInt(w.bob, 10)}, []string{"sales@example.com"}},
		{w.acme, AliasFilter{Domain: "example.com", User: "alice@example.com"}, []string{"postmaster@example.com"}},
		{w.acme, AliasFilter{Address: "Sales@example.com"}, []string{"sales@example.com"}},
		{w.acme, AliasFilter{Address: "info@globex.example"}, nil},
		{w.acme, AliasFilter{Limit: 2}, []string{"postmaster@example.com", "abuse@example.org"}},
		{w.acme, AliasFilter{After: pm.ID, Limit: 1}, []string{"abuse@example.org"}},
	} {
		list, err := w.acc.ListAliases(w.ctx, tc.tenant, tc.f)
		if err != nil {
			t.Errorf("ListAliases(%+v): %v", tc.f, err)
			continue
		}
		if got := aliasAddresses(list); !slices.Equal(got, tc.want) {
			t.Errorf("ListAliases(%+v) = %v, want %v", tc.f, got, tc.want)
		}
	}
	list, err := w.acc.ListAliases(w.ctx, w.acme, AliasFilter{Address: "postmaster@example.com"})
	if err != nil || len(list) != 1 || list[0] != pm {
		t.Errorf("ListAliases of postmaster = %+v, %v; want %+v", list, err, pm)
	}

	// Another tenant's domain or user is one the tenant does not have.
	for _, f := range []AliasFilter{{Domain: "globex.example"}, {Domain: "nowhere.test"}} {
		if list, err := w.acc.ListAliases(w.ctx, w.acme, f); !errors.Is(err, ErrNotFound) {
			t.Errorf("ListAliases(%+v) = %v, %v; want ErrNotFound", f, aliasAddresses(list), err)
		}
	}
	for f, field := range map[AliasFilter]string{
		{Domain: "a b"}: "domain", {User: "gus"}: "user", {Address: "x"}: "address",
		{User: "gus@globex.example"}: "user", {User: strconv.FormatInt(w.gus, 10)}: "user", {User: "nobody@example.com"}: "user",
	} {
		_, err := w.acc.ListAliases(w.ctx, w.acme, f)
		wantInvalid(t, "ListAliases", err, field)
	}
}

func TestDeleteAlias(t *testing.T) {
	w := newAliasWorld(t)
	pm := w.add(t, w.acme, "postmaster@example.com", "alice@example.com")
	info := w.add(t, w.globex, "info@globex.example", "gus@globex.example")

	if _, err := w.acc.DeleteAlias(w.ctx, w.globex, pm.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("globex deleting acme's alias: %v, want ErrNotFound", err)
	}
	got, err := w.acc.DeleteAlias(w.ctx, w.acme, pm.ID)
	if err != nil || got != pm {
		t.Fatalf("DeleteAlias = %+v, %v; want %+v", got, err, pm)
	}
	if _, err := w.acc.DeleteAlias(w.ctx, w.acme, pm.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting it again: %v, want ErrNotFound", err)
	}
	if _, err := w.acc.Lookup(w.ctx, "postmaster@example.com"); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("Lookup of a deleted alias: %v, want ErrUnknownUser", err)
	}
	if list, _ := w.acc.ListAliases(w.ctx, w.globex, AliasFilter{}); len(list) != 1 || list[0] != info {
		t.Errorf("globex's aliases after acme's deletion: %+v", list)
	}

	// Aliases go with their user and with their domain.
	w.add(t, w.acme, "a@example.org", "bob@example.com")
	w.add(t, w.acme, "b@example.com", "bob@example.com")
	w.add(t, w.acme, "c@example.org", "alice@example.com")
	if _, err := w.acc.DeleteUser(w.ctx, w.acme, w.bob); err != nil {
		t.Fatal(err)
	}
	if list, _ := w.acc.ListAliases(w.ctx, w.acme, AliasFilter{}); !slices.Equal(aliasAddresses(list), []string{"c@example.org"}) {
		t.Errorf("aliases after deleting bob: %v", aliasAddresses(list))
	}
	if _, err := w.acc.DeleteDomain(w.ctx, w.acme, w.exampleOrg); err != nil {
		t.Fatal(err)
	}
	if list, _ := w.acc.ListAliases(w.ctx, w.acme, AliasFilter{}); len(list) != 0 {
		t.Errorf("aliases after deleting example.org: %v", aliasAddresses(list))
	}
}

func TestLookupAlias(t *testing.T) {
	w := newAliasWorld(t)
	w.add(t, w.acme, "postmaster@example.com", "alice@example.com")
	w.add(t, w.acme, "abuse@example.org", "alice@example.com")
	w.add(t, w.acme, "sales@example.com", "bob@example.com")
	_, inbox, junk := folderIDs(t, w.ctx, w.pool, "alice@example.com")
	for _, in := range []string{"postmaster@example.com", "Postmaster@EXAMPLE.com", "abuse@example.org"} {
		r, err := w.acc.Lookup(w.ctx, in)
		want := Recipient{Address: strings.ToLower(in), TenantID: w.acme, UserID: w.alice, InboxID: inbox, JunkID: junk}
		if err != nil || r != want {
			t.Errorf("Lookup(%q) = %+v, %v; want %+v", in, r, err, want)
		}
	}

	// A disabled user or domain behaves as for the user's own address.
	if _, err := w.pool.Exec(w.ctx, `UPDATE mail_users SET disabled = true WHERE id = $1`, w.bob); err != nil {
		t.Fatal(err)
	}
	if _, err := w.acc.Lookup(w.ctx, "sales@example.com"); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("alias of a disabled user: %v, want ErrUnknownUser", err)
	}
	if _, err := w.pool.Exec(w.ctx, `UPDATE domains SET disabled = true WHERE name = 'example.org'`); err != nil {
		t.Fatal(err)
	}
	if _, err := w.acc.Lookup(w.ctx, "abuse@example.org"); !errors.Is(err, ErrForeign) {
		t.Errorf("alias in a disabled domain: %v, want ErrForeign", err)
	}
	// The user's domain disabled, the alias's enabled: not deliverable.
	if _, err := w.pool.Exec(w.ctx, `UPDATE domains SET disabled = (name = 'example.com')`); err != nil {
		t.Fatal(err)
	}
	if _, err := w.acc.Lookup(w.ctx, "abuse@example.org"); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("alias of a user in a disabled domain: %v, want ErrUnknownUser", err)
	}
}

func TestOwns(t *testing.T) {
	w := newAliasWorld(t)
	w.add(t, w.acme, "postmaster@example.com", "alice@example.com")
	w.add(t, w.acme, "abuse@example.org", "alice@example.com")
	w.add(t, w.acme, "sales@example.com", "bob@example.com")
	for addr, want := range map[string]bool{
		"alice@example.com":      true,
		"ALICE@example.com":      true,
		"postmaster@example.com": true,
		"PostMaster@Example.com": true,
		"abuse@example.org":      true,
		"sales@example.com":      false, // bob's alias
		"bob@example.com":        false, // bob
		"gus@globex.example":     false,
		"nobody@example.com":     false,
		"not-an-address":         false,
		"":                       false,
	} {
		got, err := w.acc.Owns(w.ctx, w.alice, addr)
		if err != nil || got != want {
			t.Errorf("Owns(alice, %q) = %v, %v; want %v", addr, got, err, want)
		}
	}
	if _, err := w.pool.Exec(w.ctx, `UPDATE domains SET disabled = true WHERE name = 'example.org'`); err != nil {
		t.Fatal(err)
	}
	if got, err := w.acc.Owns(w.ctx, w.alice, "abuse@example.org"); err != nil || got {
		t.Errorf("Owns(alice, an alias in a disabled domain) = %v, %v; want false", got, err)
	}
}

func TestDomainTenantAndTenantIDs(t *testing.T) {
	w := newAliasWorld(t)
	if id, err := w.acc.DomainTenant(w.ctx, "Globex.Example."); err != nil || id != w.globex {
		t.Errorf("DomainTenant(globex.example) = %q, %v; want %s", id, err, w.globex)
	}
	if _, err := w.acc.DomainTenant(w.ctx, "nowhere.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DomainTenant(nowhere.test): %v, want ErrNotFound", err)
	}
	if ids, err := w.acc.TenantIDs(w.ctx); err != nil || !slices.Equal(ids, []string{w.acme, w.globex}) {
		t.Errorf("TenantIDs = %v, %v; want acme, globex", ids, err)
	}
}
