-- The agent's link to the control plane (agent/link).

-- Domains and mail users the control plane pushed: it updates and deletes
-- only these; the agent's local admin API leaves them alone.
ALTER TABLE domains ADD COLUMN managed_by_controlplane boolean NOT NULL DEFAULT false;
ALTER TABLE mail_users ADD COLUMN managed_by_controlplane boolean NOT NULL DEFAULT false;

-- One row: the enrollment the state belongs to; the configuration version
-- applied last, with its settings (tenants.v1.Settings as protojson), and
-- the last version acknowledged to the control plane; the sequence of the
-- last report made.
CREATE TABLE link_state (
	one boolean PRIMARY KEY DEFAULT true CHECK (one),
	agent_id text NOT NULL DEFAULT '',
	config_version bigint NOT NULL DEFAULT 0,
	settings jsonb,
	acked_version bigint NOT NULL DEFAULT 0,
	report_sequence bigint NOT NULL DEFAULT 0
);
INSERT INTO link_state DEFAULT VALUES;

-- Reports not yet acknowledged by the control plane, sent in sequence
-- order (payload: the ReportRequest as protojson).
CREATE TABLE link_reports (
	sequence bigint PRIMARY KEY,
	created_at timestamptz NOT NULL DEFAULT now(),
	payload jsonb NOT NULL
);
