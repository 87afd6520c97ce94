//! Mapping between SQLite rows and the domain records.

use crate::fault;
use latchkey_core::secret::SecretHash;
use latchkey_store::rows::corrupt;
pub(crate) use latchkey_store::rows::{json, Row};
use latchkey_store::{StoreError, StoreResult};
use rusqlite::types::FromSql;
use rusqlite::Row as SqliteRow;
use std::cell::Cell;
use std::str::FromStr;
use uuid::Uuid;

pub(crate) const USER_SELECT: &str =
    "SELECT tenant_id, id, email, name, password_hash, default_business_id, developer, created_at FROM users";
// The hot lookups' SQL is spelled out whole at compile time (`concat!` takes only literals,
// hence the macros): built per call, it cost an allocation, a copy and the statement cache's
// hash of a fresh string.
macro_rules! client_select {
    () => {
        "SELECT tenant_id, client_id, name, developer, secret_hash, redirect_uris, scopes, grant_types, require_pkce, settings, profile,
    secret_created_at, secret_last_used_at, previous_secret_hash, previous_secret_created_at, previous_secret_expires_at,
    previous_secret_last_used_at, created_at FROM clients"
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
/// A family with its user's email (`rows::family_view`), if the jti `?3` is not revoked,
/// selected after `$first` columns.
macro_rules! family_of_token_select {
    ($first:literal) => {
        concat!(
            "SELECT ",
            $first,
            "f.id AS f_id, f.tenant_id AS f_tenant_id, f.grant_id AS f_grant_id, f.client_id AS f_client_id,
    f.user_id AS f_user_id, f.business_id AS f_business_id, f.scope AS f_scope, f.auth_time AS f_auth_time,
    f.created_at AS f_created_at, f.expires_at AS f_expires_at, f.revoked_at AS f_revoked_at, u.email AS u_email
    FROM families f LEFT JOIN users u ON u.tenant_id = f.tenant_id AND u.id = f.user_id
    WHERE f.tenant_id = ?1 AND f.id = ?2 AND NOT EXISTS (SELECT 1 FROM revoked_jtis WHERE tenant_id = ?1 AND jti = ?3)"
        )
    };
}
pub(crate) const FAMILY_OF_TOKEN: &str = family_of_token_select!("");
/// [`FAMILY_OF_TOKEN`] with the clients' generation first, as [`GENERATION_AND_TOKEN_BY_HASH`].
pub(crate) const GENERATION_AND_FAMILY_OF_TOKEN: &str =
    family_of_token_select!("(SELECT generation FROM client_generation WHERE id = 1) AS generation, ");
/// [`TOKEN_BY_HASH`] with the clients' generation (see `clients`) first, read in the same
/// snapshot: a token found this way needs no second statement, nor a transaction around two,
/// to take its caller's client from the cache.
pub(crate) const GENERATION_AND_TOKEN_BY_HASH: &str =
    token_view_select!("(SELECT generation FROM client_generation WHERE id = 1) AS generation, ");

/// A row, read by column name. rusqlite's own lookup by name compares the name with each
/// column's in turn (a call into SQLite, a length and a UTF-8 check each): a tenth of the
/// server's own CPU in an introspection. The search here starts after the column found last,
/// and the mappers read the columns in the order of their SELECT (those on hot paths
/// exactly), so that a lookup is mostly a single comparison.
pub(crate) struct Cols<'a, 'stmt> {
    row: &'a SqliteRow<'stmt>,
    next: Cell<usize>,
}

impl<'a, 'stmt> Cols<'a, 'stmt> {
    pub(crate) fn new(row: &'a SqliteRow<'stmt>) -> Self {
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

impl Row for Cols<'_, '_> {
    fn text(&self, col: &str) -> StoreResult<String> {
        self.get(col)
    }

    fn opt_text(&self, col: &str) -> StoreResult<Option<String>> {
        self.get(col)
    }

    fn int(&self, col: &str) -> StoreResult<i64> {
        self.get(col)
    }

    fn opt_int(&self, col: &str) -> StoreResult<Option<i64>> {
        self.get(col)
    }

    fn flag(&self, col: &str) -> StoreResult<bool> {
        self.get(col)
    }

    fn bytes(&self, col: &str) -> StoreResult<Vec<u8>> {
        self.get(col)
    }

    /// A UUID is stored as its text.
    fn opt_uuid(&self, col: &str) -> StoreResult<Option<Uuid>> {
        let s: Option<String> = self.get(col)?;
        s.map(|s| Uuid::from_str(&s).map_err(|_| corrupt(col, "is not a UUID"))).transpose()
    }

    fn opt_hash(&self, col: &str) -> StoreResult<Option<SecretHash>> {
        let b: Option<Vec<u8>> = self.get(col)?;
        b.map(|b| SecretHash::from_slice(&b).ok_or_else(|| corrupt(col, "is not a 32-byte hash"))).transpose()
    }
}

// The records are read by the mappers shared with PostgreSQL.
latchkey_store::row_mappers!(Cols<'_, '_>, |r| *r);

/// A session with its user; the session's columns carry an `s_` prefix.
pub(crate) const SESSION_USER_SELECT: &str = "SELECT u.tenant_id, u.id, u.email, u.name, u.password_hash, u.default_business_id,
    u.developer, u.created_at, s.hash AS s_hash, s.auth_time AS s_auth_time, s.created_at AS s_created_at, s.expires_at AS s_expires_at
    FROM sessions s JOIN users u ON u.tenant_id = s.tenant_id AND u.id = s.user_id";

pub(crate) const PERSONAL_TOKEN_SELECT: &str =
    "SELECT tenant_id, id, user_id, name, hash, scope, created_at, expires_at, last_used_at, revoked_at FROM personal_tokens";
