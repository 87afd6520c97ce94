//! The storage boundary of Latchkey: one trait per aggregate (tenants, users, clients, tokens,
//! ...), [`Store`] the sum of them, and one implementation per database. The backends read
//! their rows into records through the shared mappers of [`rows`].
//!
//! Architecture invariant: every method takes the `TenantId` its rows belong to, so no query
//! can forget the tenant. Operations that must be atomic (redeeming a code, rotating a refresh
//! token) are single methods, so no caller can split them.

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod rows;

use async_trait::async_trait;
use latchkey_core::guessing::AttemptCount;
use latchkey_core::model::{
    AuthCode, Business, Client, ClientSummary, Family, FamilyView, Grant, GrantSummary, Interaction, OwnerInvitation, PersonalToken,
    PersonalTokenEvent, ScopeEntry, Session, SigningKeyRecord, Tenant, TenantId, TokenRecord, TokenView, User,
};
use latchkey_core::secret::SecretHash;
use latchkey_core::UnixTime;
use std::sync::Arc;
use uuid::Uuid;

/// A storage failure. `Conflict` and `NotFound` are answers; the others are faults.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique value (an email, a name, an id) is already taken.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The database is unreachable or busy beyond its timeout; the request may be retried.
    #[error("database unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("database error")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored value could not be decoded.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A value no store can hold, refused before it was written or looked up: text with a
    /// NUL byte (see [`check_text`]). The caller's input was wrong, not the database.
    #[error("invalid value: {0}")]
    Invalid(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Refuses text that a store cannot hold. PostgreSQL's `text` cannot store a NUL byte (it
/// answers SQLSTATE 22021), so neither store takes one, and both refuse it the same way: with
/// [`StoreError::Invalid`], never a database failure. The server checks every input against
/// its grammar before it gets here (`latchkey_core::text`); this is the floor beneath that.
pub fn check_text<'a>(values: impl IntoIterator<Item = &'a str>) -> StoreResult<()> {
    match values.into_iter().find(|v| v.as_bytes().contains(&0)) {
        None => Ok(()),
        Some(v) => Err(StoreError::Invalid(format!("text with a NUL byte ({} bytes)", v.len()))),
    }
}

/// The free text of a record, for [`check_text`]. Scope sets are left out: a `ScopeSet` holds
/// only scope tokens (`NQCHAR`) by construction. An iterator, so that the check allocates
/// nothing (it runs on the token endpoint's writes).
pub trait Texts {
    fn texts(&self) -> impl Iterator<Item = &str>;

    /// [`check_text`] on every text of the record.
    fn check_texts(&self) -> StoreResult<()> {
        check_text(self.texts())
    }
}

impl Texts for Tenant {
    fn texts(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name.as_str()).chain(self.issuer.as_deref())
    }
}

impl Texts for User {
    fn texts(&self) -> impl Iterator<Item = &str> {
        [self.email.as_str(), &self.name, &self.password_hash].into_iter()
    }
}

impl Texts for Business {
    fn texts(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name.as_str())
    }
}

impl Texts for Client {
    fn texts(&self) -> impl Iterator<Item = &str> {
        let p = &self.profile;
        [self.client_id.as_str(), &self.name, &self.developer]
            .into_iter()
            .chain(self.redirect_uris.iter().map(String::as_str))
            .chain([&p.website, &p.privacy_policy, &p.terms_of_service, &p.logo].into_iter().filter_map(|u| u.as_deref()))
    }
}

impl Texts for Grant {
    fn texts(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.client_id.as_str())
    }
}

impl Texts for AuthCode {
    fn texts(&self) -> impl Iterator<Item = &str> {
        [self.client_id.as_str(), &self.redirect_uri].into_iter().chain(self.nonce.as_deref()).chain(self.code_challenge.as_deref())
    }
}

impl Texts for Family {
    fn texts(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.client_id.as_str())
    }
}

impl Texts for [TokenRecord] {
    fn texts(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|t| t.client_id.as_str())
    }
}

impl Texts for Interaction {
    fn texts(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.request.as_str())
    }
}

impl Texts for ScopeEntry {
    fn texts(&self) -> impl Iterator<Item = &str> {
        [self.name.as_str(), &self.description].into_iter()
    }
}

impl Texts for PersonalToken {
    fn texts(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name.as_str())
    }
}

impl Texts for SigningKeyRecord {
    fn texts(&self) -> impl Iterator<Item = &str> {
        [self.kid.as_str(), &self.public_jwk].into_iter()
    }
}

