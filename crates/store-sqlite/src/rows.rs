//! Mapping between SQLite rows and the domain records.

use crate::fault;
use latchkey_core::model::{
    AuthCode, Business, Client, Family, Grant, GrantSummary, GrantType, Interaction, PersonalToken, ScopeEntry, Session, SigningAlg,
    SigningKeyRecord, Tenant, TenantId, TokenKind, TokenRecord, TokenView, User,
};
use latchkey_core::scope::ScopeSet;
use latchkey_core::secret::SecretHash;
use latchkey_store::{StoreError, StoreResult};
use rusqlite::types::FromSql;
use rusqlite::Row;
use std::cell::Cell;
use std::str::FromStr;
use uuid::Uuid;

pub(crate) const USER_SELECT: &str = "SELECT tenant_id, id, email, name, password_hash, default_business_id, created_at FROM users";
// The hot lookups' SQL is spelled out whole at compile time (`concat!` takes only literals,
// hence the macros): built per call, it cost an allocation, a copy and the statement cache's
// hash of a fresh string.
macro_rules! client_select {
    () => {
        "SELECT tenant_id, client_id, name, developer, secret_hash, redirect_uris, scopes, grant_types, require_pkce, settings, created_at FROM clients"
    };
}
/// A token with its family and its user's email, selected after `$first` columns (the lookup
/// by hash reads nothing else; introspection also reads the clients' generation).
macro_rules! token_view_select {
    ($first:literal) => {
        concat!(
            "SELECT ",
            $first,
            "t.hash, t.tenant_id, t.kind, t.family_id, t.client_id, t.user_id, t.business_id, t.scope,
    t.jti, t.created_at, t.expires_at, t.revoked_at, t.rotated_at,
    f.grant_id AS f_grant_id, f.scope AS f_scope, f.auth_time AS f_auth_time, f.created_at AS f_created_at,
    f.expires_at AS f_expires_at, f.revoked_at AS f_revoked_at, u.email AS u_email
    FROM tokens t JOIN families f ON f.tenant_id = t.tenant_id AND f.id = t.family_id
    LEFT JOIN users u ON u.tenant_id = f.tenant_id AND u.id = f.user_id
    WHERE t.tenant_id = ? AND t.hash = ?"
        )
    };
}
pub(crate) const CLIENT_SELECT: &str = client_select!();
pub(crate) const CLIENT_BY_ID: &str = concat!(client_select!(), " WHERE tenant_id = ? AND client_id = ?");
pub(crate) const GRANT_COLUMNS: &str = "tenant_id, id, user_id, client_id, business_id, scope, created_at";
pub(crate) const GRANT_SELECT: &str = "SELECT tenant_id, id, user_id, client_id, business_id, scope, created_at FROM grants";
pub(crate) const TOKEN_BY_HASH: &str = token_view_select!("");
/// [`TOKEN_BY_HASH`] with the clients' generation (see `clients`) first, read in the same
/// snapshot: a token found this way needs no second statement, nor a transaction around two,
/// to take its caller's client from the cache.
pub(crate) const GENERATION_AND_TOKEN_BY_HASH: &str =
    token_view_select!("(SELECT generation FROM client_generation WHERE id = 1) AS generation, ");

