-- Alerts of the Outbound Policy Engine's transitions (issue 6): alerted is
-- set in the transaction that queues an event's alerts. Events from before
-- this migration count as alerted.
ALTER TABLE outbound_events ADD COLUMN alerted boolean NOT NULL DEFAULT true;
ALTER TABLE outbound_events ALTER COLUMN alerted SET DEFAULT false;
CREATE INDEX outbound_events_unalerted ON outbound_events (id) WHERE NOT alerted;
