-- Usage for Stripe's billing meters (controlplane/billing): per tenant,
-- meter and hour (of the reports' arrival), the quantity and the
-- identifier its meter event is sent with (unique, so that Stripe counts
-- a retry once), and when it was sent.
CREATE TABLE meter_usage (
	tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
	meter text NOT NULL,
	hour timestamptz NOT NULL,
	quantity bigint NOT NULL,
	identifier text NOT NULL UNIQUE,
	sent_at timestamptz,
	PRIMARY KEY (tenant_id, meter, hour)
);
CREATE INDEX meter_usage_unsent ON meter_usage (hour) WHERE sent_at IS NULL;

ALTER TABLE meter_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE meter_usage FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON meter_usage USING (tenant_id = app_tenant()) WITH CHECK (tenant_id = app_tenant());
CREATE POLICY not_app ON meter_usage USING (current_user <> 'mairust_cp') WITH CHECK (current_user <> 'mairust_cp');
GRANT SELECT, INSERT, UPDATE, DELETE ON meter_usage TO mairust_cp;

-- collect_messages adds the messages (in + out) of every tenant's reports
-- that arrived in the complete hours from since to the current hour, as
-- meter messages; an hour collected already is left as it is.
CREATE FUNCTION collect_messages(since timestamptz) RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public AS $$
	WITH added AS (
		INSERT INTO meter_usage (tenant_id, meter, hour, quantity, identifier)
		SELECT tenant_id, 'messages', date_trunc('hour', received_at), sum(messages_in + messages_out),
			'mairust:' || tenant_id || ':messages:' || to_char(date_trunc('hour', received_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24')
		FROM agent_reports
		WHERE received_at >= date_trunc('hour', since) AND received_at < date_trunc('hour', now())
		GROUP BY tenant_id, date_trunc('hour', received_at)
		ON CONFLICT DO NOTHING
		RETURNING 1
	)
	SELECT count(*)::integer FROM added
$$;

-- Storage samples (usage records storage_bytes, one an hour per agent)
-- are bucketed by their arrival, as reports are.
ALTER TABLE usage_records ADD COLUMN received_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX usage_records_received ON usage_records (metric, received_at);

-- collect_storage adds, for the complete hours from since to the current
-- hour, each tenant's storage as meter storage, in millionths of a
-- GB-month: each agent's largest sample of the hour, summed over its
-- agents, is that many GB for 1/730 of a month (bytes / 730 / 1000). An
-- hour without a sample is not counted.
CREATE FUNCTION collect_storage(since timestamptz) RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public AS $$
	WITH samples AS (
		SELECT tenant_id, agent_id, date_trunc('hour', received_at) AS hour, max(quantity) AS bytes
		FROM usage_records
		WHERE metric = 'storage_bytes' AND received_at >= date_trunc('hour', since) AND received_at < date_trunc('hour', now())
		GROUP BY tenant_id, agent_id, date_trunc('hour', received_at)
	), added AS (
		INSERT INTO meter_usage (tenant_id, meter, hour, quantity, identifier)
		SELECT tenant_id, 'storage', hour, round(sum(bytes) / 730.0 / 1000)::bigint,
			'mairust:' || tenant_id || ':storage:' || to_char(hour AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24')
		FROM samples GROUP BY tenant_id, hour
		ON CONFLICT DO NOTHING
		RETURNING 1
	)
	SELECT count(*)::integer FROM added
$$;

-- unsent_usage returns up to n unsent hours since the given time, of
-- tenants with a Stripe customer, oldest first.
CREATE FUNCTION unsent_usage(since timestamptz, n integer)
RETURNS TABLE (tenant_id uuid, meter text, hour timestamptz, quantity bigint, identifier text, customer_id text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
	SELECT u.tenant_id, u.meter, u.hour, u.quantity, u.identifier, b.customer_id
	FROM meter_usage u JOIN tenant_billing b ON b.tenant_id = u.tenant_id AND b.customer_id IS NOT NULL
	WHERE u.sent_at IS NULL AND u.hour >= since ORDER BY u.hour LIMIT n
$$;

-- monthly_messages returns each tenant's (only tenant's, when given)
-- messages since the month's start (the hours collected and the reports of
-- the current hour), with its billing row.
CREATE FUNCTION monthly_messages(month_start timestamptz, tenant uuid DEFAULT NULL)
RETURNS TABLE (tenant_id uuid, plan text, state text, hold_reason text, messages bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
	SELECT b.tenant_id, b.plan, b.state, b.hold_reason,
		coalesce((SELECT sum(quantity) FROM meter_usage u WHERE u.tenant_id = b.tenant_id AND u.meter = 'messages' AND u.hour >= month_start), 0)::bigint +
		coalesce((SELECT sum(messages_in + messages_out) FROM agent_reports r WHERE r.tenant_id = b.tenant_id
			AND r.received_at >= greatest(date_trunc('hour', now()), month_start)), 0)::bigint
	FROM tenant_billing b WHERE tenant IS NULL OR b.tenant_id = tenant
$$;

-- set_limit_hold sets a tenant's outbound hold (NULL: none) unless it is
-- restricted, whose hold is the bill's.
CREATE FUNCTION set_limit_hold(tenant uuid, reason text) RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public AS $$
	WITH changed AS (
		UPDATE tenant_billing SET hold_reason = reason, updated_at = now()
		WHERE tenant_id = tenant AND state <> 'restricted' AND hold_reason IS DISTINCT FROM reason
		RETURNING 1
	)
	SELECT EXISTS (SELECT 1 FROM changed)
$$;

REVOKE EXECUTE ON FUNCTION collect_messages(timestamptz), collect_storage(timestamptz), unsent_usage(timestamptz, integer), monthly_messages(timestamptz, uuid), set_limit_hold(uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION collect_messages(timestamptz), collect_storage(timestamptz), unsent_usage(timestamptz, integer), monthly_messages(timestamptz, uuid), set_limit_hold(uuid, text) TO mairust_cp;
