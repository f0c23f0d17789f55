-- The durable outbound queue (package agent/outbound/queue).
--
-- A submitted message is one outbound_queue row holding its bytes: they
-- commit in the submitter's transaction, with the delivery jobs, so that a
-- 250 to the submitter follows a commit that holds everything. The bytes
-- are dropped (data set to NULL) once every recipient is final; the row
-- stays as the record of the message. status is 'queued' while some
-- recipient is pending or deferred, then 'delivered', 'failed' or
-- 'partial' (some of each). user_id is the submitting user, NULL for mail
-- the agent itself sends (bounces to remote senders).
CREATE TABLE outbound_queue (
	id bigserial PRIMARY KEY,
	tenant_id uuid NOT NULL REFERENCES tenants(id),
	user_id bigint REFERENCES mail_users(id) ON DELETE SET NULL,
	mail_from text NOT NULL, -- '' for the null sender
	data bytea,
	size bigint NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	expires_at timestamptz NOT NULL, -- created_at + the lifetime: retried until then
	status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'delivered', 'failed', 'partial'))
);
CREATE INDEX outbound_queue_user ON outbound_queue(user_id);

-- Each recipient's state ('outbound_recipients' is the policy engine's
-- table of 0007). A recipient is 'pending' before its first attempt,
-- 'deferred' after temporary failures (next_attempt_at says when it is
-- tried again), then 'delivered' or 'failed'. The last_* columns are the
-- latest attempt's reply; a failed recipient whose last_enhanced is 4.x.x
-- failed because the message's lifetime ran out.
CREATE TABLE outbound_queue_recipients (
	id bigserial PRIMARY KEY,
	queue_id bigint NOT NULL REFERENCES outbound_queue(id) ON DELETE CASCADE,
	address text NOT NULL,
	domain text NOT NULL CHECK (domain = lower(domain)),
	status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'deferred', 'failed')),
	attempts integer NOT NULL DEFAULT 0,
	last_code integer NOT NULL DEFAULT 0, -- SMTP reply code, 0 without a reply
	last_enhanced text NOT NULL DEFAULT '',
	last_text text NOT NULL DEFAULT '',
	remote_host text NOT NULL DEFAULT '',
	next_attempt_at timestamptz,
	updated_at timestamptz NOT NULL DEFAULT now(),
	UNIQUE (queue_id, address)
);

-- One row per attempt per recipient, kept apart from the queue (no foreign
-- keys to it or to mail_users) so that it outlives both. status is the
-- recipient's state after the attempt: 'delivered', 'deferred' or 'failed'.
CREATE TABLE outbound_delivery_log (
	id bigserial PRIMARY KEY,
	at timestamptz NOT NULL DEFAULT now(),
	tenant_id uuid NOT NULL REFERENCES tenants(id),
	user_id bigint,
	queue_id bigint NOT NULL,
	recipient text NOT NULL,
	status text NOT NULL CHECK (status IN ('delivered', 'deferred', 'failed')),
	code integer NOT NULL,
	enhanced text NOT NULL,
	text text NOT NULL,
	host text NOT NULL,
	tls boolean NOT NULL
);
-- The API lists a tenant's or a user's log newest first.
CREATE INDEX outbound_delivery_log_tenant ON outbound_delivery_log(tenant_id, at DESC, id DESC);
CREATE INDEX outbound_delivery_log_user ON outbound_delivery_log(user_id, at DESC, id DESC);
