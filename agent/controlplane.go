package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mairust/mairust/agent/dkim"
	"github.com/mairust/mairust/agent/link"
	"github.com/mairust/mairust/agent/plugins/manifest"
	"github.com/mairust/mairust/agent/plugins/market"
	"github.com/mairust/mairust/agent/policy"
	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/version"
	"github.com/mairust/mairust/marketplace/pack"
	agentsv1 "github.com/mairust/mairust/proto/mairust/agents/v1"
	monitorv1 "github.com/mairust/mairust/proto/mairust/monitor/v1"
	"github.com/mairust/mairust/proto/mairust/monitor/v1/monitorv1connect"
	tenantsv1 "github.com/mairust/mairust/proto/mairust/tenants/v1"
)

// managed is what the control plane sets over the configuration file: its
// outbound policy settings, kept so that a reload of the file does not
// drop them.
type managed struct {
	policy atomic.Pointer[tenantsv1.OutboundPolicy]
	hold   atomic.Pointer[outboundHold]
}

// outboundHold is the control plane's hold on its tenant's new outbound
// mail (an unpaid bill): why, as senders are told.
type outboundHold struct{ tenant, reason string }

// holdReason is why tenant may not send new outbound mail now; "" when it
// may.
func (a *Agent) holdReason(tenant string) string {
	if h := a.managed.hold.Load(); h != nil && h.tenant == tenant {
		return h.reason
	}
	return ""
}

// policySettings are the file's policy settings with the control plane's
// over them.
func (a *Agent) policySettings(c config.Config) policy.Settings {
	s := c.PolicySettings()
	o := a.managed.policy.Load()
	if o == nil {
		return s
	}
	if w := o.GetWeightRate() + o.GetWeightContent() + o.GetWeightHistory(); w > 0 {
		s.Weights = policy.Weights{Rate: o.GetWeightRate(), Content: o.GetWeightContent(), History: o.GetWeightHistory()}
	}
	set := func(dst *float64, v float64) {
		if v > 0 {
			*dst = v
		}
	}
	setInt := func(dst *int, v int32) {
		if v > 0 {
			*dst = int(v)
		}
	}
	set(&s.WarnThreshold, o.GetWarnThreshold())
	set(&s.SuspendThreshold, o.GetSuspendThreshold())
	setInt(&s.MaxPerHour, o.GetMaxPerHour())
	setInt(&s.MaxPerDay, o.GetMaxPerDay())
	setInt(&s.AutoReenableAfterHours, o.GetAutoReenableAfterHours())
	for _, p := range o.GetWhitelist() {
		s.Whitelist = append(s.Whitelist, policy.Profile{ID: p.GetId(), Accounts: p.GetAccounts(), MaxRate: p.GetMaxRate(), Description: p.GetDescription()})
	}
	return s
}

// applyManaged takes the control plane's settings: the policy engine gets
// them over the file's, or keeps its settings when they are invalid.
func (a *Agent) applyManaged(_ context.Context, s *tenantsv1.Settings) error {
	prev := a.managed.policy.Swap(s.GetOutboundPolicy())
	if err := a.out.policy.Apply(a.policySettings(*a.cfg.Load())); err != nil {
		a.managed.policy.Store(prev)
		return err
	}
	return nil
}

// startLink runs the link to the control plane when this agent is
// enrolled (mairust agent enroll); an agent that is not runs alone.
func (a *Agent) startLink(ctx context.Context, metrics prometheus.Gatherer) error {
	cfg := a.cfg.Load()
	lk := link.Link{DataDir: cfg.DataDir}
	id, err := lk.Identity()
	if errors.Is(err, link.ErrNotEnrolled) {
		return nil
	}
	if err != nil {
		return err
	}
	a.log.Info("linked to a control plane", "component", "link", "control_plane", id.ControlPlaneURL, "agent_id", id.AgentID, "tenant_id", id.TenantID)
	src, err := lk.Source(id)
	if err != nil {
		return err
	}
	market, err := a.marketplaceInstaller(cfg, id.ControlPlaneURL)
	if err != nil {
		return err
	}
	go market.Run(ctx)
	mon := monitorv1connect.NewMonitorServiceClient(http.DefaultClient, id.ControlPlaneURL, src.Auth())
	a.out.monitor.SetSender(func(ctx context.Context, n policy.Notice) error {
		_, err := mon.Notify(ctx, connect.NewRequest(&monitorv1.NotifyRequest{Notice: monitorNotice(n)}))
		return err
	})
	go func() {
		err := lk.Run(ctx, link.RunConfig{Identity: id, Source: src, Pool: a.pool, Log: a.log, Version: version.String(), StartedAt: a.startedAt,
			Outbox: link.NewOutbox(a.pool, cfg.Link.OutboxLimit, a.log), Health: a.linkHealth, DKIMKeys: a.dkimKeys, ApplySettings: a.applyManaged,
			ApplyHold: func(reason string) {
				if reason == "" {
					a.managed.hold.Store(nil)
				} else {
					a.managed.hold.Store(&outboundHold{tenant: id.TenantID, reason: reason})
				}
			},
			ApplyPlugins: market.Want,
			Collect:      (&counters{gather: metrics, storage: storageOf(a.pool, id.TenantID)}).collect, ReportInterval: cfg.Link.ReportInterval})
		if err != nil {
			a.log.Error("the control plane link did not start; mail is not affected", "component", "link", "error", err)
		}
	}()
	return nil
}

