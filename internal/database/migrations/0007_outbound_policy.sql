-- Outbound Policy Engine (issue 6). Accounts are mail addresses as text (the
-- engine is told who submits; it does not reference mail_users so that an
-- account's history survives its deletion until the retention purge).

-- Sending state of each account that has ever submitted: 'allowed',
-- 'soft_limited' until soft_until, or 'suspended' since suspended_at; reason
-- and changed_by describe the last transition.
CREATE TABLE outbound_accounts (
	account text PRIMARY KEY,
	tenant_id text NOT NULL DEFAULT '',
	state text NOT NULL DEFAULT 'allowed' CHECK (state IN ('allowed', 'soft_limited', 'suspended')),
	soft_until timestamptz,
	suspended_at timestamptz,
	reason text NOT NULL DEFAULT '',
	changed_by text NOT NULL DEFAULT '',
	updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every state transition: kind is 'warn', 'suspend', 'release',
-- 'auto_reenable' or 'soft_limit_end'; actor is 'policy', 'system' or the
-- admin who acted; score and factors are the evaluation that caused it.
CREATE TABLE outbound_events (
	id bigserial PRIMARY KEY,
	account text NOT NULL,
	at timestamptz NOT NULL,
	kind text NOT NULL,
	from_state text NOT NULL,
	to_state text NOT NULL,
	actor text NOT NULL,
	reason text NOT NULL DEFAULT '',
	score double precision,
	factors jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX outbound_events_account_kind_at ON outbound_events (account, kind, at);
CREATE INDEX outbound_events_at ON outbound_events (at);

-- One row per submitted message. counted is true when the message was let
-- through (allow or warn): only those count in the sliding windows.
CREATE TABLE outbound_messages (
	id bigserial PRIMARY KEY,
	account text NOT NULL,
	tenant_id text NOT NULL DEFAULT '',
	at timestamptz NOT NULL,
	recipients integer NOT NULL,
	new_recipients integer NOT NULL,
	score double precision NOT NULL,
	decision text NOT NULL,
	counted boolean NOT NULL
);
CREATE INDEX outbound_messages_window ON outbound_messages (account, at) INCLUDE (new_recipients) WHERE counted;
CREATE INDEX outbound_messages_at ON outbound_messages (at);

-- Recipients an account has sent to; a recipient is new when absent here.
CREATE TABLE outbound_recipients (
	account text NOT NULL,
	recipient text NOT NULL,
	first_at timestamptz NOT NULL,
	last_at timestamptz NOT NULL,
	PRIMARY KEY (account, recipient)
);
CREATE INDEX outbound_recipients_last_at ON outbound_recipients (last_at);

-- Counted messages per account and clock hour: the baseline.
CREATE TABLE outbound_hourly (
	account text NOT NULL,
	hour timestamptz NOT NULL,
	messages integer NOT NULL,
	PRIMARY KEY (account, hour)
);
CREATE INDEX outbound_hourly_hour ON outbound_hourly (hour);

-- Aggregated statistics per account and UTC day (kept longer than the rest).
CREATE TABLE outbound_daily (
	account text NOT NULL,
	day date NOT NULL,
	tenant_id text NOT NULL DEFAULT '',
	messages integer NOT NULL DEFAULT 0,
	recipients integer NOT NULL DEFAULT 0,
	new_recipients integer NOT NULL DEFAULT 0,
	warned integer NOT NULL DEFAULT 0,
	refused integer NOT NULL DEFAULT 0,
	suspended integer NOT NULL DEFAULT 0,
	PRIMARY KEY (account, day)
);
CREATE INDEX outbound_daily_day ON outbound_daily (day);

-- Bounces and complaints reported against an account's mail.
CREATE TABLE outbound_feedback (
	id bigserial PRIMARY KEY,
	account text NOT NULL,
	at timestamptz NOT NULL,
	kind text NOT NULL CHECK (kind IN ('bounce', 'complaint'))
);
CREATE INDEX outbound_feedback_account_at ON outbound_feedback (account, at);
CREATE INDEX outbound_feedback_at ON outbound_feedback (at);
