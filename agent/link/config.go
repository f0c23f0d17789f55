package link

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/mairust/mairust/agent/accounts"
	agentsv1 "github.com/mairust/mairust/proto/mairust/agents/v1"
	tenantsv1 "github.com/mairust/mairust/proto/mairust/tenants/v1"
)

// watch keeps the configuration stream open, reconnecting with backoff.
func (r *runner) watch(ctx context.Context) {
	rt := r.retrier("config")
	for {
		working, err := r.watchOnce(ctx)
		if working {
			rt.ok()
		}
		if !rt.fail(ctx, err) {
			return
		}
	}
}

// watchOnce opens the stream with the version applied last and applies
// each snapshot until the stream ends, which it always returns as an
// error. working says whether the stream worked for a while (a keepalive
// came, or a snapshot was applied).
func (r *runner) watchOnce(ctx context.Context) (working bool, err error) {
	var applied, acked int64
	if err := r.Pool.QueryRow(ctx, `SELECT config_version, acked_version FROM link_state`).Scan(&applied, &acked); err != nil {
		return false, fmt.Errorf("read the applied configuration version: %w", err)
	}
	if applied != acked { // applied, but the ack was lost
		if err := r.ack(ctx, applied, nil); err != nil {
			return false, err
		}
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	idle := time.AfterFunc(streamIdle, cancel)
	defer idle.Stop()
	stream, err := r.client.WatchConfig(sctx, connect.NewRequest(&agentsv1.WatchConfigRequest{KnownVersion: applied}))
	if err != nil {
		return false, fmt.Errorf("open the configuration stream: %w", err)
	}
	defer stream.Close()
	for stream.Receive() {
		idle.Reset(streamIdle)
		snap := stream.Msg().GetSnapshot()
		if snap == nil { // a keepalive
			working = true
			continue
		}
		if err := r.apply(ctx, snap); err != nil {
			r.Log.Error("cannot apply the control plane's configuration; retrying", "version", snap.Version, "error", err)
			return working, errors.Join(err, r.ack(ctx, snap.Version, err))
		}
		if err := r.ack(ctx, snap.Version, nil); err != nil {
			return true, err
		}
		working = true
	}
	if err := stream.Err(); err != nil {
		if ctx.Err() == nil && sctx.Err() != nil {
			return working, fmt.Errorf("the configuration stream was silent for %v; reopening it", streamIdle)
		}
		return working, err
	}
	return working, errors.New("the control plane ended the configuration stream")
}

// ack tells the control plane that version is applied (failure nil) or
// why not; an applied version's ack is recorded once it is delivered.
func (r *runner) ack(ctx context.Context, version int64, failure error) error {
	req := &agentsv1.AckConfigRequest{Version: version}
	if failure != nil {
		req.Error = failure.Error()
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if _, err := r.client.AckConfig(cctx, connect.NewRequest(req)); err != nil {
		return fmt.Errorf("acknowledge configuration version %d: %w", version, err)
	}
	if failure != nil {
		return nil
	}
	if _, err := r.Pool.Exec(ctx, `UPDATE link_state SET acked_version = $1 WHERE config_version = $1`, version); err != nil {
		return fmt.Errorf("record the acknowledgement of configuration version %d: %w", version, err)
	}
	return nil
}

// apply makes snap the agent's configuration in one transaction: its
// domains and mail users, then its settings through ApplySettings, and
// records its version. A version applied already is not applied again.
func (r *runner) apply(ctx context.Context, snap *agentsv1.Snapshot) error {
	settings := snap.GetSettings()
	if settings == nil {
		settings = &tenantsv1.Settings{}
	}
	kept, err := protojson.Marshal(settings)
	if err != nil {
		return err
	}
	var hold *string
	if h := snap.GetOutboundHold(); h != nil {
		hold = &h.Reason
	}
	market := &agentsv1.Snapshot{Plugins: snap.Plugins, MarketplaceKeys: snap.MarketplaceKeys, Recalls: snap.Recalls,
		RecallVersion: snap.RecallVersion, RecallSignature: snap.RecallSignature, RecallKeyId: snap.RecallKeyId}
	marketJSON, err := protojson.Marshal(market)
	if err != nil {
		return err
	}
	var c changes
	err = pgx.BeginFunc(ctx, r.Pool, func(tx pgx.Tx) error {
		var current int64
		if err := tx.QueryRow(ctx, `SELECT config_version FROM link_state FOR UPDATE`).Scan(&current); err != nil {
			return err
		}
		if current == snap.Version {
			return nil // by another process on this database
		}
		s := syncer{tx: tx, tenant: r.Identity.TenantID, r: r}
		if err := s.run(ctx, snap); err != nil {
			return err
		}
		c = s.changes
		if r.ApplySettings != nil {
			if err := r.ApplySettings(ctx, settings); err != nil {
				return fmt.Errorf("settings: %w", err)
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO events(tenant_id, kind, actor, detail) VALUES ($1, 'controlplane.config.apply', 'controlplane', $2)`,
			s.tenant, map[string]any{"version": snap.Version, "created": c.created, "updated": c.updated, "deleted": c.deleted, "released": c.released}); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE link_state SET config_version = $1, settings = $2, outbound_hold = $3, plugins = $4`, snap.Version, kept, hold, marketJSON)
		return err
	})
	if err != nil {
		return err
	}
	r.applyHold(hold)
	if r.ApplyPlugins != nil {
		r.ApplyPlugins(market)
	}
	configVersion.Set(float64(snap.Version))
	r.Log.Info("applied the control plane's configuration", "version", snap.Version, "created", c.created, "updated", c.updated,
		"deleted", c.deleted, "released", c.released)
	return nil
}

// applyHold tells the agent the outbound hold (nil: none).
func (r *runner) applyHold(hold *string) {
	if r.ApplyHold == nil {
		return
	}
	reason := ""
	if hold != nil {
		reason = *hold
		r.Log.Warn("the control plane holds the tenant's outbound mail", "reason", reason)
	}
	r.ApplyHold(reason)
}

// changes counts what a snapshot changed.
type changes struct{ created, updated, deleted, released int }

// syncer makes the agent's managed domains and mail users those of a
// snapshot, within one transaction.
type syncer struct {
	tx     pgx.Tx
	tenant string // the agent's tenant id: the control plane's
	r      *runner
	changes
}

// run syncs the tenant, then the domains and users.
func (s *syncer) run(ctx context.Context, snap *agentsv1.Snapshot) error {
	// The agent's tenant has the control plane's tenant id, so that both
	// name it alike (logs, events, API tokens).
	if _, err := s.tx.Exec(ctx, `INSERT INTO tenants(id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING`, s.tenant, "controlplane:"+s.tenant); err != nil {
		return err
	}
	var ok bool
	if err := s.tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)`, s.tenant).Scan(&ok); err != nil || !ok {
		return errors.Join(err, fmt.Errorf("a local tenant is named controlplane:%s: rename it so that the control plane's tenant can have the name", s.tenant))
	}
	domains, stale, err := s.domains(ctx, snap.Domains)
	if err != nil {
		return err
	}
	if err := s.users(ctx, snap.Users, domains); err != nil {
		return err
	}
	return s.dropDomains(ctx, stale)
}

// domains creates the snapshot's missing domains and adopts those the
// tenant has locally. It returns the ids of the tenant's domains by name,
// and the managed domains the snapshot no longer lists.
func (s *syncer) domains(ctx context.Context, want []*tenantsv1.Domain) (ids map[string]int64, stale map[string]int64, err error) {
	names := make([]string, len(want))
	for i, d := range want {
		names[i] = strings.ToLower(strings.TrimSuffix(d.Name, "."))
	}
	type domain struct {
		id      int64
		tenant  string
		managed bool
	}
	have := map[string]domain{}
	rows, _ := s.tx.Query(ctx, `SELECT id, tenant_id::text, name, managed_by_controlplane FROM domains
		WHERE tenant_id = $1 OR name = ANY($2) ORDER BY id FOR UPDATE`, s.tenant, names)
	var (
		d    domain
		name string
	)
	if _, err := pgx.ForEachRow(rows, []any{&d.id, &d.tenant, &name, &d.managed}, func() error { have[name] = d; return nil }); err != nil {
		return nil, nil, err
	}
	ids, stale = map[string]int64{}, map[string]int64{}
	for name, d := range have {
		if d.tenant == s.tenant {
			ids[name] = d.id
			if d.managed {
				stale[name] = d.id
			}
		}
	}
	for _, name := range names {
		delete(stale, name)
		d, ok := have[name]
		switch {
		case !ok:
			var id int64
			if err := s.tx.QueryRow(ctx, `INSERT INTO domains(tenant_id, name, managed_by_controlplane) VALUES ($1, $2, true) RETURNING id`, s.tenant, name).Scan(&id); err != nil {
				return nil, nil, fmt.Errorf("create domain %s: %w", name, err)
			}
			ids[name] = id
			s.created++
		case d.tenant != s.tenant:
			return nil, nil, fmt.Errorf("domain %s is served on this agent by its local tenant %s: delete it there (with its users) so that the control plane can manage it", name, d.tenant)
		case !d.managed:
			if _, err := s.tx.Exec(ctx, `UPDATE domains SET managed_by_controlplane = true WHERE id = $1`, d.id); err != nil {
				return nil, nil, err
			}
			s.updated++
		}
	}
	return ids, stale, nil
}

// mailUser is a mail user's row as the control plane sets it.
type mailUser struct {
	id       int64
	tenant   string
	hash     string
	admin    bool
	disabled bool
	quota    int64
	managed  bool
}

// users creates, updates and deletes the tenant's managed mail users so
// that they are the snapshot's; domains are the tenant's domain ids.
func (s *syncer) users(ctx context.Context, want []*agentsv1.SnapshotMailUser, domains map[string]int64) error {
	addrs := make([]string, len(want))
	for i, u := range want {
		addrs[i] = strings.ToLower(u.GetUser().GetAddress())
	}
	have := map[string]mailUser{}
	rows, _ := s.tx.Query(ctx, `SELECT id, tenant_id::text, address, password_hash, is_admin, disabled, quota_bytes, managed_by_controlplane
		FROM mail_users WHERE tenant_id = $1 OR address = ANY($2) ORDER BY id FOR UPDATE`, s.tenant, addrs)
	var (
		u    mailUser
		addr string
	)
	if _, err := pgx.ForEachRow(rows, []any{&u.id, &u.tenant, &addr, &u.hash, &u.admin, &u.disabled, &u.quota, &u.managed},
		func() error { have[addr] = u; return nil }); err != nil {
		return err
	}
	listed := map[string]bool{}
	for i, w := range want {
		addr := addrs[i]
		listed[addr] = true
		cur, ok := have[addr]
		next := mailUser{id: cur.id, tenant: s.tenant, hash: w.PasswordHash, admin: w.GetUser().GetAdmin(), disabled: w.GetUser().GetDisabled(),
			quota: w.GetUser().GetQuotaBytes(), managed: true}
		var err error
		switch {
		case !ok:
			err = s.createUser(ctx, addr, next, domains)
		case cur.tenant != s.tenant:
			err = fmt.Errorf("mail user %s is on this agent in its local tenant %s: delete it there so that the control plane can manage it", addr, cur.tenant)
		case cur != next:
			_, err = s.tx.Exec(ctx, `UPDATE mail_users SET password_hash = $2, is_admin = $3, disabled = $4, quota_bytes = $5,
				managed_by_controlplane = true WHERE id = $1`, cur.id, next.hash, next.admin, next.disabled, next.quota)
			s.updated++
		}
		if err != nil {
			return err
		}
	}
	for addr, u := range have {
		if u.tenant == s.tenant && u.managed && !listed[addr] {
			if err := s.deleteUser(ctx, addr, u.id); err != nil {
				return err
			}
		}
	}
	return nil
}

// createUser creates a managed mail user with its standard folders.
func (s *syncer) createUser(ctx context.Context, addr string, u mailUser, domains map[string]int64) error {
	_, domain, _ := strings.Cut(addr, "@")
	did, ok := domains[domain]
	if !ok {
		return fmt.Errorf("mail user %s: its domain %s is not the tenant's on this agent; the control plane must list it", addr, domain)
	}
	var id int64
	err := s.tx.QueryRow(ctx, `INSERT INTO mail_users(tenant_id, domain_id, address, password_hash, is_admin, disabled, quota_bytes, managed_by_controlplane)
		VALUES ($1, $2, $3, $4, $5, $6, $7, true) RETURNING id`, s.tenant, did, addr, u.hash, u.admin, u.disabled, u.quota).Scan(&id)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.ConstraintName == "mail_address_unique" {
		return fmt.Errorf("mail user %s: the address is an alias on this agent: delete the alias so that the control plane's user can be created", addr)
	}
	if err != nil {
		return fmt.Errorf("create mail user %s: %w", addr, err)
	}
	for _, f := range accounts.StandardFolders {
		if _, err := s.tx.Exec(ctx, `INSERT INTO folders(tenant_id, user_id, name, special) VALUES ($1, $2, $3, $4)`, s.tenant, id, f[0], f[1]); err != nil {
			return fmt.Errorf("create folder %s of %s: %w", f[0], addr, err)
		}
	}
	s.created++
	return nil
}

// deleteUser deletes a managed mail user the control plane no longer
// lists, as accounts.DeleteUser does: with its folders, messages, aliases
// and tokens (ON DELETE CASCADE; its blobs go with the next cleanup). What
// is lost is logged and recorded in the admin log (events).
func (s *syncer) deleteUser(ctx context.Context, addr string, id int64) error {
	var messages, bytes int64
	if err := s.tx.QueryRow(ctx, `SELECT count(*), coalesce(sum(size), 0) FROM messages WHERE user_id = $1 AND deleted_at IS NULL`, id).Scan(&messages, &bytes); err != nil {
		return err
	}
	if _, err := s.tx.Exec(ctx, `DELETE FROM mail_users WHERE id = $1`, id); err != nil {
		return fmt.Errorf("delete mail user %s: %w", addr, err)
	}
	if _, err := s.tx.Exec(ctx, `INSERT INTO events(tenant_id, kind, actor, detail) VALUES ($1, 'controlplane.user.delete', 'controlplane', $2)`,
		s.tenant, map[string]any{"id": id, "address": addr, "messages": messages, "bytes": bytes}); err != nil {
		return err
	}
	s.r.Log.Warn("the control plane deleted a mail user: its mailbox is deleted with it", "address", addr, "messages", messages, "bytes", bytes)
	s.deleted++
	return nil
}

// dropDomains deletes the managed domains the snapshot no longer lists,
// with their aliases. One that still has (local) users is kept, as
// accounts.DeleteDomain would, and released to local administration.
func (s *syncer) dropDomains(ctx context.Context, stale map[string]int64) error {
	for name, id := range stale {
		var used bool
		if err := s.tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM mail_users WHERE domain_id = $1)`, id).Scan(&used); err != nil {
			return err
		}
		if used {
			if _, err := s.tx.Exec(ctx, `UPDATE domains SET managed_by_controlplane = false WHERE id = $1`, id); err != nil {
				return err
			}
			s.r.Log.Warn("the control plane removed a domain that still has local mail users: it is kept, now managed locally", "domain", name)
			s.released++
			continue
		}
		if _, err := s.tx.Exec(ctx, `DELETE FROM domains WHERE id = $1`, id); err != nil {
			return fmt.Errorf("delete domain %s: %w", name, err)
		}
		if _, err := s.tx.Exec(ctx, `INSERT INTO events(tenant_id, kind, actor, detail) VALUES ($1, 'controlplane.domain.delete', 'controlplane', $2)`,
			s.tenant, map[string]any{"id": id, "name": name}); err != nil {
			return err
		}
		s.deleted++
	}
	return nil
}
