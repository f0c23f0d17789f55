package agents

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mairust/mairust/controlplane/access"
	"github.com/mairust/mairust/controlplane/agents/proof"
	"github.com/mairust/mairust/controlplane/store"
	agentsv1 "github.com/mairust/mairust/proto/mairust/agents/v1"
)

// renewSkew is how far a renewal's timestamp may be from the control
// plane's clock.
const renewSkew = 5 * time.Minute

// Enroll binds the agent's key to the token's tenant and returns its first
// credential. The token is taken in the same transaction as the agent is
// made, so an enrollment that fails leaves it usable.
func (s *Service) Enroll(ctx context.Context, req *connect.Request[agentsv1.EnrollRequest]) (*connect.Response[agentsv1.EnrollResponse], error) {
	m := req.Msg
	switch {
	case !strings.HasPrefix(m.Token, tokenPrefix) || len(m.Token) != len(tokenPrefix)+base64.RawURLEncoding.EncodedLen(32):
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("that is not an enrollment token (they begin with "+tokenPrefix+"): copy it whole from the console"))
	case len(m.PublicKey) != ed25519.PublicKeySize:
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("public_key must be an Ed25519 public key of %d bytes", ed25519.PublicKeySize))
	case !ed25519.Verify(m.PublicKey, proof.Enroll(m.Token, m.PublicKey), m.Signature):
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New(`the signature does not prove the key: sign "mairust-enroll\n" + token + "\n" + public_key with its private key`))
	case m.Hostname == "" || len(m.Hostname) > 253 || len(m.Version) > 100:
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("hostname (up to 253 characters) is required, and version takes up to 100"))
	}
	hash := tokenHash(m.Token)
	var agentID, tenantID string
	err := s.st.Tx(ctx, store.Scope{}, func(tx pgx.Tx) error {
		var tenant *string
		var status string
		if err := tx.QueryRow(ctx, `SELECT tenant, status FROM enrollment_token($1)`, hash).Scan(&tenant, &status); err != nil {
			return err
		}
		switch status {
		case "unknown":
			return connect.NewError(connect.CodeNotFound, errors.New("this enrollment token is not known: check that it was copied whole, or create a new one in the console"))
		case "used":
			return connect.NewError(connect.CodeFailedPrecondition, errors.New("this enrollment token was used already: create a new one in the console"))
		case "expired":
			return connect.NewError(connect.CodeFailedPrecondition, errors.New("this enrollment token expired: create a new one in the console"))
		case "ok":
		default:
			return fmt.Errorf("enrollment_token: unexpected status %q", status)
		}
		tenantID = *tenant
		// From here on the transaction acts for the token's tenant.
		if _, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1, true)`, tenantID); err != nil {
			return err
		}
		if s.Limits != nil {
			if err := s.Limits.Allow(ctx, tx, tenantID, access.Agents); err != nil {
				return err
			}
		}
		err := tx.QueryRow(ctx, `INSERT INTO agents(tenant_id, public_key, hostname, version) VALUES ($1, $2, $3, $4) RETURNING id`,
			tenantID, m.PublicKey, m.Hostname, m.Version).Scan(&agentID)
		if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "23505" {
			return connect.NewError(connect.CodeAlreadyExists, errors.New("this key is enrolled already: the agent renews its credential with RenewCredential; to enroll the machine anew, remove its key (data_dir/agent-ed25519.key) first"))
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE enrollment_tokens SET agent_id = $1 WHERE token_hash = $2`, agentID, hash)
		return err
	})
	if err != nil {
		return nil, err
	}
	cred, err := s.credential(agentID, tenantID)
	if err != nil {
		return nil, err
	}
	s.log.Info("agent enrolled", "agent_id", agentID, "tenant_id", tenantID, "hostname", m.Hostname, "version", m.Version)
	return connect.NewResponse(&agentsv1.EnrollResponse{AgentId: agentID, TenantId: tenantID, Credential: cred}), nil
}

// RenewCredential issues a new credential to an agent that proves it holds
// its key.
func (s *Service) RenewCredential(ctx context.Context, req *connect.Request[agentsv1.RenewCredentialRequest]) (*connect.Response[agentsv1.RenewCredentialResponse], error) {
	m := req.Msg
	notEnrolled := connect.NewError(connect.CodeNotFound, fmt.Errorf("agent %q is not enrolled: enroll the machine with a new enrollment token", m.AgentId))
	if !access.IsUUID(m.AgentId) {
		return nil, notEnrolled
	}
	if d := time.Since(time.Unix(m.Timestamp, 0)); d > renewSkew || d < -renewSkew {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("timestamp is %s from the control plane's clock (more than %s): set the agent's clock right (NTP)", d.Round(time.Second), renewSkew))
	}
	var tenantID *string
	var key []byte
	var isRevoked bool
	err := s.st.Tx(ctx, store.Scope{}, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT tenant, public_key, coalesce(revoked, false) FROM agent_identity($1)`, m.AgentId).Scan(&tenantID, &key, &isRevoked)
	})
	switch {
	case err != nil:
		return nil, err
	case tenantID == nil:
		return nil, notEnrolled
	case !ed25519.Verify(key, proof.Renew(m.AgentId, m.Timestamp), m.Signature):
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New(`the signature does not prove the agent's key: sign "mairust-renew\n" + agent_id + "\n" + timestamp with the key it enrolled with`))
	case isRevoked:
		return nil, connect.NewError(connect.CodePermissionDenied, revoked)
	}
	cred, err := s.credential(m.AgentId, *tenantID)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&agentsv1.RenewCredentialResponse{Credential: cred}), nil
}
