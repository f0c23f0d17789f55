-- Plugins from the control plane's marketplace (agent/plugins/market):
-- the installations it asks for, with the marketplace keys it sent, kept
-- across restarts (agentsv1.Snapshot's plugins and marketplace_keys as
-- protojson), and the installed plugins it manages, which it replaces and
-- removes (the local commands leave them alone).
ALTER TABLE link_state ADD COLUMN plugins jsonb;
ALTER TABLE plugins ADD COLUMN managed_by_controlplane boolean NOT NULL DEFAULT false;

-- The marketplace's recall list as last verified and applied: its version
-- (an older list is refused) and the plugin versions ('' for all) it names
-- as dangerous. The admin pages show an alert for an installed plugin it
-- names.
ALTER TABLE link_state ADD COLUMN recall_version bigint NOT NULL DEFAULT 0;
CREATE TABLE plugin_recalls (
	plugin_id text NOT NULL,
	version text NOT NULL,
	reason text NOT NULL,
	recalled_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (plugin_id, version)
);
