package tenants

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"

	"github.com/mairust/mairust/controlplane/access"
	"github.com/mairust/mairust/controlplane/accounts"
	"github.com/mairust/mairust/controlplane/mailer"
	"github.com/mairust/mairust/internal/password"
	tenantsv1 "github.com/mairust/mairust/proto/mairust/tenants/v1"
)

const mailUserColumns = `u.id, u.tenant_id, u.address, u.admin, u.disabled, u.quota_bytes, u.created_at`

func scanMailUser(r pgx.Row) (*tenantsv1.MailUser, error) {
	var u tenantsv1.MailUser
	var created time.Time
	err := r.Scan(&u.Id, &u.TenantId, &u.Address, &u.Admin, &u.Disabled, &u.QuotaBytes, &created)
	u.CreatedAt = ts(created)
	return &u, err
}

// AddMailUser adds a mailbox on one of the tenant's domains; its password
// is kept (and pushed to the agents) as an argon2id hash only.
func (s *Service) AddMailUser(ctx context.Context, req *connect.Request[tenantsv1.AddMailUserRequest]) (*connect.Response[tenantsv1.AddMailUserResponse], error) {
	addr, err := mailer.Address(req.Msg.Address)
	if err != nil {
		return nil, accounts.InvalidArgument("address", err)
	}
	dom := addr[strings.LastIndexByte(addr, '@')+1:]
	if err := accounts.CheckPassword(req.Msg.Password); err != nil {
		return nil, err
	}
	if req.Msg.QuotaBytes < 0 {
		return nil, accounts.InvalidArgument("quota_bytes", errors.New("give 0 (no quota) or a number of bytes"))
	}
	var u *tenantsv1.MailUser
	err = s.in(ctx, req.Msg.TenantId, admin, func(tx pgx.Tx, _ string) error {
		if err := s.allow(ctx, tx, req.Msg.TenantId, access.MailUsers); err != nil {
			return err
		}
		var domainID string
		err := tx.QueryRow(ctx, `SELECT id FROM domains WHERE name = $1`, dom).Scan(&domainID)
		if errors.Is(err, pgx.ErrNoRows) {
			return accounts.InvalidArgument("address", fmt.Errorf("domain %s is not one of this tenant's domains: add it first", dom))
		}
		if err != nil {
			return err
		}
		// Hashed here, after the checks: argon2id takes tens of milliseconds.
		hash, err := password.Hash(req.Msg.Password)
		if err != nil {
			return err
		}
		u, err = scanMailUser(tx.QueryRow(ctx, `INSERT INTO mail_users AS u (tenant_id, domain_id, address, password_hash, admin, quota_bytes)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (address) DO NOTHING RETURNING `+mailUserColumns,
			req.Msg.TenantId, domainID, addr, hash, req.Msg.Admin, req.Msg.QuotaBytes))
		if errors.Is(err, pgx.ErrNoRows) {
			return connect.NewError(connect.CodeAlreadyExists, fmt.Errorf("mail user %s already exists", addr))
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&tenantsv1.AddMailUserResponse{User: u}), nil
}

// ListMailUsers lists the tenant's mail users, oldest first, only those
// of one domain when the request names it.
func (s *Service) ListMailUsers(ctx context.Context, req *connect.Request[tenantsv1.ListMailUsersRequest]) (*connect.Response[tenantsv1.ListMailUsersResponse], error) {
	var dom string
	if req.Msg.Domain != "" {
		var err error
		if dom, err = domainName(req.Msg.Domain); err != nil {
			return nil, accounts.InvalidArgument("domain", err)
		}
	}
	res := &tenantsv1.ListMailUsersResponse{}
	err := s.in(ctx, req.Msg.TenantId, viewer, func(tx pgx.Tx, _ string) error {
		rows, err := tx.Query(ctx, `SELECT `+mailUserColumns+` FROM mail_users u JOIN domains d ON d.id = u.domain_id
			WHERE $1 = '' OR d.name = $1 ORDER BY u.created_at, u.id`, dom)
		if err != nil {
			return err
		}
		res.Users, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*tenantsv1.MailUser, error) { return scanMailUser(r) })
		return err
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(res), nil
}

// DeleteMailUser removes a mail user of the tenant.
func (s *Service) DeleteMailUser(ctx context.Context, req *connect.Request[tenantsv1.DeleteMailUserRequest]) (*connect.Response[tenantsv1.DeleteMailUserResponse], error) {
	id := req.Msg.UserId
	err := s.in(ctx, req.Msg.TenantId, admin, func(tx pgx.Tx, _ string) error {
		if !access.IsUUID(id) {
			return notFound("mail user", id)
		}
		ct, err := tx.Exec(ctx, `DELETE FROM mail_users WHERE id = $1`, id)
		if err == nil && ct.RowsAffected() == 0 {
			return notFound("mail user", id)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&tenantsv1.DeleteMailUserResponse{}), nil
}
