package accounts

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mairust/mairust/internal/password"
)

// The administration functions below act within one tenant: each takes the
// tenant id and never reads or changes a row of another tenant, which they
// report as ErrNotFound, exactly like a row that does not exist.

// Errors of the administration functions.
var (
	ErrNotFound    = errors.New("not found in this tenant")
	ErrExists      = errors.New("already exists")
	ErrDomainInUse = errors.New("still has users")
)

// InvalidError names the input of an administration call that is refused.
type InvalidError struct {
	Field  string // the input at fault: name, address, password, quota_bytes, domain, user
	Reason string
}

func (e *InvalidError) Error() string { return e.Field + ": " + e.Reason }

// MinPasswordLen is the shortest password an administrator may set;
// password.MaxLen is the longest.
const MinPasswordLen = 8

// Domain is a mail domain of a tenant.
type Domain struct {
	ID        int64     `json:"id"`
	Name      string    `json:"name"`
	Disabled  bool      `json:"disabled"`
	CreatedAt time.Time `json:"created_at"`
}

// MailUser is a mail user as administrators see it (never its password hash).
// A QuotaBytes of 0 means no limit.
type MailUser struct {
	ID         int64     `json:"id"`
	Address    string    `json:"address"`
	DomainID   int64     `json:"domain_id"`
	Admin      bool      `json:"admin"`
	Disabled   bool      `json:"disabled"`
	QuotaBytes int64     `json:"quota_bytes"`
	CreatedAt  time.Time `json:"created_at"`
}

const (
	domainColumns = `id, name, disabled, created_at`
	userColumns   = `id, address, domain_id, is_admin, disabled, quota_bytes, created_at`
)

func scanDomain(row pgx.CollectableRow) (Domain, error) {
	var d Domain
	err := row.Scan(&d.ID, &d.Name, &d.Disabled, &d.CreatedAt)
	return d, err
}

func scanUser(row pgx.CollectableRow) (MailUser, error) {
	var u MailUser
	err := row.Scan(&u.ID, &u.Address, &u.DomainID, &u.Admin, &u.Disabled, &u.QuotaBytes, &u.CreatedAt)
	return u, err
}

// addressUnique is the constraint that keeps an address a user's or an
// alias, never both (migration 0011).
const addressUnique = "mail_address_unique"

// uniqueViolation returns the constraint err violates when it is a unique
// violation.
func uniqueViolation(err error) (constraint string, ok bool) {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return pgErr.ConstraintName, true
	}
	return "", false
}

// one runs a query that returns at most one row; no row is ErrNotFound.
func one[T any](ctx context.Context, a *Accounts, scan pgx.RowToFunc[T], what, sql string, args ...any) (T, error) {
	rows, _ := a.pool.Query(ctx, sql, args...)
	v, err := pgx.CollectExactlyOneRow(rows, scan)
	if errors.Is(err, pgx.ErrNoRows) {
		return v, fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	if err != nil {
		return v, fmt.Errorf("accounts: %s: %w", what, err)
	}
	return v, nil
}

// domainName checks and normalizes a domain name as administrators type it
// (the input called field): lower case, without a trailing dot, labels of
// letters (any script), digits, '-' and '_', at most 63 bytes each and 253
// in all.
func domainName(field, s string) (string, error) {
	name := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(s), "."))
	bad := func(why string) (string, error) {
		return "", &InvalidError{Field: field, Reason: fmt.Sprintf("%q is not a domain name: %s", s, why)}
	}
	if name == "" || len(name) > 253 {
		return bad("it must have 1 to 253 bytes")
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return bad("each label must have 1 to 63 bytes")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return bad("a label cannot start or end with '-'")
		}
		for _, r := range label {
			if !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '-' && r != '_' {
				return bad(fmt.Sprintf("%q is not allowed", r))
			}
		}
	}
	return name, nil
}

// checkPassword enforces the length rules on a password an administrator sets.
func checkPassword(pw string) error {
	if len(pw) < MinPasswordLen || len(pw) > password.MaxLen {
		return &InvalidError{Field: "password", Reason: fmt.Sprintf("a password must have %d to %d bytes", MinPasswordLen, password.MaxLen)}
	}
	return nil
}

// checkQuota refuses a negative quota.
func checkQuota(q int64) error {
	if q < 0 {
		return &InvalidError{Field: "quota_bytes", Reason: "quota_bytes must be 0 (no limit) or more"}
	}
	return nil
}

