-- The plugin marketplace (marketplace/): plugins, their submitted
-- versions with the automatic review's report, and the reviewers'
-- decisions. Not tenants' rows: the storefront is the same for everyone,
-- and a developer is an account.

-- A plugin id belongs to the account that first submitted it.
CREATE TABLE plugins (
	id text PRIMARY KEY,
	developer uuid NOT NULL REFERENCES accounts(id),
	name text NOT NULL,
	description text NOT NULL DEFAULT '',
	created_at timestamptz NOT NULL DEFAULT now()
);

-- Each submitted version: the package as uploaded (once approved, with
-- the marketplace's countersignature), its digest, the permissions in
-- plain words, the review report (review.Report as JSON) and its most
-- serious finding, and the decision.
CREATE TABLE plugin_versions (
	plugin_id text NOT NULL REFERENCES plugins(id) ON DELETE CASCADE,
	version text NOT NULL,
	min_mairust_version text NOT NULL DEFAULT '',
	state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'approved', 'rejected')),
	package bytea NOT NULL,
	sha256 text NOT NULL,
	size bigint NOT NULL,
	permissions jsonb NOT NULL DEFAULT '[]',
	report jsonb NOT NULL,
	worst text NOT NULL DEFAULT '',
	submitted_at timestamptz NOT NULL DEFAULT now(),
	reviewed_by uuid REFERENCES accounts(id) ON DELETE SET NULL,
	reviewed_at timestamptz,
	review_note text NOT NULL DEFAULT '',
	PRIMARY KEY (plugin_id, version)
);
CREATE INDEX plugin_versions_pending ON plugin_versions (submitted_at) WHERE state = 'pending';

GRANT SELECT, INSERT, UPDATE, DELETE ON plugins, plugin_versions TO mairust_cp;

-- The plugins each tenant installed from the marketplace: its agents get
-- them through their configuration.
CREATE TABLE plugin_installations (
	tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
	plugin_id text NOT NULL,
	version text NOT NULL,
	enabled boolean NOT NULL DEFAULT true,
	allow_downgrade boolean NOT NULL DEFAULT false,
	installed_by uuid REFERENCES accounts(id) ON DELETE SET NULL,
	installed_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, plugin_id),
	FOREIGN KEY (plugin_id, version) REFERENCES plugin_versions (plugin_id, version)
);
ALTER TABLE plugin_installations ENABLE ROW LEVEL SECURITY;
ALTER TABLE plugin_installations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON plugin_installations USING (tenant_id = app_tenant()) WITH CHECK (tenant_id = app_tenant());
CREATE POLICY not_app ON plugin_installations USING (current_user <> 'mairust_cp') WITH CHECK (current_user <> 'mairust_cp');
GRANT SELECT, INSERT, UPDATE, DELETE ON plugin_installations TO mairust_cp;
CREATE TRIGGER plugin_installations_config AFTER INSERT OR UPDATE OR DELETE ON plugin_installations
	FOR EACH ROW EXECUTE FUNCTION config_changed();
