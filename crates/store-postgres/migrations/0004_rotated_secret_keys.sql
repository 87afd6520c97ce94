-- Version 4: every secret hash is stored rotated, its first 8 bytes moved to its end
-- (`rows::key`). Secrets now lead with bytes that grow with time; rotated, the keys of this
-- database's indexes still lead with HMAC bytes, so concurrent inserts spread over the index
-- rather than queue for its last leaf. Rows written before keep working: their hashes are
-- rotated here the same way.
CREATE OR REPLACE FUNCTION pg_temp.rotated(b BYTEA) RETURNS BYTEA LANGUAGE SQL IMMUTABLE
    AS $$ SELECT CASE WHEN length(b) = 32 THEN substring(b FROM 9) || substring(b FROM 1 FOR 8) ELSE b END $$;
UPDATE clients SET secret_hash = pg_temp.rotated(secret_hash) WHERE secret_hash IS NOT NULL;
UPDATE sessions SET hash = pg_temp.rotated(hash);
UPDATE interactions SET browser_hash = pg_temp.rotated(browser_hash);
UPDATE codes SET hash = pg_temp.rotated(hash);
UPDATE tokens SET hash = pg_temp.rotated(hash), successor = pg_temp.rotated(successor);
UPDATE personal_tokens SET hash = pg_temp.rotated(hash);
DROP FUNCTION pg_temp.rotated(BYTEA);