/// What happened to a code redemption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedeemOutcome {
    /// The code was unconsumed; it is now consumed and the family and tokens exist.
    Redeemed,
    /// Somebody redeemed it first; nothing was written.
    AlreadyConsumed,
    /// The grant the code was issued under is gone (consent withdrawn, the business or the
    /// user removed); nothing was written.
    GrantGone,
}

/// What happened to a refresh rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The token was live; it is now rotated and its successors exist.
    Rotated,
    /// The token had already been rotated (or revoked); nothing was written.
    NotCurrent,
}

/// The answer to a refresh, kept so that an exact duplicate of the request within a short
/// window gets the same answer instead of an error (a client whose response was lost keeps its
/// session). `sealed` is encrypted under a key derived from the old refresh token itself, so
/// only its presenter can read it; the store never sees the answer in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedReplay {
    pub sealed: Vec<u8>,
    /// The end of the window: from then on a duplicate is reuse.
    pub until: UnixTime,
}

pub type SharedStore = Arc<dyn Store>;

/// The whole store: every aggregate's methods. Implement the parts; `Store` comes with them.
pub trait Store:
    TenantStore
    + UserStore
    + BusinessStore
    + ClientStore
    + SigningKeyStore
    + SessionStore
    + PersonalTokenStore
    + AttemptStore
    + GrantStore
    + ScopeStore
    + TokenStore
    + HousekeepingStore
    + 'static
{
}

impl<
        T: TenantStore
            + UserStore
            + BusinessStore
            + ClientStore
            + SigningKeyStore
            + SessionStore
            + PersonalTokenStore
            + AttemptStore
            + GrantStore
            + ScopeStore
            + TokenStore
            + HousekeepingStore
            + 'static,
    > Store for T
{
}

/// Tenants and server-wide values.
#[async_trait]
pub trait TenantStore: Send + Sync {
    /// Returns the tenant with this name, creating it if it does not exist.
    async fn ensure_tenant(&self, name: &str, now: UnixTime) -> StoreResult<Tenant>;
    async fn find_tenant_by_name(&self, name: &str) -> StoreResult<Option<Tenant>>;
    /// Creates a tenant; its name and issuer are unique.
    async fn insert_tenant(&self, tenant: &Tenant) -> StoreResult<()>;
    /// Every tenant, oldest first.
    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>>;
    /// Changes a tenant's issuer and settings.
    async fn update_tenant(&self, tenant: &Tenant) -> StoreResult<bool>;

    /// Stores `value` under `name` unless a value is there already, and returns the stored
    /// value: the first writer wins (every node then checks it has the same master key).
    async fn ensure_setting(&self, name: &str, value: &str) -> StoreResult<String>;
}

/// Users (the people who sign in).
#[async_trait]
pub trait UserStore: Send + Sync {
    async fn insert_user(&self, user: &User) -> StoreResult<()>;
    async fn find_user(&self, tenant: TenantId, id: Uuid) -> StoreResult<Option<User>>;
    async fn find_user_by_email(&self, tenant: TenantId, email: &str) -> StoreResult<Option<User>>;
    /// The user and the ids of their businesses, oldest membership first (what an id_token and
    /// UserInfo say of a user), in one round trip.
    async fn find_user_with_businesses(&self, tenant: TenantId, id: Uuid) -> StoreResult<Option<(User, Vec<Uuid>)>>;
    async fn list_users(&self, tenant: TenantId) -> StoreResult<Vec<User>>;
    /// Deletes the user and everything that belongs to them (grants, codes, tokens, sessions).
    async fn delete_user(&self, tenant: TenantId, id: Uuid) -> StoreResult<bool>;
    async fn update_user_default_business(&self, tenant: TenantId, user: Uuid, business: Option<Uuid>) -> StoreResult<()>;
    /// Changes a user's email and name; `Conflict` if the email is another user's, false if
    /// the user is unknown.
    async fn update_user(&self, tenant: TenantId, user: Uuid, email: &str, name: &str) -> StoreResult<bool>;
    /// Sets a user's password hash and ends every session of theirs but `keep` (a password
    /// change signs out the other browsers). False if the user is unknown.
    async fn update_user_password(&self, tenant: TenantId, user: Uuid, password_hash: &str, keep: Option<SecretHash>) -> StoreResult<bool>;
    /// Lets a user register apps, or no longer; false if the user is unknown.
    async fn update_user_developer(&self, tenant: TenantId, user: Uuid, developer: bool) -> StoreResult<bool>;
}

