-- When an administrator last released an account (issue 6): its rate
-- windows count only the messages sent after it.
ALTER TABLE outbound_accounts ADD COLUMN released_at timestamptz;
