-- Version 4: every housekeeping batch finds its rows through an index.
--
-- Housekeeping deletes what has expired in batches (`delete_expired`). Without these indexes
-- each batch of sessions, interactions and guessing counters was a walk over the whole table,
-- on the single writer, every pass: its cost grew with what is live, not with what expired.
-- (Guessing counters grow with attack traffic: one per guessed account and client address.)
CREATE INDEX sessions_expiry ON sessions(tenant_id, expires_at);
CREATE INDEX interactions_expiry ON interactions(tenant_id, expires_at);
CREATE INDEX login_attempts_window ON login_attempts(tenant_id, window_start);
-- Personal tokens leave once expired or revoked long enough: one index for each way.
CREATE INDEX personal_tokens_expiry ON personal_tokens(tenant_id, expires_at);
CREATE INDEX personal_tokens_revoked ON personal_tokens(tenant_id, revoked_at) WHERE revoked_at IS NOT NULL;