/// Businesses and who belongs to them.
#[async_trait]
pub trait BusinessStore: Send + Sync {
    async fn insert_business(&self, business: &Business) -> StoreResult<()>;
    async fn find_business_by_name(&self, tenant: TenantId, name: &str) -> StoreResult<Option<Business>>;
    /// Adds the user to the business; adding twice is not an error.
    async fn insert_membership(&self, tenant: TenantId, business: Uuid, user: Uuid, now: UnixTime) -> StoreResult<()>;
    async fn delete_membership(&self, tenant: TenantId, business: Uuid, user: Uuid) -> StoreResult<bool>;
    /// Ends what a user authorized for a business: revokes the families and deletes the grants
    /// (consents) bound to it. Returns how many families were revoked.
    async fn revoke_user_business(&self, tenant: TenantId, user: Uuid, business: Uuid, now: UnixTime) -> StoreResult<u64>;
    /// Every business of the tenant, by name.
    async fn list_businesses(&self, tenant: TenantId) -> StoreResult<Vec<Business>>;
    /// The businesses a user belongs to, oldest membership first.
    async fn list_user_businesses(&self, tenant: TenantId, user: Uuid) -> StoreResult<Vec<Business>>;
}

/// Clients (registered applications).
#[async_trait]
pub trait ClientStore: Send + Sync {
    /// Registers a client with its owners (the developers who manage it; none for a client an
    /// operator registered), at once.
    async fn insert_client(&self, client: &Client, owners: &[Uuid]) -> StoreResult<()>;
    async fn find_client(&self, tenant: TenantId, client_id: &str) -> StoreResult<Option<Client>>;
    async fn list_clients(&self, tenant: TenantId) -> StoreResult<Vec<Client>>;
    /// The clients `owner` owns, with how many users have authorized each, by name.
    async fn list_owned_clients(&self, tenant: TenantId, owner: Uuid) -> StoreResult<Vec<ClientSummary>>;
    /// The users who own a client, oldest first.
    async fn list_client_owners(&self, tenant: TenantId, client_id: &str) -> StoreResult<Vec<Uuid>>;
    /// Invites a user to own a client; inviting again renews the invitation.
    async fn upsert_owner_invitation(&self, invitation: &OwnerInvitation) -> StoreResult<()>;
    /// A client's open invitations (`client_id`), or a user's (`user`), oldest first.
    async fn list_owner_invitations(
        &self,
        tenant: TenantId,
        client_id: Option<&str>,
        user: Option<Uuid>,
    ) -> StoreResult<Vec<OwnerInvitation>>;
    /// Ends an invitation; with `accept`, the user becomes an owner in the same transaction.
    /// False, and nothing changed, when there was no such invitation.
    async fn close_owner_invitation(&self, tenant: TenantId, client_id: &str, user: Uuid, accept: bool, now: UnixTime)
        -> StoreResult<bool>;
    /// Removes an owner, unless they are the last one (an app keeps someone to manage it).
    /// False, and nothing changed, when they were not an owner or were the last.
    async fn delete_client_owner(&self, tenant: TenantId, client_id: &str, user: Uuid) -> StoreResult<bool>;
    /// Deletes the client and every grant, code and token issued to it.
    async fn delete_client(&self, tenant: TenantId, client_id: &str) -> StoreResult<bool>;
    /// Gives a confidential client a new secret made at `now`. With `previous_until`, the
    /// secret it replaces keeps working until then (a grace period); without, it stops at
    /// once, and so does a secret kept from an earlier rotation. False if the client is
    /// unknown or public.
    async fn rotate_client_secret(
        &self,
        tenant: TenantId,
        client_id: &str,
        secret_hash: SecretHash,
        now: UnixTime,
        previous_until: Option<UnixTime>,
    ) -> StoreResult<bool>;
    /// Records that the current secret (or, with `previous`, the replaced one) authenticated a
    /// request at `now`.
    async fn record_client_secret_use(&self, tenant: TenantId, client_id: &str, previous: bool, now: UnixTime) -> StoreResult<()>;
    /// Replaces what a client is registered with (name, developer, redirect URIs, scopes, grant
    /// types, PKCE, token settings, profile); its id, secrets and creation stay. False if unknown.
    async fn update_client(&self, client: &Client) -> StoreResult<bool>;
}

