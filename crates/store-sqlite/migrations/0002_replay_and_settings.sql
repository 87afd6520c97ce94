-- Version 2: the refresh replay window and server-wide settings.

-- A rotated refresh token may keep the answer its rotation gave, sealed under a key derived
-- from the token itself, until `replay_until`; `successor` is the hash of the refresh token
-- that replaced it (a duplicate gets the answer only while that one is unused).
ALTER TABLE tokens ADD COLUMN replay BLOB;
ALTER TABLE tokens ADD COLUMN replay_until INTEGER;
ALTER TABLE tokens ADD COLUMN successor BLOB;
CREATE INDEX tokens_replay ON tokens(tenant_id, replay_until) WHERE replay_until IS NOT NULL;

-- Values every node must agree on (for example a check value of the master key).
CREATE TABLE settings (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
