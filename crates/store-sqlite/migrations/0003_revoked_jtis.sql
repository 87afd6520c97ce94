-- Version 3: revoked self-contained tokens.

-- A client's own JWT access token (client_credentials) is not stored: its signature, expiry
-- and client judge it. Revoking one (RFC 7009) records its jti here until it expires.
CREATE TABLE revoked_jtis (
    tenant_id    TEXT NOT NULL,
    jti          TEXT NOT NULL,
    client_id    TEXT NOT NULL,
    expires_at   INTEGER NOT NULL,
    revoked_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, jti),
    FOREIGN KEY (tenant_id, client_id) REFERENCES clients(tenant_id, client_id) ON DELETE CASCADE
);
CREATE INDEX revoked_jtis_expiry ON revoked_jtis(tenant_id, expires_at);

-- Client tokens stored by earlier versions and already revoked stay revoked: from now on their
-- jti, not their row, decides (opaque ones are carried too; their jti is never looked up).
INSERT OR IGNORE INTO revoked_jtis (tenant_id, jti, client_id, expires_at, revoked_at)
SELECT t.tenant_id, t.jti, t.client_id, t.expires_at, COALESCE(t.revoked_at, f.revoked_at)
FROM tokens t JOIN families f ON f.tenant_id = t.tenant_id AND f.id = t.family_id
WHERE t.kind = 'access_token' AND t.user_id IS NULL AND (t.revoked_at IS NOT NULL OR f.revoked_at IS NOT NULL);
