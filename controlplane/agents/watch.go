package agents

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mairust/mairust/controlplane/auth"
	"github.com/mairust/mairust/controlplane/store"
	"github.com/mairust/mairust/marketplace/catalog"
	agentsv1 "github.com/mairust/mairust/proto/mairust/agents/v1"
	tenantsv1 "github.com/mairust/mairust/proto/mairust/tenants/v1"
)

// configChannel is the notification channel whose payload is the id of a
// tenant whose agents should re-read their configuration.
const configChannel = "config_changed"

// listenRetry is the first wait before reconnecting the listener; it
// doubles up to maxListenRetry while PostgreSQL stays unreachable.
const (
	listenRetry    = time.Second
	maxListenRetry = 30 * time.Second
)

// WatchConfig streams the agent's tenant's configuration: a snapshot at
// once when known_version is not the current version, then one at each
// change, with keepalives in between. It ends when the client goes away
// or the agent is revoked.
func (s *Service) WatchConfig(ctx context.Context, req *connect.Request[agentsv1.WatchConfigRequest], stream *connect.ServerStream[agentsv1.WatchConfigResponse]) error {
	p, err := agentOf(ctx)
	if err != nil {
		return err
	}
	// Subscribe before the first read, so that no change falls between.
	wake, unsubscribe := s.hub.subscribe(p.TenantID)
	defer unsubscribe()
	keepalive := time.NewTicker(s.Keepalive)
	defer keepalive.Stop()
	recheck := time.NewTimer(jittered(s.Recheck))
	defer recheck.Stop()
	known, read := req.Msg.KnownVersion, true
	for {
		var err error
		if read {
			var snap *agentsv1.Snapshot
			snap, err = s.snapshot(ctx, p, known)
			var r refusal
			switch {
			case errors.As(err, &r):
				return connect.NewError(connect.CodePermissionDenied, r)
			case ctx.Err() != nil:
				return nil // the client went away
			case err != nil:
				return err
			case snap != nil:
				err = stream.Send(&agentsv1.WatchConfigResponse{Message: &agentsv1.WatchConfigResponse_Snapshot{Snapshot: snap}})
				known = snap.Version
				keepalive.Reset(s.Keepalive)
			}
		} else {
			err = stream.Send(&agentsv1.WatchConfigResponse{Message: &agentsv1.WatchConfigResponse_Keepalive{Keepalive: &agentsv1.Keepalive{At: timestamppb.Now()}}})
		}
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
			read = true
		case <-recheck.C:
			read = true
			recheck.Reset(jittered(s.Recheck))
		case <-keepalive.C:
			read = false
		}
	}
}

// jittered is d plus up to 20 % more, so that streams opened together do
// not read the database together.
func jittered(d time.Duration) time.Duration {
	return d + time.Duration(rand.Int64N(int64(d)/5+1))
}

// snapshot returns the tenant's configuration when its version is not
// known (nil when it is), or a refusal when p may no longer call. A
// snapshot another stream of the tenant read is shared; else one stream
// reads it while the others wait. The version is read first: what follows
// is at least as new, and a change committed in between wakes the stream
// again.
func (s *Service) snapshot(ctx context.Context, p auth.Principal, known int64) (*agentsv1.Snapshot, error) {
	var version int64
	err := s.st.Tx(ctx, store.Scope{TenantID: p.TenantID}, func(tx pgx.Tx) (err error) {
		if err := standing(ctx, tx, p); err != nil {
			return err
		}
		version, err = configVersion(ctx, tx, p.TenantID)
		return err
	})
	if err != nil || version == known {
		return nil, err
	}
	if snap := s.hub.cached(p.TenantID, version); snap != nil {
		return snap, nil
	}
	reading := s.hub.reader(p.TenantID)
	reading.Lock()
	defer reading.Unlock()
	if snap := s.hub.cached(p.TenantID, version); snap != nil {
		return snap, nil
	}
	snap := &agentsv1.Snapshot{Settings: &tenantsv1.Settings{}, MarketplaceKeys: s.MarketplaceKeys}
	err = s.st.Tx(ctx, store.Scope{TenantID: p.TenantID}, func(tx pgx.Tx) (err error) {
		if snap.Version, err = configVersion(ctx, tx, p.TenantID); err != nil {
			return err
		}
		return readSnapshot(ctx, tx, p.TenantID, snap)
	})
	if err != nil {
		return nil, err
	}
	s.hub.keep(p.TenantID, snap)
	return snap, nil
}

// configVersion is the tenant's configuration version (0 before any).
func configVersion(ctx context.Context, tx pgx.Tx, tenantID string) (int64, error) {
	var version int64
	err := tx.QueryRow(ctx, `SELECT version FROM config_versions WHERE tenant_id = $1`, tenantID).Scan(&version)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return version, err
}

