//! From a database row to a domain record, once for every backend.
//!
//! Each backend gives its rows the small [`Row`] interface (typed columns, read by the names
//! its SELECTs give them) and takes its records from the mappers here, so that a new column
//! is mapped in one place and the two backends cannot read a record differently. How a value
//! is stored stays the backend's business: a UUID is text in SQLite and `uuid` in PostgreSQL, a
//! secret's hash is stored rotated in PostgreSQL (see that backend's `key`).
//!
//! The mappers read the columns in the order of the backends' SELECTs (those on hot paths
//! exactly): SQLite's row looks a name up starting after the column it found last, so that
//! in that order each lookup is one comparison.

use crate::{StoreError, StoreResult};
use latchkey_core::model::{
    AuthCode, Business, Client, ClientSummary, Family, FamilyView, Grant, GrantSummary, Interaction, OwnerInvitation, PersonalToken,
    PersonalTokenEvent, PreviousSecret, ScopeEntry, SecretInfo, Session, SigningAlg, SigningKeyRecord, Tenant, TenantId, TokenKind,
    TokenRecord, TokenView, User,
};
use latchkey_core::scope::ScopeSet;
use latchkey_core::secret::SecretHash;
use uuid::Uuid;

/// One row of a result, its columns read by name. A NULL where a value is required, or a value
/// of the wrong type, is [`StoreError::Corrupt`] (or the backend's own fault).
pub trait Row {
    fn text(&self, col: &str) -> StoreResult<String>;
    fn opt_text(&self, col: &str) -> StoreResult<Option<String>>;
    fn int(&self, col: &str) -> StoreResult<i64>;
    fn opt_int(&self, col: &str) -> StoreResult<Option<i64>>;
    fn flag(&self, col: &str) -> StoreResult<bool>;
    fn bytes(&self, col: &str) -> StoreResult<Vec<u8>>;
    fn opt_uuid(&self, col: &str) -> StoreResult<Option<Uuid>>;
    fn opt_hash(&self, col: &str) -> StoreResult<Option<SecretHash>>;

    fn uuid(&self, col: &str) -> StoreResult<Uuid> {
        self.opt_uuid(col)?.ok_or_else(|| null(col))
    }

    fn hash(&self, col: &str) -> StoreResult<SecretHash> {
        self.opt_hash(col)?.ok_or_else(|| null(col))
    }

    /// The `tenant_id` column.
    fn tenant(&self) -> StoreResult<TenantId> {
        self.uuid("tenant_id").map(TenantId)
    }

    /// A scope set stored as its space-separated text.
    fn scope(&self, col: &str) -> StoreResult<ScopeSet> {
        ScopeSet::parse(&self.text(col)?).map_err(|_| corrupt(col, "is not a scope"))
    }

    /// A JSON document stored as text, read whole.
    fn json<T: serde::de::DeserializeOwned>(&self, col: &str) -> StoreResult<T>
    where
        Self: Sized,
    {
        serde_json::from_str(&self.text(col)?).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
    }
}

/// A JSON document as it is stored (text).
pub fn json<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// `Corrupt`, naming the column.
pub fn corrupt(col: &str, what: &str) -> StoreError {
    StoreError::Corrupt(format!("{col} {what}"))
}

fn null(col: &str) -> StoreError {
    corrupt(col, "is NULL")
}

/// Columns: `id, name, issuer, settings, created_at`.
pub fn tenant(r: &impl Row) -> StoreResult<Tenant> {
    Ok(Tenant {
        id: TenantId(r.uuid("id")?),
        name: r.text("name")?,
        issuer: r.opt_text("issuer")?,
        settings: r.json("settings")?,
        created_at: r.int("created_at")?,
    })
}

/// Columns: `tenant_id, id, email, name, password_hash, default_business_id, developer, created_at`.
pub fn user(r: &impl Row) -> StoreResult<User> {
    Ok(User {
        tenant: r.tenant()?,
        id: r.uuid("id")?,
        email: r.text("email")?,
        name: r.text("name")?,
        password_hash: r.text("password_hash")?,
        default_business_id: r.opt_uuid("default_business_id")?,
        developer: r.flag("developer")?,
        created_at: r.int("created_at")?,
    })
}

/// Columns: `tenant_id, id, name, created_at`.
pub fn business(r: &impl Row) -> StoreResult<Business> {
    Ok(Business { tenant: r.tenant()?, id: r.uuid("id")?, name: r.text("name")?, created_at: r.int("created_at")? })
}

