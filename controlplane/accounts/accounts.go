// Package accounts serves AccountsService: people sign up with an e-mail
// address and a password, verify the address through a mailed link, log
// in to a session token and accept invitations to tenants. Passwords are
// argon2id hashes (internal/password); tokens in links are stored as
// SHA-256 hashes only. Nothing here is rate-limited yet. It also holds the
// rules the tenants service shares: the password rule, the error of a bad
// input field and the answer to a transient database fault.
package accounts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mairust/mairust/controlplane/access"
	"github.com/mairust/mairust/controlplane/auth"
	"github.com/mairust/mairust/controlplane/mailer"
	"github.com/mairust/mairust/controlplane/server"
	"github.com/mairust/mairust/controlplane/store"
	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/password"
	"github.com/mairust/mairust/internal/ratelimit"
	accountsv1 "github.com/mairust/mairust/proto/mairust/accounts/v1"
	"github.com/mairust/mairust/proto/mairust/accounts/v1/accountsv1connect"
)

// verificationTTL is how long a verification link works.
const verificationTTL = 48 * time.Hour

// MinPasswordLen is the fewest characters a password may have.
const MinPasswordLen = 10

// Service implements AccountsService.
type Service struct {
	st    *store.Store
	keys  *auth.Keys
	cfg   config.ControlPlane
	mail  mailer.Mailer
	log   *slog.Logger
	dummy string // a hash checked for unknown addresses, so that they take as long as known ones
	// limits counts the calls without a session, in this process.
	limits *ratelimit.Memory
}

// New returns the service; cfg gives SessionTTL and the links' base URL.
func New(st *store.Store, keys *auth.Keys, cfg config.ControlPlane, m mailer.Mailer, log *slog.Logger) *Service {
	dummy, _ := password.Hash(password.Random(20)) // cannot fail: the password is short
	return &Service{st: st, keys: keys, cfg: cfg, mail: m, log: log, dummy: dummy, limits: ratelimit.NewMemory()}
}

// Service returns the handler to give server.New; SignUp, VerifyEmail and
// LogIn need no session.
func (s *Service) Service(opts ...connect.HandlerOption) server.Service {
	path, h := accountsv1connect.NewAccountsServiceHandler(s, opts...)
	return server.Service{Name: accountsv1connect.AccountsServiceName, Path: path, Handler: h, Public: []string{
		accountsv1connect.AccountsServiceSignUpProcedure,
		accountsv1connect.AccountsServiceVerifyEmailProcedure,
		accountsv1connect.AccountsServiceLogInProcedure,
	}}
}

// InvalidArgument is the error of a bad input field.
func InvalidArgument(field string, err error) error {
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%s: %w", field, err))
}

// CheckPassword enforces the rule on passwords people choose (accounts
// and mail users): at least MinPasswordLen characters, at most
// password.MaxLen bytes.
func CheckPassword(pw string) error {
	if utf8.RuneCountInString(pw) < MinPasswordLen {
		return InvalidArgument("password", fmt.Errorf("too short: choose at least %d characters", MinPasswordLen))
	}
	if len(pw) > password.MaxLen {
		return InvalidArgument("password", fmt.Errorf("too long: at most %d bytes", password.MaxLen))
	}
	return nil
}

// Fault turns a database error into what the caller should see: a
// transient fault (a conflict between transactions, a lock, a full or
// restarting server) is Unavailable, to retry; others are left as they
// are.
func Fault(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "40001", "40P01", "55P03", "53300", "57P03":
			return connect.NewError(connect.CodeUnavailable, fmt.Errorf("the database is busy (%s): try again", pe.Code))
		}
	}
	return err
}

// email checks and normalises the input field named field.
func email(field, s string) (string, error) {
	a, err := mailer.Address(s)
	if err != nil {
		return "", InvalidArgument(field, err)
	}
	return a, nil
}

// token hashes the input field token.
func token(s string) ([]byte, error) {
	h, err := mailer.TokenHash(s)
	if err != nil {
		return nil, InvalidArgument("token", err)
	}
	return h, nil
}

