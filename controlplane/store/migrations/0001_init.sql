-- The control plane's schema (issue 7), in its own database.
--
-- Tenant isolation is in the database: every row of a tenant carries
-- tenant_id, row-level security is enabled and forced on those tables, and
-- the server runs as the role mairust_cp (not the owner), whose requests
-- set app.tenant_id (and app.account_id) in each transaction. A policy
-- shows a row only when its tenant_id is the one set.

DO $$
BEGIN
	CREATE ROLE mairust_cp LOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
	NULL; -- made by another database of this cluster
END
$$;

CREATE FUNCTION app_tenant() RETURNS uuid LANGUAGE sql STABLE
	AS $$ SELECT nullif(current_setting('app.tenant_id', true), '')::uuid $$;
CREATE FUNCTION app_account() RETURNS uuid LANGUAGE sql STABLE
	AS $$ SELECT nullif(current_setting('app.account_id', true), '')::uuid $$;

-- People. Not a tenant's rows: an account may be a member of several.
CREATE TABLE accounts (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	email text NOT NULL UNIQUE,
	password_hash text NOT NULL,
	email_verified_at timestamptz,
	created_at timestamptz NOT NULL DEFAULT now()
);

-- E-mail verification tokens, stored hashed (SHA-256).
CREATE TABLE email_verifications (
	token_hash bytea PRIMARY KEY,
	account_id uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
	expires_at timestamptz NOT NULL,
	used_at timestamptz
);

CREATE TABLE tenants (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	tenant_id uuid GENERATED ALWAYS AS (id) STORED,
	name text NOT NULL,
	created_by uuid REFERENCES accounts(id) ON DELETE SET NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE memberships (
	tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
	account_id uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
	role text NOT NULL CHECK (role IN ('owner', 'admin', 'viewer')),
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, account_id)
);
CREATE INDEX memberships_account ON memberships (account_id);

-- Invitations to join a tenant; the token is stored hashed.
CREATE TABLE invitations (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
	email text NOT NULL,
	role text NOT NULL CHECK (role IN ('owner', 'admin', 'viewer')),
	token_hash bytea NOT NULL UNIQUE,
	invited_by uuid REFERENCES accounts(id) ON DELETE SET NULL,
	expires_at timestamptz NOT NULL,
	accepted_at timestamptz,
	created_at timestamptz NOT NULL DEFAULT now(),
	UNIQUE (tenant_id, email)
);

-- A mail domain belongs to one tenant.
CREATE TABLE domains (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
	name text NOT NULL UNIQUE,
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX domains_tenant ON domains (tenant_id);

CREATE TABLE mail_users (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
	domain_id uuid NOT NULL REFERENCES domains(id) ON DELETE RESTRICT,
	address text NOT NULL UNIQUE,
	password_hash text NOT NULL,
	admin boolean NOT NULL DEFAULT false,
	disabled boolean NOT NULL DEFAULT false,
	quota_bytes bigint NOT NULL DEFAULT 0,
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mail_users_tenant ON mail_users (tenant_id);

-- Settings pushed to the tenant's agents (tenants.v1.Settings as JSON).
CREATE TABLE tenant_settings (
	tenant_id uuid PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
	settings jsonb NOT NULL DEFAULT '{}',
	updated_at timestamptz NOT NULL DEFAULT now()
);

-- The version of each tenant's configuration: raised by every change of
-- what the agents get, announced on the channel config_changed.
CREATE TABLE config_versions (
	tenant_id uuid PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
	version bigint NOT NULL DEFAULT 0,
	changed_at timestamptz NOT NULL DEFAULT now()
);

-- One-time enrollment tokens, stored hashed (SHA-256).
CREATE TABLE enrollment_tokens (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
	token_hash bytea NOT NULL UNIQUE,
	created_by uuid REFERENCES accounts(id) ON DELETE SET NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	expires_at timestamptz NOT NULL,
	used_at timestamptz,
	agent_id uuid
);

CREATE TABLE agents (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
	public_key bytea NOT NULL UNIQUE CHECK (length(public_key) = 32),
	hostname text NOT NULL,
	version text NOT NULL,
	enrolled_at timestamptz NOT NULL DEFAULT now(),
	revoked_at timestamptz,
	last_heartbeat_at timestamptz,
	down_at timestamptz,
	uptime_seconds bigint NOT NULL DEFAULT 0,
	health jsonb NOT NULL DEFAULT '[]',
	config_version bigint NOT NULL DEFAULT 0,
	config_error text NOT NULL DEFAULT ''
);
CREATE INDEX agents_tenant ON agents (tenant_id);

-- Reports, idempotent by (agent, sequence).
CREATE TABLE agent_reports (
	tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
	agent_id uuid NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
	sequence bigint NOT NULL,
	at timestamptz NOT NULL,
	received_at timestamptz NOT NULL DEFAULT now(),
	messages_in bigint NOT NULL DEFAULT 0,
	messages_out bigint NOT NULL DEFAULT 0,
	spam bigint NOT NULL DEFAULT 0,
	bytes_stored bigint NOT NULL DEFAULT 0,
	breakers jsonb NOT NULL DEFAULT '[]',
	PRIMARY KEY (agent_id, sequence)
);
CREATE INDEX agent_reports_tenant_at ON agent_reports (tenant_id, at);

-- Metered usage for billing, from the reports.
CREATE TABLE usage_records (
	tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
	agent_id uuid NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
	sequence bigint NOT NULL,
	metric text NOT NULL,
	quantity bigint NOT NULL,
	period_start timestamptz NOT NULL,
	period_end timestamptz NOT NULL,
	PRIMARY KEY (agent_id, sequence, metric, period_start)
);
CREATE INDEX usage_records_tenant ON usage_records (tenant_id, metric, period_start);

-- DKIM keys the agents report, for the DNS records to publish.
CREATE TABLE dkim_keys (
	tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
	domain text NOT NULL,
	selector text NOT NULL,
	txt text NOT NULL,
	agent_id uuid REFERENCES agents(id) ON DELETE SET NULL,
	reported_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, domain, selector)
);

-- The monitor service's notices of outbound warnings and suspensions.
CREATE TABLE notices (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
	agent_id uuid REFERENCES agents(id) ON DELETE SET NULL,
	account text NOT NULL,
	kind text NOT NULL CHECK (kind IN ('warn', 'suspend')),
	score double precision NOT NULL,
	factors jsonb NOT NULL DEFAULT '{}',
	reason text NOT NULL DEFAULT '',
	at timestamptz NOT NULL,
	received_at timestamptz NOT NULL DEFAULT now(),
	UNIQUE (tenant_id, account, kind, at)
);
CREATE INDEX notices_tenant_at ON notices (tenant_id, at DESC);

-- Row-level security on every tenant's table, enabled and forced (the
-- owner is bound too): for mairust_cp a row is seen, written and deleted
-- only under its tenant. Memberships are also seen by their account (to
-- list its tenants), and tenants by their members. Any other role — the
-- owner, in the functions below that run as it, and an operator's
-- maintenance — is not limited to a tenant (it need not be a superuser or
-- have BYPASSRLS for that).
DO $$
DECLARE t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['tenants', 'memberships', 'invitations', 'domains', 'mail_users', 'tenant_settings',
		'config_versions', 'enrollment_tokens', 'agents', 'agent_reports', 'usage_records', 'dkim_keys', 'notices'] LOOP
		EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
		EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
		EXECUTE format('CREATE POLICY tenant_rows ON %I USING (tenant_id = app_tenant()) WITH CHECK (tenant_id = app_tenant())', t);
		EXECUTE format('CREATE POLICY not_app ON %I USING (current_user <> ''mairust_cp'') WITH CHECK (current_user <> ''mairust_cp'')', t);
	END LOOP;
