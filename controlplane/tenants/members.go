package tenants

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"

	"github.com/mairust/mairust/controlplane/access"
	"github.com/mairust/mairust/controlplane/accounts"
	"github.com/mairust/mairust/controlplane/mailer"
	tenantsv1 "github.com/mairust/mairust/proto/mairust/tenants/v1"
)

// invitationTTL is how long an invitation link works.
const invitationTTL = 7 * 24 * time.Hour

// email checks and normalises the request's email field.
func email(s string) (string, error) {
	a, err := mailer.Address(s)
	if err != nil {
		return "", accounts.InvalidArgument("email", err)
	}
	return a, nil
}

// InviteMember invites an address to the tenant with a role and mails
// the link; inviting it again replaces the earlier link. The invitation
// is kept only when the mail could be sent.
func (s *Service) InviteMember(ctx context.Context, req *connect.Request[tenantsv1.InviteMemberRequest]) (*connect.Response[tenantsv1.InviteMemberResponse], error) {
	inviter, err := access.Session(ctx)
	if err != nil {
		return nil, err
	}
	addr, err := email(req.Msg.Email)
	if err != nil {
		return nil, err
	}
	role := access.RoleName(req.Msg.Role)
	if role == "" {
		return nil, accounts.InvalidArgument("role", errors.New("choose ROLE_VIEWER, ROLE_ADMIN or ROLE_OWNER"))
	}
	tid := req.Msg.TenantId
	m := &tenantsv1.Member{Email: addr, Role: req.Msg.Role, Invited: true}
	err = s.in(ctx, tid, admin, func(tx pgx.Tx, mine string) error {
		if role == owner && mine != owner {
			return connect.NewError(connect.CodePermissionDenied, errors.New("only an owner may invite an owner: choose ROLE_ADMIN, or ask an owner"))
		}
		var member bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM memberships m JOIN accounts a ON a.id = m.account_id WHERE m.tenant_id = $1 AND a.email = $2)`,
			tid, addr).Scan(&member); err != nil {
			return err
		}
		if member {
			return connect.NewError(connect.CodeAlreadyExists, fmt.Errorf("%s is already a member of this tenant", addr))
		}
		tok, hash := mailer.NewToken()
		var created time.Time
		if err := tx.QueryRow(ctx, `INSERT INTO invitations (tenant_id, email, role, token_hash, invited_by, expires_at)
			VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
			ON CONFLICT (tenant_id, email) DO UPDATE SET role = excluded.role, token_hash = excluded.token_hash, invited_by = excluded.invited_by,
				expires_at = excluded.expires_at, accepted_at = NULL, created_at = now()
			RETURNING created_at`, tid, addr, role, hash, inviter, invitationTTL.Seconds()).Scan(&created); err != nil {
			return err
		}
		m.CreatedAt = ts(created)
		var tenant, from string
		if err := tx.QueryRow(ctx, `SELECT t.name, a.email FROM tenants t, accounts a WHERE t.id = $1 AND a.id = $2`, tid, inviter).Scan(&tenant, &from); err != nil {
			return err
		}
		body := fmt.Sprintf("%s invited you to the organisation %q on MaiRust, as %s.\n\n"+
			"To join, log in (or sign up) with this address, %s, then open this link within %d days:\n\n%s\n\n"+
			"If you did not expect this invitation, ignore this mail.\n",
			from, tenant, role, addr, int(invitationTTL.Hours()/24), mailer.Link(s.cfg, "/console/invite", tok))
		if err := s.mail.Send(ctx, addr, "Invitation to "+tenant+" on MaiRust", body); err != nil {
			s.log.ErrorContext(ctx, "invitation mail not sent", "tenant_id", tid, "error", err)
			return connect.NewError(connect.CodeUnavailable, errors.New("the invitation mail could not be sent: try again later"))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&tenantsv1.InviteMemberResponse{Member: m}), nil
}

// ListMembers lists the tenant's members and its open (unaccepted,
// unexpired) invitations, oldest first.
func (s *Service) ListMembers(ctx context.Context, req *connect.Request[tenantsv1.ListMembersRequest]) (*connect.Response[tenantsv1.ListMembersResponse], error) {
	tid := req.Msg.TenantId
	res := &tenantsv1.ListMembersResponse{}
	err := s.in(ctx, tid, viewer, func(tx pgx.Tx, _ string) error {
		rows, err := tx.Query(ctx, `SELECT m.account_id::text, a.email, m.role, false, m.created_at
				FROM memberships m JOIN accounts a ON a.id = m.account_id WHERE m.tenant_id = $1
			UNION ALL
			SELECT '', email, role, true, created_at FROM invitations WHERE tenant_id = $1 AND accepted_at IS NULL AND expires_at > now()
			ORDER BY 5, 2`, tid)
		if err != nil {
			return err
		}
		res.Members, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*tenantsv1.Member, error) {
			var m tenantsv1.Member
			var role string
			var created time.Time
			err := r.Scan(&m.AccountId, &m.Email, &role, &m.Invited, &created)
			m.Role, m.CreatedAt = access.Role(role), ts(created)
			return &m, err
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(res), nil
}

// RemoveMember ends the membership of an address, or withdraws its open
// invitation. Only an owner removes an owner, and the last owner stays.
func (s *Service) RemoveMember(ctx context.Context, req *connect.Request[tenantsv1.RemoveMemberRequest]) (*connect.Response[tenantsv1.RemoveMemberResponse], error) {
	addr, err := email(req.Msg.Email)
	if err != nil {
		return nil, err
	}
	tid := req.Msg.TenantId
	err = s.in(ctx, tid, admin, func(tx pgx.Tx, mine string) error {
		var account, role string
		err := tx.QueryRow(ctx, `SELECT m.account_id, m.role FROM memberships m JOIN accounts a ON a.id = m.account_id
			WHERE m.tenant_id = $1 AND a.email = $2`, tid, addr).Scan(&account, &role)
		if errors.Is(err, pgx.ErrNoRows) {
			ct, err := tx.Exec(ctx, `DELETE FROM invitations WHERE tenant_id = $1 AND email = $2 AND accepted_at IS NULL`, tid, addr)
			if err == nil && ct.RowsAffected() == 0 {
				return connect.NewError(connect.CodeNotFound, fmt.Errorf("%s is neither a member of this tenant nor invited to it", addr))
			}
			return err
		}
		if err != nil {
			return err
		}
		if role == owner {
			if mine != owner {
				return connect.NewError(connect.CodePermissionDenied, errors.New("only an owner may remove an owner"))
			}
			var owners int
			// Locking the owners' rows orders concurrent removals: the
			// second one counts what the first left.
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM memberships WHERE tenant_id = $1 AND role = 'owner' FOR UPDATE) o`,
				tid).Scan(&owners); err != nil {
				return err
			}
			if owners <= 1 {
				return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("%s is the last owner of this tenant: invite another owner first", addr))
			}
		}
		_, err = tx.Exec(ctx, `DELETE FROM memberships WHERE tenant_id = $1 AND account_id = $2`, tid, account)
		return err
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&tenantsv1.RemoveMemberResponse{}), nil
}
