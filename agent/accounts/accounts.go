// Package accounts owns tenants, domains, mail users and their aliases in
// PostgreSQL: their creation with the standard folders, and the recipient
// lookup SMTP uses. It never touches messages or blobs.
package accounts

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mairust/mairust/internal/password"
)

// Errors returned by Lookup.
var (
	ErrUnknownUser = errors.New("no such mail user")
	ErrForeign     = errors.New("domain not served here")
)

// StandardFolders are created for every new user: name and special use.
var StandardFolders = [][2]string{{"INBOX", "inbox"}, {"Junk", "junk"}, {"Sent", "sent"}, {"Trash", "trash"}}

// Accounts reads and writes account rows.
type Accounts struct{ pool *pgxpool.Pool }

// New returns Accounts on pool.
func New(pool *pgxpool.Pool) *Accounts { return &Accounts{pool: pool} }

// Recipient is a local mailbox a message can be delivered to. Address is
// the address looked up (normalized): the user's own or one of its aliases;
// the rest is the user's.
type Recipient struct {
	Address  string
	TenantID string
	UserID   int64
	InboxID  int64
	JunkID   int64 // where mail classified as spam goes; the inbox if the user has no Junk folder
}

// Normalize lowercases an address and checks it has the form local@domain.
func Normalize(addr string) (string, error) {
	a := strings.ToLower(strings.TrimSpace(addr))
	local, domain, ok := strings.Cut(a, "@")
	if !ok || local == "" || domain == "" || strings.ContainsAny(a, " \t\r\n<>") || strings.Contains(domain, "@") {
		return "", fmt.Errorf("%q is not an address of the form user@domain", addr)
	}
	return a, nil
}

// Lookup finds the enabled user for addr, its own address or an alias of
// it, or says whether the domain is ours (ErrUnknownUser) or not
// (ErrForeign). The user of an alias must be in an enabled domain too.
func (a *Accounts) Lookup(ctx context.Context, addr string) (Recipient, error) {
	addr, err := Normalize(addr)
	if err != nil {
		return Recipient{}, ErrForeign
	}
	_, domain, _ := strings.Cut(addr, "@")
	var (
		known            bool
		uid, inbox, junk *int64
		tenant           *string
	)
	// own and al are the user and the alias with the address (never both);
	// u is the user either names, if enabled in an enabled domain.
	err = a.pool.QueryRow(ctx, `
		SELECT d.id IS NOT NULL, u.id, u.tenant_id::text, f.id, j.id
		FROM (SELECT 1) one
		LEFT JOIN domains d ON d.name = $2 AND NOT d.disabled
		LEFT JOIN mail_users own ON own.address = $1 AND own.domain_id = d.id
		LEFT JOIN mail_aliases al ON al.address = $1 AND al.domain_id = d.id
		LEFT JOIN (mail_users u JOIN domains ud ON ud.id = u.domain_id AND NOT ud.disabled)
			ON u.id = coalesce(own.id, al.user_id) AND NOT u.disabled
		LEFT JOIN folders f ON f.user_id = u.id AND f.special = 'inbox'
		LEFT JOIN folders j ON j.user_id = u.id AND j.special = 'junk'`, addr, domain).Scan(&known, &uid, &tenant, &inbox, &junk)
	switch {
	case err != nil:
		return Recipient{}, fmt.Errorf("accounts: lookup %s: %w", addr, err)
	case !known:
		return Recipient{}, ErrForeign
	case uid == nil || inbox == nil:
		return Recipient{}, ErrUnknownUser
	}
	r := Recipient{Address: addr, TenantID: *tenant, UserID: *uid, InboxID: *inbox, JunkID: *inbox}
	if junk != nil {
		r.JunkID = *junk
	}
	return r, nil
}

// EnsureTenant returns the id of the tenant called name, creating it.
func (a *Accounts) EnsureTenant(ctx context.Context, name string) (string, error) {
	var id string
	// DO UPDATE (not DO NOTHING) so that the row comes back even when a
	// concurrent caller has just created it.
	err := a.pool.QueryRow(ctx, `
		INSERT INTO tenants(name) VALUES($1)
		ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
		RETURNING id::text`, name).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("accounts: tenant %s: %w", name, err)
	}
	return id, nil
}

// CreateDomain adds a domain for tenant; adding one the tenant already has is
// not an error, adding one of another tenant is.
func (a *Accounts) CreateDomain(ctx context.Context, tenantID, name string) error {
	name = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
	if name == "" || strings.ContainsAny(name, " @\t\r\n") {
		return fmt.Errorf("%q is not a domain name", name)
	}
	_, err := a.pool.Exec(ctx, `INSERT INTO domains(tenant_id, name) VALUES($1, $2) ON CONFLICT (name) DO NOTHING`, tenantID, name)
	if err != nil {
		return fmt.Errorf("accounts: create domain %s: %w", name, err)
	}
	// An existing domain is fine only if it is this tenant's.
	var ours bool
	if err := a.pool.QueryRow(ctx, `SELECT tenant_id = $1 FROM domains WHERE name = $2`, tenantID, name).Scan(&ours); err != nil {
		return fmt.Errorf("accounts: create domain %s: %w", name, err)
	}
	if !ours {
		return fmt.Errorf("domain %s already belongs to another tenant", name)
	}
	return nil
}

