-- Latchkey schema for PostgreSQL, version 1: the logical schema of SQLite's versions 1 and 2.
-- Every row belongs to a tenant. Secrets (client secrets, codes, tokens, session cookies) are
-- stored only as HMAC-SHA256 hashes (BYTEA, 32 bytes). Ids are native UUIDs, times are Unix
-- seconds (BIGINT), JSON documents are TEXT (read and written whole, never queried).
--
-- `seq` columns (identity) break ties where SQLite uses its rowid: rows inserted within the
-- same second keep their insertion order.
--
-- Foreign key columns are indexed (PostgreSQL does not index them itself), so that the
-- cascades of deleting a user or a client do not scan whole tables.

CREATE TABLE tenants (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    issuer      TEXT UNIQUE,                 -- NULL: the default tenant, on the server's issuer
    settings    TEXT NOT NULL DEFAULT '{}',  -- JSON: lifetimes, refresh policy, switches
    created_at  BIGINT NOT NULL
);

CREATE TABLE businesses (
    tenant_id   UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id          UUID NOT NULL,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

CREATE TABLE users (
    tenant_id            UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id                   UUID NOT NULL,
    email                TEXT NOT NULL,
    name                 TEXT NOT NULL,
    password_hash        TEXT NOT NULL,
    default_business_id  UUID,
    created_at           BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, email)
);

