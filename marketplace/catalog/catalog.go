// Package catalog is the marketplace in the control plane: developers'
// submissions (uploaded packages, reviewed automatically), the reviewers'
// decisions (an approved package is countersigned with the marketplace's
// key), the storefront's reads and the downloads of approved packages.
//
// It owns the tables plugins and plugin_versions.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mairust/mairust/controlplane/access"
	"github.com/mairust/mairust/controlplane/auth"
	"github.com/mairust/mairust/controlplane/mailer"
	"github.com/mairust/mairust/controlplane/server"
	"github.com/mairust/mairust/controlplane/store"
	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/marketplace/pack"
	"github.com/mairust/mairust/marketplace/review"
	agentsv1 "github.com/mairust/mairust/proto/mairust/agents/v1"
	"github.com/mairust/mairust/proto/mairust/marketplace/v1/marketplacev1connect"
)

// Service is the marketplace of one control plane.
type Service struct {
	st        *store.Store
	keys      *auth.Keys
	cfg       config.Marketplace
	signer    pack.Signer // nil: no key, nothing can be approved
	vulns     *review.Vulns
	reviewers []string      // lowercase addresses
	baseURL   string        // the control plane's URL, for download links
	mail      mailer.Mailer // tells tenants' admins of recalls; nil: nobody
	log       *slog.Logger
}

// New returns the marketplace: its signing key from
// marketplace.signing_key_file or MAIRUST_MARKETPLACE_KEY (none: approvals
// are refused, saying so), the built-in advisory list, and baseURL for
// the download links; m mails tenants' admins of recalls.
func New(st *store.Store, keys *auth.Keys, cfg config.Marketplace, baseURL string, m mailer.Mailer, log *slog.Logger) (*Service, error) {
	s := &Service{st: st, keys: keys, cfg: cfg, vulns: review.DefaultVulns(), baseURL: strings.TrimSuffix(baseURL, "/"), mail: m, log: log.With("component", "marketplace")}
	for _, r := range cfg.Reviewers {
		s.reviewers = append(s.reviewers, strings.ToLower(r))
	}
	pem := []byte(os.Getenv("MAIRUST_MARKETPLACE_KEY"))
	if cfg.SigningKeyFile != "" {
		var err error
		if pem, err = os.ReadFile(cfg.SigningKeyFile); err != nil {
			return nil, fmt.Errorf("marketplace.signing_key_file: %w", err)
		}
	}
	if len(pem) > 0 {
		k, err := pack.ParsePrivateKey(pem)
		if err != nil {
			return nil, fmt.Errorf("marketplace.signing_key_file (or MAIRUST_MARKETPLACE_KEY): %w", err)
		}
		if k.Algorithm() != pack.Ed25519 {
			return nil, errors.New("marketplace.signing_key_file: the marketplace signs with an Ed25519 key (mairust plugin keygen --type ed25519)")
		}
		s.signer = k
		s.log.Info("marketplace signing key loaded", "key_id", k.KeyID())
	}
	return s, nil
}

// Service returns the MarketplaceService for server.New; the storefront's
// calls need no session.
func (s *Service) Service(opts ...connect.HandlerOption) server.Service {
	path, h := marketplacev1connect.NewMarketplaceServiceHandler(s, opts...)
	return server.Service{Name: marketplacev1connect.MarketplaceServiceName, Path: path, Handler: h, Public: []string{
		marketplacev1connect.MarketplaceServiceListPluginsProcedure,
		marketplacev1connect.MarketplaceServiceGetPluginProcedure,
		marketplacev1connect.MarketplaceServiceListRecallsProcedure,
	}}
}

// caller is the signed-in account: its id, address, and whether it
// reviews.
type caller struct {
	id, email string
	reviewer  bool
}

// who returns the session's account.
func (s *Service) who(ctx context.Context, tx pgx.Tx, account string) (caller, error) {
	c := caller{id: account}
	err := tx.QueryRow(ctx, `SELECT email FROM accounts WHERE id = $1`, account).Scan(&c.email)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, connect.NewError(connect.CodeUnauthenticated, errors.New("your account no longer exists: sign up again"))
	}
	c.reviewer = slices.Contains(s.reviewers, strings.ToLower(c.email))
	return c, err
}

// asAccount runs fn for the session's account, outside any tenant.
func (s *Service) asAccount(ctx context.Context, fn func(tx pgx.Tx, c caller) error) error {
	account, err := access.Session(ctx)
	if err != nil {
		return err
	}
	return s.st.Tx(ctx, store.Scope{AccountID: account}, func(tx pgx.Tx) error {
		c, err := s.who(ctx, tx, account)
		if err != nil {
			return err
		}
		return fn(tx, c)
	})
}

// Keys returns the marketplace's public keys for the agents: the signing
// key's, and those of marketplace.previous_keys with their end dates.
func (s *Service) Keys() ([]*agentsv1.MarketplaceKey, error) {
	var out []*agentsv1.MarketplaceKey
	add := func(pub *pack.PublicKey, notAfter time.Time) error {
		pem, err := pub.MarshalPEM()
		if err != nil {
			return err
		}
		k := &agentsv1.MarketplaceKey{KeyId: pub.ID, PublicKeyPem: string(pem)}
		if !notAfter.IsZero() {
			k.NotAfter = timestamppb.New(notAfter)
		}
		out = append(out, k)
		return nil
	}
	if k, ok := s.signer.(*pack.PrivateKey); ok {
		if err := add(k.Public(), time.Time{}); err != nil {
			return nil, err
		}
	}
	for i, p := range s.cfg.PreviousKeys {
		tk, err := pack.TrustedKeyFile(p.PublicKeyFile, p.NotAfter)
		if err != nil {
			return nil, fmt.Errorf("marketplace.previous_keys[%d]: %w", i, err)
		}
		if err := add(tk.Key, tk.NotAfter); err != nil {
			return nil, err
		}
	}
	return out, nil
}
