package agents

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"

	"github.com/mairust/mairust/controlplane/auth"
	agentsv1 "github.com/mairust/mairust/proto/mairust/agents/v1"
)

// Heartbeat records that the agent is up, its health and DKIM keys, and
// renews its credential.
func (s *Service) Heartbeat(ctx context.Context, req *connect.Request[agentsv1.HeartbeatRequest]) (*connect.Response[agentsv1.HeartbeatResponse], error) {
	m := req.Msg
	for _, k := range m.DkimKeys {
		if k.Domain == "" || k.Selector == "" || k.Txt == "" {
			return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("each DKIM key needs its domain, selector and txt"))
		}
	}
	health, err := jsonList(m.Health)
	if err != nil {
		return nil, err
	}
	var p auth.Principal
	err = s.asAgent(ctx, func(tx pgx.Tx, caller auth.Principal) error {
		p = caller
		if err := touch(ctx, tx, p, `last_heartbeat_at = now(), down_at = NULL, version = $3, uptime_seconds = $4, health = $5`,
			m.Version, m.UptimeSeconds, health); err != nil {
			return err
		}
		for _, k := range m.DkimKeys {
			if _, err := tx.Exec(ctx, `INSERT INTO dkim_keys(tenant_id, domain, selector, txt, agent_id) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (tenant_id, domain, selector) DO UPDATE SET txt = EXCLUDED.txt, agent_id = EXCLUDED.agent_id, reported_at = now()`,
				p.TenantID, strings.ToLower(strings.TrimSuffix(k.Domain, ".")), k.Selector, k.Txt, p.AgentID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	cred, err := s.credential(p.AgentID, p.TenantID)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&agentsv1.HeartbeatResponse{Credential: cred, IntervalSeconds: int64(s.cfg.HeartbeatInterval / time.Second)}), nil
}

// Report records counters and usage once per (agent, sequence).
func (s *Service) Report(ctx context.Context, req *connect.Request[agentsv1.ReportRequest]) (*connect.Response[agentsv1.ReportResponse], error) {
	m := req.Msg
	if m.Sequence < 1 {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("sequence must be 1 or more: number reports from 1, one up each time"))
	}
	if err := m.At.CheckValid(); err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("at: %w; give the time the report was made", err))
	}
	for _, u := range m.Usage {
		if err := checkUsage(u); err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("usage %q: %w", u.Metric, err))
		}
	}
	breakers, err := jsonList(m.Breakers)
	if err != nil {
		return nil, err
	}
	var duplicate bool
	err = s.asAgent(ctx, func(tx pgx.Tx, p auth.Principal) error {
		c := m.Counters
		tag, err := tx.Exec(ctx, `INSERT INTO agent_reports(tenant_id, agent_id, sequence, at, messages_in, messages_out, spam, bytes_stored, breakers)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`,
			p.TenantID, p.AgentID, m.Sequence, m.At.AsTime(), c.GetMessagesIn(), c.GetMessagesOut(), c.GetSpam(), c.GetBytesStored(), breakers)
		if err != nil {
			return err
		}
		if duplicate = tag.RowsAffected() == 0; duplicate {
			return nil // its usage came with it the first time
		}
		for _, u := range m.Usage {
			if _, err := tx.Exec(ctx, `INSERT INTO usage_records(tenant_id, agent_id, sequence, metric, quantity, period_start, period_end)
				VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
				p.TenantID, p.AgentID, m.Sequence, u.Metric, u.Quantity, u.PeriodStart.AsTime(), u.PeriodEnd.AsTime()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&agentsv1.ReportResponse{Duplicate: duplicate}), nil
}

// checkUsage says what is wrong with a usage record.
func checkUsage(u *agentsv1.UsageRecord) error {
	switch {
	case u.Metric == "":
		return errors.New("metric is required")
	case u.Quantity < 0:
		return errors.New("quantity must not be negative")
	case u.PeriodStart.CheckValid() != nil || u.PeriodEnd.CheckValid() != nil:
		return errors.New("period_start and period_end are required")
	case u.PeriodEnd.AsTime().Before(u.PeriodStart.AsTime()):
		return errors.New("period_end is before period_start")
	}
	return nil
}

// AckConfig records the configuration version the agent applied, or why
// it could not.
func (s *Service) AckConfig(ctx context.Context, req *connect.Request[agentsv1.AckConfigRequest]) (*connect.Response[agentsv1.AckConfigResponse], error) {
	err := s.asAgent(ctx, func(tx pgx.Tx, p auth.Principal) error {
		return touch(ctx, tx, p, `config_version = $3, config_error = $4`, req.Msg.Version, req.Msg.Error)
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&agentsv1.AckConfigResponse{}), nil
}

// touch updates the calling agent's row with set, whose parameters start
// at $3.
func touch(ctx context.Context, tx pgx.Tx, p auth.Principal, set string, args ...any) error {
	tag, err := tx.Exec(ctx, `UPDATE agents SET `+set+` WHERE id = $1 AND tenant_id = $2`, append([]any{p.AgentID, p.TenantID}, args...)...)
	if err == nil && tag.RowsAffected() == 0 {
		return connect.NewError(connect.CodePermissionDenied, unenrolled)
	}
	return err
}
