// Package access decides whether the caller of a console call may act on a
// tenant: it reads the caller's membership (under row-level security) and
// answers not-found, never forbidden, to a non-member, so that a tenant's
// existence does not leak. It owns no other query.
package access

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"

	"github.com/mairust/mairust/controlplane/auth"
	"github.com/mairust/mairust/controlplane/store"
	tenantsv1 "github.com/mairust/mairust/proto/mairust/tenants/v1"
)

// rank orders roles: a higher one may do what a lower one may.
var rank = map[string]int{"viewer": 1, "admin": 2, "owner": 3}

// RoleName is the database's name of a role ("owner", "admin", "viewer").
func RoleName(r tenantsv1.Role) string {
	switch r {
	case tenantsv1.Role_ROLE_OWNER:
		return "owner"
	case tenantsv1.Role_ROLE_ADMIN:
		return "admin"
	case tenantsv1.Role_ROLE_VIEWER:
		return "viewer"
	}
	return ""
}

// Role is the proto role of a database role name.
func Role(name string) tenantsv1.Role {
	switch name {
	case "owner":
		return tenantsv1.Role_ROLE_OWNER
	case "admin":
		return tenantsv1.Role_ROLE_ADMIN
	case "viewer":
		return tenantsv1.Role_ROLE_VIEWER
	}
	return tenantsv1.Role_ROLE_UNSPECIFIED
}

// Session returns the account of a console session, or Unauthenticated.
func Session(ctx context.Context) (string, error) {
	p, ok := auth.From(ctx)
	if !ok || p.Kind != auth.KindSession {
		return "", connect.NewError(connect.CodeUnauthenticated, errors.New("this call needs a console session: log in first"))
	}
	return p.AccountID, nil
}

// InTenant runs fn in a transaction scoped to tenantID for the calling
// account when it holds at least role min there; role is its own role.
// A non-member, or a tenant id that is not a UUID, gets NotFound; a
// member below min gets PermissionDenied.
func InTenant(ctx context.Context, st *store.Store, tenantID, min string, fn func(tx pgx.Tx, role string) error) error {
	account, err := Session(ctx)
	if err != nil {
		return err
	}
	notFound := connect.NewError(connect.CodeNotFound, fmt.Errorf("tenant %q not found", tenantID))
	if !IsUUID(tenantID) {
		return notFound
	}
	return st.Tx(ctx, store.Scope{TenantID: tenantID, AccountID: account}, func(tx pgx.Tx) error {
		var role string
		err := tx.QueryRow(ctx, `SELECT role FROM memberships WHERE tenant_id = $1 AND account_id = $2`, tenantID, account).Scan(&role)
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound
		}
		if err != nil {
			return err
		}
		if rank[role] < rank[min] {
			return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("this needs the %s role in the tenant; yours is %s", min, role))
		}
		return fn(tx, role)
	})
}

// IsUUID reports whether s is a UUID in its usual text form: an object id
// that is not one is simply not found.
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// Kind is a kind of object a plan limits.
type Kind string

// The kinds a plan limits.
const (
	Domains   Kind = "domains"
	MailUsers Kind = "mail_users"
	Agents    Kind = "agents"
)

// Limits says whether the plan of a tenant allows one more object of a
// kind, in tx (scoped to the tenant), with an error naming the limit and
// the upgrade path when not. Billing implements it; without billing there
// are no limits.
type Limits interface {
	Allow(ctx context.Context, tx pgx.Tx, tenantID string, kind Kind) error
}
