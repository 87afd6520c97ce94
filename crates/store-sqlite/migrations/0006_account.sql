-- Version 6: what the account pages need.

-- A person revokes an app's access by its grant: its families are found by grant. Partial, so
-- that a client's own families (client_credentials, no grant) cost no index entry.
CREATE INDEX families_grant ON families(tenant_id, grant_id) WHERE grant_id IS NOT NULL;

-- The scope catalogue: what each scope means in words, and whether personal access tokens may
-- carry it. Scopes without an entry read as `latchkey_core::scope::describe` says.
CREATE TABLE scopes (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    description  TEXT NOT NULL,
    personal     INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
