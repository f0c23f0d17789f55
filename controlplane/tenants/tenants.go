// Package tenants serves TenantsService: organisations, their members and
// invitations, mail domains, mail users and the settings pushed to their
// agents. Every call acts for the logged-in account inside one tenant
// (access.InTenant): row-level security keeps the tenant's rows apart, and
// another tenant's objects are simply not found. Memberships and tenants
// are also visible to their own account under RLS, so queries of those two
// tables name the tenant explicitly.
package tenants

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mairust/mairust/controlplane/access"
	"github.com/mairust/mairust/controlplane/accounts"
	"github.com/mairust/mairust/controlplane/mailer"
	"github.com/mairust/mairust/controlplane/server"
	"github.com/mairust/mairust/controlplane/store"
	"github.com/mairust/mairust/internal/config"
	tenantsv1 "github.com/mairust/mairust/proto/mairust/tenants/v1"
	"github.com/mairust/mairust/proto/mairust/tenants/v1/tenantsv1connect"
)

// Roles a call needs.
const (
	viewer = "viewer"
	admin  = "admin"
	owner  = "owner"
)

// maxNameLen is the longest tenant name, in characters.
const maxNameLen = 100

// Service implements TenantsService.
type Service struct {
	// Limits, when set, is asked before a domain or mail user is added
	// (billing's plans); set it before serving.
	Limits access.Limits

	st   *store.Store
	cfg  config.ControlPlane
	mail mailer.Mailer
	log  *slog.Logger
}

// allow asks Limits, when set, for one more object of kind.
func (s *Service) allow(ctx context.Context, tx pgx.Tx, tenantID string, kind access.Kind) error {
	if s.Limits == nil {
		return nil
	}
	return s.Limits.Allow(ctx, tx, tenantID, kind)
}

// New returns the service; cfg gives the links' base URL and the MX host.
func New(st *store.Store, cfg config.ControlPlane, m mailer.Mailer, log *slog.Logger) *Service {
	return &Service{st: st, cfg: cfg, mail: m, log: log}
}

// Service returns the handler to give server.New; every procedure needs
// a session.
func (s *Service) Service(opts ...connect.HandlerOption) server.Service {
	path, h := tenantsv1connect.NewTenantsServiceHandler(s, opts...)
	return server.Service{Name: tenantsv1connect.TenantsServiceName, Path: path, Handler: h}
}

// in runs fn in the tenant for a caller holding at least role min.
func (s *Service) in(ctx context.Context, tenantID, min string, fn func(tx pgx.Tx, role string) error) error {
	return accounts.Fault(access.InTenant(ctx, s.st, tenantID, min, fn))
}

// notFound is the answer for an object of no tenant of the caller's.
func notFound(what, id string) error {
	return connect.NewError(connect.CodeNotFound, fmt.Errorf("%s %q not found in this tenant", what, id))
}

// ts converts a database time.
func ts(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// tenantName checks a tenant's name: 1 to 100 characters, no control
// characters, spaces around it dropped.
func tenantName(s string) (string, error) {
	name := strings.TrimSpace(s)
	if n := utf8.RuneCountInString(name); n == 0 || n > maxNameLen || !utf8.ValidString(name) {
		return "", accounts.InvalidArgument("name", fmt.Errorf("give 1 to %d characters", maxNameLen))
	}
	if strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return "", accounts.InvalidArgument("name", errors.New("control characters are not allowed"))
	}
	return name, nil
}

// CreateTenant makes a tenant owned by the caller. Its id is made here so
// that the transaction can be scoped to it before the insert (the rows'
// policy checks app.tenant_id).
func (s *Service) CreateTenant(ctx context.Context, req *connect.Request[tenantsv1.CreateTenantRequest]) (*connect.Response[tenantsv1.CreateTenantResponse], error) {
	account, err := access.Session(ctx)
	if err != nil {
		return nil, err
	}
	name, err := tenantName(req.Msg.Name)
	if err != nil {
		return nil, err
	}
	t := &tenantsv1.Tenant{Id: newUUID(), Name: name, Role: tenantsv1.Role_ROLE_OWNER}
	err = s.st.Tx(ctx, store.Scope{TenantID: t.Id, AccountID: account}, func(tx pgx.Tx) error {
		var created time.Time
		if err := tx.QueryRow(ctx, `INSERT INTO tenants (id, name, created_by) VALUES ($1, $2, $3) RETURNING created_at`, t.Id, name, account).Scan(&created); err != nil {
			return err
		}
		t.CreatedAt = ts(created)
		_, err := tx.Exec(ctx, `INSERT INTO memberships (tenant_id, account_id, role) VALUES ($1, $2, 'owner')`, t.Id, account)
		return err
	})
	if err != nil {
		return nil, accounts.Fault(err)
	}
	return connect.NewResponse(&tenantsv1.CreateTenantResponse{Tenant: t}), nil
}

// ListTenants lists the caller's tenants with its role in each, oldest
// first.
func (s *Service) ListTenants(ctx context.Context, _ *connect.Request[tenantsv1.ListTenantsRequest]) (*connect.Response[tenantsv1.ListTenantsResponse], error) {
	account, err := access.Session(ctx)
	if err != nil {
		return nil, err
	}
	res := &tenantsv1.ListTenantsResponse{}
	err = s.st.Tx(ctx, store.Scope{AccountID: account}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT t.id, t.name, t.created_at, m.role FROM memberships m JOIN tenants t ON t.id = m.tenant_id
			WHERE m.account_id = $1 ORDER BY t.created_at, t.id`, account)
		if err != nil {
			return err
		}
		res.Tenants, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*tenantsv1.Tenant, error) {
			var t tenantsv1.Tenant
			var created time.Time
			var role string
			err := r.Scan(&t.Id, &t.Name, &created, &role)
			t.CreatedAt, t.Role = ts(created), access.Role(role)
			return &t, err
		})
		return err
	})
	if err != nil {
		return nil, accounts.Fault(err)
	}
	return connect.NewResponse(res), nil
}
