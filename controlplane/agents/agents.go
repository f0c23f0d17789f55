// Package agents is the control plane's AgentsService: console calls that
// make enrollment tokens, list and revoke agents; agent calls that enroll,
// renew credentials, send heartbeats and reports; and the WatchConfig
// stream that pushes each tenant's configuration to its agents, woken by
// the database's config_changed notifications. It also gives the auth
// middleware its Checker (a revoked agent's calls are refused) and marks
// agents down when their heartbeats stop.
package agents

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mairust/mairust/controlplane/access"
	"github.com/mairust/mairust/controlplane/auth"
	"github.com/mairust/mairust/controlplane/server"
	"github.com/mairust/mairust/controlplane/store"
	"github.com/mairust/mairust/internal/config"
	agentsv1 "github.com/mairust/mairust/proto/mairust/agents/v1"
	"github.com/mairust/mairust/proto/mairust/agents/v1/agentsv1connect"
)

// Service implements agentsv1connect.AgentsServiceHandler.
type Service struct {
	// Keepalive is how long a config stream stays silent before it sends a
	// Keepalive, without reading the database. 15 s; set it before serving.
	Keepalive time.Duration
	// Recheck is how often, with up to 20 % jitter, an idle stream
	// re-reads its configuration version and its agent's standing, in case
	// a notification was lost (changes and revocations notify). 5 min.
	Recheck time.Duration
	// Limits, when set, is asked before an agent is enrolled (billing's
	// plans); set it before serving.
	Limits access.Limits
	// MarketplaceKeys go to the agents with their configuration, to verify
	// the packages of the plugins they install; set it before serving.
	MarketplaceKeys []*agentsv1.MarketplaceKey

	st   *store.Store
	keys *auth.Keys
	cfg  config.ControlPlane
	log  *slog.Logger
	hub  hub
}

var _ agentsv1connect.AgentsServiceHandler = (*Service)(nil)

// New returns the service. cfg gives the credentials' lifetime, the
// heartbeat interval and the down threshold.
func New(st *store.Store, keys *auth.Keys, cfg config.ControlPlane, log *slog.Logger) (*Service, error) {
	if cfg.AgentCredentialTTL <= 0 || cfg.HeartbeatInterval < time.Second || cfg.AgentDownAfter <= 0 {
		return nil, errors.New("agents: set controlplane.agent_credential_ttl, controlplane.heartbeat_interval (1s or more) and controlplane.agent_down_after")
	}
	return &Service{Keepalive: 15 * time.Second, Recheck: 5 * time.Minute, st: st, keys: keys, cfg: cfg, log: log.With("component", "agents")}, nil
}

// Service returns the service for server.New; Enroll and RenewCredential
// are public (authorised by the token and the key).
func (s *Service) Service(opts ...connect.HandlerOption) server.Service {
	path, h := agentsv1connect.NewAgentsServiceHandler(s, opts...)
	return server.Service{Name: agentsv1connect.AgentsServiceName, Path: path, Handler: h,
		Public: []string{agentsv1connect.AgentsServiceEnrollProcedure, agentsv1connect.AgentsServiceRenewCredentialProcedure}}
}

// Run listens for configuration changes and marks agents down until ctx
// ends.
func (s *Service) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { s.listen(ctx) })
	wg.Go(func() { s.RunDownMarker(ctx) })
	wg.Wait()
}

// refusal is why an agent's credential is no longer honoured.
type refusal string

func (r refusal) Error() string { return string(r) }

const (
	revoked    refusal = "this agent was revoked: enroll the machine again with a new enrollment token from the console"
	unenrolled refusal = "this agent is not enrolled in its tenant any more: enroll the machine again with a new enrollment token"
)

// Check is the auth.Checker of agent principals: the agent exists in its
// tenant and is not revoked (a refusal); a failure to tell is Unavailable,
// for the agent to try again.
func (s *Service) Check(ctx context.Context, p auth.Principal) error {
	err := s.st.Tx(ctx, store.Scope{TenantID: p.TenantID}, func(tx pgx.Tx) error { return standing(ctx, tx, p) })
	var r refusal
	if err != nil && !errors.As(err, &r) {
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf("cannot check the agent's enrollment now, try again: %w", err))
	}
	return err
}

// standing returns a refusal when p may no longer call.
func standing(ctx context.Context, tx pgx.Tx, p auth.Principal) error {
	var isRevoked bool
	err := tx.QueryRow(ctx, `SELECT revoked_at IS NOT NULL FROM agents WHERE id = $1 AND tenant_id = $2`, p.AgentID, p.TenantID).Scan(&isRevoked)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return unenrolled
	case err != nil:
		return err
	case isRevoked:
		return revoked
	}
	return nil
}

// agentOf returns the calling agent, or Unauthenticated.
func agentOf(ctx context.Context) (auth.Principal, error) {
	p, ok := auth.From(ctx)
	if !ok || p.Kind != auth.KindAgent {
		return auth.Principal{}, connect.NewError(connect.CodeUnauthenticated,
			errors.New("this call needs an agent credential (Authorization: Bearer), from Enroll, RenewCredential or Heartbeat"))
	}
	return p, nil
}

// asAgent runs fn in a transaction scoped to the calling agent's tenant.
func (s *Service) asAgent(ctx context.Context, fn func(tx pgx.Tx, p auth.Principal) error) error {
	p, err := agentOf(ctx)
	if err != nil {
		return err
	}
	return s.st.Tx(ctx, store.Scope{TenantID: p.TenantID}, func(tx pgx.Tx) error { return fn(tx, p) })
}

// credential issues a credential to an agent.
func (s *Service) credential(agentID, tenantID string) (*agentsv1.Credential, error) {
	tok, exp, err := s.keys.Issue(auth.Principal{Kind: auth.KindAgent, AgentID: agentID, TenantID: tenantID}, s.cfg.AgentCredentialTTL)
	if err != nil {
		return nil, fmt.Errorf("agents: issue a credential: %w", err)
	}
	return &agentsv1.Credential{Token: tok, ExpiresAt: timestamppb.New(exp)}, nil
}

// RunDownMarker marks agents down, every heartbeat interval, until ctx
// ends.
func (s *Service) RunDownMarker(ctx context.Context) {
	t := time.NewTicker(s.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := s.MarkDown(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Error("marking agents down failed; trying again at the next interval", "error", err)
		} else if n > 0 {
			s.log.Info("agents marked down", "count", n)
		}
	}
}

// MarkDown makes one pass: it marks down the agents of every tenant whose
// last heartbeat is older than controlplane.agent_down_after plus their
// jitter, and returns how many.
func (s *Service) MarkDown(ctx context.Context) (int, error) {
	var n int
	err := s.st.Tx(ctx, store.Scope{}, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT mark_agents_down(make_interval(secs => $1))`, s.cfg.AgentDownAfter.Seconds()).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("agents: mark down: %w", err)
	}
	return n, nil
}
