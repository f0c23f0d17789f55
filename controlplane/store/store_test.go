package store

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/mairust/mairust/internal/pgtest"
)

func open(t *testing.T) (*Store, string) {
	t.Helper()
	url := pgtest.NewDatabase(t, "cpstore")
	st, err := Open(context.Background(), url, "", 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Pool.Close)
	return st, url
}

// tenant makes a tenant with one domain, as its owner would.
func tenant(t *testing.T, st *Store, domain string) (id, account string) {
	t.Helper()
	ctx := context.Background()
	id, account = newUUID(), newUUID()
	err := st.Tx(ctx, Scope{TenantID: id, AccountID: account}, func(tx pgx.Tx) error {
		steps := []struct {
			q    string
			args []any
		}{
			{`INSERT INTO accounts(id, email, password_hash) VALUES($1, $2, 'x')`, []any{account, "owner@" + domain}},
			{`INSERT INTO tenants(id, name) VALUES($1, 'T')`, []any{id}},
			{`INSERT INTO memberships(tenant_id, account_id, role) VALUES($1, $2, 'owner')`, []any{id, account}},
			{`INSERT INTO domains(tenant_id, name) VALUES($1, $2)`, []any{id, domain}},
		}
		for _, s := range steps {
			if _, err := tx.Exec(ctx, s.q, s.args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return id, account
}

func count(t *testing.T, st *Store, s Scope, q string, args ...any) int {
	t.Helper()
	var n int
	if err := st.Tx(context.Background(), s, func(tx pgx.Tx) error { return tx.QueryRow(context.Background(), q, args...).Scan(&n) }); err != nil {
		t.Fatal(err)
	}
	return n
}

// Row-level security: a scope sees its own tenant's rows only, whatever
// the query asks, and cannot write into another tenant.
func TestTenantsAreIsolated(t *testing.T) {
	st, _ := open(t)
	a, accA := tenant(t, st, "a.example")
	b, _ := tenant(t, st, "b.example")
	sa := Scope{TenantID: a, AccountID: accA}
	if n := count(t, st, sa, `SELECT count(*) FROM domains`); n != 1 {
		t.Fatalf("tenant A sees %d domains, want its 1", n)
	}
	if n := count(t, st, sa, `SELECT count(*) FROM domains WHERE tenant_id = $1`, b); n != 0 {
		t.Fatalf("tenant A sees %d of B's domains", n)
	}
	if n := count(t, st, Scope{}, `SELECT count(*) FROM domains`); n != 0 {
		t.Fatalf("no scope sees %d domains", n)
	}
	// A's owner sees its own tenant and membership, not B's.
	if n := count(t, st, Scope{AccountID: accA}, `SELECT count(*) FROM tenants`); n != 1 {
		t.Fatalf("A's owner sees %d tenants", n)
	}
	err := st.Tx(context.Background(), sa, func(tx pgx.Tx) error {
		_, err := tx.Exec(context.Background(), `INSERT INTO domains(tenant_id, name) VALUES($1, 'sneaky.example')`, b)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "row-level security") {
		t.Fatalf("writing into B from A: %v", err)
	}
	var tag int64
	err = st.Tx(context.Background(), sa, func(tx pgx.Tx) error {
		ct, err := tx.Exec(context.Background(), `DELETE FROM domains WHERE tenant_id = $1`, b)
		tag = ct.RowsAffected()
		return err
	})
	if err != nil || tag != 0 {
		t.Fatalf("deleting B's domains from A: %d rows, %v", tag, err)
	}
}

// Changes of what agents get raise the tenant's configuration version.
func TestConfigVersion(t *testing.T) {
	st, _ := open(t)
	a, acc := tenant(t, st, "a.example")
	s := Scope{TenantID: a, AccountID: acc}
	if n := count(t, st, s, `SELECT version FROM config_versions`); n != 1 {
		t.Fatalf("version %d after the first domain", n)
	}
	err := st.Tx(context.Background(), s, func(tx pgx.Tx) error {
		_, err := tx.Exec(context.Background(), `DELETE FROM domains`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := count(t, st, s, `SELECT version FROM config_versions`); n != 2 {
		t.Fatalf("version %d after the delete", n)
	}
}

// The server refuses to run as a role that would bypass row-level security.
func TestOpenRefusesOwner(t *testing.T) {
	_, url := open(t)
	_, err := Open(context.Background(), url, url, 2)
	if err == nil || !strings.Contains(err.Error(), "mairust_cp") {
		t.Fatalf("opening as the owner: %v", err)
	}
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// The schema works when its owner is an ordinary role (no superuser, no
// BYPASSRLS), as on a managed PostgreSQL: the functions that run as the
// owner still see every tenant, and mairust_cp still sees one.
func TestOrdinaryOwner(t *testing.T) {
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, pgtest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	name := "cp_owner_" + strings.ReplaceAll(newUUID()[:8], "-", "")
	for _, q := range []string{
		`CREATE ROLE ` + name + ` LOGIN CREATEROLE NOSUPERUSER NOBYPASSRLS`,
		`CREATE DATABASE ` + name + ` OWNER ` + name,
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		admin, err := pgx.Connect(ctx, pgtest.AdminURL())
		if err != nil {
			return
		}
		defer admin.Close(ctx)
		admin.Exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`)
		admin.Exec(ctx, `DROP ROLE IF EXISTS `+name)
	})
	ownerURL := fmt.Sprintf("postgres://%s@127.0.0.1:5432/%s?sslmode=disable", name, name)
	st, err := Open(ctx, ownerURL, "", 2)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Pool.Close()
	a, acc := tenant(t, st, "a.example")
	if n := count(t, st, Scope{TenantID: a, AccountID: acc}, `SELECT version FROM config_versions`); n != 1 {
		t.Fatalf("config version %d", n)
	}
	var id string
	err = st.Tx(ctx, Scope{TenantID: a}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO enrollment_tokens(tenant_id, token_hash, expires_at) VALUES($1, '\x01', now() + interval '1 hour')`, a); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `INSERT INTO agents(tenant_id, public_key, hostname, version) VALUES($1, $2, 'h', 'v') RETURNING id`, a, make([]byte, 32)).Scan(&id)
	})
	if err != nil {
		t.Fatal(err)
	}
	// Without a tenant: only through the owner's functions.
	var status, tenantOf string
	err = st.Tx(ctx, Scope{}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT status, coalesce(tenant::text, '') FROM enrollment_token('\x01')`).Scan(&status, &tenantOf); err != nil {
			return err
		}
		var revoked bool
		return tx.QueryRow(ctx, `SELECT revoked FROM agent_identity($1)`, id).Scan(&revoked)
	})
	if err != nil || status != "ok" || tenantOf != a {
		t.Fatalf("enrollment_token as an ordinary owner: %q %q %v", status, tenantOf, err)
	}
	if n := count(t, st, Scope{}, `SELECT count(*) FROM agents`); n != 0 {
		t.Fatalf("mairust_cp without a tenant sees %d agents", n)
	}
}