// ListDomains returns up to limit domains of tenant with an id above after,
// by id.
func (a *Accounts) ListDomains(ctx context.Context, tenantID string, after int64, limit int) ([]Domain, error) {
	rows, _ := a.pool.Query(ctx, `SELECT `+domainColumns+` FROM domains WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3`, tenantID, after, limit)
	list, err := pgx.CollectRows(rows, scanDomain)
	if err != nil {
		return nil, fmt.Errorf("accounts: list domains: %w", err)
	}
	return list, nil
}

// AddDomain creates a domain in tenant. Unlike CreateDomain it refuses a
// name that exists already, in this tenant or another, with ErrExists.
func (a *Accounts) AddDomain(ctx context.Context, tenantID, name string) (Domain, error) {
	name, err := domainName("name", name)
	if err != nil {
		return Domain{}, err
	}
	d, err := one(ctx, a, scanDomain, "domain "+name, `
		INSERT INTO domains(tenant_id, name) VALUES($1, $2) ON CONFLICT (name) DO NOTHING
		RETURNING `+domainColumns, tenantID, name)
	if errors.Is(err, ErrNotFound) {
		return Domain{}, fmt.Errorf("domain %s: %w on this agent", name, ErrExists)
	}
	return d, err
}

// UpdateDomain enables or disables a domain of tenant. The users of a
// disabled domain can neither receive mail nor sign in.
func (a *Accounts) UpdateDomain(ctx context.Context, tenantID string, id int64, disabled bool) (Domain, error) {
	return one(ctx, a, scanDomain, fmt.Sprintf("domain %d", id), `
		UPDATE domains SET disabled = $3 WHERE id = $1 AND tenant_id = $2
		RETURNING `+domainColumns, id, tenantID, disabled)
}