/// Signing keys.
#[async_trait]
pub trait SigningKeyStore: Send + Sync {
    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> StoreResult<()>;
    /// Atomically adds a key and schedules the retirement of every current key of the same
    /// algorithm (keys of other algorithms are not superseded by it). Returns
    /// false, writing nothing, if a key of the same algorithm and `period` exists already
    /// (another node rotated first).
    async fn rotate_signing_key(&self, key: &SigningKeyRecord, retire_others_at: UnixTime) -> StoreResult<bool>;
    /// Every key of the tenant, newest first.
    async fn list_signing_keys(&self, tenant: TenantId) -> StoreResult<Vec<SigningKeyRecord>>;
}

/// Browser sessions and pending authorization requests.
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn insert_session(&self, session: &Session) -> StoreResult<()>;
    async fn find_session(&self, tenant: TenantId, hash: SecretHash) -> StoreResult<Option<Session>>;
    /// The session and its user, in one round trip (`/authorize` needs both).
    async fn find_session_with_user(&self, tenant: TenantId, hash: SecretHash) -> StoreResult<Option<(Session, User)>>;
    async fn delete_session(&self, tenant: TenantId, hash: SecretHash) -> StoreResult<()>;
    async fn insert_interaction(&self, interaction: &Interaction) -> StoreResult<()>;
    async fn find_interaction(&self, tenant: TenantId, id: Uuid) -> StoreResult<Option<Interaction>>;
    async fn update_interaction_login(&self, tenant: TenantId, id: Uuid, user: Uuid, at: UnixTime) -> StoreResult<()>;
    async fn delete_interaction(&self, tenant: TenantId, id: Uuid) -> StoreResult<()>;
}

/// Personal access tokens.
#[async_trait]
pub trait PersonalTokenStore: Send + Sync {
    /// Stores a new personal token and its `created` event.
    async fn insert_personal_token(&self, token: &PersonalToken) -> StoreResult<()>;
    async fn find_personal_token(&self, tenant: TenantId, id: Uuid) -> StoreResult<Option<PersonalToken>>;
    async fn find_personal_token_by_hash(&self, tenant: TenantId, hash: SecretHash) -> StoreResult<Option<PersonalToken>>;
    /// A user's tokens, newest first.
    async fn list_personal_tokens(&self, tenant: TenantId, user: Uuid) -> StoreResult<Vec<PersonalToken>>;
    /// Replaces the secret of a live token (same record), recording `regenerated`; false if
    /// the token is unknown or revoked.
    async fn update_personal_token_secret(&self, tenant: TenantId, id: Uuid, hash: SecretHash, now: UnixTime) -> StoreResult<bool>;
    /// Revokes a token, recording `revoked`; false if unknown or already revoked.
    async fn revoke_personal_token(&self, tenant: TenantId, id: Uuid, now: UnixTime) -> StoreResult<bool>;
    async fn update_personal_token_last_used(&self, tenant: TenantId, id: Uuid, now: UnixTime) -> StoreResult<()>;
    /// The audit trail of a token, oldest first.
    async fn list_personal_token_events(&self, tenant: TenantId, id: Uuid) -> StoreResult<Vec<PersonalTokenEvent>>;
}

/// Guessing counters.
#[async_trait]
pub trait AttemptStore: Send + Sync {
    /// Atomically counts one attempt for `key`, starting a new window when the current one
    /// (of `window` seconds) has ended, and returns the count.
    async fn record_attempt(&self, tenant: TenantId, key: &str, now: UnixTime, window: i64) -> StoreResult<AttemptCount>;
    /// Takes one attempt back (a success that should not count against a shared budget).
    async fn release_attempt(&self, tenant: TenantId, key: &str) -> StoreResult<()>;
    /// Forgets the key's attempts (a successful sign-in clears its account).
    async fn clear_attempts(&self, tenant: TenantId, key: &str) -> StoreResult<()>;
}

/// Grants (consents).
#[async_trait]
pub trait GrantStore: Send + Sync {
    /// The user's grant to this client, if any.
    async fn find_grant(&self, tenant: TenantId, user: Uuid, client_id: &str) -> StoreResult<Option<Grant>>;
    /// Records a grant, replacing an earlier grant of the same user to the same client.
    async fn upsert_grant(&self, grant: &Grant) -> StoreResult<Grant>;
    /// A user's grants with their apps and businesses, by app name.
    async fn list_user_grants(&self, tenant: TenantId, user: Uuid) -> StoreResult<Vec<GrantSummary>>;
    /// Ends a grant of `user` at once: its families are revoked (every access and refresh
    /// token issued under it), its unredeemed codes and the grant itself deleted. False, and
    /// nothing changed, when the user has no such grant.
    async fn revoke_grant(&self, tenant: TenantId, user: Uuid, grant: Uuid, now: UnixTime) -> StoreResult<bool>;
}

