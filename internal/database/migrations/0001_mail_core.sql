-- Tenants own domains; one agent usually serves one tenant.
CREATE TABLE tenants (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	name text NOT NULL UNIQUE,
	created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE domains (
	id bigserial PRIMARY KEY,
	tenant_id uuid NOT NULL REFERENCES tenants(id),
	name text NOT NULL UNIQUE CHECK (name = lower(name)),
	disabled boolean NOT NULL DEFAULT false,
	created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mail_users (
	id bigserial PRIMARY KEY,
	tenant_id uuid NOT NULL REFERENCES tenants(id),
	domain_id bigint NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
	address text NOT NULL UNIQUE CHECK (address = lower(address)),
	password_hash text NOT NULL,
	is_admin boolean NOT NULL DEFAULT false,
	disabled boolean NOT NULL DEFAULT false,
	quota_bytes bigint NOT NULL DEFAULT 0,
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mail_users_domain ON mail_users(domain_id);

CREATE TABLE folders (
	id bigserial PRIMARY KEY,
	tenant_id uuid NOT NULL REFERENCES tenants(id),
	user_id bigint NOT NULL REFERENCES mail_users(id) ON DELETE CASCADE,
	name text NOT NULL,
	special text CHECK (special IN ('inbox', 'junk', 'sent', 'trash')),
	created_at timestamptz NOT NULL DEFAULT now(),
	UNIQUE (user_id, name),
	UNIQUE (user_id, special)
);

-- One row per stored object. deleting is set by the cleanup job before it
-- removes the object, so that a delivery racing with it backs off (451).
CREATE TABLE blobs (
	key text PRIMARY KEY,
	size bigint NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	deleting boolean NOT NULL DEFAULT false
);

CREATE TABLE messages (
	id bigserial PRIMARY KEY,
	tenant_id uuid NOT NULL REFERENCES tenants(id),
	user_id bigint NOT NULL REFERENCES mail_users(id) ON DELETE CASCADE,
	folder_id bigint NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
	blob_key text NOT NULL REFERENCES blobs(key),
	size bigint NOT NULL,
	mail_from text NOT NULL,
	rcpt_to text NOT NULL,
	from_addr text NOT NULL DEFAULT '',
	to_addrs text NOT NULL DEFAULT '',
	cc_addrs text NOT NULL DEFAULT '',
	subject text NOT NULL DEFAULT '',
	date timestamptz,
	message_id text NOT NULL DEFAULT '',
	received_at timestamptz NOT NULL DEFAULT now(),
	deleted_at timestamptz
);
CREATE INDEX messages_folder ON messages(folder_id, id) WHERE deleted_at IS NULL;
CREATE INDEX messages_deleted ON messages(deleted_at) WHERE deleted_at IS NOT NULL;
CREATE INDEX messages_blob ON messages(blob_key);