// readSnapshot fills snap with the tenant's domains, mail users, plugins
// from the marketplace, the recall list, settings and outbound hold.
func readSnapshot(ctx context.Context, tx pgx.Tx, tenantID string, snap *agentsv1.Snapshot) error {
	rows, err := tx.Query(ctx, `SELECT id, tenant_id, name, created_at FROM domains WHERE tenant_id = $1 ORDER BY name`, tenantID)
	if err != nil {
		return err
	}
	snap.Domains, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*tenantsv1.Domain, error) {
		d := &tenantsv1.Domain{}
		var created time.Time
		err := r.Scan(&d.Id, &d.TenantId, &d.Name, &created)
		d.CreatedAt = timestamppb.New(created)
		return d, err
	})
	if err != nil {
		return err
	}
	rows, err = tx.Query(ctx, `SELECT id, tenant_id, address, admin, disabled, quota_bytes, created_at, password_hash
		FROM mail_users WHERE tenant_id = $1 ORDER BY address`, tenantID)
	if err != nil {
		return err
	}
	snap.Users, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*agentsv1.SnapshotMailUser, error) {
		u := &agentsv1.SnapshotMailUser{User: &tenantsv1.MailUser{}}
		var created time.Time
		err := r.Scan(&u.User.Id, &u.User.TenantId, &u.User.Address, &u.User.Admin, &u.User.Disabled, &u.User.QuotaBytes, &created, &u.PasswordHash)
		u.User.CreatedAt = timestamppb.New(created)
		return u, err
	})
	if err != nil {
		return err
	}
	rows, err = tx.Query(ctx, `SELECT i.plugin_id, i.version, i.enabled, i.allow_downgrade, v.sha256 FROM plugin_installations i
		JOIN plugin_versions v USING (plugin_id, version) WHERE i.tenant_id = $1 ORDER BY i.plugin_id`, tenantID)
	if err != nil {
		return err
	}
	snap.Plugins, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*agentsv1.PluginInstallation, error) {
		p := &agentsv1.PluginInstallation{}
		err := r.Scan(&p.PluginId, &p.Version, &p.Enabled, &p.AllowDowngrade, &p.Sha256)
		p.DownloadPath = catalog.DownloadPath(p.PluginId, p.Version)
		return p, err
	})
	if err != nil {
		return err
	}
	if err := readRecalls(ctx, tx, snap); err != nil {
		return err
	}
	var hold *string
	err = tx.QueryRow(ctx, `SELECT hold_reason FROM tenant_billing WHERE tenant_id = $1`, tenantID).Scan(&hold)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	if hold != nil {
		snap.OutboundHold = &agentsv1.OutboundHold{Reason: *hold}
	}
	var settings []byte
	err = tx.QueryRow(ctx, `SELECT settings FROM tenant_settings WHERE tenant_id = $1`, tenantID).Scan(&settings)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(settings, snap.Settings)
}

// readRecalls fills snap with the signed recall list.
func readRecalls(ctx context.Context, tx pgx.Tx, snap *agentsv1.Snapshot) error {
	if err := tx.QueryRow(ctx, `SELECT version, signature, key_id FROM recall_list`).Scan(&snap.RecallVersion, &snap.RecallSignature, &snap.RecallKeyId); err != nil {
		return err
	}
	list, err := catalog.ReadRecalls(ctx, tx)
	snap.Recalls = list
	return err
}

// listen wakes the streams of each tenant announced on configChannel,
// over its own connection, reconnecting after a failure; on each
// (re)connection it wakes every stream, since announcements made while it
// was not listening are lost.
func (s *Service) listen(ctx context.Context) {
	cfg := s.st.Pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = "mairust-controlplane-listener"
	delay := listenRetry
	for {
		connected, err := s.listenOnce(ctx, cfg)
		if ctx.Err() != nil {
			return
		}
		if connected {
			delay = listenRetry
		}
		s.log.Warn("the configuration listener lost PostgreSQL; reconnecting", "error", err, "retry_in", delay.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, maxListenRetry)
	}
}

// listenOnce listens until its connection fails; connected says whether it
// got as far as listening.
func (s *Service) listenOnce(ctx context.Context, cfg *pgx.ConnConfig) (connected bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `LISTEN `+configChannel); err != nil {
		return false, err
	}
	s.hub.wakeAll()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return true, err
		}
		if n.Payload == "*" { // every tenant's configuration changed
			s.hub.wakeAll()
		} else {
			s.hub.wake(n.Payload)
		}
	}
}
