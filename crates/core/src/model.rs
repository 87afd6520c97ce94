//! The domain records every layer shares: tenants, users, businesses, clients, grants, codes,
//! tokens, sessions. Storage backends persist exactly these.

use crate::scope::ScopeSet;
use crate::secret::SecretHash;
use crate::UnixTime;
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// The tenant a row belongs to. Every store method takes one, so no query can forget it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TenantId(pub Uuid);

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The name of the tenant every server has.
pub const DEFAULT_TENANT: &str = "default";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    /// Lowercase letters, digits and dashes; names the tenant in the CLI.
    pub name: String,
    /// The issuer identifier; requests reach the tenant through its host and path. `None` for
    /// the default tenant, whose issuer is the server's.
    pub issuer: Option<String>,
    pub settings: TenantSettings,
    pub created_at: UnixTime,
}

/// What a tenant changes of the server's settings; `None` keeps the server's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSettings {
    /// Token lifetimes, refresh policy and access token format for the tenant's clients
    /// (each client may override them again).
    #[serde(default)]
    pub tokens: crate::grant::ClientTokenSettings,
    /// UltraCart: `state` required on authorization requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_state: Option<bool>,
    /// UltraCart's SDKs: revocation by `client_id` and `token` without the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_without_client_auth: Option<bool>,
    /// Seconds during which an exact duplicate refresh gets the same answer (0: off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_replay_window: Option<i64>,
    /// Whether a signed-in user may make themself a developer on the developer sign-up page
    /// (`None`: closed; then only an operator makes developers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub developer_signup: Option<DeveloperSignup>,
}

/// Who may become a developer (issue 26).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeveloperSignup {
    /// Only an operator makes developers (`latchkey user update --developer true`).
    #[default]
    Closed,
    /// Any signed-in user may, on `/developer/signup`.
    Open,
}

impl DeveloperSignup {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(Self::Open),
            "closed" => Some(Self::Closed),
            _ => None,
        }
    }
}

/// Tenant names: 1 to 40 of `a-z`, `0-9` and `-`, so they fit in cookie names and paths.
pub fn valid_tenant_name(name: &str) -> bool {
    (1..=40).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub tenant: TenantId,
    /// Stored lowercased; unique within a tenant.
    pub email: String,
    pub name: String,
    /// An Argon2id PHC string.
    pub password_hash: String,
    pub default_business_id: Option<Uuid>,
    /// May register and manage apps in the developer area (an operator says so, or the
    /// tenant's open developer sign-up).
    pub developer: bool,
    pub created_at: UnixTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Business {
    pub id: Uuid,
    pub tenant: TenantId,
    pub name: String,
    pub created_at: UnixTime,
}

/// The grant types a client may be registered for (RFC 6749 §4, ASVS V10.4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
    /// RFC 6749 §4.3 (YOC). RFC 9700 §2.4 says it MUST NOT be used; Latchkey ships it off by
    /// default, for confidential clients registered for it (docs/security.md PW-01).
    Password,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
            Self::Password => "password",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "authorization_code" => Some(Self::AuthorizationCode),
            "refresh_token" => Some(Self::RefreshToken),
            "client_credentials" => Some(Self::ClientCredentials),
            "password" => Some(Self::Password),
            _ => None,
        }
    }

    /// What a client may use when its registration names no grant type.
    pub const DEFAULT: [GrantType; 2] = [GrantType::AuthorizationCode, GrantType::RefreshToken];
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub tenant: TenantId,
    pub client_id: String,
    pub name: String,
    /// Who built the app, shown on the consent page (OAuth 2.1 §7.14.1).
    pub developer: String,
    /// `None` for a public client (RFC 6749 §2.1).
    pub secret_hash: Option<SecretHash>,
    pub redirect_uris: Vec<String>,
    pub scopes: ScopeSet,
    pub grant_types: Vec<GrantType>,
    /// PKCE required even though the client is confidential. Public clients always need it.
    pub require_pkce: bool,
    /// Token lifetimes and refresh policy of this client, over the server's.
    pub token_settings: crate::grant::ClientTokenSettings,
    /// When the secret was made and last used, and the secret it replaced while that still works.
    pub secret_info: SecretInfo,
    /// What the consent page shows of the app besides its name and developer.
    pub profile: ClientProfile,
    pub created_at: UnixTime,
}

/// A client with how many users have authorized it (the developer area's list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSummary {
    pub client: Client,
    /// Users with a grant to it.
    pub authorized_users: u64,
}

