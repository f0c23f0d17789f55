-- The control plane's outbound hold of the agent's tenant (an unpaid
-- bill, a plan's limit), applied with the configuration version, kept
-- across restarts: while set, submission refuses new outbound mail with
-- this reason.
ALTER TABLE link_state ADD COLUMN outbound_hold text;
