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

-- Recalls: a plugin, or some of its versions (empty: all), found
-- malicious. In force until withdrawn.
CREATE TABLE recalls (
	id bigserial PRIMARY KEY,
	plugin_id text NOT NULL REFERENCES plugins(id),
	versions text[] NOT NULL DEFAULT '{}',
	reason text NOT NULL,
	created_by uuid REFERENCES accounts(id) ON DELETE SET NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	withdrawn_at timestamptz,
	withdrawn_by uuid REFERENCES accounts(id) ON DELETE SET NULL
);

-- The recall list as the agents get it: its version (raised by each recall
-- and withdrawal) and the marketplace's signature over it.
CREATE TABLE recall_list (
	one boolean PRIMARY KEY DEFAULT true CHECK (one),
	version bigint NOT NULL DEFAULT 0,
	signature bytea NOT NULL DEFAULT '',
	key_id text NOT NULL DEFAULT ''
);
INSERT INTO recall_list DEFAULT VALUES;
GRANT SELECT, INSERT, UPDATE ON recalls, recall_list TO mairust_cp;
GRANT USAGE ON SEQUENCE recalls_id_seq TO mairust_cp;

-- configs_changed raises the configuration version of every tenant and
-- wakes every agent's stream (payload *): the recall list is everyone's.
CREATE FUNCTION configs_changed() RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public AS $$
	INSERT INTO config_versions AS c (tenant_id, version, changed_at) SELECT id, 1, now() FROM tenants
		ON CONFLICT (tenant_id) DO UPDATE SET version = c.version + 1, changed_at = now();
	SELECT pg_notify('config_changed', '*');
$$;
REVOKE EXECUTE ON FUNCTION configs_changed() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION configs_changed() TO mairust_cp;

-- installers_admins returns the owners' and admins' addresses of every
-- tenant that installed plugin (one of versions; empty: any), to mail them
-- of a recall: across tenants, which row-level security hides.
CREATE FUNCTION installers_admins(plugin text, versions text[]) RETURNS TABLE (email text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
	SELECT a.email FROM plugin_installations i
		JOIN memberships m ON m.tenant_id = i.tenant_id AND m.role IN ('owner', 'admin')
		JOIN accounts a ON a.id = m.account_id
	WHERE i.plugin_id = plugin AND (cardinality(versions) = 0 OR i.version = ANY(versions))
$$;
REVOKE EXECUTE ON FUNCTION installers_admins(text, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION installers_admins(text, text[]) TO mairust_cp;