pub(crate) fn json<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(row: &Cols<'_, '_>, col: &str) -> StoreResult<T> {
    let s: String = get(row, col)?;
    serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

fn tenant_col(row: &Cols<'_, '_>) -> StoreResult<TenantId> {
    uuid_col(row, "tenant_id").map(TenantId)
}

fn opt_uuid(row: &Cols<'_, '_>, col: &str) -> StoreResult<Option<Uuid>> {
    let s: Option<String> = get(row, col)?;
    s.map(|s| s.parse().map_err(|_| StoreError::Corrupt(format!("{col} is not a UUID")))).transpose()
}

fn hash_col(row: &Cols<'_, '_>, col: &str) -> StoreResult<SecretHash> {
    let b: Vec<u8> = get(row, col)?;
    SecretHash::from_slice(&b).ok_or_else(|| StoreError::Corrupt(format!("{col} is not a 32-byte hash")))
}

fn scope_col(row: &Cols<'_, '_>, col: &str) -> StoreResult<ScopeSet> {
    let s: String = get(row, col)?;
    ScopeSet::parse(&s).map_err(|_| StoreError::Corrupt(format!("{col} is not a scope")))
}

fn get<T: FromSql>(row: &Cols<'_, '_>, col: &str) -> StoreResult<T> {
    row.get(col)
}

/// A row, read by column name. rusqlite's own lookup by name compares the name with each
/// column's in turn (a call into SQLite, a length and a UTF-8 check each): a tenth of the
/// server's own CPU in an introspection. The search here starts after the column found last,
/// and the mappers read the columns in the order of their SELECT (those on hot paths
/// exactly), so that a lookup is mostly a single comparison.
pub(crate) struct Cols<'a, 'stmt> {
    row: &'a Row<'stmt>,
    next: Cell<usize>,
}

impl<'a, 'stmt> Cols<'a, 'stmt> {
    pub(crate) fn new(row: &'a Row<'stmt>) -> Self {
        Self { row, next: Cell::new(0) }
    }

    /// The column named `col` (exactly as the SELECT names it).
    pub(crate) fn get<T: FromSql>(&self, col: &str) -> StoreResult<T> {
        let stmt = self.row.as_ref();
        let count = stmt.column_count();
        let start = self.next.get();
        let found = (0..count).map(|k| (start + k) % count).find(|&i| stmt.column_name(i).is_ok_and(|name| name == col));
        let i = found.ok_or_else(|| StoreError::Corrupt(format!("the query has no column {col}")))?;
        self.next.set(i + 1);
        self.at(i)
    }

    /// The column at `i`.
    pub(crate) fn at<T: FromSql>(&self, i: usize) -> StoreResult<T> {
        self.row.get(i).map_err(fault)
    }
}

/// Reads one column as a UUID stored as text.
pub(crate) fn uuid_col(row: &Cols<'_, '_>, col: &str) -> StoreResult<Uuid> {
    let s: String = get(row, col)?;
    Uuid::from_str(&s).map_err(|_| StoreError::Corrupt(format!("{col} is not a UUID")))
}

pub(crate) fn tenant_from_row(r: &Cols<'_, '_>) -> StoreResult<Tenant> {
    Ok(Tenant {
        id: TenantId(uuid_col(r, "id")?),
        name: get(r, "name")?,
        issuer: get(r, "issuer")?,
        settings: from_json(r, "settings")?,
        created_at: get(r, "created_at")?,
    })
}

pub(crate) fn user_from_row(r: &Cols<'_, '_>) -> StoreResult<User> {
    Ok(User {
        tenant: tenant_col(r)?,
        id: uuid_col(r, "id")?,
        email: get(r, "email")?,
        name: get(r, "name")?,
        password_hash: get(r, "password_hash")?,
        default_business_id: opt_uuid(r, "default_business_id")?,
        created_at: get(r, "created_at")?,
    })
}

pub(crate) fn grant_summary_from_row(r: &Cols<'_, '_>) -> StoreResult<GrantSummary> {
    Ok(GrantSummary {
        grant: grant_from_row(r)?,
        client_name: get(r, "client_name")?,
        developer: get(r, "developer")?,
        business_name: get(r, "business_name")?,
        last_used_at: get(r, "last_used_at")?,
    })
}

pub(crate) fn scope_entry_from_row(r: &Cols<'_, '_>) -> StoreResult<ScopeEntry> {
    Ok(ScopeEntry {
        tenant: tenant_col(r)?,
        name: get(r, "name")?,
        description: get(r, "description")?,
        personal: get(r, "personal")?,
        created_at: get(r, "created_at")?,
    })
}

pub(crate) fn business_from_row(r: &Cols<'_, '_>) -> StoreResult<Business> {
    Ok(Business { tenant: tenant_col(r)?, id: uuid_col(r, "id")?, name: get(r, "name")?, created_at: get(r, "created_at")? })
}

pub(crate) fn client_from_row(r: &Cols<'_, '_>) -> StoreResult<Client> {
    // In the order of CLIENT_SELECT, so that each lookup is one comparison (see `Cols`).
    let tenant = tenant_col(r)?;
    let client_id = get(r, "client_id")?;
    let name = get(r, "name")?;
    let developer = get(r, "developer")?;
    let secret: Option<Vec<u8>> = get(r, "secret_hash")?;
    let redirect_uris = from_json(r, "redirect_uris")?;
    let scopes = scope_col(r, "scopes")?;
    let grant_types: Vec<GrantType> = from_json(r, "grant_types")?;
    Ok(Client {
        tenant,
        client_id,
        name,
        developer,
        secret_hash: secret
            .map(|b| SecretHash::from_slice(&b).ok_or_else(|| StoreError::Corrupt("secret_hash is not a 32-byte hash".into())))
            .transpose()?,
        redirect_uris,
        scopes,
        grant_types,
        require_pkce: get(r, "require_pkce")?,
        token_settings: from_json(r, "settings")?,
        created_at: get(r, "created_at")?,
    })
}

pub(crate) fn signing_key_from_row(r: &Cols<'_, '_>) -> StoreResult<SigningKeyRecord> {
    let alg: String = get(r, "alg")?;
    Ok(SigningKeyRecord {
        kid: get(r, "kid")?,
        tenant: tenant_col(r)?,
        alg: SigningAlg::parse(&alg).ok_or_else(|| StoreError::Corrupt(format!("unknown signing alg {alg}")))?,
        sealed_private_key: get(r, "sealed")?,
        public_jwk: get(r, "public_jwk")?,
        created_at: get(r, "created_at")?,
        activates_at: get(r, "activates_at")?,
        retires_at: get(r, "retires_at")?,
        period: get(r, "period")?,
    })
}

/// A session with its user; the session's columns carry an `s_` prefix.
pub(crate) const SESSION_USER_SELECT: &str = "SELECT u.tenant_id, u.id, u.email, u.name, u.password_hash, u.default_business_id,
    u.created_at, s.hash AS s_hash, s.auth_time AS s_auth_time, s.created_at AS s_created_at, s.expires_at AS s_expires_at
    FROM sessions s JOIN users u ON u.tenant_id = s.tenant_id AND u.id = s.user_id";

pub(crate) fn session_user_from_row(r: &Cols<'_, '_>) -> StoreResult<(Session, User)> {
    let user = user_from_row(r)?;
    let session = Session {
        hash: hash_col(r, "s_hash")?,
        tenant: user.tenant,
        user_id: user.id,
        auth_time: get(r, "s_auth_time")?,
        created_at: get(r, "s_created_at")?,
        expires_at: get(r, "s_expires_at")?,
    };
    Ok((session, user))
}

pub(crate) fn session_from_row(r: &Cols<'_, '_>) -> StoreResult<Session> {
    Ok(Session {
        hash: hash_col(r, "hash")?,
        tenant: tenant_col(r)?,
        user_id: uuid_col(r, "user_id")?,
        auth_time: get(r, "auth_time")?,
        created_at: get(r, "created_at")?,
        expires_at: get(r, "expires_at")?,
    })
}

pub(crate) fn interaction_from_row(r: &Cols<'_, '_>) -> StoreResult<Interaction> {
    let login_user = opt_uuid(r, "login_user_id")?;
    let login_at: Option<i64> = get(r, "login_at")?;
    Ok(Interaction {
        id: uuid_col(r, "id")?,
        tenant: tenant_col(r)?,
        browser_hash: hash_col(r, "browser_hash")?,
        request: get(r, "request")?,
        login: login_user.zip(login_at),
        created_at: get(r, "created_at")?,
        expires_at: get(r, "expires_at")?,
    })
}

pub(crate) fn grant_from_row(r: &Cols<'_, '_>) -> StoreResult<Grant> {
    Ok(Grant {
        tenant: tenant_col(r)?,
        id: uuid_col(r, "id")?,
        user_id: uuid_col(r, "user_id")?,
        client_id: get(r, "client_id")?,
        business_id: opt_uuid(r, "business_id")?,
        scope: scope_col(r, "scope")?,
        created_at: get(r, "created_at")?,
    })
}

pub(crate) fn code_from_row(r: &Cols<'_, '_>) -> StoreResult<AuthCode> {
    Ok(AuthCode {
        hash: hash_col(r, "hash")?,
        tenant: tenant_col(r)?,
        client_id: get(r, "client_id")?,
        user_id: uuid_col(r, "user_id")?,
        grant_id: uuid_col(r, "grant_id")?,
        business_id: opt_uuid(r, "business_id")?,
        redirect_uri: get(r, "redirect_uri")?,
        redirect_uri_explicit: get(r, "redirect_uri_explicit")?,
        scope: scope_col(r, "scope")?,
        nonce: get(r, "nonce")?,
        code_challenge: get(r, "code_challenge")?,
        auth_time: get(r, "auth_time")?,
        created_at: get(r, "created_at")?,
        expires_at: get(r, "expires_at")?,
        consumed_at: get(r, "consumed_at")?,
        family_id: uuid_col(r, "family_id")?,
    })
}

pub(crate) fn token_view_from_row(r: &Cols<'_, '_>) -> StoreResult<TokenView> {
    // In the order of `token_view_select!`, so that each lookup is one comparison (see `Cols`).
    let hash = hash_col(r, "hash")?;
    let tenant = tenant_col(r)?;
    let kind: String = get(r, "kind")?;
    let token = TokenRecord {
        hash,
        tenant,
        kind: TokenKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("unknown token kind {kind}")))?,
        family_id: uuid_col(r, "family_id")?,
        client_id: get(r, "client_id")?,
        user_id: opt_uuid(r, "user_id")?,
        business_id: opt_uuid(r, "business_id")?,
        scope: scope_col(r, "scope")?,
        jti: uuid_col(r, "jti")?,
        created_at: get(r, "created_at")?,
        expires_at: get(r, "expires_at")?,
        revoked_at: get(r, "revoked_at")?,
        rotated_at: get(r, "rotated_at")?,
    };
    let family = Family {
        id: token.family_id,
        tenant: token.tenant,
        grant_id: opt_uuid(r, "f_grant_id")?,
        client_id: token.client_id.clone(),
        user_id: token.user_id,
        business_id: token.business_id,
        scope: scope_col(r, "f_scope")?,
        auth_time: get(r, "f_auth_time")?,
        created_at: get(r, "f_created_at")?,
        expires_at: get(r, "f_expires_at")?,
        revoked_at: get(r, "f_revoked_at")?,
    };
    Ok(TokenView { token, family, subject_email: get(r, "u_email")? })
}

pub(crate) const PERSONAL_TOKEN_SELECT: &str =
    "SELECT tenant_id, id, user_id, name, hash, scope, created_at, expires_at, last_used_at, revoked_at FROM personal_tokens";

pub(crate) fn personal_token_from_row(r: &Cols<'_, '_>) -> StoreResult<PersonalToken> {
    Ok(PersonalToken {
        id: uuid_col(r, "id")?,
        tenant: tenant_col(r)?,
        user_id: uuid_col(r, "user_id")?,
        name: get(r, "name")?,
        hash: hash_col(r, "hash")?,
        scope: scope_col(r, "scope")?,
        created_at: get(r, "created_at")?,
        expires_at: get(r, "expires_at")?,
        last_used_at: get(r, "last_used_at")?,
        revoked_at: get(r, "revoked_at")?,
    })
}