// CreateUser adds a mail user in an existing domain, with its standard
// folders, in one transaction. An address in use, by a user or an alias,
// is ErrExists.
func (a *Accounts) CreateUser(ctx context.Context, addr, pw string, admin bool) error {
	addr, err := Normalize(addr)
	if err != nil {
		return err
	}
	hash, err := password.Hash(pw)
	if err != nil {
		return err
	}
	_, domain, _ := strings.Cut(addr, "@")
	return pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
		var uid int64
		var tenant string
		err := tx.QueryRow(ctx, `
			INSERT INTO mail_users(tenant_id, domain_id, address, password_hash, is_admin)
			SELECT tenant_id, id, $1, $3, $4 FROM domains WHERE name = $2
			RETURNING id, tenant_id::text`, addr, domain, hash, admin).Scan(&uid, &tenant)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("domain %s does not exist: create it first", domain)
		}
		if c, ok := uniqueViolation(err); ok {
			if c == addressUnique {
				return fmt.Errorf("address %s: %w as an alias; remove the alias first", addr, ErrExists)
			}
			return fmt.Errorf("user %s: %w", addr, ErrExists)
		}
		if err != nil {
			return fmt.Errorf("accounts: create user %s: %w", addr, err)
		}
		for _, f := range StandardFolders {
			if _, err := tx.Exec(ctx, `INSERT INTO folders(tenant_id, user_id, name, special) VALUES($1, $2, $3, $4)`, tenant, uid, f[0], f[1]); err != nil {
				return fmt.Errorf("accounts: create folder %s: %w", f[0], err)
			}
		}
		return nil
	})
}

// CountUsers returns how many mail users exist.
func (a *Accounts) CountUsers(ctx context.Context) (int, error) {
	var n int
	err := a.pool.QueryRow(ctx, `SELECT count(*) FROM mail_users`).Scan(&n)
	return n, err
}

// User is an authenticated mail user.
type User struct {
	ID       int64
	TenantID string
	Address  string
	Admin    bool
}

// ErrBadCredentials is returned by Authenticate for an unknown or disabled
// user and for a wrong password alike.
var ErrBadCredentials = errors.New("invalid address or password")

// dummyHash is checked for unknown users so that they take as long as known ones.
var dummyHash, _ = password.Hash("mairust-no-such-user")

// Authenticate checks an address and password against an enabled user in
// an enabled domain.
func (a *Accounts) Authenticate(ctx context.Context, addr, pw string) (User, error) {
	addr, err := Normalize(addr)
	if err != nil {
		password.Check(dummyHash, pw)
		return User{}, ErrBadCredentials
	}
	var u User
	var hash string
	err = a.pool.QueryRow(ctx, `
		SELECT u.id, u.tenant_id::text, u.address, u.is_admin, u.password_hash
		FROM mail_users u JOIN domains d ON d.id = u.domain_id
		WHERE u.address = $1 AND NOT u.disabled AND NOT d.disabled`, addr).Scan(&u.ID, &u.TenantID, &u.Address, &u.Admin, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		password.Check(dummyHash, pw)
		return User{}, ErrBadCredentials
	}
	if err != nil {
		return User{}, fmt.Errorf("accounts: authenticate: %w", err)
	}
	ok, err := password.Check(hash, pw)
	if err != nil {
		return User{}, fmt.Errorf("accounts: stored hash of %s: %w", addr, err)
	}
	if !ok {
		return User{}, ErrBadCredentials
	}
	return u, nil
}

// UserByID returns an enabled user.
func (a *Accounts) UserByID(ctx context.Context, id int64) (User, error) {
	var u User
	err := a.pool.QueryRow(ctx, `
		SELECT u.id, u.tenant_id::text, u.address, u.is_admin
		FROM mail_users u JOIN domains d ON d.id = u.domain_id
		WHERE u.id = $1 AND NOT u.disabled AND NOT d.disabled`, id).Scan(&u.ID, &u.TenantID, &u.Address, &u.Admin)
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, ErrBadCredentials
	}
	return u, err
}

// RecordLogin adds a sign-in attempt to the admin log (events): by whom,
// whether it succeeded, from which address and over what (api, imap).
// tenant is "" when the address is no user's.
func (a *Accounts) RecordLogin(ctx context.Context, tenant, actor string, ok bool, ip, via string) error {
	return a.RecordEvent(ctx, tenant, "auth.login", actor, map[string]any{"ok": ok, "ip": ip, "via": via})
}

// RecordEvent adds an entry to the admin log (events); tenant "" records
// it without one.
func (a *Accounts) RecordEvent(ctx context.Context, tenant, kind, actor string, detail map[string]any) error {
	var t *string
	if tenant != "" {
		t = &tenant
	}
	if _, err := a.pool.Exec(ctx, `INSERT INTO events(tenant_id, kind, actor, detail) VALUES($1, $2, $3, $4)`, t, kind, actor, detail); err != nil {
		return fmt.Errorf("accounts: record %s: %w", kind, err)
	}
	return nil
}