// account is a row of accounts.
type account struct {
	id, email, hash string
	verified        *time.Time
	created         time.Time
}

func (a account) proto() *accountsv1.Account {
	return &accountsv1.Account{Id: a.id, Email: a.email, EmailVerified: a.verified != nil, CreatedAt: timestamppb.New(a.created)}
}

const accountColumns = `id, email, password_hash, email_verified_at, created_at`

func scanAccount(row pgx.Row) (account, error) {
	var a account
	err := row.Scan(&a.id, &a.email, &a.hash, &a.verified, &a.created)
	return a, err
}

// SignUp creates an unverified account and mails its verification link,
// in one transaction: when the mail cannot be sent nothing is kept. An
// unverified account whose links have all expired may be signed up again.
func (s *Service) SignUp(ctx context.Context, req *connect.Request[accountsv1.SignUpRequest]) (*connect.Response[accountsv1.SignUpResponse], error) {
	if err := s.allowPublic(ctx, req); err != nil {
		return nil, err
	}
	addr, err := email("email", req.Msg.Email)
	if err != nil {
		return nil, err
	}
	if err := CheckPassword(req.Msg.Password); err != nil {
		return nil, err
	}
	hash, err := password.Hash(req.Msg.Password)
	if err != nil {
		return nil, err
	}
	var a account
	err = s.st.Tx(ctx, store.Scope{}, func(tx pgx.Tx) error {
		a, err = scanAccount(tx.QueryRow(ctx, `INSERT INTO accounts (email, password_hash) VALUES ($1, $2)
			ON CONFLICT (email) DO UPDATE SET password_hash = excluded.password_hash, created_at = now()
				WHERE accounts.email_verified_at IS NULL AND NOT EXISTS (SELECT 1 FROM email_verifications v
					WHERE v.account_id = accounts.id AND v.used_at IS NULL AND v.expires_at > now())
			RETURNING `+accountColumns, addr, hash))
		if errors.Is(err, pgx.ErrNoRows) {
			return connect.NewError(connect.CodeAlreadyExists, errors.New("an account with this e-mail address already exists: log in, or use the link in the verification mail"))
		}
		if err != nil {
			return err
		}
		tok, tokHash := mailer.NewToken()
		if _, err := tx.Exec(ctx, `INSERT INTO email_verifications (token_hash, account_id, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))`,
			tokHash, a.id, verificationTTL.Seconds()); err != nil {
			return err
		}
		body := fmt.Sprintf("Welcome to MaiRust.\n\nTo verify your e-mail address and be able to log in, open this link within %d hours:\n\n%s\n\nIf you did not sign up, ignore this mail: the account stays unusable.\n",
			int(verificationTTL.Hours()), mailer.Link(s.cfg, "/console/verify", tok))
		if err := s.mail.Send(ctx, addr, "Verify your e-mail address for MaiRust", body); err != nil {
			s.log.ErrorContext(ctx, "verification mail not sent", "error", err)
			return connect.NewError(connect.CodeUnavailable, errors.New("the verification mail could not be sent: try again later"))
		}
		return nil
	})
	if err != nil {
		return nil, Fault(err)
	}
	return connect.NewResponse(&accountsv1.SignUpResponse{Account: a.proto()}), nil
}