// DeleteDomain deletes a domain of tenant that has no users left, with its
// aliases; while it has users it refuses with ErrDomainInUse, so that no
// mailbox is lost by deleting its domain. It returns the deleted domain.
func (a *Accounts) DeleteDomain(ctx context.Context, tenantID string, id int64) (Domain, error) {
	var d Domain
	err := pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
		// The row lock waits for users being created in the domain and
		// makes later ones fail on their foreign key.
		rows, _ := tx.Query(ctx, `SELECT `+domainColumns+` FROM domains WHERE id = $1 AND tenant_id = $2 FOR UPDATE`, id, tenantID)
		var err error
		if d, err = pgx.CollectExactlyOneRow(rows, scanDomain); err != nil {
			return err
		}
		var used bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM mail_users WHERE domain_id = $1)`, id).Scan(&used); err != nil {
			return err
		}
		if used {
			return fmt.Errorf("domain %s: %w; delete its users first", d.Name, ErrDomainInUse)
		}
		_, err = tx.Exec(ctx, `DELETE FROM domains WHERE id = $1`, id)
		return err
	})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Domain{}, fmt.Errorf("domain %d: %w", id, ErrNotFound)
	case errors.Is(err, ErrDomainInUse):
		return Domain{}, err
	case err != nil:
		return Domain{}, fmt.Errorf("accounts: delete domain %d: %w", id, err)
	}
	return d, nil
}

// domainID returns the id of tenant's domain called name.
func (a *Accounts) domainID(ctx context.Context, tenantID, name string) (int64, error) {
	return one(ctx, a, pgx.RowTo[int64], "domain "+name, `SELECT id FROM domains WHERE tenant_id = $1 AND name = $2`, tenantID, name)
}

// domainFilter returns the id of tenant's domain named by the filter input
// domain of a listing (ErrNotFound when the tenant has no such domain).
func (a *Accounts) domainFilter(ctx context.Context, tenantID, domain string) (int64, error) {
	name, err := domainName("domain", domain)
	if err != nil {
		return 0, err
	}
	return a.domainID(ctx, tenantID, name)
}

// tenantAddress normalizes the input address, a new user's or alias's, and
// returns it with the id of its domain, which must be one of tenant's.
func (a *Accounts) tenantAddress(ctx context.Context, tenantID, address string) (string, int64, error) {
	addr, err := Normalize(address)
	if err != nil {
		return "", 0, &InvalidError{Field: "address", Reason: err.Error()}
	}
	_, domain, _ := strings.Cut(addr, "@")
	id, err := a.domainID(ctx, tenantID, domain)
	if errors.Is(err, ErrNotFound) {
		return "", 0, &InvalidError{Field: "address", Reason: fmt.Sprintf("%s is not a domain of this tenant; create it first", domain)}
	}
	return addr, id, err
}

// ListUsers returns up to limit users of tenant with an id above after, by
// id; of one domain when domain is not empty (ErrNotFound when the tenant
// has no such domain).
func (a *Accounts) ListUsers(ctx context.Context, tenantID, domain string, after int64, limit int) ([]MailUser, error) {
	where, args := "tenant_id = $1 AND id > $2", []any{tenantID, after, limit}
	if domain != "" {
		id, err := a.domainFilter(ctx, tenantID, domain)
		if err != nil {
			return nil, err
		}
		where, args = where+" AND domain_id = $4", append(args, id)
	}
	rows, _ := a.pool.Query(ctx, `SELECT `+userColumns+` FROM mail_users WHERE `+where+` ORDER BY id LIMIT $3`, args...)
	list, err := pgx.CollectRows(rows, scanUser)
	if err != nil {
		return nil, fmt.Errorf("accounts: list users: %w", err)
	}
	return list, nil
}

// NewUser is a mail user to add; its domain must be one of the tenant's.
// Admin and QuotaBytes (0: no limit) are optional.
type NewUser struct {
	Address    string `json:"address"`
	Password   string `json:"password"`
	Admin      bool   `json:"admin,omitempty"`
	QuotaBytes int64  `json:"quota_bytes,omitempty"`
}

// AddUser creates a mail user, with its standard folders, in one of
// tenant's domains. An address in use, by a user or an alias, is ErrExists.
func (a *Accounts) AddUser(ctx context.Context, tenantID string, nu NewUser) (MailUser, error) {
	if err := checkPassword(nu.Password); err != nil {
		return MailUser{}, err
	}
	if err := checkQuota(nu.QuotaBytes); err != nil {
		return MailUser{}, err
	}
	addr, _, err := a.tenantAddress(ctx, tenantID, nu.Address)
	if err != nil {
		return MailUser{}, err
	}
	if err := a.CreateUser(ctx, addr, nu.Password, nu.Admin); err != nil {
		return MailUser{}, err
	}
	u, err := one(ctx, a, scanUser, "user "+addr, `
		UPDATE mail_users SET quota_bytes = $3 WHERE address = $1 AND tenant_id = $2
		RETURNING `+userColumns, addr, tenantID, nu.QuotaBytes)
	if err != nil {
		// Take the user back rather than leave it without its quota.
		a.pool.Exec(context.WithoutCancel(ctx), `DELETE FROM mail_users WHERE address = $1 AND tenant_id = $2`, addr, tenantID)
	}
	return u, err
}

// UserChange is a change to a mail user; nil fields stay as they are.
type UserChange struct {
	Password   *string `json:"password"`
	Disabled   *bool   `json:"disabled"`
	Admin      *bool   `json:"admin"`
	QuotaBytes *int64  `json:"quota_bytes"`
}

// UpdateUser applies c to a user of tenant; a new password is stored hashed.
func (a *Accounts) UpdateUser(ctx context.Context, tenantID string, id int64, c UserChange) (MailUser, error) {
	if c.QuotaBytes != nil {
		if err := checkQuota(*c.QuotaBytes); err != nil {
			return MailUser{}, err
		}
	}
	var hash *string
	if c.Password != nil {
		if err := checkPassword(*c.Password); err != nil {
			return MailUser{}, err
		}
		h, err := password.Hash(*c.Password)
		if err != nil {
			return MailUser{}, err
		}
		hash = &h
	}
	return one(ctx, a, scanUser, fmt.Sprintf("user %d", id), `
		UPDATE mail_users SET password_hash = coalesce($3, password_hash), disabled = coalesce($4, disabled),
			is_admin = coalesce($5, is_admin), quota_bytes = coalesce($6, quota_bytes)
		WHERE id = $1 AND tenant_id = $2
		RETURNING `+userColumns, id, tenantID, hash, c.Disabled, c.Admin, c.QuotaBytes)
}

// DeleteUser deletes a user of tenant with its folders, messages, aliases
// and tokens (ON DELETE CASCADE); the blobs its messages alone referenced are
// removed by the mail store's next cleanup. It returns the deleted user.
func (a *Accounts) DeleteUser(ctx context.Context, tenantID string, id int64) (MailUser, error) {
	return one(ctx, a, scanUser, fmt.Sprintf("user %d", id), `
		DELETE FROM mail_users WHERE id = $1 AND tenant_id = $2 RETURNING `+userColumns, id, tenantID)
}
