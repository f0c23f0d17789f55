-- Mail aliases: more addresses that deliver into a user's mailbox and that
-- the user may send from (postmaster@, abuse@, ...). An alias is in one of
-- its tenant's domains and points to a user of the same tenant: the
-- composite foreign keys hold both to the alias's tenant. It goes with its
-- user and with its domain.
ALTER TABLE domains ADD UNIQUE (id, tenant_id);
ALTER TABLE mail_users ADD UNIQUE (id, tenant_id);

CREATE TABLE mail_aliases (
	id bigserial PRIMARY KEY,
	tenant_id uuid NOT NULL REFERENCES tenants(id),
	address text NOT NULL UNIQUE CHECK (address = lower(address)),
	domain_id bigint NOT NULL,
	user_id bigint NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	FOREIGN KEY (domain_id, tenant_id) REFERENCES domains(id, tenant_id) ON DELETE CASCADE,
	FOREIGN KEY (user_id, tenant_id) REFERENCES mail_users(id, tenant_id) ON DELETE CASCADE
);
CREATE INDEX mail_aliases_domain ON mail_aliases(domain_id);
CREATE INDEX mail_aliases_user ON mail_aliases(user_id);

-- An address is a user's or an alias, never both. The check takes a
-- transaction lock on the address first, so that of two transactions
-- adding it to the two tables the second waits for the first and then
-- sees its row (each query of a PL/pgSQL function takes a new snapshot
-- under READ COMMITTED). The error is a unique_violation naming the
-- constraint mail_address_unique.
CREATE FUNCTION mail_address_unique() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_advisory_xact_lock(hashtextextended('mairust address ' || NEW.address, 0));
	IF TG_TABLE_NAME = 'mail_users' AND EXISTS (SELECT 1 FROM mail_aliases WHERE address = NEW.address) THEN
		RAISE EXCEPTION 'address % is an alias', NEW.address USING ERRCODE = 'unique_violation', CONSTRAINT = 'mail_address_unique';
	END IF;
	IF TG_TABLE_NAME = 'mail_aliases' AND EXISTS (SELECT 1 FROM mail_users WHERE address = NEW.address) THEN
		RAISE EXCEPTION 'address % is a mail user''s', NEW.address USING ERRCODE = 'unique_violation', CONSTRAINT = 'mail_address_unique';
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER mail_users_address_unique BEFORE INSERT OR UPDATE OF address ON mail_users
	FOR EACH ROW EXECUTE FUNCTION mail_address_unique();
CREATE TRIGGER mail_aliases_address_unique BEFORE INSERT OR UPDATE OF address ON mail_aliases
	FOR EACH ROW EXECUTE FUNCTION mail_address_unique();
