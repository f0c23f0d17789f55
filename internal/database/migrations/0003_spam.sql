-- The spam verdict each message was delivered with (issue 4). Rows from
-- before this migration count as not scanned.
ALTER TABLE messages
	ADD COLUMN spam_score double precision,              -- NULL when not scanned
	ADD COLUMN spam_action text NOT NULL DEFAULT '',    -- rspamd's name: 'no action', 'add header', ...
	ADD COLUMN spam_symbols jsonb NOT NULL DEFAULT '{}', -- symbol (rule) name to its score
	ADD COLUMN scanned boolean NOT NULL DEFAULT false;   -- false: delivered unscanned (scanner down)
