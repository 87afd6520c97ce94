//! Mapping between PostgreSQL rows and the domain records.

use crate::fault;
use latchkey_core::model::TokenRecord;
use latchkey_core::secret::{SecretHash, ORDER_LEN};
pub(crate) use latchkey_store::rows::json;
use latchkey_store::rows::{self, corrupt};
use latchkey_store::StoreResult;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row};
use uuid::Uuid;

pub(crate) const TENANT_SELECT: &str = "SELECT id, name, issuer, settings, created_at FROM tenants";
pub(crate) const USER_SELECT: &str =
    "SELECT tenant_id, id, email, name, password_hash, default_business_id, developer, created_at FROM users";
pub(crate) const BUSINESS_SELECT: &str = "SELECT tenant_id, id, name, created_at FROM businesses";
pub(crate) const CLIENT_SELECT: &str =
    "SELECT tenant_id, client_id, name, developer, secret_hash, redirect_uris, scopes, grant_types, require_pkce, settings, profile,
    secret_created_at, secret_last_used_at, previous_secret_hash, previous_secret_created_at, previous_secret_expires_at,
    previous_secret_last_used_at, created_at FROM clients";
pub(crate) const SIGNING_KEY_SELECT: &str =
    "SELECT tenant_id, kid, alg, sealed, public_jwk, created_at, activates_at, retires_at, period FROM signing_keys";
pub(crate) const SESSION_SELECT: &str = "SELECT hash, tenant_id, user_id, auth_time, created_at, expires_at FROM sessions";
pub(crate) const INTERACTION_SELECT: &str =
    "SELECT id, tenant_id, browser_hash, request, login_user_id, login_at, created_at, expires_at FROM interactions";
pub(crate) const GRANT_COLUMNS: &str = "tenant_id, id, user_id, client_id, business_id, scope, created_at";
pub(crate) const GRANT_SELECT: &str = "SELECT tenant_id, id, user_id, client_id, business_id, scope, created_at FROM grants";
pub(crate) const CODE_SELECT: &str =
    "SELECT hash, tenant_id, client_id, user_id, grant_id, business_id, redirect_uri, redirect_uri_explicit, scope, nonce,
    code_challenge, auth_time, created_at, expires_at, consumed_at, family_id FROM codes";
pub(crate) const TOKEN_VIEW_SELECT: &str =
    "SELECT t.hash, t.tenant_id, t.kind, t.family_id, t.client_id, t.user_id, t.business_id, t.scope,
    t.jti, t.created_at, t.expires_at, t.revoked_at, t.rotated_at,
    f.grant_id AS f_grant_id, f.scope AS f_scope, f.auth_time AS f_auth_time, f.created_at AS f_created_at,
    f.expires_at AS f_expires_at, f.revoked_at AS f_revoked_at, u.email AS u_email
    FROM tokens t JOIN families f ON f.tenant_id = t.tenant_id AND f.id = t.family_id
    LEFT JOIN users u ON u.tenant_id = f.tenant_id AND u.id = f.user_id";
/// A family with its user's email (`rows::family_view`), if the jti `$3` is not revoked.
pub(crate) const FAMILY_OF_TOKEN: &str = "SELECT f.id AS f_id, f.tenant_id AS f_tenant_id, f.grant_id AS f_grant_id,
    f.client_id AS f_client_id, f.user_id AS f_user_id, f.business_id AS f_business_id, f.scope AS f_scope,
    f.auth_time AS f_auth_time, f.created_at AS f_created_at, f.expires_at AS f_expires_at, f.revoked_at AS f_revoked_at,
    u.email AS u_email
    FROM families f LEFT JOIN users u ON u.tenant_id = f.tenant_id AND u.id = f.user_id
    WHERE f.tenant_id = $1 AND f.id = $2 AND NOT EXISTS (SELECT 1 FROM revoked_jtis WHERE tenant_id = $1 AND jti = $3)";
pub(crate) const PERSONAL_TOKEN_SELECT: &str =
    "SELECT tenant_id, id, user_id, name, hash, scope, created_at, expires_at, last_used_at, revoked_at FROM personal_tokens";

/// How a `SecretHash` is stored here: its leading ordering bytes moved behind its HMAC bytes.
///
/// A secret's hash leads with bytes that grow with time (`latchkey_core::secret`), which is what
/// SQLite's single writer wants: each commit's new keys on one index page. PostgreSQL inserts from
/// many connections at once, and keys that all go to the index's last leaf make them queue for
/// that page's lock: measured on 2 cores, client_credentials ran 20% slower (3.9k -> 3.1k/s) and
/// PostgreSQL spent 20% more CPU per token than with the HMAC bytes in front. So every hash
/// column here holds the key rotated; [`from_key`] turns it back.
pub(crate) fn key(h: &SecretHash) -> [u8; 32] {
    let mut k = h.0;
    k.rotate_left(ORDER_LEN);
    k
}