END
$$;
CREATE POLICY own_memberships ON memberships FOR SELECT USING (account_id = app_account());
CREATE POLICY member_tenants ON tenants FOR SELECT
	USING (EXISTS (SELECT 1 FROM memberships m WHERE m.tenant_id = tenants.id AND m.account_id = app_account()));

-- What the server may do without a tenant set, through functions that run
-- as the owner and return only what the caller proves it may have.

-- enrollment_token takes a token (by its hash) once, when unused and
-- unexpired, and returns its tenant; status says why not otherwise.
CREATE FUNCTION enrollment_token(hash bytea, OUT tenant uuid, OUT status text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE r enrollment_tokens;
BEGIN
	SELECT * INTO r FROM enrollment_tokens WHERE token_hash = hash FOR UPDATE;
	IF NOT FOUND THEN status := 'unknown'; RETURN; END IF;
	IF r.used_at IS NOT NULL THEN status := 'used'; RETURN; END IF;
	IF r.expires_at <= now() THEN status := 'expired'; RETURN; END IF;
	UPDATE enrollment_tokens SET used_at = now() WHERE id = r.id;
	tenant := r.tenant_id;
	status := 'ok';
END
$$;

-- agent_identity returns an agent's tenant, public key and whether it is
-- revoked, for credential renewal by proof of the key.
CREATE FUNCTION agent_identity(agent uuid, OUT tenant uuid, OUT public_key bytea, OUT revoked boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
	SELECT tenant_id, public_key, revoked_at IS NOT NULL FROM agents WHERE id = agent
$$;

-- invitation_by_token returns the invitation of a token (by its hash).
CREATE FUNCTION invitation_by_token(hash bytea)
RETURNS TABLE (id uuid, tenant uuid, email text, role text, expires_at timestamptz, accepted_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
	SELECT id, tenant_id, email, role, expires_at, accepted_at FROM invitations WHERE token_hash = hash
$$;

-- config_changed raises the tenant's configuration version and announces
-- it, after each change of what its agents get.
CREATE FUNCTION config_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE t uuid := coalesce(NEW.tenant_id, OLD.tenant_id);
BEGIN
	INSERT INTO config_versions AS c (tenant_id, version, changed_at) VALUES (t, 1, now())
		ON CONFLICT (tenant_id) DO UPDATE SET version = c.version + 1, changed_at = now();
	PERFORM pg_notify('config_changed', t::text);
	RETURN NULL;
END
$$;
CREATE TRIGGER domains_config AFTER INSERT OR UPDATE OR DELETE ON domains FOR EACH ROW EXECUTE FUNCTION config_changed();
CREATE TRIGGER mail_users_config AFTER INSERT OR UPDATE OR DELETE ON mail_users FOR EACH ROW EXECUTE FUNCTION config_changed();
CREATE TRIGGER tenant_settings_config AFTER INSERT OR UPDATE OR DELETE ON tenant_settings FOR EACH ROW EXECUTE FUNCTION config_changed();

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO mairust_cp;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO mairust_cp;
REVOKE ALL ON schema_migrations FROM mairust_cp;
