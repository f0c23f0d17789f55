// Package store is the control plane's database: it applies the schema
// (as the tables' owner) and runs each request's work in a transaction as
// the role mairust_cp with app.tenant_id and app.account_id set, so that
// PostgreSQL's row-level security keeps tenants apart whatever a query
// asks. It owns no business queries.
package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mairust/mairust/internal/database"
)

//go:embed migrations/*.sql
var migrations embed.FS

// AppRole is the role requests run as (made by the schema).
const AppRole = "mairust_cp"

// Store is the pool of AppRole connections.
type Store struct {
	Pool *pgxpool.Pool
}

// Open applies the schema through ownerURL, then connects as AppRole
// through appURL (empty: ownerURL with the user AppRole and no password).
func Open(ctx context.Context, ownerURL, appURL string, maxConns int32) (*Store, error) {
	owner, err := database.Open(ctx, ownerURL, 2)
	if err != nil {
		return nil, fmt.Errorf("controlplane.database_url: %w", err)
	}
	_, err = database.MigrateFS(ctx, owner, migrations)
	owner.Close()
	if err != nil {
		return nil, err
	}
	if appURL == "" {
		if appURL, err = asAppRole(ownerURL); err != nil {
			return nil, err
		}
	}
	pool, err := database.Open(ctx, appURL, maxConns)
	if err != nil {
		return nil, fmt.Errorf("controlplane.app_database_url: %w", err)
	}
	var owns bool
	if err := pool.QueryRow(ctx, `SELECT pg_has_role(current_user, (SELECT tableowner FROM pg_tables WHERE tablename = 'tenants' AND schemaname = 'public'), 'USAGE')
		OR (SELECT rolbypassrls OR rolsuper FROM pg_roles WHERE rolname = current_user)`).Scan(&owns); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: %w", err)
	}
	if owns {
		pool.Close()
		return nil, errors.New("store: controlplane.app_database_url connects as a role that owns the tables or bypasses row-level security; use the role " + AppRole)
	}
	return &Store{Pool: pool}, nil
}

// asAppRole returns u with the user AppRole and no password.
func asAppRole(u string) (string, error) {
	p, err := url.Parse(u)
	if err != nil {
		return "", fmt.Errorf("controlplane.database_url: %w", err)
	}
	p.User = url.User(AppRole)
	return p.String(), nil
}

// Scope is who a transaction acts for: the tenant whose rows it sees
// (empty: none) and the account (empty: none, e.g. an agent's call).
type Scope struct {
	TenantID  string
	AccountID string
}

// Tx runs fn in a transaction scoped to s, and commits when fn returns nil.
func (st *Store) Tx(ctx context.Context, s Scope, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, st.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1, true), set_config('app.account_id', $2, true)`, s.TenantID, s.AccountID); err != nil {
			return err
		}
		return fn(tx)
	})
}

// purgeBatch is the most rows a purge function deletes a call.
const purgeBatch = 10000

// Purge calls the purge function (purge_agent_reports, purge_notices)
// with older until it deletes fewer than a batch, and returns how many
// rows went.
func (st *Store) Purge(ctx context.Context, function string, older time.Duration) (int, error) {
	total := 0
	for {
		var n int
		err := st.Tx(ctx, Scope{}, func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, `SELECT `+pgx.Identifier{function}.Sanitize()+`(make_interval(secs => $1), $2)`, older.Seconds(), purgeBatch).Scan(&n)
		})
		total += n
		if err != nil || n < purgeBatch {
			return total, err
		}
	}
}