/// Columns: `tenant_id, client_id, name, developer, secret_hash, redirect_uris, scopes,
/// grant_types, require_pkce, settings, profile, secret_created_at, secret_last_used_at,
/// previous_secret_hash, previous_secret_created_at, previous_secret_expires_at,
/// previous_secret_last_used_at, created_at` (a hot path: in this order).
pub fn client(r: &impl Row) -> StoreResult<Client> {
    Ok(Client {
        tenant: r.tenant()?,
        client_id: r.text("client_id")?,
        name: r.text("name")?,
        developer: r.text("developer")?,
        secret_hash: r.opt_hash("secret_hash")?,
        redirect_uris: r.json("redirect_uris")?,
        scopes: r.scope("scopes")?,
        grant_types: r.json("grant_types")?,
        require_pkce: r.flag("require_pkce")?,
        token_settings: r.json("settings")?,
        profile: r.json("profile")?,
        secret_info: {
            let created_at = r.opt_int("secret_created_at")?;
            let last_used_at = r.opt_int("secret_last_used_at")?;
            let hash = r.opt_hash("previous_secret_hash")?;
            let previous_created_at = r.opt_int("previous_secret_created_at")?;
            let expires_at = r.opt_int("previous_secret_expires_at")?;
            let previous_last_used_at = r.opt_int("previous_secret_last_used_at")?;
            let previous = hash.zip(expires_at).map(|(hash, expires_at)| PreviousSecret {
                hash,
                created_at: previous_created_at,
                expires_at,
                last_used_at: previous_last_used_at,
            });
            SecretInfo { created_at, last_used_at, previous }
        },
        created_at: r.int("created_at")?,
    })
}

/// Columns: those of [`client`], then `authorized_users`.
pub fn client_summary(r: &impl Row) -> StoreResult<ClientSummary> {
    Ok(ClientSummary { client: client(r)?, authorized_users: u64::try_from(r.int("authorized_users")?).unwrap_or(0) })
}

/// Columns: `tenant_id, client_id, client_name, user_id, invited_by, created_at`.
pub fn owner_invitation(r: &impl Row) -> StoreResult<OwnerInvitation> {
    Ok(OwnerInvitation {
        tenant: r.tenant()?,
        client_id: r.text("client_id")?,
        client_name: r.text("client_name")?,
        user_id: r.uuid("user_id")?,
        invited_by: r.uuid("invited_by")?,
        created_at: r.int("created_at")?,
    })
}

/// Columns: `tenant_id, kid, alg, sealed, public_jwk, created_at, activates_at, retires_at, period`.
pub fn signing_key(r: &impl Row) -> StoreResult<SigningKeyRecord> {
    let tenant = r.tenant()?;
    let kid = r.text("kid")?;
    let alg = r.text("alg")?;
    Ok(SigningKeyRecord {
        tenant,
        kid,
        alg: SigningAlg::parse(&alg).ok_or_else(|| StoreError::Corrupt(format!("unknown signing alg {alg}")))?,
        sealed_private_key: r.bytes("sealed")?,
        public_jwk: r.text("public_jwk")?,
        created_at: r.int("created_at")?,
        activates_at: r.int("activates_at")?,
        retires_at: r.opt_int("retires_at")?,
        period: r.opt_int("period")?,
    })
}

/// Columns: `hash, tenant_id, user_id, auth_time, created_at, expires_at`.
pub fn session(r: &impl Row) -> StoreResult<Session> {
    Ok(Session {
        hash: r.hash("hash")?,
        tenant: r.tenant()?,
        user_id: r.uuid("user_id")?,
        auth_time: r.int("auth_time")?,
        created_at: r.int("created_at")?,
        expires_at: r.int("expires_at")?,
    })
}

/// A session with its user: the user's columns ([`user`]), then the session's with an `s_`
/// prefix (`s_hash, s_auth_time, s_created_at, s_expires_at`).
pub fn session_with_user(r: &impl Row) -> StoreResult<(Session, User)> {
    let user = user(r)?;
    let session = Session {
        hash: r.hash("s_hash")?,
        tenant: user.tenant,
        user_id: user.id,
        auth_time: r.int("s_auth_time")?,
        created_at: r.int("s_created_at")?,
        expires_at: r.int("s_expires_at")?,
    };
    Ok((session, user))
}

