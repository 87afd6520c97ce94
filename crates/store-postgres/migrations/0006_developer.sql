-- Version 6: the developer area (issue 26).

-- Who may register apps.
ALTER TABLE users ADD COLUMN developer BOOLEAN NOT NULL DEFAULT false;

-- A client's profile (JSON: website, privacy policy, terms of service, logo) and the life of its
-- secrets: when the current one was made and last used, and the one the last rotation replaced,
-- accepted until previous_secret_expires_at (its hash stored rotated, as every hash here).
ALTER TABLE clients ADD COLUMN profile TEXT NOT NULL DEFAULT '{}';
ALTER TABLE clients ADD COLUMN secret_created_at BIGINT;
ALTER TABLE clients ADD COLUMN secret_last_used_at BIGINT;
ALTER TABLE clients ADD COLUMN previous_secret_hash BYTEA;
ALTER TABLE clients ADD COLUMN previous_secret_created_at BIGINT;
ALTER TABLE clients ADD COLUMN previous_secret_expires_at BIGINT;
ALTER TABLE clients ADD COLUMN previous_secret_last_used_at BIGINT;

-- The developers who own an app (one or more). An app registered by an operator has none.
CREATE TABLE client_owners (
    tenant_id   UUID NOT NULL,
    client_id   TEXT NOT NULL,
    user_id     UUID NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, client_id, user_id),
    FOREIGN KEY (tenant_id, client_id) REFERENCES clients(tenant_id, client_id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users(tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX client_owners_user ON client_owners(tenant_id, user_id);

-- Invitations to own an app: the invited user accepts (becoming an owner) or declines.
CREATE TABLE owner_invitations (
    tenant_id   UUID NOT NULL,
    client_id   TEXT NOT NULL,
    user_id     UUID NOT NULL,
    invited_by  UUID NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, client_id, user_id),
    FOREIGN KEY (tenant_id, client_id) REFERENCES clients(tenant_id, client_id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users(tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX owner_invitations_user ON owner_invitations(tenant_id, user_id);
