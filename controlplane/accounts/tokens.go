package accounts

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mairust/mairust/controlplane/access"
	"github.com/mairust/mairust/controlplane/auth"
	"github.com/mairust/mairust/controlplane/store"
	accountsv1 "github.com/mairust/mairust/proto/mairust/accounts/v1"
)

// maxAPITokens bounds the tokens an account holds at once.
const maxAPITokens = 50

func apiTokenHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

const apiTokenColumns = `id, name, created_at, expires_at, revoked_at`

func scanAPIToken(r pgx.Row) (*accountsv1.APIToken, error) {
	t := &accountsv1.APIToken{}
	var created time.Time
	var expires, revoked *time.Time
	if err := r.Scan(&t.Id, &t.Name, &created, &expires, &revoked); err != nil {
		return nil, err
	}
	t.CreatedAt = timestamppb.New(created)
	if expires != nil {
		t.ExpiresAt = timestamppb.New(*expires)
	}
	if revoked != nil {
		t.RevokedAt = timestamppb.New(*revoked)
	}
	return t, nil
}

// CreateAPIToken makes a token acting as the caller.
func (s *Service) CreateAPIToken(ctx context.Context, req *connect.Request[accountsv1.CreateAPITokenRequest]) (*connect.Response[accountsv1.CreateAPITokenResponse], error) {
	account, err := access.Session(ctx)
	if err != nil {
		return nil, err
	}
	m := req.Msg
	if n := utf8.RuneCountInString(m.Name); n < 1 || n > 100 {
		return nil, InvalidArgument("name", errors.New("give 1 to 100 characters saying what the token is for, e.g. terraform"))
	}
	if m.TtlSeconds < 0 {
		return nil, InvalidArgument("ttl_seconds", errors.New("give a number of seconds, or 0 for no expiry"))
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	token := auth.APITokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	resp := &accountsv1.CreateAPITokenResponse{Token: token}
	err = s.st.Tx(ctx, store.Scope{AccountID: account}, func(tx pgx.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM api_tokens WHERE account_id = $1 AND revoked_at IS NULL`, account).Scan(&n); err != nil {
			return err
		}
		if n >= maxAPITokens {
			return connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("an account holds at most %d tokens: revoke one first", maxAPITokens))
		}
		var expires *time.Time
		if m.TtlSeconds > 0 {
			e := time.Now().Add(time.Duration(m.TtlSeconds) * time.Second)
			expires = &e
		}
		resp.ApiToken, err = scanAPIToken(tx.QueryRow(ctx, `INSERT INTO api_tokens (account_id, name, token_hash, expires_at) VALUES ($1, $2, $3, $4)
			RETURNING `+apiTokenColumns, account, m.Name, apiTokenHash(token), expires))
		return err
	})
	if err != nil {
		return nil, Fault(err)
	}
	return connect.NewResponse(resp), nil
}

// ListAPITokens lists the caller's tokens, newest first.
func (s *Service) ListAPITokens(ctx context.Context, _ *connect.Request[accountsv1.ListAPITokensRequest]) (*connect.Response[accountsv1.ListAPITokensResponse], error) {
	account, err := access.Session(ctx)
	if err != nil {
		return nil, err
	}
	resp := &accountsv1.ListAPITokensResponse{}
	err = s.st.Tx(ctx, store.Scope{AccountID: account}, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `SELECT `+apiTokenColumns+` FROM api_tokens WHERE account_id = $1 ORDER BY created_at DESC`, account)
		resp.ApiTokens, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*accountsv1.APIToken, error) { return scanAPIToken(r) })
		return err
	})
	if err != nil {
		return nil, Fault(err)
	}
	return connect.NewResponse(resp), nil
}

// RevokeAPIToken revokes one of the caller's tokens; another account's is
// not found.
func (s *Service) RevokeAPIToken(ctx context.Context, req *connect.Request[accountsv1.RevokeAPITokenRequest]) (*connect.Response[accountsv1.RevokeAPITokenResponse], error) {
	account, err := access.Session(ctx)
	if err != nil {
		return nil, err
	}
	if !access.IsUUID(req.Msg.Id) {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("no such token of yours"))
	}
	err = s.st.Tx(ctx, store.Scope{AccountID: account}, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 AND account_id = $2`, req.Msg.Id, account)
		if err == nil && tag.RowsAffected() == 0 {
			return connect.NewError(connect.CodeNotFound, errors.New("no such token of yours"))
		}
		return err
	})
	if err != nil {
		return nil, Fault(err)
	}
	return connect.NewResponse(&accountsv1.RevokeAPITokenResponse{}), nil
}

// LookupAPIToken resolves a token for automation to the account it acts
// as (auth.Keys.APITokens): unknown, revoked and expired tokens are
// refused saying which.
func (s *Service) LookupAPIToken(ctx context.Context, token string) (auth.Principal, error) {
	var (
		account          string
		expires, revoked *time.Time
	)
	err := s.st.Tx(ctx, store.Scope{}, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT account_id, expires_at, revoked_at FROM api_tokens WHERE token_hash = $1`, apiTokenHash(token)).Scan(&account, &expires, &revoked)
	})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return auth.Principal{}, connect.NewError(connect.CodeUnauthenticated, errors.New("unknown API token: create one in the console (or with CreateAPIToken)"))
	case err != nil:
		return auth.Principal{}, connect.NewError(connect.CodeUnavailable, fmt.Errorf("cannot check the API token now, try again: %w", err))
	case revoked != nil:
		return auth.Principal{}, connect.NewError(connect.CodeUnauthenticated, errors.New("this API token was revoked: create a new one"))
	case expires != nil && time.Now().After(*expires):
		return auth.Principal{}, connect.NewError(connect.CodeUnauthenticated, errors.New("this API token expired: create a new one"))
	}
	return auth.Principal{Kind: auth.KindSession, AccountID: account}, nil
}
