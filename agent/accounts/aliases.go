package accounts

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Alias is an address in one of a tenant's domains that delivers into the
// mailbox of a user of the same tenant, who may also send from it. User is
// that user's address.
type Alias struct {
	ID        int64     `json:"id"`
	Address   string    `json:"address"`
	DomainID  int64     `json:"domain_id"`
	UserID    int64     `json:"user_id"`
	User      string    `json:"user"`
	CreatedAt time.Time `json:"created_at"`
}

// aliasColumns are read from mail_aliases a joined with its user u.
const aliasColumns = `a.id, a.address, a.domain_id, a.user_id, u.address, a.created_at`

func scanAlias(row pgx.CollectableRow) (Alias, error) {
	var al Alias
	err := row.Scan(&al.ID, &al.Address, &al.DomainID, &al.UserID, &al.User, &al.CreatedAt)
	return al, err
}

// tenantUser returns the id of tenant's user named by the input user, its
// address or its id; an *InvalidError when it names no user of tenant.
func (a *Accounts) tenantUser(ctx context.Context, tenantID, user string) (int64, error) {
	id, err := strconv.ParseInt(user, 10, 64)
	var addr string
	if err != nil {
		if addr, err = Normalize(user); err != nil {
			return 0, &InvalidError{Field: "user", Reason: fmt.Sprintf("%q is neither a user's address nor its id", user)}
		}
	}
	uid, err := one(ctx, a, pgx.RowTo[int64], "user "+user, `SELECT id FROM mail_users WHERE tenant_id = $1 AND (id = $2 OR address = $3)`, tenantID, id, addr)
	if errors.Is(err, ErrNotFound) {
		return 0, &InvalidError{Field: "user", Reason: fmt.Sprintf("%s is not a user of this tenant; create the user first", user)}
	}
	return uid, err
}

// AddAlias makes alias, an address in one of tenant's domains, deliver to
// user, a user of tenant named by its address or id. An address in use, by
// an alias or a user, is ErrExists.
func (a *Accounts) AddAlias(ctx context.Context, tenantID, alias, user string) (Alias, error) {
	addr, domainID, err := a.tenantAddress(ctx, tenantID, alias)
	if err != nil {
		return Alias{}, err
	}
	uid, err := a.tenantUser(ctx, tenantID, user)
	if err != nil {
		return Alias{}, err
	}
	al, err := one(ctx, a, scanAlias, "alias "+addr, `
		WITH a AS (
			INSERT INTO mail_aliases(tenant_id, address, domain_id, user_id) VALUES($1, $2, $3, $4)
			ON CONFLICT (address) DO NOTHING RETURNING *)
		SELECT `+aliasColumns+` FROM a JOIN mail_users u ON u.id = a.user_id`, tenantID, addr, domainID, uid)
	if errors.Is(err, ErrNotFound) {
		return Alias{}, fmt.Errorf("alias %s: %w; remove it first to point it to another user", addr, ErrExists)
	}
	if c, ok := uniqueViolation(err); ok && c == addressUnique {
		return Alias{}, fmt.Errorf("address %s: %w as a mail user's; an alias needs an address of its own", addr, ErrExists)
	}
	return al, err
}

// AliasFilter selects the aliases ListAliases returns: those matching
// every field that is not zero, by id.
type AliasFilter struct {
	Domain  string // in this domain of the tenant
	User    string // of this user of the tenant, its address or id
	Address string // with this address
	After   int64  // with an id above After
	Limit   int    // at most Limit; 0: no limit
}

// ListAliases returns the aliases of tenant that f selects; ErrNotFound
// when f names a domain the tenant does not have (as ListUsers), an
// *InvalidError for a user (as AddAlias).
func (a *Accounts) ListAliases(ctx context.Context, tenantID string, f AliasFilter) ([]Alias, error) {
	where, args := []string{"a.tenant_id = $1", "a.id > $2"}, []any{tenantID, f.After}
	and := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.Domain != "" {
		id, err := a.domainFilter(ctx, tenantID, f.Domain)
		if err != nil {
			return nil, err
		}
		and("a.domain_id = $%d", id)
	}
	if f.User != "" {
		id, err := a.tenantUser(ctx, tenantID, f.User)
		if err != nil {
			return nil, err
		}
		and("a.user_id = $%d", id)
	}
	if f.Address != "" {
		addr, err := Normalize(f.Address)
		if err != nil {
			return nil, &InvalidError{Field: "address", Reason: err.Error()}
		}
		and("a.address = $%d", addr)
	}
	var limit *int // LIMIT NULL is no limit
	if f.Limit > 0 {
		limit = &f.Limit
	}
	args = append(args, limit)
	rows, _ := a.pool.Query(ctx, `SELECT `+aliasColumns+` FROM mail_aliases a JOIN mail_users u ON u.id = a.user_id
		WHERE `+strings.Join(where, " AND ")+` ORDER BY a.id LIMIT $`+strconv.Itoa(len(args)), args...)
	list, err := pgx.CollectRows(rows, scanAlias)
	if err != nil {
		return nil, fmt.Errorf("accounts: list aliases: %w", err)
	}
	return list, nil
}

// DeleteAlias deletes an alias of tenant and returns it.
func (a *Accounts) DeleteAlias(ctx context.Context, tenantID string, id int64) (Alias, error) {
	return one(ctx, a, scanAlias, fmt.Sprintf("alias %d", id), `
		WITH a AS (DELETE FROM mail_aliases WHERE id = $1 AND tenant_id = $2 RETURNING *)
		SELECT `+aliasColumns+` FROM a JOIN mail_users u ON u.id = a.user_id`, id, tenantID)
}

// Owns reports whether address is user userID's own or one of its aliases
// in an enabled domain, compared as Normalize does; a malformed address is
// no one's.
func (a *Accounts) Owns(ctx context.Context, userID int64, address string) (bool, error) {
	addr, err := Normalize(address)
	if err != nil {
		return false, nil
	}
	var owns bool
	err = a.pool.QueryRow(ctx, `
		SELECT EXISTS (SELECT 1 FROM mail_users WHERE id = $1 AND address = $2)
			OR EXISTS (SELECT 1 FROM mail_aliases a JOIN domains d ON d.id = a.domain_id
				WHERE a.user_id = $1 AND a.address = $2 AND NOT d.disabled)`, userID, addr).Scan(&owns)
	if err != nil {
		return false, fmt.Errorf("accounts: owns %s: %w", addr, err)
	}
	return owns, nil
}

// DomainTenant returns the id of the tenant that has the domain called
// name; ErrNotFound when none has. It is for the operator's tools, which
// act on every tenant.
func (a *Accounts) DomainTenant(ctx context.Context, name string) (string, error) {
	name, err := domainName("domain", name)
	if err != nil {
		return "", err
	}
	return one(ctx, a, pgx.RowTo[string], "domain "+name, `SELECT tenant_id::text FROM domains WHERE name = $1`, name)
}

// TenantIDs returns the ids of all tenants, by name, for the operator's
// tools.
func (a *Accounts) TenantIDs(ctx context.Context) ([]string, error) {
	rows, _ := a.pool.Query(ctx, `SELECT id::text FROM tenants ORDER BY name`)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("accounts: tenants: %w", err)
	}
	return ids, nil
}
