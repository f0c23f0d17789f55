package tenants

import (
	"context"
	"errors"
	"strings"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/mairust/mairust/agent/policy"
	tenantsv1 "github.com/mairust/mairust/proto/mairust/tenants/v1"
)

// checkSettings validates settings with the agent's own rules
// (policy.Settings.Validate), a field left at zero standing for its
// default: policy.DefaultSettings, as an agent without its own
// outbound_policy has. Each problem names its field.
func checkSettings(s *tenantsv1.Settings) error {
	o := s.GetOutboundPolicy()
	if o == nil {
		return nil
	}
	p := policy.DefaultSettings()
	set := func(dst *float64, v float64) {
		if v != 0 {
			*dst = v
		}
	}
	setInt := func(dst *int, v int32) {
		if v != 0 {
			*dst = int(v)
		}
	}
	set(&p.Weights.Rate, o.WeightRate)
	set(&p.Weights.Content, o.WeightContent)
	set(&p.Weights.History, o.WeightHistory)
	set(&p.WarnThreshold, o.WarnThreshold)
	set(&p.SuspendThreshold, o.SuspendThreshold)
	setInt(&p.MaxPerHour, o.MaxPerHour)
	setInt(&p.MaxPerDay, o.MaxPerDay)
	setInt(&p.AutoReenableAfterHours, o.AutoReenableAfterHours)
	for _, w := range o.Whitelist {
		p.Whitelist = append(p.Whitelist, policy.Profile{ID: w.Id, Accounts: w.Accounts, MaxRate: w.MaxRate, Description: w.Description})
	}
	err := p.Validate()
	if err == nil {
		return nil
	}
	// The agent's keys are its yaml's; the console's are the proto's.
	var problems []error
	for _, e := range unjoin(err) {
		var se *policy.SettingError
		if !errors.As(e, &se) {
			problems = append(problems, e)
			continue
		}
		key := strings.Replace(se.Key, "outbound_whitelist[", "outbound_policy.whitelist[", 1)
		key = strings.Replace(key, "outbound_policy.weights.", "outbound_policy.weight_", 1)
		problems = append(problems, errors.New("settings."+key+": "+se.Msg))
	}
	return connect.NewError(connect.CodeInvalidArgument, errors.Join(problems...))
}

// unjoin returns the errors joined in err, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// GetSettings returns the tenant's settings (empty when never set).
func (s *Service) GetSettings(ctx context.Context, req *connect.Request[tenantsv1.GetSettingsRequest]) (*connect.Response[tenantsv1.GetSettingsResponse], error) {
	settings := &tenantsv1.Settings{}
	err := s.in(ctx, req.Msg.TenantId, viewer, func(tx pgx.Tx, _ string) error {
		var b []byte
		err := tx.QueryRow(ctx, `SELECT settings FROM tenant_settings`).Scan(&b)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(b, settings)
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&tenantsv1.GetSettingsResponse{Settings: settings}), nil
}

// UpdateSettings replaces the tenant's settings, which raises its
// configuration version for the agents.
func (s *Service) UpdateSettings(ctx context.Context, req *connect.Request[tenantsv1.UpdateSettingsRequest]) (*connect.Response[tenantsv1.UpdateSettingsResponse], error) {
	settings := req.Msg.Settings
	if settings == nil {
		settings = &tenantsv1.Settings{}
	}
	if err := checkSettings(settings); err != nil {
		return nil, err
	}
	b, err := protojson.Marshal(settings)
	if err != nil {
		return nil, err
	}
	err = s.in(ctx, req.Msg.TenantId, admin, func(tx pgx.Tx, _ string) error {
		_, err := tx.Exec(ctx, `INSERT INTO tenant_settings (tenant_id, settings) VALUES ($1, $2)
			ON CONFLICT (tenant_id) DO UPDATE SET settings = excluded.settings, updated_at = now()`, req.Msg.TenantId, b)
		return err
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&tenantsv1.UpdateSettingsResponse{Settings: settings}), nil
}
