-- Down detection of agents (controlplane/agents): the control plane's
-- down marker must see the agents of every tenant, which row-level
-- security hides from mairust_cp. It goes through this function, which
-- runs as the owner and does only that.

-- mark_agents_down marks down every agent, not revoked and not down yet,
-- whose last heartbeat (or enrollment, when it never sent one) is older
-- than base plus its own jitter of 0 to 10 % of base, and returns how many
-- it marked. The jitter is fixed per agent (from its id) so that an agent
-- does not flap between passes, and agents that stopped together are not
-- all marked at the same pass.
CREATE FUNCTION mark_agents_down(base interval) RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public AS $$
	WITH marked AS (
		UPDATE agents SET down_at = now()
		WHERE revoked_at IS NULL AND down_at IS NULL
			AND coalesce(last_heartbeat_at, enrolled_at)
				< now() - base * (1 + (('x' || left(md5(id::text), 8))::bit(32)::bigint % 1001)::float8 / 10000)
		RETURNING 1
	)
	SELECT count(*)::integer FROM marked
$$;
REVOKE EXECUTE ON FUNCTION mark_agents_down(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mark_agents_down(interval) TO mairust_cp;