/// The scope catalogue.
#[async_trait]
pub trait ScopeStore: Send + Sync {
    /// The tenant's stored catalogue entries, by name.
    async fn list_scopes(&self, tenant: TenantId) -> StoreResult<Vec<ScopeEntry>>;
    /// Adds an entry or replaces the description and personal flag of an existing one.
    async fn upsert_scope(&self, entry: &ScopeEntry) -> StoreResult<()>;
    async fn delete_scope(&self, tenant: TenantId, name: &str) -> StoreResult<bool>;
}

/// Codes, token families and their tokens: what the grants issue and the endpoints check.
#[async_trait]
pub trait TokenStore: ClientStore {
    async fn insert_code(&self, code: &AuthCode) -> StoreResult<()>;
    async fn find_code(&self, tenant: TenantId, hash: SecretHash) -> StoreResult<Option<AuthCode>>;
    /// Atomically marks the code consumed and creates the family and its first tokens; if the
    /// code was already consumed, writes nothing (docs/security.md AC-06).
    async fn redeem_code(
        &self,
        tenant: TenantId,
        hash: SecretHash,
        now: UnixTime,
        family: &Family,
        tokens: &[TokenRecord],
    ) -> StoreResult<RedeemOutcome>;

    /// Redeems a sealed code (`core::sealed_code`), which has no row until now: atomically, if
    /// its grant still exists (for its user and client) and no code with its hash was stored,
    /// stores it consumed at `now` and creates the family and its first tokens; otherwise writes
    /// nothing and says why (docs/security.md AC-06).
    async fn redeem_sealed_code(
        &self,
        code: &AuthCode,
        now: UnixTime,
        family: &Family,
        tokens: &[TokenRecord],
    ) -> StoreResult<RedeemOutcome>;

    /// Creates a family with its tokens at once (a grant that redeems no code:
    /// client_credentials).
    async fn insert_family(&self, tenant: TenantId, family: &Family, tokens: &[TokenRecord]) -> StoreResult<()>;
    async fn find_token(&self, tenant: TenantId, hash: SecretHash) -> StoreResult<Option<TokenView>>;
    /// The client `client_id` and the token stored under `hash`, read together: what an
    /// introspection needs (the caller, then the token it asks about). The two answers are
    /// those of `find_client` and `find_token`; a store may read both in one go (SQLite: one
    /// statement, when the client is cached).
    async fn find_client_and_token(
        &self,
        tenant: TenantId,
        client_id: &str,
        hash: SecretHash,
    ) -> StoreResult<(Option<Client>, Option<TokenView>)> {
        Ok((self.find_client(tenant, client_id).await?, self.find_token(tenant, hash).await?))
    }
    /// Atomically marks a live refresh token rotated and inserts its successors; if it was not
    /// live (rotated or revoked, itself or its family), writes nothing. A failure leaves the
    /// old token usable (docs/security.md RT-08).
    ///
    /// With `replay`, the old token keeps the sealed answer until `replay.until`, and records
    /// which refresh token replaced it, for [`TokenStore::find_replay`].
    async fn rotate_refresh_token(
        &self,
        tenant: TenantId,
        old: SecretHash,
        now: UnixTime,
        tokens: &[TokenRecord],
        replay: Option<&SealedReplay>,
    ) -> StoreResult<RotateOutcome>;
    /// The sealed answer kept when `old` was rotated, if `now` is before its `until`, the
    /// family is not revoked, and the refresh token that replaced `old` is still current
    /// (neither rotated nor revoked): a duplicate may only get an answer nobody has used yet.
    async fn find_replay(&self, tenant: TenantId, old: SecretHash, now: UnixTime) -> StoreResult<Option<Vec<u8>>>;
    async fn revoke_token(&self, tenant: TenantId, hash: SecretHash, now: UnixTime) -> StoreResult<()>;
    /// Revokes a family: every token issued from one code.
    async fn revoke_family(&self, tenant: TenantId, family: Uuid, now: UnixTime) -> StoreResult<()>;

