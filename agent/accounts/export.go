package accounts

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// UserRecord is a mail user with its password hash, for handing a tenant
// over to a control plane.
type UserRecord struct {
	Address, PasswordHash string
	Admin, Disabled       bool
	QuotaBytes            int64
}

// Export returns the tenant's domain names and mail users, with their
// password hashes, oldest first.
func (a *Accounts) Export(ctx context.Context, tenantID string) (domains []string, users []UserRecord, err error) {
	rows, _ := a.pool.Query(ctx, `SELECT name FROM domains WHERE tenant_id = $1 ORDER BY id`, tenantID)
	if domains, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return nil, nil, fmt.Errorf("accounts: export the domains of tenant %s: %w", tenantID, err)
	}
	rows, _ = a.pool.Query(ctx, `SELECT address, password_hash, is_admin, disabled, quota_bytes FROM mail_users WHERE tenant_id = $1 ORDER BY id`, tenantID)
	users, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (UserRecord, error) {
		var u UserRecord
		err := r.Scan(&u.Address, &u.PasswordHash, &u.Admin, &u.Disabled, &u.QuotaBytes)
		return u, err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("accounts: export the mail users of tenant %s: %w", tenantID, err)
	}
	return domains, users, nil
}
