package catalog

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mairust/mairust/controlplane/access"
	marketplacev1 "github.com/mairust/mairust/proto/mairust/marketplace/v1"
)

// DownloadPath is the path of an approved package under the control
// plane's URL.
func DownloadPath(plugin, version string) string {
	return DownloadPrefix + url.PathEscape(plugin) + "/" + url.PathEscape(version) + ".mairust-plugin"
}

// InstallPlugin installs an approved version (the newest by default) for
// the tenant, replacing the one installed, once the caller accepts its
// permissions (a tenant admin).
func (s *Service) InstallPlugin(ctx context.Context, req *connect.Request[marketplacev1.InstallPluginRequest]) (*connect.Response[marketplacev1.InstallPluginResponse], error) {
	m := req.Msg
	account, _ := access.Session(ctx) // InTenant refuses a call without one
	var inst *marketplacev1.Installation
	err := access.InTenant(ctx, s.st, m.TenantId, "admin", func(tx pgx.Tx, _ string) error {
		versions, err := s.approved(ctx, tx, []string{m.PluginId})
		if err != nil {
			return err
		}
		vs := versions[m.PluginId]
		if len(vs) == 0 {
			return connect.NewError(connect.CodeNotFound, fmt.Errorf("no plugin %q in the marketplace", m.PluginId))
		}
		v := vs[0]
		if m.Version != "" {
			v = nil
			for _, x := range vs {
				if x.Version == m.Version {
					v = x
				}
			}
			if v == nil {
				return connect.NewError(connect.CodeNotFound, fmt.Errorf("%s has no approved version %s", m.PluginId, m.Version))
			}
		}
		if !m.PermissionsAccepted {
			return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("%s %s may: %v; accept these permissions to install it (permissions_accepted)", m.PluginId, v.Version, v.Permissions))
		}
		var at time.Time
		if err := tx.QueryRow(ctx, `INSERT INTO plugin_installations (tenant_id, plugin_id, version, enabled, allow_downgrade, installed_by) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (tenant_id, plugin_id) DO UPDATE SET version = excluded.version, enabled = excluded.enabled, allow_downgrade = excluded.allow_downgrade,
				installed_by = excluded.installed_by, installed_at = now()
			RETURNING installed_at`, m.TenantId, m.PluginId, v.Version, !m.Disabled, m.AllowDowngrade, account).Scan(&at); err != nil {
			return err
		}
		inst = &marketplacev1.Installation{PluginId: m.PluginId, Version: v.Version, Enabled: !m.Disabled, InstalledAt: timestamppb.New(at), Permissions: v.Permissions}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("plugin installed", "tenant_id", m.TenantId, "plugin", m.PluginId, "version", inst.Version, "enabled", inst.Enabled)
	return connect.NewResponse(&marketplacev1.InstallPluginResponse{Installation: inst}), nil
}

// UninstallPlugin removes the tenant's installation (a tenant admin).
func (s *Service) UninstallPlugin(ctx context.Context, req *connect.Request[marketplacev1.UninstallPluginRequest]) (*connect.Response[marketplacev1.UninstallPluginResponse], error) {
	err := access.InTenant(ctx, s.st, req.Msg.TenantId, "admin", func(tx pgx.Tx, _ string) error {
		tag, err := tx.Exec(ctx, `DELETE FROM plugin_installations WHERE tenant_id = $1 AND plugin_id = $2`, req.Msg.TenantId, req.Msg.PluginId)
		if err == nil && tag.RowsAffected() == 0 {
			return connect.NewError(connect.CodeNotFound, fmt.Errorf("the tenant has no plugin %q installed", req.Msg.PluginId))
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&marketplacev1.UninstallPluginResponse{}), nil
}

// ListInstallations lists the tenant's plugins (a tenant member).
func (s *Service) ListInstallations(ctx context.Context, req *connect.Request[marketplacev1.ListInstallationsRequest]) (*connect.Response[marketplacev1.ListInstallationsResponse], error) {
	resp := &marketplacev1.ListInstallationsResponse{}
	err := access.InTenant(ctx, s.st, req.Msg.TenantId, "viewer", func(tx pgx.Tx, _ string) error {
		rows, _ := tx.Query(ctx, `SELECT i.plugin_id, i.version, i.enabled, i.installed_at, v.permissions FROM plugin_installations i
			JOIN plugin_versions v USING (plugin_id, version) WHERE i.tenant_id = $1 ORDER BY i.plugin_id`, req.Msg.TenantId)
		var err error
		resp.Installations, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*marketplacev1.Installation, error) {
			inst := &marketplacev1.Installation{}
			var at time.Time
			var perms []byte
			err := r.Scan(&inst.PluginId, &inst.Version, &inst.Enabled, &at, &perms)
			inst.InstalledAt, inst.Permissions = timestamppb.New(at), permissionsOf(perms)
			return inst, err
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(resp), nil
}
