-- The monitor service (monitor/): each tenant's alert webhook, the alerts
-- of stored notices still to deliver, and the index its per-account rate
-- limits read.

-- A tenant's alert webhook: every stored notice is POSTed to url as JSON,
-- signed with secret (X-MaiRust-Plugin-Id: monitor). Set by the operator
-- for now; the console will set it later.
CREATE TABLE monitor_webhooks (
	tenant_id uuid PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
	url text NOT NULL CHECK (url ~ '^https?://[^/]'),
	secret text NOT NULL CHECK (secret <> ''),
	updated_at timestamptz NOT NULL DEFAULT now()
);

-- Alerts still to deliver: one row per recipient of a stored notice
-- (channel mail, target the address) and one for the tenant's webhook
-- (channel webhook, whose URL and secret are read when it is sent). Made in
-- the transaction that stores the notice, leased by a sender through
-- claim_monitor_alerts, deleted once delivered or given up.
CREATE TABLE monitor_alerts (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
	notice_id uuid NOT NULL REFERENCES notices(id) ON DELETE CASCADE,
	channel text NOT NULL CHECK (channel IN ('mail', 'webhook')),
	target text NOT NULL DEFAULT '',
	attempts integer NOT NULL DEFAULT 0,
	due_at timestamptz NOT NULL DEFAULT now(),
	last_error text NOT NULL DEFAULT ''
);
CREATE INDEX monitor_alerts_due ON monitor_alerts (due_at);
CREATE INDEX monitor_alerts_notice ON monitor_alerts (notice_id);

-- The per-account limits count an account's notices of the last 24 hours.
CREATE INDEX notices_account_received ON notices (tenant_id, account, received_at DESC);

-- Row-level security as on every tenant's table (0001_init.sql).
DO $$
DECLARE t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['monitor_webhooks', 'monitor_alerts'] LOOP
		EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
		EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
		EXECUTE format('CREATE POLICY tenant_rows ON %I USING (tenant_id = app_tenant()) WITH CHECK (tenant_id = app_tenant())', t);
		EXECUTE format('CREATE POLICY not_app ON %I USING (current_user <> ''mairust_cp'') WITH CHECK (current_user <> ''mairust_cp'')', t);
	END LOOP;
END
$$;
GRANT SELECT, INSERT, UPDATE, DELETE ON monitor_webhooks, monitor_alerts TO mairust_cp;

-- claim_monitor_alerts leases up to n due alerts of every tenant (the
-- sender must see all of them, which row-level security hides from
-- mairust_cp): their attempts go up by one and they are not due again
-- before lease has passed, so that another replica does not send them
-- meanwhile. It returns only what the sender needs to find the rest under
-- the alert's tenant.
CREATE FUNCTION claim_monitor_alerts(n integer, lease interval)
RETURNS TABLE (id uuid, tenant_id uuid, notice_id uuid, channel text, target text, attempts integer)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public AS $$
	UPDATE monitor_alerts a SET due_at = now() + lease, attempts = a.attempts + 1
	WHERE a.id IN (SELECT m.id FROM monitor_alerts m WHERE m.due_at <= now() ORDER BY m.due_at LIMIT n FOR UPDATE SKIP LOCKED)
	RETURNING a.id, a.tenant_id, a.notice_id, a.channel, a.target, a.attempts
$$;
REVOKE EXECUTE ON FUNCTION claim_monitor_alerts(integer, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION claim_monitor_alerts(integer, interval) TO mairust_cp;
