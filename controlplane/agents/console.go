package agents

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mairust/mairust/controlplane/access"
	agentsv1 "github.com/mairust/mairust/proto/mairust/agents/v1"
)

// tokenPrefix makes enrollment tokens recognisable (in logs, secret
// scanners).
const tokenPrefix = "mre_"

// An enrollment token's lifetime in seconds: 1 minute to 7 days, 1 hour
// by default.
const (
	minTokenTTL     = 60
	maxTokenTTL     = 7 * 24 * 3600
	defaultTokenTTL = 3600
)

// tokenHash is how an enrollment token is stored.
func tokenHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// CreateEnrollmentToken makes a one-time enrollment token (admin or owner).
func (s *Service) CreateEnrollmentToken(ctx context.Context, req *connect.Request[agentsv1.CreateEnrollmentTokenRequest]) (*connect.Response[agentsv1.CreateEnrollmentTokenResponse], error) {
	ttl := req.Msg.TtlSeconds
	if ttl == 0 {
		ttl = defaultTokenTTL
	}
	if ttl < minTokenTTL || ttl > maxTokenTTL {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("ttl_seconds must be between %d (a minute) and %d (7 days), or 0 for an hour", minTokenTTL, maxTokenTTL))
	}
	account, _ := access.Session(ctx) // InTenant refuses a call without one
	var (
		token   string
		expires time.Time
	)
	err := access.InTenant(ctx, s.st, req.Msg.TenantId, "admin", func(tx pgx.Tx, _ string) (err error) {
		token, expires, err = NewEnrollmentToken(ctx, tx, req.Msg.TenantId, account, time.Duration(ttl)*time.Second)
		return err
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&agentsv1.CreateEnrollmentTokenResponse{Token: token, ExpiresAt: timestamppb.New(expires)}), nil
}

// NewEnrollmentToken stores a new one-time enrollment token of tenant,
// valid for ttl, in tx (scoped to the tenant), and returns it: the only
// time it is seen, since it is stored hashed. createdBy is an account id,
// or "" for none.
func NewEnrollmentToken(ctx context.Context, tx pgx.Tx, tenant, createdBy string, ttl time.Duration) (token string, expires time.Time, err error) {
	raw := make([]byte, 32)
	rand.Read(raw)
	token = tokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	err = tx.QueryRow(ctx, `INSERT INTO enrollment_tokens(tenant_id, token_hash, created_by, expires_at)
		VALUES ($1, $2, nullif($3, '')::uuid, now() + make_interval(secs => $4)) RETURNING expires_at`,
		tenant, tokenHash(token), createdBy, ttl.Seconds()).Scan(&expires)
	return token, expires, err
}

// ListAgents lists the tenant's agents (viewer or above).
func (s *Service) ListAgents(ctx context.Context, req *connect.Request[agentsv1.ListAgentsRequest]) (*connect.Response[agentsv1.ListAgentsResponse], error) {
	resp := &agentsv1.ListAgentsResponse{}
	err := access.InTenant(ctx, s.st, req.Msg.TenantId, "viewer", func(tx pgx.Tx, _ string) error {
		rows, err := tx.Query(ctx, `SELECT id, tenant_id, hostname, version, enrolled_at, last_heartbeat_at, uptime_seconds, health,
				config_version, revoked_at IS NOT NULL, down_at IS NOT NULL
			FROM agents WHERE tenant_id = $1 ORDER BY enrolled_at, id`, req.Msg.TenantId)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			a := &agentsv1.Agent{Status: agentsv1.AgentStatus_AGENT_STATUS_UP}
			var enrolled time.Time
			var heartbeat *time.Time
			var health []byte
			var isRevoked, down bool
			if err := rows.Scan(&a.Id, &a.TenantId, &a.Hostname, &a.Version, &enrolled, &heartbeat, &a.UptimeSeconds, &health,
				&a.ConfigVersion, &isRevoked, &down); err != nil {
				return err
			}
			a.EnrolledAt = timestamppb.New(enrolled)
			if heartbeat != nil {
				a.LastHeartbeatAt = timestamppb.New(*heartbeat)
			}
			if a.Health, err = parseHealth(health); err != nil {
				return fmt.Errorf("agent %s: health: %w", a.Id, err)
			}
			switch {
			case isRevoked:
				a.Status = agentsv1.AgentStatus_AGENT_STATUS_REVOKED
			case down:
				a.Status = agentsv1.AgentStatus_AGENT_STATUS_DOWN
			}
			resp.Agents = append(resp.Agents, a)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(resp), nil
}

// RevokeAgent revokes an agent (admin or owner): its calls are refused
// from then on and its config stream ends.
func (s *Service) RevokeAgent(ctx context.Context, req *connect.Request[agentsv1.RevokeAgentRequest]) (*connect.Response[agentsv1.RevokeAgentResponse], error) {
	notFound := connect.NewError(connect.CodeNotFound, fmt.Errorf("agent %q not found in tenant %q", req.Msg.AgentId, req.Msg.TenantId))
	err := access.InTenant(ctx, s.st, req.Msg.TenantId, "admin", func(tx pgx.Tx, _ string) error {
		if !access.IsUUID(req.Msg.AgentId) {
			return notFound
		}
		tag, err := tx.Exec(ctx, `UPDATE agents SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 AND tenant_id = $2`, req.Msg.AgentId, req.Msg.TenantId)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return notFound
		}
		// Wake the tenant's streams (in every control plane process, at
		// commit): the revoked agent's finds itself revoked and ends.
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, configChannel, req.Msg.TenantId)
		return err
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&agentsv1.RevokeAgentResponse{}), nil
}

// jsonList encodes msgs as a JSON array of their protojson forms.
func jsonList[M proto.Message](msgs []M) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, m := range msgs {
		if i > 0 {
			b.WriteByte(',')
		}
		j, err := protojson.Marshal(m)
		if err != nil {
			return nil, err
		}
		b.Write(j)
	}
	b.WriteByte(']')
	return b.Bytes(), nil
}

// parseHealth decodes a health column written by jsonList.
func parseHealth(b []byte) ([]*agentsv1.ComponentHealth, error) {
	var raws []json.RawMessage
	if err := json.Unmarshal(b, &raws); err != nil {
		return nil, err
	}
	health := make([]*agentsv1.ComponentHealth, len(raws))
	for i, raw := range raws {
		health[i] = &agentsv1.ComponentHealth{}
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, health[i]); err != nil {
			return nil, err
		}
	}
	return health, nil
}
