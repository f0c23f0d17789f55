-- The admin log view reads one tenant's events newest first.
CREATE INDEX events_tenant_at ON events(tenant_id, at DESC, id DESC);
DROP INDEX events_at;