// VerifyEmail marks the account of a verification token verified. Using
// a link a second time answers the verified account again.
func (s *Service) VerifyEmail(ctx context.Context, req *connect.Request[accountsv1.VerifyEmailRequest]) (*connect.Response[accountsv1.VerifyEmailResponse], error) {
	if err := s.allowPublic(ctx, req); err != nil {
		return nil, err
	}
	hash, err := token(req.Msg.Token)
	if err != nil {
		return nil, err
	}
	var a account
	err = s.st.Tx(ctx, store.Scope{}, func(tx pgx.Tx) error {
		var id string
		var used, expired bool
		err := tx.QueryRow(ctx, `SELECT account_id, used_at IS NOT NULL, expires_at <= now() FROM email_verifications WHERE token_hash = $1 FOR UPDATE`,
			hash).Scan(&id, &used, &expired)
		if errors.Is(err, pgx.ErrNoRows) {
			return connect.NewError(connect.CodeNotFound, errors.New("this verification link is not known: open the link of the latest mail, or sign up again"))
		}
		if err != nil {
			return err
		}
		if !used && expired {
			return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("this verification link has expired (links work for %d hours): sign up again for a new one", int(verificationTTL.Hours())))
		}
		if _, err := tx.Exec(ctx, `UPDATE email_verifications SET used_at = coalesce(used_at, now()) WHERE token_hash = $1`, hash); err != nil {
			return err
		}
		a, err = scanAccount(tx.QueryRow(ctx, `UPDATE accounts SET email_verified_at = coalesce(email_verified_at, now()) WHERE id = $1 RETURNING `+accountColumns, id))
		return err
	})
	if err != nil {
		return nil, Fault(err)
	}
	return connect.NewResponse(&accountsv1.VerifyEmailResponse{Account: a.proto()}), nil
}

// LogIn checks the password and issues a session token. An unknown
// address and a wrong password get the same answer after the same work.
func (s *Service) LogIn(ctx context.Context, req *connect.Request[accountsv1.LogInRequest]) (*connect.Response[accountsv1.LogInResponse], error) {
	if err := s.allowPublic(ctx, req); err != nil {
		return nil, err
	}
	addr, err := email("email", req.Msg.Email)
	if err != nil {
		return nil, err
	}
	if err := s.allow(ctx, "login:"+addr, loginsPerAccount, "log-in attempts on this account"); err != nil {
		return nil, err
	}
	if req.Msg.Password == "" {
		return nil, InvalidArgument("password", errors.New("empty: type your password"))
	}
	if len(req.Msg.Password) > password.MaxLen {
		return nil, InvalidArgument("password", fmt.Errorf("too long: at most %d bytes", password.MaxLen))
	}
	var a account
	err = s.st.Tx(ctx, store.Scope{}, func(tx pgx.Tx) error {
		a, err = scanAccount(tx.QueryRow(ctx, `SELECT `+accountColumns+` FROM accounts WHERE email = $1`, addr))
		return err
	})
	known := err == nil
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, Fault(err)
	}
	hash := s.dummy
	if known {
		hash = a.hash
	}
	ok, err := password.Check(hash, req.Msg.Password)
	if err != nil {
		return nil, err
	}
	if !ok || !known {
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("wrong e-mail address or password: check both, or sign up"))
	}
	if a.verified == nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("the address %s is not verified yet: click the link in the mail we sent to it, then log in", a.email))
	}
	tok, exp, err := s.keys.Issue(auth.Principal{Kind: auth.KindSession, AccountID: a.id}, s.cfg.SessionTTL)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&accountsv1.LogInResponse{SessionToken: tok, ExpiresAt: timestamppb.New(exp), Account: a.proto()}), nil
}