/// The life of a confidential client's secrets. A rotation may keep the secret it replaces
/// working for a grace period, so that an app in production switches without downtime
/// (Stripe's "roll key" with an expiry for the old one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretInfo {
    /// When the current secret was made (`None`: before this was recorded).
    pub created_at: Option<UnixTime>,
    /// When it last authenticated a request, to the hour.
    pub last_used_at: Option<UnixTime>,
    /// The secret the last rotation replaced, accepted until its `expires_at`.
    pub previous: Option<PreviousSecret>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousSecret {
    pub hash: SecretHash,
    pub created_at: Option<UnixTime>,
    /// The end of the grace period: from then on the secret is refused.
    pub expires_at: UnixTime,
    pub last_used_at: Option<UnixTime>,
}

/// Which of a client's secrets authenticated a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretUsed {
    /// A public client: no secret.
    None,
    Current,
    /// The one a rotation replaced, within its grace period.
    Previous,
}

/// The addresses the consent page links to and the logo it shows; each an absolute URL
/// (https, or http on a loopback host), or absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms_of_service: Option<String>,
    /// https only: the consent page loads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo: Option<String>,
}

impl ClientProfile {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl Client {
    pub fn is_public(&self) -> bool {
        self.secret_hash.is_none()
    }

    pub fn allows_grant(&self, g: GrantType) -> bool {
        self.grant_types.contains(&g)
    }

    /// RFC 9700 §2.1.1: public clients MUST use PKCE.
    pub fn needs_pkce(&self) -> bool {
        self.is_public() || self.require_pkce
    }
}

/// One user's consent to one client for one business and a set of scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: Uuid,
    pub tenant: TenantId,
    pub user_id: Uuid,
    pub client_id: String,
    pub business_id: Option<Uuid>,
    pub scope: ScopeSet,
    pub created_at: UnixTime,
}

/// A grant as its user sees it on the account pages: with the app's name and developer, the
/// business it acts for, and when the app last got tokens under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantSummary {
    pub grant: Grant,
    pub client_name: String,
    pub developer: String,
    pub business_name: Option<String>,
    /// When a token was last issued under the grant (a code redeemed, a refresh), as long as
    /// housekeeping has kept a trace of it.
    pub last_used_at: Option<UnixTime>,
}

/// An invitation to own an app with its developers; the invited user must accept it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerInvitation {
    pub tenant: TenantId,
    pub client_id: String,
    /// The app's name, for the invited user's list.
    pub client_name: String,
    pub user_id: Uuid,
    pub invited_by: Uuid,
    pub created_at: UnixTime,
}

/// An entry of a tenant's scope catalogue: what a scope means in words (consent and account
/// pages), and whether a person may put it on a personal access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeEntry {
    pub tenant: TenantId,
    /// A scope token (RFC 6749 §3.3).
    pub name: String,
    /// The sentence pages show for it ("Read your business's orders").
    pub description: String,
    /// Whether personal access tokens may carry it.
    pub personal: bool,
    pub created_at: UnixTime,
}

/// An authorization code, stored by hash until it is redeemed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthCode {
    pub hash: SecretHash,
    pub tenant: TenantId,
    pub client_id: String,
    pub user_id: Uuid,
    pub grant_id: Uuid,
    pub business_id: Option<Uuid>,
    pub redirect_uri: String,
    /// Whether the authorization request named `redirect_uri` (RFC 6749 §4.1.3 then requires
    /// it, identical, at the token endpoint).
    pub redirect_uri_explicit: bool,
    pub scope: ScopeSet,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub auth_time: UnixTime,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub consumed_at: Option<UnixTime>,
    /// The refresh family the redemption creates, known in advance so that a replayed code can
    /// revoke everything issued from it (OAuth 2.1 §4.1.3).
    pub family_id: Uuid,
}

/// Everything issued from one code: the chain of refresh tokens and their access tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    pub id: Uuid,
    pub tenant: TenantId,
    /// The consent behind it; `None` for a client acting for itself (client_credentials).
    pub grant_id: Option<Uuid>,
    pub client_id: String,
    /// `None` for a client acting for itself (client_credentials).
    pub user_id: Option<Uuid>,
    pub business_id: Option<Uuid>,
    pub scope: ScopeSet,
    pub auth_time: UnixTime,
    pub created_at: UnixTime,
    /// The refresh family ends here whatever the rotations (absolute lifetime).
    pub expires_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
}

/// Who a family's tokens act for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyOwner {
    /// The client itself (client_credentials): no user, no grant.
    Client,
    /// A user, through a consent (`grant`, from a code) or without one (the password grant).
    User { user_id: Uuid, grant_id: Option<Uuid>, business_id: Option<Uuid>, auth_time: UnixTime },
}

