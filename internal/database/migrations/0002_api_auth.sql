-- Refresh tokens of API sessions: only the SHA-256 of the token is kept.
CREATE TABLE refresh_tokens (
	id bigserial PRIMARY KEY,
	user_id bigint NOT NULL REFERENCES mail_users(id) ON DELETE CASCADE,
	token_hash bytea NOT NULL UNIQUE,
	created_at timestamptz NOT NULL DEFAULT now(),
	expires_at timestamptz NOT NULL,
	revoked_at timestamptz
);
CREATE INDEX refresh_tokens_user ON refresh_tokens(user_id);

-- Long-lived API tokens for scripts and plugins, shown once, kept hashed.
CREATE TABLE api_tokens (
	id bigserial PRIMARY KEY,
	user_id bigint NOT NULL REFERENCES mail_users(id) ON DELETE CASCADE,
	name text NOT NULL,
	token_hash bytea NOT NULL UNIQUE,
	created_at timestamptz NOT NULL DEFAULT now(),
	expires_at timestamptz,
	last_used_at timestamptz,
	revoked_at timestamptz
);
CREATE INDEX api_tokens_user ON api_tokens(user_id);

-- Delivery and authentication events for the admin log view.
CREATE TABLE events (
	id bigserial PRIMARY KEY,
	tenant_id uuid REFERENCES tenants(id),
	at timestamptz NOT NULL DEFAULT now(),
	kind text NOT NULL,
	actor text NOT NULL DEFAULT '',
	detail jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX events_at ON events(at DESC, id DESC);