CREATE TABLE memberships (
    tenant_id    UUID NOT NULL,
    business_id  UUID NOT NULL,
    user_id      UUID NOT NULL,
    created_at   BIGINT NOT NULL,
    seq          BIGINT GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (tenant_id, business_id, user_id),
    FOREIGN KEY (tenant_id, business_id) REFERENCES businesses(tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users(tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX memberships_user ON memberships(tenant_id, user_id);

CREATE TABLE clients (
    tenant_id      UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    client_id      TEXT NOT NULL,
    name           TEXT NOT NULL,
    developer      TEXT NOT NULL,
    secret_hash    BYTEA,
    redirect_uris  TEXT NOT NULL,               -- JSON array
    scopes         TEXT NOT NULL,
    grant_types    TEXT NOT NULL,               -- JSON array
    require_pkce   BOOLEAN NOT NULL,
    settings       TEXT NOT NULL DEFAULT '{}',  -- JSON: per-client token lifetimes and refresh policy
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, client_id)
);

CREATE TABLE signing_keys (
    tenant_id    UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    kid          TEXT NOT NULL,
    alg          TEXT NOT NULL,
    sealed       BYTEA NOT NULL,
    public_jwk   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    activates_at BIGINT NOT NULL,
    retires_at   BIGINT,
    period       BIGINT,
    seq          BIGINT GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (tenant_id, kid),
    UNIQUE (tenant_id, alg, period)             -- NULL periods are distinct, as in SQLite
);

CREATE TABLE sessions (
    hash        BYTEA PRIMARY KEY,
    tenant_id   UUID NOT NULL,
    user_id     UUID NOT NULL,
    auth_time   BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users(tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX sessions_user ON sessions(tenant_id, user_id);
CREATE INDEX sessions_expiry ON sessions(tenant_id, expires_at);

CREATE TABLE interactions (
    id             UUID PRIMARY KEY,
    tenant_id      UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    browser_hash   BYTEA NOT NULL,
    request        TEXT NOT NULL,
    login_user_id  UUID,
    login_at       BIGINT,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL
);

CREATE TABLE grants (
    tenant_id    UUID NOT NULL,
    id           UUID NOT NULL,
    user_id      UUID NOT NULL,
    client_id    TEXT NOT NULL,
    business_id  UUID,
    scope        TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, user_id, client_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users(tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, client_id) REFERENCES clients(tenant_id, client_id) ON DELETE CASCADE
);
CREATE INDEX grants_client ON grants(tenant_id, client_id);

CREATE TABLE codes (
    hash                   BYTEA PRIMARY KEY,
    tenant_id              UUID NOT NULL,
    client_id              TEXT NOT NULL,
    user_id                UUID NOT NULL,
    grant_id               UUID NOT NULL,
    business_id            UUID,
    redirect_uri           TEXT NOT NULL,
    redirect_uri_explicit  BOOLEAN NOT NULL,
    scope                  TEXT NOT NULL,
    nonce                  TEXT,
    code_challenge         TEXT,
    auth_time              BIGINT NOT NULL,
    created_at             BIGINT NOT NULL,
    expires_at             BIGINT NOT NULL,
    consumed_at            BIGINT,
    family_id              UUID NOT NULL,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users(tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, client_id) REFERENCES clients(tenant_id, client_id) ON DELETE CASCADE
);
CREATE INDEX codes_expiry ON codes(tenant_id, expires_at);
CREATE INDEX codes_user ON codes(tenant_id, user_id);
CREATE INDEX codes_client ON codes(tenant_id, client_id);

CREATE TABLE families (
    tenant_id    UUID NOT NULL,
    id           UUID NOT NULL,
    grant_id     UUID,              -- NULL: a client acting for itself (client_credentials)
    client_id    TEXT NOT NULL,
    user_id      UUID,
    business_id  UUID,
    scope        TEXT NOT NULL,
    auth_time    BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users(tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, client_id) REFERENCES clients(tenant_id, client_id) ON DELETE CASCADE
);
CREATE INDEX families_expiry ON families(tenant_id, expires_at);
CREATE INDEX families_user ON families(tenant_id, user_id);
CREATE INDEX families_client ON families(tenant_id, client_id);

-- A rotated refresh token may keep the answer its rotation gave, sealed under a key derived
-- from the token itself, until `replay_until`; `successor` is the hash of the refresh token
-- that replaced it (a duplicate gets the answer only while that one is unused).
CREATE TABLE tokens (
    hash          BYTEA PRIMARY KEY,
    tenant_id     UUID NOT NULL,
    kind          TEXT NOT NULL,
    family_id     UUID NOT NULL,
    client_id     TEXT NOT NULL,
    user_id       UUID,
    business_id   UUID,
    scope         TEXT NOT NULL,
    jti           UUID NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    revoked_at    BIGINT,
    rotated_at    BIGINT,
    replay        BYTEA,
    replay_until  BIGINT,
    successor     BYTEA,
    FOREIGN KEY (tenant_id, family_id) REFERENCES families(tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX tokens_family ON tokens(tenant_id, family_id);
CREATE INDEX tokens_expiry ON tokens(tenant_id, expires_at);
CREATE INDEX tokens_replay ON tokens(tenant_id, replay_until) WHERE replay_until IS NOT NULL;

-- Online guessing counters: attempts per key (an account or a client) in the current window.
CREATE TABLE login_attempts (
    tenant_id     UUID NOT NULL,
    key           TEXT NOT NULL,
    attempts      BIGINT NOT NULL,
    window_start  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, key)
);

-- Personal access tokens and their audit trail.
CREATE TABLE personal_tokens (
    tenant_id     UUID NOT NULL,
    id            UUID NOT NULL,
    user_id       UUID NOT NULL,
    name          TEXT NOT NULL,
    hash          BYTEA NOT NULL UNIQUE,
    scope         TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    last_used_at  BIGINT,
    revoked_at    BIGINT,
    seq           BIGINT GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users(tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX personal_tokens_user ON personal_tokens(tenant_id, user_id);

CREATE TABLE personal_token_events (
    tenant_id  UUID NOT NULL,
    token_id   UUID NOT NULL,
    event      TEXT NOT NULL,
    at         BIGINT NOT NULL,
    seq        BIGINT GENERATED ALWAYS AS IDENTITY,
    FOREIGN KEY (tenant_id, token_id) REFERENCES personal_tokens(tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX personal_token_events_token ON personal_token_events(tenant_id, token_id);

-- Values every node must agree on (for example a check value of the master key).
CREATE TABLE settings (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