    /// Revokes the self-contained token `jti` of `client_id` until it expires at `expires_at`
    /// (RFC 7009 §2.2); nothing if the client is gone. Revoking it again changes nothing.
    async fn revoke_jti(&self, tenant: TenantId, client_id: &str, jti: Uuid, expires_at: UnixTime, now: UnixTime) -> StoreResult<()>;
    /// Whether a self-contained token of `client_id` with `jti` may still be honoured: its
    /// client exists and the jti is not revoked. One read.
    async fn self_contained_token_live(&self, tenant: TenantId, client_id: &str, jti: Uuid) -> StoreResult<bool>;
    /// The family `family` of a user's self-contained token `jti`, with its user's email, if
    /// the family exists and the jti is not revoked (whether the family itself is revoked is
    /// in it). One read.
    async fn find_family_of_token(&self, tenant: TenantId, family: Uuid, jti: Uuid) -> StoreResult<Option<FamilyView>>;
    /// The client `client_id` and what `find_family_of_token` reads for `family` and `jti`,
    /// read together: what an introspection of a user's sealed token needs. A store may read
    /// both in one go (SQLite: one statement, when the client is cached; PostgreSQL: one
    /// statement), and need not read the family when there is no such client.
    async fn find_client_and_family(
        &self,
        tenant: TenantId,
        client_id: &str,
        family: Uuid,
        jti: Uuid,
    ) -> StoreResult<(Option<Client>, Option<FamilyView>)> {
        Ok((self.find_client(tenant, client_id).await?, self.find_family_of_token(tenant, family, jti).await?))
    }
}

/// Housekeeping.
#[async_trait]
pub trait HousekeepingStore: Send + Sync {
    /// Deletes at most `limit` rows of each kind that can no longer matter at `now`: expired
    /// codes, sessions and interactions; replay answers past their window; expired access and refresh tokens (a rotated refresh
    /// token is kept until its own expiry, for reuse detection); families past their absolute
    /// lifetime or with no unexpired token left (with their tokens); counters of ended windows;
    /// personal tokens expired or revoked before `pat_before`; revoked jtis of expired tokens.
    /// A live refresh family is never touched.
    async fn delete_expired(
        &self,
        tenant: TenantId,
        now: UnixTime,
        attempts_before: UnixTime,
        pat_before: UnixTime,
        limit: u32,
    ) -> StoreResult<Cleanup>;
    /// How many rows each table holds, for housekeeping and metrics.
    async fn count_rows(&self, tenant: TenantId) -> StoreResult<RowCounts>;
}

/// Rows removed by one `delete_expired` pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cleanup {
    pub codes: u64,
    /// Replay answers erased (the token row stays).
    pub replays: u64,
    pub tokens: u64,
    pub families: u64,
    pub sessions: u64,
    pub interactions: u64,
    pub attempts: u64,
    pub personal_tokens: u64,
    pub revoked_jtis: u64,
}

impl Cleanup {
    /// Every count, in field order.
    pub fn counts(&self) -> [u64; 9] {
        [
            self.codes,
            self.replays,
            self.tokens,
            self.families,
            self.sessions,
            self.interactions,
            self.attempts,
            self.personal_tokens,
            self.revoked_jtis,
        ]
    }

    pub fn total(&self) -> u64 {
        self.counts().iter().sum()
    }
}

impl std::ops::AddAssign for Cleanup {
    fn add_assign(&mut self, c: Cleanup) {
        self.codes += c.codes;
        self.replays += c.replays;
        self.tokens += c.tokens;
        self.families += c.families;
        self.sessions += c.sessions;
        self.interactions += c.interactions;
        self.attempts += c.attempts;
        self.personal_tokens += c.personal_tokens;
        self.revoked_jtis += c.revoked_jtis;
    }
}

/// Rows per table of one tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowCounts {
    pub codes: u64,
    pub tokens: u64,
    pub families: u64,
    pub sessions: u64,
    pub interactions: u64,
}

/// Every part of [`Store`], for code that calls a store of a concrete type:
/// `use latchkey_store::prelude::*`. (Through `dyn Store` every method is at hand without it.)
pub mod prelude {
    pub use crate::{
        AttemptStore, BusinessStore, ClientStore, GrantStore, HousekeepingStore, PersonalTokenStore, ScopeStore, SessionStore,
        SigningKeyStore, Store, TenantStore, TokenStore, UserStore,
    };
}