/// Columns: `id, tenant_id, browser_hash, request, login_user_id, login_at, created_at, expires_at`.
pub fn interaction(r: &impl Row) -> StoreResult<Interaction> {
    Ok(Interaction {
        id: r.uuid("id")?,
        tenant: r.tenant()?,
        browser_hash: r.hash("browser_hash")?,
        request: r.text("request")?,
        login: r.opt_uuid("login_user_id")?.zip(r.opt_int("login_at")?),
        created_at: r.int("created_at")?,
        expires_at: r.int("expires_at")?,
    })
}

/// Columns: `tenant_id, id, user_id, client_id, business_id, scope, created_at`.
pub fn grant(r: &impl Row) -> StoreResult<Grant> {
    Ok(Grant {
        tenant: r.tenant()?,
        id: r.uuid("id")?,
        user_id: r.uuid("user_id")?,
        client_id: r.text("client_id")?,
        business_id: r.opt_uuid("business_id")?,
        scope: r.scope("scope")?,
        created_at: r.int("created_at")?,
    })
}

/// A grant's columns ([`grant`]), then `client_name, developer, business_name, last_used_at`.
pub fn grant_summary(r: &impl Row) -> StoreResult<GrantSummary> {
    Ok(GrantSummary {
        grant: grant(r)?,
        client_name: r.text("client_name")?,
        developer: r.text("developer")?,
        business_name: r.opt_text("business_name")?,
        last_used_at: r.opt_int("last_used_at")?,
    })
}

/// Columns: `tenant_id, name, description, personal, created_at`.
pub fn scope_entry(r: &impl Row) -> StoreResult<ScopeEntry> {
    Ok(ScopeEntry {
        tenant: r.tenant()?,
        name: r.text("name")?,
        description: r.text("description")?,
        personal: r.flag("personal")?,
        created_at: r.int("created_at")?,
    })
}

/// Columns: `hash, tenant_id, client_id, user_id, grant_id, business_id, redirect_uri,
/// redirect_uri_explicit, scope, nonce, code_challenge, auth_time, created_at, expires_at,
/// consumed_at, family_id`.
pub fn code(r: &impl Row) -> StoreResult<AuthCode> {
    Ok(AuthCode {
        hash: r.hash("hash")?,
        tenant: r.tenant()?,
        client_id: r.text("client_id")?,
        user_id: r.uuid("user_id")?,
        grant_id: r.uuid("grant_id")?,
        business_id: r.opt_uuid("business_id")?,
        redirect_uri: r.text("redirect_uri")?,
        redirect_uri_explicit: r.flag("redirect_uri_explicit")?,
        scope: r.scope("scope")?,
        nonce: r.opt_text("nonce")?,
        code_challenge: r.opt_text("code_challenge")?,
        auth_time: r.int("auth_time")?,
        created_at: r.int("created_at")?,
        expires_at: r.int("expires_at")?,
        consumed_at: r.opt_int("consumed_at")?,
        family_id: r.uuid("family_id")?,
    })
}

/// A token with its family and its user's email (a hot path: in this order). Columns: the
/// token's `hash, tenant_id, kind, family_id, client_id, user_id, business_id, scope, jti,
/// created_at, expires_at, revoked_at, rotated_at`, its family's `f_grant_id, f_scope,
/// f_auth_time, f_created_at, f_expires_at, f_revoked_at`, then `u_email`.
pub fn token_view(r: &impl Row) -> StoreResult<TokenView> {
    let hash = r.hash("hash")?;
    let tenant = r.tenant()?;
    let kind = r.text("kind")?;
    let token = TokenRecord {
        hash,
        tenant,
        kind: TokenKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("unknown token kind {kind}")))?,
        family_id: r.uuid("family_id")?,
        client_id: r.text("client_id")?,
        user_id: r.opt_uuid("user_id")?,
        business_id: r.opt_uuid("business_id")?,
        scope: r.scope("scope")?,
        jti: r.uuid("jti")?,
        created_at: r.int("created_at")?,
        expires_at: r.int("expires_at")?,
        revoked_at: r.opt_int("revoked_at")?,
        rotated_at: r.opt_int("rotated_at")?,
    };
    let family = Family {
        id: token.family_id,
        tenant: token.tenant,
        grant_id: r.opt_uuid("f_grant_id")?,
        client_id: token.client_id.clone(),
        user_id: token.user_id,
        business_id: token.business_id,
        scope: r.scope("f_scope")?,
        auth_time: r.int("f_auth_time")?,
        created_at: r.int("f_created_at")?,
        expires_at: r.int("f_expires_at")?,
        revoked_at: r.opt_int("f_revoked_at")?,
    };
    Ok(TokenView { token, family, subject_email: r.opt_text("u_email")? })
}

