-- Retention: agents' reports and the monitor's notices older than their
-- configured age (controlplane.report_retention, notice_retention) are
-- deleted, across tenants (which row-level security hides from
-- mairust_cp), through these functions: at most n rows a call, so that a
-- large backlog goes in short transactions. Usage records are kept for
-- billing.

CREATE INDEX agent_reports_received ON agent_reports (received_at);
CREATE INDEX notices_received ON notices (received_at);

CREATE FUNCTION purge_agent_reports(older interval, n integer) RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public AS $$
	WITH gone AS (
		DELETE FROM agent_reports WHERE ctid IN (SELECT ctid FROM agent_reports WHERE received_at < now() - older LIMIT n)
		RETURNING 1
	)
	SELECT count(*)::integer FROM gone
$$;

-- A notice's alerts still to deliver go with it (ON DELETE CASCADE).
CREATE FUNCTION purge_notices(older interval, n integer) RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public AS $$
	WITH gone AS (
		DELETE FROM notices WHERE ctid IN (SELECT ctid FROM notices WHERE received_at < now() - older LIMIT n)
		RETURNING 1
	)
	SELECT count(*)::integer FROM gone
$$;

REVOKE EXECUTE ON FUNCTION purge_agent_reports(interval, integer), purge_notices(interval, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION purge_agent_reports(interval, integer), purge_notices(interval, integer) TO mairust_cp;
