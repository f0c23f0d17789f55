package market

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mairust/mairust/agent/plugins"
	"github.com/mairust/mairust/marketplace/pack"
	agentsv1 "github.com/mairust/mairust/proto/mairust/agents/v1"
)

// Alert is what the admin pages and the log say of a recalled plugin.
const Alert = "This plugin was found to be dangerous. Disable or remove it."

// recalled says why version of plugin is recalled ("" when it is not).
func recalled(list []*agentsv1.Recall, plugin, version string) string {
	for _, r := range list {
		if r.PluginId == plugin && (r.Version == "" || r.Version == version) {
			return r.Reason
		}
	}
	return ""
}

// applyRecalls takes the recall list of want when its signature verifies
// and it is not older than the one applied: it becomes plugin_recalls, and
// each installed plugin it names is logged as dangerous and, with
// AutoDisable, disabled. changed says whether a plugin was disabled.
func (in *Installer) applyRecalls(ctx context.Context, want *agentsv1.Snapshot, trust pack.Trust, have map[string]installed) (changed bool, err error) {
	if want.RecallVersion == 0 {
		return false, nil
	}
	list := make([]pack.Recall, len(want.Recalls))
	for i, r := range want.Recalls {
		list[i] = pack.Recall{PluginID: r.PluginId, Version: r.Version, Reason: r.Reason}
	}
	if err := pack.VerifyRecalls(trust, want.RecallKeyId, want.RecallSignature, want.RecallVersion, list, time.Now()); err != nil {
		return false, fmt.Errorf("recall list ignored: %w", err)
	}
	err = pgx.BeginFunc(ctx, in.Pool, func(tx pgx.Tx) error {
		var applied int64
		if err := tx.QueryRow(ctx, `SELECT recall_version FROM link_state FOR UPDATE`).Scan(&applied); err != nil {
			return err
		}
		if want.RecallVersion < applied {
			return fmt.Errorf("recall list %d ignored: list %d is applied already", want.RecallVersion, applied)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM plugin_recalls`); err != nil {
			return err
		}
		for _, r := range want.Recalls {
			if _, err := tx.Exec(ctx, `INSERT INTO plugin_recalls (plugin_id, version, reason) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
				r.PluginId, r.Version, r.Reason); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `UPDATE link_state SET recall_version = $1`, want.RecallVersion)
		return err
	})
	if err != nil {
		return false, err
	}
	for id, p := range have {
		reason := recalled(want.Recalls, id, p.version.String())
		if reason == "" {
			continue
		}
		disable := in.AutoDisable != nil && in.AutoDisable() && p.enabled
		in.Log.Error("SECURITY: "+Alert, "component", "plugins", "plugin", id, "version", p.version.String(), "reason", reason, "auto_disabled", disable)
		if disable {
			if err := plugins.SetEnabled(ctx, in.Pool, id, false); err != nil {
				return changed, err
			}
			changed = true
		}
	}
	return changed, nil
}
