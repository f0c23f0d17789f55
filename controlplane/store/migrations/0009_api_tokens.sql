-- Tokens for automation (Terraform, scripts): each acts as its account,
-- stored hashed (SHA-256), until it expires or is revoked. Not a tenant's
-- rows: an account's, across its tenants.
CREATE TABLE api_tokens (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	account_id uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
	name text NOT NULL,
	token_hash bytea NOT NULL UNIQUE,
	created_at timestamptz NOT NULL DEFAULT now(),
	expires_at timestamptz,
	revoked_at timestamptz
);
CREATE INDEX api_tokens_account ON api_tokens (account_id);
GRANT SELECT, INSERT, UPDATE ON api_tokens TO mairust_cp;
