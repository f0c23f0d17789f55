// Package pgtest gives tests fresh PostgreSQL databases on the machine's real
// server. It fails, never skips, when PostgreSQL is down.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// AdminURL is the server the tests use: MAIRUST_TEST_DATABASE_URL or the
// local trust-auth server.
func AdminURL() string {
	if u := os.Getenv("MAIRUST_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// Create makes an empty database named after prefix and returns its URL and
// a function that drops it. For TestMain; tests use NewDatabase.
func Create(prefix string) (string, func() error, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		return "", nil, fmt.Errorf("pgtest: cannot reach PostgreSQL at %s: %w (start it, or set MAIRUST_TEST_DATABASE_URL)", AdminURL(), err)
	}
	defer admin.Close(ctx)
	b := make([]byte, 6)
	rand.Read(b)
	name := fmt.Sprintf("mairust_test_%s_%s", prefix, hex.EncodeToString(b))
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", nil, fmt.Errorf("pgtest: create database: %w", err)
	}
	drop := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, AdminURL())
		if err != nil {
			return fmt.Errorf("pgtest: drop %s: %w", name, err)
		}
		defer c.Close(ctx)
		_, err = c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		return err
	}
	u, err := url.Parse(AdminURL())
	if err != nil {
		return "", nil, fmt.Errorf("pgtest: %w", err)
	}
	u.Path = "/" + name
	return u.String(), drop, nil
}

// NewDatabase creates an empty database for one test; it is dropped when the
// test ends.
func NewDatabase(t testing.TB, prefix string) string {
	t.Helper()
	u, drop, err := Create(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := drop(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return u
}
