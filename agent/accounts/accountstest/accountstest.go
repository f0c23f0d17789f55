// Package accountstest gives tests a migrated PostgreSQL database with
// domains and mail users in it.
package accountstest

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/internal/database"
	"github.com/mairust/mairust/internal/pgtest"
)

// NewDatabase returns a pool on a fresh, migrated database holding users
// (and their domains, in one tenant); both go when the test ends.
func NewDatabase(t testing.TB, prefix string, users ...string) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	pool, err := Open(ctx, pgtest.NewDatabase(t, prefix))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := Seed(ctx, pool, users...); err != nil {
		t.Fatal(err)
	}
	return pool
}

// Open connects to url and applies the schema.
func Open(ctx context.Context, url string) (*pgxpool.Pool, error) {
	pool, err := database.Open(ctx, url, 20)
	if err != nil {
		return nil, err
	}
	if _, err := database.Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// Seed creates each user, and its domain when new, in the tenant "test";
// every user's password is "pw-" followed by its address.
func Seed(ctx context.Context, pool *pgxpool.Pool, users ...string) error {
	acc := accounts.New(pool)
	tenant, err := acc.EnsureTenant(ctx, "test")
	if err != nil {
		return err
	}
	for _, u := range users {
		_, domain, _ := strings.Cut(u, "@")
		if err := acc.CreateDomain(ctx, tenant, domain); err != nil {
			return err
		}
		if err := acc.CreateUser(ctx, u, "pw-"+u, false); err != nil {
			return err
		}
	}
	return nil
}
