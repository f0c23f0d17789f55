// Package seed puts a tenant an agent already serves under a control
// plane, keeping its id, domains and mail users (with their password
// hashes), so that the agent can enroll without losing or renaming
// anything: what `mairust aio` does with its own agent.
package seed

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mairust/mairust/controlplane/agents"
	"github.com/mairust/mairust/controlplane/store"
)

// Tenant is an agent's tenant as the control plane takes it.
type Tenant struct {
	ID, Name string
	Domains  []string
	Users    []User
	// Owner is the console account that owns the tenant: made verified
	// with this password hash when the control plane has no account of
	// that address, else kept as it is.
	Owner Owner
}

// User is a mail user with its password hash.
type User struct {
	Address, PasswordHash string
	Admin, Disabled       bool
	QuotaBytes            int64
}

// Owner is a console account.
type Owner struct {
	Email, PasswordHash string
}

// TokenTTL is how long the enrollment token Import returns is valid.
const TokenTTL = 10 * time.Minute

// Import creates what the control plane lacks of t, in one transaction
// scoped to t, and returns a one-time enrollment token of t for its agent.
// Importing again adds what is new and changes nothing else. A domain or
// address that is another tenant's in the control plane is an error.
func Import(ctx context.Context, st *store.Store, t Tenant) (token string, err error) {
	err = st.Tx(ctx, store.Scope{TenantID: t.ID}, func(tx pgx.Tx) error {
		var owner string
		err := tx.QueryRow(ctx, `INSERT INTO accounts (email, password_hash, email_verified_at) VALUES (lower($1), $2, now())
			ON CONFLICT (email) DO UPDATE SET email = accounts.email RETURNING id`, t.Owner.Email, t.Owner.PasswordHash).Scan(&owner)
		if err != nil {
			return fmt.Errorf("console account %s: %w", t.Owner.Email, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO tenants (id, name, created_by) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING`, t.ID, t.Name, owner); err != nil {
			return fmt.Errorf("tenant %s: %w", t.Name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO memberships (tenant_id, account_id, role) VALUES ($1, $2, 'owner') ON CONFLICT DO NOTHING`, t.ID, owner); err != nil {
			return err
		}
		ids := map[string]string{}
		for _, d := range t.Domains {
			d = strings.ToLower(d)
			if _, err := tx.Exec(ctx, `INSERT INTO domains (tenant_id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, t.ID, d); err != nil {
				return fmt.Errorf("domain %s: %w", d, err)
			}
			// Row-level security hides another tenant's domain.
			var id string
			err := tx.QueryRow(ctx, `SELECT id FROM domains WHERE name = $1`, d).Scan(&id)
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("domain %s is another tenant's in the control plane: remove it there first", d)
			}
			if err != nil {
				return err
			}
			ids[d] = id
		}
		for _, u := range t.Users {
			addr := strings.ToLower(u.Address)
			domain := ids[addr[strings.LastIndexByte(addr, '@')+1:]]
			if domain == "" {
				return fmt.Errorf("mail user %s: its domain is not among the tenant's domains", addr)
			}
			tag, err := tx.Exec(ctx, `INSERT INTO mail_users (tenant_id, domain_id, address, password_hash, admin, disabled, quota_bytes)
				VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (address) DO NOTHING`, t.ID, domain, addr, u.PasswordHash, u.Admin, u.Disabled, u.QuotaBytes)
			if err != nil {
				return fmt.Errorf("mail user %s: %w", addr, err)
			}
			if tag.RowsAffected() == 0 {
				var ours bool
				if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM mail_users WHERE address = $1)`, addr).Scan(&ours); err != nil {
					return err
				}
				if !ours {
					return fmt.Errorf("mail user %s is another tenant's in the control plane: remove it there first", addr)
				}
			}
		}
		token, _, err = agents.NewEnrollmentToken(ctx, tx, t.ID, owner, TokenTTL)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("import tenant %s into the control plane: %w", t.Name, err)
	}
	return token, nil
}
