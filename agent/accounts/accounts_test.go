package accounts

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mairust/mairust/internal/database"
	"github.com/mairust/mairust/internal/password"
	"github.com/mairust/mairust/internal/pgtest"
)

func setup(t *testing.T) (context.Context, *Accounts, *pgxpool.Pool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	pool, err := database.Open(ctx, pgtest.NewDatabase(t, "acct"), 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := database.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	return ctx, New(pool), pool
}

// mustTenant returns the id of the tenant called name, creating it.
func mustTenant(t *testing.T, ctx context.Context, acc *Accounts, name string) string {
	t.Helper()
	id, err := acc.EnsureTenant(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestNormalize(t *testing.T) {
	good := map[string]string{
		"alice@example.com":         "alice@example.com",
		"Alice@Example.COM":         "alice@example.com",
		"  bob@example.com \t":      "bob@example.com",
		"\r\nMixed.Case+Tag@EX.org": "mixed.case+tag@ex.org",
	}
	for in, want := range good {
		got, err := Normalize(in)
		if err != nil {
			t.Errorf("Normalize(%q): %v", in, err)
			continue
		}
		if got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
	for _, in := range []string{
		"",
		"   ",
		"alice",
		"alice.example.com",
		"@example.com",
		"alice@",
		"@",
		"a@b@c",
		"<alice@example.com>",
		"alice@<example.com>",
		"ali ce@example.com",
		"alice@exa mple.com",
		"alice@example.com\nbcc@evil.test",
	} {
		if got, err := Normalize(in); err == nil {
			t.Errorf("Normalize(%q) = %q, want an error", in, got)
		} else if !strings.Contains(err.Error(), "user@domain") {
			t.Errorf("Normalize(%q) error %q does not say what form is wanted", in, err)
		}
	}
}

func TestEnsureTenantIdempotent(t *testing.T) {
	ctx, acc, pool := setup(t)
	id1, err := acc.EnsureTenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	id2, err := acc.EnsureTenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if id1 == "" || id1 != id2 {
		t.Fatalf("EnsureTenant ids %q then %q, want the same non-empty id", id1, id2)
	}
	other, err := acc.EnsureTenant(ctx, "globex")
	if err != nil {
		t.Fatal(err)
	}
	if other == id1 {
		t.Fatal("two tenant names share one id")
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM tenants").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("%d tenant rows, want 2", n)
	}
}

func domainRows(t *testing.T, ctx context.Context, pool *pgxpool.Pool) map[string]string {
	t.Helper()
	rows, err := pool.Query(ctx, "SELECT name, tenant_id::text FROM domains")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, tenant string
		if err := rows.Scan(&name, &tenant); err != nil {
			t.Fatal(err)
		}
		out[name] = tenant
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCreateDomain(t *testing.T) {
	ctx, acc, pool := setup(t)
	tenant := mustTenant(t, ctx, acc, "acme")
	if err := acc.CreateDomain(ctx, tenant, "  Example.COM. "); err != nil {
		t.Fatal(err)
	}
	if err := acc.CreateDomain(ctx, tenant, "example.com"); err != nil {
		t.Fatalf("second CreateDomain of the same name: %v", err)
	}
	if err := acc.CreateDomain(ctx, tenant, "EXAMPLE.com"); err != nil {
		t.Fatalf("third CreateDomain, other case: %v", err)
	}
	got := domainRows(t, ctx, pool)
	if len(got) != 1 || got["example.com"] != tenant {
		t.Fatalf("domains = %v, want only example.com of tenant %s", got, tenant)
	}

	for _, bad := range []string{"", "   ", ".", "user@example.com", "exa mple.com", "example\r\n.com", "exa\tmple.com"} {
		if err := acc.CreateDomain(ctx, tenant, bad); err == nil {
			t.Errorf("CreateDomain(%q) succeeded", bad)
		} else if !strings.Contains(err.Error(), "not a domain name") {
			t.Errorf("CreateDomain(%q) error %q does not say the name is bad", bad, err)
		}
	}
	if got := domainRows(t, ctx, pool); len(got) != 1 {
		t.Fatalf("bad names were stored: %v", got)
	}
}

// A domain belongs to one tenant: another tenant adding it is refused rather
// than reported as done while the domain stays with its owner.
func TestCreateDomainOtherTenantRefused(t *testing.T) {
	ctx, acc, pool := setup(t)
	a := mustTenant(t, ctx, acc, "acme")
	b := mustTenant(t, ctx, acc, "globex")
	if err := acc.CreateDomain(ctx, a, "shared.example"); err != nil {
		t.Fatal(err)
	}
	err := acc.CreateDomain(ctx, b, "Shared.Example")
	if err == nil {
		t.Fatal("tenant globex was told it added a domain that belongs to acme")
	}
	if !strings.Contains(err.Error(), "another tenant") {
		t.Errorf("error %q does not say the domain belongs to another tenant", err)
	}
	if got := domainRows(t, ctx, pool); got["shared.example"] != a {
		t.Fatalf("domain owner = %s, want acme %s", got["shared.example"], a)
	}
}

func TestCreateUser(t *testing.T) {
	ctx, acc, pool := setup(t)
	tenant := mustTenant(t, ctx, acc, "acme")
	if err := acc.CreateDomain(ctx, tenant, "example.com"); err != nil {
		t.Fatal(err)
	}
	const pw = "correct horse battery staple"
	if err := acc.CreateUser(ctx, " Alice@Example.com ", pw, true); err != nil {
		t.Fatal(err)
	}

	var (
		uid     int64
		addr    string
		hash    string
		admin   bool
		utenant string
	)
	if err := pool.QueryRow(ctx, `SELECT id, address, password_hash, is_admin, tenant_id::text FROM mail_users`).Scan(&uid, &addr, &hash, &admin, &utenant); err != nil {
		t.Fatal(err)
	}
	if addr != "alice@example.com" || !admin || utenant != tenant {
		t.Errorf("user row = %s admin=%v tenant=%s; want alice@example.com admin=true tenant=%s", addr, admin, utenant, tenant)
	}
	if strings.Contains(hash, pw) || !strings.HasPrefix(hash, "$argon2id$") {
		t.Errorf("password_hash %q is not an argon2id hash of the password", hash)
	}
	if ok, err := password.Check(hash, pw); err != nil || !ok {
		t.Errorf("stored hash does not check against the password: ok=%v err=%v", ok, err)
	}
	if ok, _ := password.Check(hash, "wrong"); ok {
		t.Error("stored hash accepts a wrong password")
	}

	rows, err := pool.Query(ctx, `SELECT name, special, tenant_id::text FROM folders WHERE user_id = $1 ORDER BY name`, uid)
	if err != nil {
		t.Fatal(err)
	}
	var folders [][2]string
	for rows.Next() {
		var name, special, ft string
		if err := rows.Scan(&name, &special, &ft); err != nil {
			t.Fatal(err)
		}
		if ft != tenant {
			t.Errorf("folder %s has tenant %s, want %s", name, ft, tenant)
		}
		folders = append(folders, [2]string{name, special})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := [][2]string{{"INBOX", "inbox"}, {"Junk", "junk"}, {"Sent", "sent"}, {"Trash", "trash"}}
	if !slices.Equal(folders, want) {
		t.Fatalf("folders = %v, want %v", folders, want)
	}

	// A duplicate, in any case, is refused and adds nothing.
	if err := acc.CreateUser(ctx, "ALICE@example.com", "other", false); err == nil {
		t.Fatal("duplicate CreateUser succeeded")
	}
	// A user in a domain that does not exist is refused with advice.
	err = acc.CreateUser(ctx, "bob@missing.example", "pw", false)
	if err == nil {
		t.Fatal("CreateUser in a missing domain succeeded")
	}
	if !strings.Contains(err.Error(), "missing.example") || !strings.Contains(err.Error(), "create it first") {
		t.Errorf("missing-domain error %q does not name the domain and say to create it", err)
	}
	// A malformed address is refused.
	if err := acc.CreateUser(ctx, "no-at-sign", "pw", false); err == nil {
		t.Fatal("CreateUser with a malformed address succeeded")
	}

	var users, nfolders int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM mail_users), (SELECT count(*) FROM folders)`).Scan(&users, &nfolders); err != nil {
		t.Fatal(err)
	}
	if users != 1 || nfolders != 4 {
		t.Fatalf("after refused creations: %d users, %d folders; want 1 and 4", users, nfolders)
	}
	if n, err := acc.CountUsers(ctx); err != nil || n != 1 {
		t.Fatalf("CountUsers = %d, %v; want 1", n, err)
	}
}

// folderIDs returns the user id and the ids of its INBOX and Junk folders.
func folderIDs(t *testing.T, ctx context.Context, pool *pgxpool.Pool, addr string) (uid, inbox, junk int64) {
	t.Helper()
	err := pool.QueryRow(ctx, `
		SELECT u.id, i.id, j.id FROM mail_users u
		JOIN folders i ON i.user_id = u.id AND i.name = 'INBOX'
		JOIN folders j ON j.user_id = u.id AND j.name = 'Junk'
		WHERE u.address = $1`, addr).Scan(&uid, &inbox, &junk)
	if err != nil {
		t.Fatal(err)
	}
	return uid, inbox, junk
}

func TestLookup(t *testing.T) {
	ctx, acc, pool := setup(t)
	tenant := mustTenant(t, ctx, acc, "acme")
	for _, d := range []string{"example.com", "off.example"} {
		if err := acc.CreateDomain(ctx, tenant, d); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []string{"alice@example.com", "carol@example.com", "dave@off.example"} {
		if err := acc.CreateUser(ctx, u, "pw", false); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, `UPDATE mail_users SET disabled = true WHERE address = 'carol@example.com'`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE domains SET disabled = true WHERE name = 'off.example'`); err != nil {
		t.Fatal(err)
	}
	uid, inbox, junk := folderIDs(t, ctx, pool, "alice@example.com")

	for _, in := range []string{"alice@example.com", "ALICE@Example.Com", " alice@EXAMPLE.com "} {
		r, err := acc.Lookup(ctx, in)
		if err != nil {
			t.Errorf("Lookup(%q): %v", in, err)
			continue
		}
		want := Recipient{Address: "alice@example.com", TenantID: tenant, UserID: uid, InboxID: inbox, JunkID: junk}
		if r != want {
			t.Errorf("Lookup(%q) = %+v, want %+v", in, r, want)
		}
	}

	for in, want := range map[string]error{
		"nobody@example.com":   ErrUnknownUser, // local domain, no such user
		"carol@example.com":    ErrUnknownUser, // disabled user
		"dave@off.example":     ErrForeign,     // disabled domain
		"someone@off.example":  ErrForeign,
		"alice@elsewhere.test": ErrForeign, // not our domain
		"alice@example.com.":   ErrForeign, // a different name
		"not-an-address":       ErrForeign,
		"<alice@example.com>":  ErrForeign,
	} {
		r, err := acc.Lookup(ctx, in)
		if !errors.Is(err, want) {
			t.Errorf("Lookup(%q) = %+v, %v; want %v", in, r, err, want)
		}
		if r != (Recipient{}) {
			t.Errorf("Lookup(%q) returned a recipient %+v with its error", in, r)
		}
	}
}

// A user without an INBOX (a broken account) is not deliverable.
func TestLookupWithoutInbox(t *testing.T) {
	ctx, acc, pool := setup(t)
	tenant := mustTenant(t, ctx, acc, "acme")
	if err := acc.CreateDomain(ctx, tenant, "example.com"); err != nil {
		t.Fatal(err)
	}
	if err := acc.CreateUser(ctx, "alice@example.com", "pw", false); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `DELETE FROM folders WHERE special = 'inbox'`); err != nil {
		t.Fatal(err)
	}
	if _, err := acc.Lookup(ctx, "alice@example.com"); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("Lookup of a user without INBOX: %v, want ErrUnknownUser", err)
	}
}

func TestLookupCrossTenant(t *testing.T) {
	ctx, acc, pool := setup(t)
	a := mustTenant(t, ctx, acc, "acme")
	b := mustTenant(t, ctx, acc, "globex")
	if a == b {
		t.Fatal("two tenants share an id")
	}
	if err := acc.CreateDomain(ctx, a, "acme.example"); err != nil {
		t.Fatal(err)
	}
	if err := acc.CreateDomain(ctx, b, "globex.example"); err != nil {
		t.Fatal(err)
	}
	// The same local part in both domains.
	for _, u := range []string{"info@acme.example", "info@globex.example", "x@globex.example"} {
		if err := acc.CreateUser(ctx, u, "pw", false); err != nil {
			t.Fatal(err)
		}
	}
	for addr, tenant := range map[string]string{
		"info@acme.example":   a,
		"info@globex.example": b,
		"X@Globex.Example":    b,
	} {
		r, err := acc.Lookup(ctx, addr)
		if err != nil {
			t.Fatalf("Lookup(%q): %v", addr, err)
		}
		uid, inbox, junk := folderIDs(t, ctx, pool, strings.ToLower(addr))
		if r.TenantID != tenant || r.UserID != uid || r.InboxID != inbox || r.JunkID != junk {
			t.Errorf("Lookup(%q) = %+v; want tenant %s user %d inbox %d junk %d", addr, r, tenant, uid, inbox, junk)
		}
		// The inbox really is the user's own, in the user's tenant.
		var ft string
		var fuid int64
		if err := pool.QueryRow(ctx, `SELECT tenant_id::text, user_id FROM folders WHERE id = $1`, r.InboxID).Scan(&ft, &fuid); err != nil {
			t.Fatal(err)
		}
		if ft != tenant || fuid != r.UserID {
			t.Errorf("inbox %d of %s belongs to tenant %s user %d", r.InboxID, addr, ft, fuid)
		}
	}
	// Users of one tenant are unknown, not foreign, in each tenant's own domain.
	if _, err := acc.Lookup(ctx, "x@acme.example"); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("Lookup(x@acme.example) = %v, want ErrUnknownUser", err)
	}
}