impl Family {
    /// A new family of `client_id`'s tokens, alive for `lifetime` seconds from `now`: the one
    /// way every grant starts one.
    pub fn new(id: Uuid, tenant: TenantId, client_id: &str, owner: FamilyOwner, scope: ScopeSet, now: UnixTime, lifetime: i64) -> Self {
        let (user_id, grant_id, business_id, auth_time) = match owner {
            FamilyOwner::Client => (None, None, None, now),
            FamilyOwner::User { user_id, grant_id, business_id, auth_time } => (Some(user_id), grant_id, business_id, auth_time),
        };
        Self {
            id,
            tenant,
            grant_id,
            client_id: client_id.to_owned(),
            user_id,
            business_id,
            scope,
            auth_time,
            created_at: now,
            expires_at: now + lifetime,
            revoked_at: None,
        }
    }

    /// A client's own tokens (client_credentials): no user, no grant.
    pub fn is_clients_own(&self) -> bool {
        self.user_id.is_none() && self.grant_id.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access_token",
            Self::Refresh => "refresh_token",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "access_token" => Some(Self::Access),
            "refresh_token" => Some(Self::Refresh),
            _ => None,
        }
    }
}

/// An access or refresh token, stored by hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub hash: SecretHash,
    pub tenant: TenantId,
    pub kind: TokenKind,
    pub family_id: Uuid,
    pub client_id: String,
    /// `None` for a client acting for itself (client_credentials).
    pub user_id: Option<Uuid>,
    pub business_id: Option<Uuid>,
    pub scope: ScopeSet,
    /// Names the access/refresh pair this token was issued in (the answer's `jti`).
    pub jti: Uuid,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
    /// For a refresh token: when it was exchanged for its successor.
    pub rotated_at: Option<UnixTime>,
}

/// A token as a lookup finds it, with what its family says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenView {
    pub token: TokenRecord,
    pub family: Family,
    /// The email of the family's user, read in the same query, so that introspection answers
    /// `username` without a second read. `None` for a client's own token, or when the user
    /// is gone (their families go with them, so only a race sees that).
    pub subject_email: Option<String>,
}

impl TokenView {
    /// Usable now: neither it nor its family revoked, and not expired.
    pub fn is_active(&self, now: UnixTime) -> bool {
        self.token.revoked_at.is_none()
            && self.family.revoked_at.is_none()
            && now < self.token.expires_at
            && (self.token.kind == TokenKind::Access || now < self.family.expires_at)
    }
}

/// The family of a self-contained access token, as a lookup finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyView {
    pub family: Family,
    /// The email of the family's user, read in the same query (as [`TokenView::subject_email`]).
    pub subject_email: Option<String>,
}

/// A signed-in browser. The cookie holds the secret; the store holds its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub hash: SecretHash,
    pub tenant: TenantId,
    pub user_id: Uuid,
    pub auth_time: UnixTime,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// An authorization request waiting for the user to sign in and consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    pub id: Uuid,
    pub tenant: TenantId,
    /// The hash of the browser cookie that started it; only that browser may continue it.
    pub browser_hash: SecretHash,
    /// The original request parameters, re-validated at every step.
    pub request: String,
    /// Set when the user signed in during this interaction (satisfies `prompt=login`).
    pub login: Option<(Uuid, UnixTime)>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// Signing algorithms for id_tokens (OpenID Connect Core §3.1.3.7; RFC 7518; RFC 8037).
/// RS256 is the default, the algorithm every relying party accepts (docs/security.md OI-02).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum SigningAlg {
    #[default]
    RS256,
    ES256,
    EdDSA,
}

impl SigningAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "RS256" => Some(Self::RS256),
            "ES256" => Some(Self::ES256),
            "EdDSA" => Some(Self::EdDSA),
            _ => None,
        }
    }
}

/// A signing key as stored: the private half sealed under the master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub tenant: TenantId,
    pub alg: SigningAlg,
    pub sealed_private_key: Vec<u8>,
    pub public_jwk: String,
    pub created_at: UnixTime,
    /// Published from creation, it signs only from here on, so relying parties have it
    /// before they see anything it signed.
    pub activates_at: UnixTime,
    /// When it leaves the JWKS: after every token it signed has expired. `None` while current.
    pub retires_at: Option<UnixTime>,
    /// The automatic-rotation period that made it (`now / interval`); unique per tenant and
    /// algorithm, so several nodes never rotate twice in one period.
    pub period: Option<i64>,
}

/// A token a user made for themself (YouCan's "Developer Settings"): named, scoped, expiring,
/// regenerable and revocable. Stored by hash; it can only be presented, never exchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalToken {
    pub id: Uuid,
    pub tenant: TenantId,
    pub user_id: Uuid,
    pub name: String,
    pub hash: SecretHash,
    pub scope: ScopeSet,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub last_used_at: Option<UnixTime>,
    pub revoked_at: Option<UnixTime>,
}

impl PersonalToken {
    pub fn is_active(&self, now: UnixTime) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

/// One line of a personal token's audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalTokenEvent {
    pub token_id: Uuid,
    /// `created`, `regenerated` or `revoked`.
    pub event: String,
    pub at: UnixTime,
}
