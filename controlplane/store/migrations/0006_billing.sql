-- Billing through Stripe (controlplane/billing), used only when
-- billing.stripe_secret_key is set.

-- Each tenant's Stripe customer, plan and billing state: active, past_due
-- (a payment failed; full service during billing.grace_period), restricted
-- (no new outbound mail; inbound keeps arriving). last_event_at is the
-- creation time of the newest Stripe event applied, so that an older event
-- arriving late changes nothing. hold_reason, while set, stops the
-- tenant's new outbound mail on its agents, and says why.
CREATE TABLE tenant_billing (
	tenant_id uuid PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
	customer_id text UNIQUE,
	subscription_id text,
	plan text NOT NULL,
	state text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'past_due', 'restricted')),
	past_due_since timestamptz,
	last_event_at timestamptz,
	hold_reason text,
	updated_at timestamptz NOT NULL DEFAULT now()
);

-- Stripe events handled, by id: a replayed event is acknowledged and
-- changes nothing. Not a tenant's row (an event may name no tenant).
CREATE TABLE stripe_events (
	id text PRIMARY KEY,
	type text NOT NULL,
	tenant_id uuid,
	received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stripe_events_received ON stripe_events (received_at);

ALTER TABLE tenant_billing ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_billing FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON tenant_billing USING (tenant_id = app_tenant()) WITH CHECK (tenant_id = app_tenant());
CREATE POLICY not_app ON tenant_billing USING (current_user <> 'mairust_cp') WITH CHECK (current_user <> 'mairust_cp');
GRANT SELECT, INSERT, UPDATE, DELETE ON tenant_billing, stripe_events TO mairust_cp;

-- Agents learn of a hold through their configuration.
CREATE TRIGGER tenant_billing_config AFTER INSERT OR DELETE OR UPDATE OF hold_reason ON tenant_billing
	FOR EACH ROW EXECUTE FUNCTION config_changed();

-- billing_tenant returns the tenant of a Stripe customer, for webhook
-- events, which name the customer and come with no tenant.
CREATE FUNCTION billing_tenant(customer text) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
	SELECT tenant_id FROM tenant_billing WHERE customer_id = customer
$$;

-- tenants_without_customer lists up to n tenants that have no Stripe
-- customer yet, oldest first, with the address of their first owner.
CREATE FUNCTION tenants_without_customer(n integer)
RETURNS TABLE (id uuid, name text, email text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
	SELECT t.id, t.name, coalesce((SELECT a.email FROM memberships m JOIN accounts a ON a.id = m.account_id
		WHERE m.tenant_id = t.id AND m.role = 'owner' ORDER BY m.created_at LIMIT 1), '')
	FROM tenants t LEFT JOIN tenant_billing b ON b.tenant_id = t.id
	WHERE b.customer_id IS NULL ORDER BY t.created_at LIMIT n
$$;

-- restrict_overdue restricts the tenants past due for longer than grace,
-- holding their outbound mail for reason, and returns them.
CREATE FUNCTION restrict_overdue(grace interval, reason text) RETURNS SETOF uuid
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public AS $$
	UPDATE tenant_billing SET state = 'restricted', hold_reason = reason, updated_at = now()
	WHERE state = 'past_due' AND past_due_since <= now() - grace
	RETURNING tenant_id
$$;

REVOKE EXECUTE ON FUNCTION billing_tenant(text), tenants_without_customer(integer), restrict_overdue(interval, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION billing_tenant(text), tenants_without_customer(integer), restrict_overdue(interval, text) TO mairust_cp;

-- purge_stripe_events forgets handled events older than older, at most n
-- a call (Stripe resends an event for 3 days at most).
CREATE FUNCTION purge_stripe_events(older interval, n integer) RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public AS $$
	WITH gone AS (
		DELETE FROM stripe_events WHERE ctid IN (SELECT ctid FROM stripe_events WHERE received_at < now() - older LIMIT n)
		RETURNING 1
	)
	SELECT count(*)::integer FROM gone
$$;
REVOKE EXECUTE ON FUNCTION purge_stripe_events(interval, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION purge_stripe_events(interval, integer) TO mairust_cp;