/// A family with its user's email. Columns, prefixed so that they may follow a client's in one
/// row: `f_id, f_tenant_id, f_grant_id, f_client_id, f_user_id, f_business_id, f_scope,
/// f_auth_time, f_created_at, f_expires_at, f_revoked_at, u_email`.
pub fn family_view(r: &impl Row) -> StoreResult<FamilyView> {
    let family = Family {
        id: r.uuid("f_id")?,
        tenant: TenantId(r.uuid("f_tenant_id")?),
        grant_id: r.opt_uuid("f_grant_id")?,
        client_id: r.text("f_client_id")?,
        user_id: r.opt_uuid("f_user_id")?,
        business_id: r.opt_uuid("f_business_id")?,
        scope: r.scope("f_scope")?,
        auth_time: r.int("f_auth_time")?,
        created_at: r.int("f_created_at")?,
        expires_at: r.int("f_expires_at")?,
        revoked_at: r.opt_int("f_revoked_at")?,
    };
    Ok(FamilyView { family, subject_email: r.opt_text("u_email")? })
}

/// Columns: `tenant_id, id, user_id, name, hash, scope, created_at, expires_at, last_used_at,
/// revoked_at`.
pub fn personal_token(r: &impl Row) -> StoreResult<PersonalToken> {
    Ok(PersonalToken {
        tenant: r.tenant()?,
        id: r.uuid("id")?,
        user_id: r.uuid("user_id")?,
        name: r.text("name")?,
        hash: r.hash("hash")?,
        scope: r.scope("scope")?,
        created_at: r.int("created_at")?,
        expires_at: r.int("expires_at")?,
        last_used_at: r.opt_int("last_used_at")?,
        revoked_at: r.opt_int("revoked_at")?,
    })
}

/// Columns: `token_id, event, at`.
pub fn personal_token_event(r: &impl Row) -> StoreResult<PersonalTokenEvent> {
    Ok(PersonalTokenEvent { token_id: r.uuid("token_id")?, event: r.text("event")?, at: r.int("at")? })
}

/// Defines, in a backend, `tenant_from_row(&ROW)` and the like: each shared mapper for the
/// backend's own row type (a function of a concrete type, as its query helpers take), with
/// `WRAP` turning the backend's row into a [`Row`].
#[macro_export]
macro_rules! row_mappers {
    ($row:ty, |$r:ident| $wrap:expr) => {
        $crate::row_mappers!(@each $row, $r, $wrap;
            tenant_from_row => tenant: ::latchkey_core::model::Tenant,
            user_from_row => user: ::latchkey_core::model::User,
            business_from_row => business: ::latchkey_core::model::Business,
            client_from_row => client: ::latchkey_core::model::Client,
            client_summary_from_row => client_summary: ::latchkey_core::model::ClientSummary,
            owner_invitation_from_row => owner_invitation: ::latchkey_core::model::OwnerInvitation,
            signing_key_from_row => signing_key: ::latchkey_core::model::SigningKeyRecord,
            session_from_row => session: ::latchkey_core::model::Session,
            session_user_from_row => session_with_user: (::latchkey_core::model::Session, ::latchkey_core::model::User),
            interaction_from_row => interaction: ::latchkey_core::model::Interaction,
            grant_from_row => grant: ::latchkey_core::model::Grant,
            grant_summary_from_row => grant_summary: ::latchkey_core::model::GrantSummary,
            scope_entry_from_row => scope_entry: ::latchkey_core::model::ScopeEntry,
            code_from_row => code: ::latchkey_core::model::AuthCode,
            token_view_from_row => token_view: ::latchkey_core::model::TokenView,
            family_view_from_row => family_view: ::latchkey_core::model::FamilyView,
            personal_token_from_row => personal_token: ::latchkey_core::model::PersonalToken,
            personal_token_event_from_row => personal_token_event: ::latchkey_core::model::PersonalTokenEvent,
        );
    };
    (@each $row:ty, $r:ident, $wrap:expr; $($name:ident => $shared:ident: $record:ty),* $(,)?) => {
        $(
            #[allow(dead_code)]
            pub(crate) fn $name($r: &$row) -> $crate::StoreResult<$record> {
                $crate::rows::$shared(&$wrap)
            }
        )*
    };
}
