-- Latchkey schema, version 1. Every row belongs to a tenant. Secrets (client secrets, codes,
-- tokens, session cookies) are stored only as HMAC-SHA256 hashes (BLOB, 32 bytes).

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    issuer      TEXT UNIQUE,                 -- NULL: the default tenant, on the server's issuer
    settings    TEXT NOT NULL DEFAULT '{}',  -- JSON: lifetimes, refresh policy, switches
    created_at  INTEGER NOT NULL
);

CREATE TABLE businesses (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id          TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

CREATE TABLE users (
    tenant_id            TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id                   TEXT NOT NULL,
    email                TEXT NOT NULL,
    name                 TEXT NOT NULL,
    password_hash        TEXT NOT NULL,
    default_business_id  TEXT,
    created_at           INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, email)
);

CREATE TABLE memberships (
    tenant_id    TEXT NOT NULL,
    business_id  TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, business_id, user_id),
    FOREIGN KEY (tenant_id, business_id) REFERENCES businesses(tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users(tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX memberships_user ON memberships(tenant_id, user_id);

CREATE TABLE clients (
    tenant_id      TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    client_id      TEXT NOT NULL,
    name           TEXT NOT NULL,
    developer      TEXT NOT NULL,
    secret_hash    BLOB,
    redirect_uris  TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    grant_types    TEXT NOT NULL,
    require_pkce   INTEGER NOT NULL,
    settings       TEXT NOT NULL DEFAULT '{}',  -- JSON: per-client token lifetimes and refresh policy
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, client_id)
);

CREATE TABLE signing_keys (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    kid          TEXT NOT NULL,
    alg          TEXT NOT NULL,
    sealed       BLOB NOT NULL,
    public_jwk   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    activates_at INTEGER NOT NULL,
    retires_at   INTEGER,
    period       INTEGER,
    PRIMARY KEY (tenant_id, kid),
    UNIQUE (tenant_id, alg, period)
);

CREATE TABLE sessions (
    hash        BLOB PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    auth_time   INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users(tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE interactions (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    browser_hash   BLOB NOT NULL,
    request        TEXT NOT NULL,
    login_user_id  TEXT,
    login_at       INTEGER,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL
);

CREATE TABLE grants (
    tenant_id    TEXT NOT NULL,
    id           TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    client_id    TEXT NOT NULL,
    business_id  TEXT,
    scope        TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, user_id, client_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users(tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, client_id) REFERENCES clients(tenant_id, client_id) ON DELETE CASCADE
);

CREATE TABLE codes (
    hash                   BLOB PRIMARY KEY,
    tenant_id              TEXT NOT NULL,
    client_id              TEXT NOT NULL,
    user_id                TEXT NOT NULL,
    grant_id               TEXT NOT NULL,
    business_id            TEXT,
    redirect_uri           TEXT NOT NULL,
    redirect_uri_explicit  INTEGER NOT NULL,
    scope                  TEXT NOT NULL,
    nonce                  TEXT,
    code_challenge         TEXT,
    auth_time              INTEGER NOT NULL,
    created_at             INTEGER NOT NULL,
    expires_at             INTEGER NOT NULL,
    consumed_at            INTEGER,
    family_id              TEXT NOT NULL,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users(tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, client_id) REFERENCES clients(tenant_id, client_id) ON DELETE CASCADE
);

CREATE TABLE families (
    tenant_id    TEXT NOT NULL,
    id           TEXT NOT NULL,
    grant_id     TEXT,              -- NULL: a client acting for itself (client_credentials)
    client_id    TEXT NOT NULL,
    user_id      TEXT,
    business_id  TEXT,
    scope        TEXT NOT NULL,
    auth_time    INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users(tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, client_id) REFERENCES clients(tenant_id, client_id) ON DELETE CASCADE
);

CREATE TABLE tokens (
    hash         BLOB PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    kind         TEXT NOT NULL,
    family_id    TEXT NOT NULL,
    client_id    TEXT NOT NULL,
    user_id      TEXT,
    business_id  TEXT,
    scope        TEXT NOT NULL,
    jti          TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    rotated_at   INTEGER,
    FOREIGN KEY (tenant_id, family_id) REFERENCES families(tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX tokens_family ON tokens(tenant_id, family_id);
CREATE INDEX tokens_expiry ON tokens(tenant_id, expires_at);
CREATE INDEX codes_expiry ON codes(tenant_id, expires_at);
CREATE INDEX families_expiry ON families(tenant_id, expires_at);

-- Online guessing counters: attempts per key (an account or a client) in the current window.
CREATE TABLE login_attempts (
    tenant_id     TEXT NOT NULL,
    key           TEXT NOT NULL,
    attempts      INTEGER NOT NULL,
    window_start  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, key)
);

-- Personal access tokens and their audit trail.
CREATE TABLE personal_tokens (
    tenant_id     TEXT NOT NULL,
    id            TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    name          TEXT NOT NULL,
    hash          BLOB NOT NULL UNIQUE,
    scope         TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    revoked_at    INTEGER,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users(tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX personal_tokens_user ON personal_tokens(tenant_id, user_id);

CREATE TABLE personal_token_events (
    tenant_id  TEXT NOT NULL,
    token_id   TEXT NOT NULL,
    event      TEXT NOT NULL,
    at         INTEGER NOT NULL,
    FOREIGN KEY (tenant_id, token_id) REFERENCES personal_tokens(tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX personal_token_events_token ON personal_token_events(tenant_id, token_id);
