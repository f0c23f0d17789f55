package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/mairust/mairust/agent/accounts"
)

// TestAdminAlias adds, lists and removes aliases from the command line
// against a real database, and checks that mistakes say what to do.
func TestAdminAlias(t *testing.T) {
	cfg, _, pool := dbConfig(t, "aliascli")
	ctx := context.Background()
	acc := accounts.New(pool)
	other, err := acc.EnsureTenant(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	if err := acc.CreateDomain(ctx, other, "other.test"); err != nil {
		t.Fatal(err)
	}
	if err := acc.CreateUser(ctx, "dave@other.test", "pw", false); err != nil {
		t.Fatal(err)
	}
	var alice int64
	if err := pool.QueryRow(ctx, `SELECT id FROM mail_users WHERE address = 'alice@example.test'`).Scan(&alice); err != nil {
		t.Fatal(err)
	}

	ok := func(want string, args ...string) {
		t.Helper()
		out, code := run(t, append([]string{"admin", "alias"}, append(args, "--config", cfg)...)...)
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("alias %s: exit %d, want 0 and %q:\n%s", strings.Join(args, " "), code, want, out)
		}
	}
	fails := func(want string, args ...string) {
		t.Helper()
		out, code := run(t, append(args, "--config", cfg)...)
		if code == 0 || !strings.Contains(out, want) {
			t.Errorf("%s: exit %d, want a failure saying %q:\n%s", strings.Join(args, " "), code, want, out)
		}
	}

	ok("no aliases yet: mairust admin alias add ALIAS USER", "list")
	ok("alias postmaster@example.test delivers to alice@example.test", "add", "PostMaster@Example.test", "alice@example.test")
	ok("alias abuse@example.test delivers to alice@example.test", "add", "abuse@example.test", fmt.Sprint(alice))
	ok("alias info@other.test delivers to dave@other.test", "add", "info@other.test", "dave@other.test")
	ok("postmaster@example.test -> alice@example.test\nabuse@example.test -> alice@example.test\n", "list", "--domain", "example.test")
	out, code := run(t, "admin", "alias", "list", "--config", cfg)
	if code != 0 || strings.Count(out, " -> ") != 3 || !strings.Contains(out, "info@other.test -> dave@other.test") {
		t.Fatalf("list of every tenant: exit %d\n%s", code, out)
	}

	fails("add it first: mairust admin domain add nowhere.test", "admin", "alias", "add", "x@nowhere.test", "alice@example.test")
	fails("add it first: mairust admin domain add nowhere.test", "admin", "alias", "list", "--domain", "nowhere.test")
	fails("mairust admin user add", "admin", "alias", "add", "x@example.test", "nobody@example.test")
	fails("no such user in the tenant of other.test", "admin", "alias", "add", "x@other.test", "alice@example.test") // another tenant's user
	fails("already exists", "admin", "alias", "add", "postmaster@example.test", "alice@example.test")
	fails("already exists as a mail user's", "admin", "alias", "add", "alice@example.test", "alice@example.test")
	fails("already exists as an alias", "admin", "user", "add", "postmaster@example.test")
	fails("user@domain", "admin", "alias", "add", "postmaster", "alice@example.test")
	if out, code := run(t, "admin", "alias", "add", "--config", cfg, "x@example.test"); code != 2 || !strings.Contains(out, "Usage: mairust admin alias add [flags] ALIAS USER") {
		t.Errorf("add with one argument: exit %d, want 2 and the usage:\n%s", code, out)
	}

	ok("alias postmaster@example.test removed (it delivered to alice@example.test)", "remove", "Postmaster@example.test")
	fails("postmaster@example.test is not an alias; see the aliases with: mairust admin alias list --domain example.test", "admin", "alias", "remove", "postmaster@example.test")
	var left []string
	rows, _ := pool.Query(ctx, `SELECT address FROM mail_aliases ORDER BY id`)
	for rows.Next() {
		var a string
		rows.Scan(&a)
		left = append(left, a)
	}
	if err := rows.Err(); err != nil || strings.Join(left, " ") != "abuse@example.test info@other.test" {
		t.Fatalf("aliases left %v, %v", left, err)
	}
}
