-- Installed plugins and what their post_receive hooks write (issue 5).
-- The plugin's files live in its own directory under plugins.dir; the row
-- is what the agent runs from: plugin.toml as installed, the checksum of
-- its command taken then, whether it is enabled, its settings, the
-- permissions added at install time, and the key its HTTP requests are
-- signed with (it must be usable to sign, so it is not hashed).
CREATE TABLE plugins (
	id text PRIMARY KEY,
	dir text NOT NULL,
	manifest text NOT NULL,
	command_sha256 text NOT NULL DEFAULT '',
	secret text NOT NULL,
	enabled boolean NOT NULL DEFAULT true,
	settings jsonb NOT NULL DEFAULT '{}',
	added_permissions text[] NOT NULL DEFAULT '{}',
	installed_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now()
);

-- Tags a plugin put on a message (write_tags).
CREATE TABLE message_tags (
	message_id bigint NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
	tag text NOT NULL,
	plugin_id text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (message_id, tag)
);

-- Key/value metadata a plugin wrote on a message (write_metadata).
CREATE TABLE message_metadata (
	message_id bigint NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
	plugin_id text NOT NULL,
	key text NOT NULL,
	value text NOT NULL,
	PRIMARY KEY (message_id, plugin_id, key)
);