// caller returns the session's account, in a transaction scoped to it.
func (s *Service) caller(ctx context.Context, tx pgx.Tx, id string) (account, error) {
	a, err := scanAccount(tx.QueryRow(ctx, `SELECT `+accountColumns+` FROM accounts WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return a, connect.NewError(connect.CodeUnauthenticated, errors.New("your account no longer exists: sign up again"))
	}
	return a, err
}

// GetMe returns the caller's account and memberships, oldest first.
func (s *Service) GetMe(ctx context.Context, _ *connect.Request[accountsv1.GetMeRequest]) (*connect.Response[accountsv1.GetMeResponse], error) {
	id, err := access.Session(ctx)
	if err != nil {
		return nil, err
	}
	res := &accountsv1.GetMeResponse{}
	err = s.st.Tx(ctx, store.Scope{AccountID: id}, func(tx pgx.Tx) error {
		a, err := s.caller(ctx, tx, id)
		if err != nil {
			return err
		}
		res.Account = a.proto()
		rows, err := tx.Query(ctx, `SELECT m.tenant_id, t.name, m.role FROM memberships m JOIN tenants t ON t.id = m.tenant_id
			WHERE m.account_id = $1 ORDER BY m.created_at, m.tenant_id`, id)
		if err != nil {
			return err
		}
		res.Memberships, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*accountsv1.Membership, error) {
			var m accountsv1.Membership
			var role string
			err := r.Scan(&m.TenantId, &m.TenantName, &role)
			m.Role = access.Role(role)
			return &m, err
		})
		return err
	})
	if err != nil {
		return nil, Fault(err)
	}
	return connect.NewResponse(res), nil
}

// invitation is a row of invitation_by_token.
type invitation struct {
	id, tenant, email, role string
	expires                 time.Time
	accepted                *time.Time
}

// AcceptInvitation makes the caller a member of the invitation's tenant
// when the invitation is for the caller's address, open and unexpired.
func (s *Service) AcceptInvitation(ctx context.Context, req *connect.Request[accountsv1.AcceptInvitationRequest]) (*connect.Response[accountsv1.AcceptInvitationResponse], error) {
	id, err := access.Session(ctx)
	if err != nil {
		return nil, err
	}
	hash, err := token(req.Msg.Token)
	if err != nil {
		return nil, err
	}
	var inv invitation
	err = s.st.Tx(ctx, store.Scope{AccountID: id}, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT id, tenant, email, role, expires_at, accepted_at FROM invitation_by_token($1)`, hash).
			Scan(&inv.id, &inv.tenant, &inv.email, &inv.role, &inv.expires, &inv.accepted)
		if errors.Is(err, pgx.ErrNoRows) {
			return connect.NewError(connect.CodeNotFound, errors.New("this invitation is not known, or a newer one replaced it: open the link of the latest invitation mail"))
		}
		if err != nil {
			return err
		}
		a, err := s.caller(ctx, tx, id)
		if err != nil {
			return err
		}
		if a.email != inv.email {
			return connect.NewError(connect.CodePermissionDenied, errors.New("this invitation is for another e-mail address: log in with the address the invitation was sent to"))
		}
		return nil
	})
	if err != nil {
		return nil, Fault(err)
	}
	m := &accountsv1.Membership{TenantId: inv.tenant}
	err = s.st.Tx(ctx, store.Scope{TenantID: inv.tenant, AccountID: id}, func(tx pgx.Tx) error {
		var open bool
		err := tx.QueryRow(ctx, `UPDATE invitations SET accepted_at = now() WHERE id = $1 AND token_hash = $2 AND accepted_at IS NULL
			RETURNING expires_at > now()`, inv.id, hash).Scan(&open)
		if errors.Is(err, pgx.ErrNoRows) {
			return connect.NewError(connect.CodeFailedPrecondition, errors.New("this invitation has already been accepted: log in and find the tenant in your list"))
		}
		if err != nil {
			return err
		}
		if !open {
			return connect.NewError(connect.CodeFailedPrecondition, errors.New("this invitation has expired: ask an admin of the tenant to invite you again"))
		}
		var role string
		err = tx.QueryRow(ctx, `WITH joined AS (INSERT INTO memberships (tenant_id, account_id, role) VALUES ($1, $2, $3)
				ON CONFLICT (tenant_id, account_id) DO NOTHING RETURNING role)
			SELECT t.name, coalesce((SELECT role FROM joined), (SELECT role FROM memberships WHERE tenant_id = $1 AND account_id = $2))
			FROM tenants t WHERE t.id = $1`, inv.tenant, id, inv.role).Scan(&m.TenantName, &role)
		m.Role = access.Role(role)
		return err
	})
	if err != nil {
		return nil, Fault(err)
	}
	return connect.NewResponse(&accountsv1.AcceptInvitationResponse{Membership: m}), nil
}
