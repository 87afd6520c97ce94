-- Version 7: a rotated refresh token's replay answer in a table of its own.
--
-- The sealed answer (1 to 2 kB: the new tokens and an id_token) lived in the rotated token's
-- row for the replay window (5 s): every rotation wrote a new version of the old row with it,
-- and every clearing another one without it, so each refresh left two dead copies of a row
-- behind for VACUUM and grew the table. In a table of their own the answers are inserted once
-- and deleted once.
CREATE TABLE replays (
    hash        BYTEA PRIMARY KEY REFERENCES tokens(hash) ON DELETE CASCADE,
    tenant_id   UUID NOT NULL,
    sealed      BYTEA NOT NULL,
    until       BIGINT NOT NULL,
    successor   BYTEA               -- the refresh token that replaced this one
);
CREATE INDEX replays_until ON replays(tenant_id, until);

INSERT INTO replays (hash, tenant_id, sealed, until, successor)
SELECT hash, tenant_id, replay, replay_until, successor FROM tokens WHERE replay IS NOT NULL AND replay_until IS NOT NULL;
-- Dropping a column only marks it dropped in PostgreSQL: no row is rewritten.
DROP INDEX tokens_replay;
ALTER TABLE tokens DROP COLUMN replay, DROP COLUMN replay_until, DROP COLUMN successor;