// marketplaceInstaller installs the plugins the control plane at url
// asks for, trusting the marketplace keys of plugins.marketplace_keys
// and those it sends; the hooks are reloaded after a change.
func (a *Agent) marketplaceInstaller(cfg *config.Config, url string) (*market.Installer, error) {
	running, err := manifest.ParseVersion(version.Number)
	if err != nil {
		return nil, err
	}
	var pinned []pack.TrustedKey
	for i, k := range cfg.Plugins.MarketplaceKeys {
		tk, err := pack.TrustedKeyFile(k.PublicKeyFile, k.NotAfter)
		if err != nil {
			return nil, fmt.Errorf("plugins.marketplace_keys[%d]: %w", i, err)
		}
		pinned = append(pinned, tk)
	}
	files, _, _ := cfg.PluginPaths()
	return &market.Installer{Pool: a.pool, Dir: files, BaseURL: url, Pinned: pinned, Running: running, Log: a.log,
		Changed:     func(ctx context.Context) error { return a.hooks.Load(ctx) },
		AutoDisable: func() bool { return a.cfg.Load().Plugins.AutoDisableRecalled }}, nil
}

// monitorNotice is n for the control plane's monitor service.
func monitorNotice(n policy.Notice) *monitorv1.Notice {
	kind := monitorv1.NoticeKind_NOTICE_KIND_WARN
	if n.Kind == policy.Suspend {
		kind = monitorv1.NoticeKind_NOTICE_KIND_SUSPEND
	}
	return &monitorv1.Notice{Account: n.Account, Kind: kind, Score: n.Score, Reason: n.Reason, At: timestamppb.New(n.At),
		Factors: map[string]float64{"rate": n.Factors.Rate, "content": n.Factors.Content, "history": n.Factors.History}}
}

// retiredKeyPublished is how long a rotated DKIM key stays in the records
// to publish, for mail it signed that is still on its way.
const retiredKeyPublished = 7 * 24 * time.Hour

// dkimKeys are the DKIM keys to publish: the active ones and those retired
// less than retiredKeyPublished ago.
func (a *Agent) dkimKeys(ctx context.Context) []*agentsv1.DKIMKey {
	keys, err := a.out.dkim.List(ctx, "")
	if err != nil {
		a.log.Warn("DKIM keys not reported to the control plane", "component", "link", "error", err)
		return nil
	}
	var out []*agentsv1.DKIMKey
	for _, k := range keys {
		if k.Active || time.Since(k.RetiredAt) < retiredKeyPublished {
			_, txt := dkim.TXTRecord(k)
			out = append(out, &agentsv1.DKIMKey{Domain: k.Domain, Selector: k.Selector, Txt: txt})
		}
	}
	return out
}

// linkHealth is the health sent with each heartbeat.
func (a *Agent) linkHealth(ctx context.Context) []*agentsv1.ComponentHealth {
	db := &agentsv1.ComponentHealth{Name: "database", Status: agentsv1.HealthStatus_HEALTH_STATUS_OK}
	if err := a.pool.Ping(ctx); err != nil {
		db.Status, db.Detail = agentsv1.HealthStatus_HEALTH_STATUS_ERROR, err.Error()
	}
	return []*agentsv1.ComponentHealth{db, {Name: "smtp", Status: agentsv1.HealthStatus_HEALTH_STATUS_OK}}
}
