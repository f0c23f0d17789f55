-- DKIM signing keys for outgoing mail (issue 6), one row per domain and
-- selector. The private key must be usable to sign, so it is not hashed: it
-- is sealed with AES-256-GCM under a key-encryption key the agent keeps
-- outside the database (see package agent/dkim); public_key is what the DNS
-- TXT record publishes. A domain has at most one active key; a rotated-out
-- key stays, retired, for a grace period so mail signed with it can still be
-- verified while its DNS record is kept.
CREATE TABLE dkim_keys (
	id bigserial PRIMARY KEY,
	domain text NOT NULL REFERENCES domains(name) ON DELETE CASCADE ON UPDATE CASCADE,
	selector text NOT NULL CHECK (selector = lower(selector) AND selector <> ''),
	algorithm text NOT NULL CHECK (algorithm IN ('rsa', 'ed25519')),
	private_key bytea NOT NULL,
	public_key bytea NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	active boolean NOT NULL DEFAULT true,
	retired_at timestamptz,
	UNIQUE (domain, selector),
	CHECK (active = (retired_at IS NULL))
);
CREATE UNIQUE INDEX dkim_keys_one_active ON dkim_keys(domain) WHERE active;