/// The `SecretHash` of a stored [`key`].
pub(crate) fn from_key(b: &[u8]) -> Option<SecretHash> {
    let mut h = SecretHash::from_slice(b)?;
    h.0.rotate_right(ORDER_LEN);
    Some(h)
}

/// A PostgreSQL row as the shared mappers read it.
struct Pg<'r>(&'r PgRow);

impl Pg<'_> {
    fn get<'r, T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>>(&'r self, col: &str) -> StoreResult<T> {
        self.0.try_get(col).map_err(fault)
    }
}

impl rows::Row for Pg<'_> {
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

    fn opt_uuid(&self, col: &str) -> StoreResult<Option<Uuid>> {
        self.get(col)
    }

    /// A hash is stored as its [`key`].
    fn opt_hash(&self, col: &str) -> StoreResult<Option<SecretHash>> {
        let b: Option<Vec<u8>> = self.get(col)?;
        b.map(|b| from_key(&b).ok_or_else(|| corrupt(col, "is not a 32-byte hash"))).transpose()
    }
}

latchkey_store::row_mappers!(PgRow, |r| Pg(r));

/// A session with its user; the session's columns carry an `s_` prefix.
pub(crate) const SESSION_USER_SELECT: &str = "SELECT u.tenant_id, u.id, u.email, u.name, u.password_hash, u.default_business_id,
    u.developer, u.created_at, s.hash AS s_hash, s.auth_time AS s_auth_time, s.created_at AS s_created_at, s.expires_at AS s_expires_at
    FROM sessions s JOIN users u ON u.tenant_id = s.tenant_id AND u.id = s.user_id";

/// The columns of a batch of tokens, one array per column, for a single
/// `INSERT ... SELECT * FROM UNNEST(...)`: one statement however many tokens a grant issues.
pub(crate) struct TokenColumns<'a> {
    pub(crate) hash: Vec<[u8; 32]>,
    pub(crate) tenant: Vec<uuid::Uuid>,
    pub(crate) kind: Vec<&'static str>,
    pub(crate) family: Vec<uuid::Uuid>,
    pub(crate) client: Vec<&'a str>,
    pub(crate) user: Vec<Option<uuid::Uuid>>,
    pub(crate) business: Vec<Option<uuid::Uuid>>,
    pub(crate) scope: Vec<String>,
    pub(crate) jti: Vec<uuid::Uuid>,
    pub(crate) created_at: Vec<i64>,
    pub(crate) expires_at: Vec<i64>,
    pub(crate) revoked_at: Vec<Option<i64>>,
    pub(crate) rotated_at: Vec<Option<i64>>,
}

/// The arrays of `TokenColumns`, in the order of `TokenColumns::bind`.
pub(crate) const TOKEN_UNNEST: &str = "INSERT INTO tokens (hash, tenant_id, kind, family_id, client_id, user_id, business_id, scope, jti, created_at, expires_at, revoked_at, rotated_at)
    SELECT * FROM UNNEST($1::bytea[], $2::uuid[], $3::text[], $4::uuid[], $5::text[], $6::uuid[], $7::uuid[], $8::text[], $9::uuid[], $10::int8[], $11::int8[], $12::int8[], $13::int8[])";

impl<'a> TokenColumns<'a> {
    pub(crate) fn new(tokens: &'a [TokenRecord]) -> Self {
        Self {
            hash: tokens.iter().map(|t| key(&t.hash)).collect(),
            tenant: tokens.iter().map(|t| t.tenant.0).collect(),
            kind: tokens.iter().map(|t| t.kind.as_str()).collect(),
            family: tokens.iter().map(|t| t.family_id).collect(),
            client: tokens.iter().map(|t| t.client_id.as_str()).collect(),
            user: tokens.iter().map(|t| t.user_id).collect(),
            business: tokens.iter().map(|t| t.business_id).collect(),
            scope: tokens.iter().map(|t| t.scope.to_string()).collect(),
            jti: tokens.iter().map(|t| t.jti).collect(),
            created_at: tokens.iter().map(|t| t.created_at).collect(),
            expires_at: tokens.iter().map(|t| t.expires_at).collect(),
            revoked_at: tokens.iter().map(|t| t.revoked_at).collect(),
            rotated_at: tokens.iter().map(|t| t.rotated_at).collect(),
        }
    }

    /// Binds the thirteen arrays as the parameters `$1` to `$13`.
    pub(crate) fn bind<'q>(
        &'q self,
        q: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
        q.bind(&self.hash)
            .bind(&self.tenant)
            .bind(&self.kind)
            .bind(&self.family)
            .bind(&self.client)
            .bind(&self.user)
            .bind(&self.business)
            .bind(&self.scope)
            .bind(&self.jti)
            .bind(&self.created_at)
            .bind(&self.expires_at)
            .bind(&self.revoked_at)
            .bind(&self.rotated_at)
    }
}
