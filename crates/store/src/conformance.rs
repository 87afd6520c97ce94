//! The conformance suite every `Store` backend must pass: one `pub async fn` per behaviour,
//! each taking a fresh, empty store.
//!
//! A backend crate runs the suite either with [`run_all`] (one test, every case in turn, a new
//! store for each) or with [`conformance_tests!`](crate::conformance_tests), which expands to one
//! `#[tokio::test]` per case so that failures are reported by name:
//!
//! ```text
//! async fn fresh() -> (SharedStore, tempfile::TempDir) { /* a new empty database */ }
//! latchkey_store::conformance_tests!(fresh);
//! ```
//!
//! The concurrency cases spawn tasks with `tokio::spawn`, so they need a Tokio runtime (the
//! macro asks for a multi-threaded one, so that the attempts really race).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::{Cleanup, RedeemOutcome, RotateOutcome, SealedReplay, SharedStore, StoreError};
use latchkey_core::model::{
    AuthCode, Business, Client, ClientProfile, ClientSummary, Family, Grant, GrantType, Interaction, OwnerInvitation, PersonalToken,
    PreviousSecret, ScopeEntry, SecretInfo, Session, SigningAlg, SigningKeyRecord, Tenant, TenantId, TenantSettings, TokenKind,
    TokenRecord, TokenView, User,
};
use latchkey_core::scope::ScopeSet;
use latchkey_core::secret::SecretHash;
use latchkey_core::UnixTime;
use std::future::Future;
use uuid::Uuid;

/// The clock of every fixture.
const NOW: UnixTime = 1_700_000_000;
/// How many tasks race in the concurrency cases.
const RACERS: u16 = 16;

/// Calls `$then!` with the name of every conformance case: the one list of them, which both
/// [`conformance_tests!`](crate::conformance_tests) and [`run_all`] read.
#[macro_export]
#[doc(hidden)]
macro_rules! conformance_cases {
    ($then:ident!($($args:tt)*)) => {
        $crate::$then! {$($args)* ;
            tenants_ensure_is_idempotent,
            users_insert_find_and_email_lookup,
            users_duplicate_email_conflicts_within_a_tenant_only,
            users_list_and_delete_cascades,
            tenant_isolation,
            businesses_and_memberships,
            clients_crud_and_secret_rotation,
            clients_duplicate_id_conflicts,
            client_secrets_rotate_with_a_grace_period,
            clients_have_owners_and_profiles,
            owner_invitations_are_accepted_or_declined,
            signing_keys_newest_first,
            sessions_and_interactions,
            grants_upsert_keeps_one_grant,
            codes_redeem_exactly_once,
            codes_concurrent_redemption_has_one_winner,
            sealed_codes_redeem_once_while_their_grant_lives,
            refresh_rotation,
            refresh_concurrent_rotation_has_one_winner,
            client_and_token_read_together,
            revocation,
            client_families_have_no_user,
            self_contained_tokens_revoke_by_jti,
            users_self_contained_tokens_follow_their_family,
            personal_tokens_lifecycle,
            housekeeping_deletes_only_what_cannot_matter,
            removing_a_business_revokes_its_access,
            refresh_replay_answer_lives_only_in_its_window,
            settings_first_writer_wins,
            concurrent_writes_fail_alone,
            text_with_a_nul_is_refused,
            grants_are_listed_and_revoked_with_everything_issued_under_them,
            a_password_change_ends_the_other_sessions,
            scope_catalogue,
            users_and_clients_are_updated_in_place,
        }
    };
}

/// Expands to one `#[tokio::test]` per conformance case. `$make` names an async function (or a
/// closure returning a future) whose output is `(SharedStore, G)`: a fresh, empty store and a
/// guard (a temporary directory, a container) kept alive until the case ends.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_cases!(conformance_tests!(@cases $make));
    };
    (@cases $make:expr ; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (store, _guard) = ($make)().await;
                $crate::conformance::$case(store).await;
            }
        )*
    };
}

/// Runs the cases named after `make`, in turn, each on a new store.
#[macro_export]
#[doc(hidden)]
macro_rules! conformance_run_all {
    ($make:expr ; $($case:ident),* $(,)?) => {
        $( $crate::conformance::$case($make().await).await; )*
    };
}

/// Runs every case in turn, each on a new store from `make`.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = SharedStore>,
{
    crate::conformance_cases!(conformance_run_all!(make));
}

/// Counts the cases `conformance_cases!` names.
#[macro_export]
#[doc(hidden)]
macro_rules! conformance_count {
    ( ; $($case:ident),* $(,)?) => {
        [$(stringify!($case)),*].len()
    };
}

/// How many conformance cases there are.
pub const CASES: usize = crate::conformance_cases!(conformance_count!());

// ---------------------------------------------------------------------------------------------
// Fixtures.

/// A distinct hash per `n`, in the spirit of `SecretHash([n; 32])` but with room for more than
/// 256 of them.
fn h(n: u16) -> SecretHash {
    let mut b = [0x5a; 32];
    b[..2].copy_from_slice(&n.to_be_bytes());
    SecretHash(b)
}

fn scope(s: &str) -> ScopeSet {
    ScopeSet::parse(s).unwrap()
}

async fn tenant(store: &SharedStore, name: &str) -> TenantId {
    store.ensure_tenant(name, NOW).await.unwrap().id
}

fn user(tenant: TenantId, email: &str) -> User {
    User {
        developer: false,
        id: Uuid::new_v4(),
        tenant,
        email: email.to_owned(),
        name: format!("User {email}"),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        default_business_id: None,
        created_at: NOW,
    }
}

fn business(tenant: TenantId, name: &str) -> Business {
    Business { id: Uuid::new_v4(), tenant, name: name.to_owned(), created_at: NOW }
}

fn client(tenant: TenantId, client_id: &str, secret_hash: Option<SecretHash>) -> Client {
    Client {
        profile: Default::default(),
        secret_info: Default::default(),
        tenant,
        client_id: client_id.to_owned(),
        name: format!("App {client_id}"),
        developer: "Acme".to_owned(),
        secret_hash,
        redirect_uris: vec![format!("https://{client_id}.example/cb"), "http://127.0.0.1/cb".to_owned()],
        scopes: scope("openid profile email offline_access"),
        grant_types: GrantType::DEFAULT.to_vec(),
        require_pkce: secret_hash.is_some(),
        // A non-default value, so that a backend that drops it fails the round trip.
        token_settings: latchkey_core::grant::ClientTokenSettings { access_token_lifetime: Some(1_295_999), ..Default::default() },
        created_at: NOW,
    }
}

fn grant(tenant: TenantId, user: Uuid, client_id: &str, business_id: Option<Uuid>, s: &str) -> Grant {
    Grant { id: Uuid::new_v4(), tenant, user_id: user, client_id: client_id.to_owned(), business_id, scope: scope(s), created_at: NOW }
}

fn code(tenant: TenantId, hash: SecretHash, user: Uuid, client_id: &str, grant_id: Uuid) -> AuthCode {
    AuthCode {
        hash,
        tenant,
        client_id: client_id.to_owned(),
        user_id: user,
        grant_id,
        business_id: None,
        redirect_uri: format!("https://{client_id}.example/cb"),
        redirect_uri_explicit: true,
        scope: scope("openid offline_access"),
        nonce: Some("n-0S6_WzA2Mj".to_owned()),
        code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".to_owned()),
        auth_time: NOW - 5,
        created_at: NOW,
        expires_at: NOW + 60,
        consumed_at: None,
        family_id: Uuid::new_v4(),
    }
}

/// The family a redemption of `c` creates.
fn family(c: &AuthCode) -> Family {
    Family {
        id: c.family_id,
        tenant: c.tenant,
        grant_id: Some(c.grant_id),
        client_id: c.client_id.clone(),
        user_id: Some(c.user_id),
        business_id: c.business_id,
        scope: c.scope.clone(),
        auth_time: c.auth_time,
        created_at: NOW,
        expires_at: NOW + 30 * 86_400,
        revoked_at: None,
    }
}

fn token(f: &Family, kind: TokenKind, hash: SecretHash, jti: Uuid) -> TokenRecord {
    TokenRecord {
        hash,
        tenant: f.tenant,
        kind,
        family_id: f.id,
        client_id: f.client_id.clone(),
        user_id: f.user_id,
        business_id: f.business_id,
        scope: f.scope.clone(),
        jti,
        created_at: NOW,
        expires_at: match kind {
            TokenKind::Access => NOW + 3_600,
            TokenKind::Refresh => NOW + 14 * 86_400,
        },
        revoked_at: None,
        rotated_at: None,
    }
}

/// An access/refresh pair issued together.
fn pair(f: &Family, access: SecretHash, refresh: SecretHash) -> [TokenRecord; 2] {
    let jti = Uuid::new_v4();
    [token(f, TokenKind::Access, access, jti), token(f, TokenKind::Refresh, refresh, jti)]
}

/// A tenant with one user, one confidential client and the user's grant to it.
struct World {
    tenant: TenantId,
    user: User,
    client: Client,
    grant: Grant,
}

async fn world(store: &SharedStore, tenant_name: &str) -> World {
    let tenant = tenant(store, tenant_name).await;
    let user = user(tenant, &format!("alice@{tenant_name}.example"));
    store.insert_user(&user).await.unwrap();
    let client = client(tenant, "app", Some(h(1000)));
    store.insert_client(&client, &[]).await.unwrap();
    let grant = store.upsert_grant(&grant(tenant, user.id, &client.client_id, None, "openid offline_access")).await.unwrap();
    World { tenant, user, client, grant }
}

/// What one successful redemption issued.
struct Issued {
    code: AuthCode,
    family: Family,
    access: TokenRecord,
    refresh: TokenRecord,
}

/// Inserts a code with hash `h(base)` and redeems it for tokens `h(base + 1)` (access) and
/// `h(base + 2)` (refresh).
async fn issue(store: &SharedStore, w: &World, base: u16) -> Issued {
    let c = code(w.tenant, h(base), w.user.id, &w.client.client_id, w.grant.id);
    store.insert_code(&c).await.unwrap();
    let f = family(&c);
    let [access, refresh] = pair(&f, h(base + 1), h(base + 2));
    let outcome = store.redeem_code(w.tenant, c.hash, NOW, &f, &[access.clone(), refresh.clone()]).await.unwrap();
    assert_eq!(outcome, RedeemOutcome::Redeemed);
    Issued { code: c, family: f, access, refresh }
}

async fn view(store: &SharedStore, tenant: TenantId, hash: SecretHash) -> TokenView {
    store.find_token(tenant, hash).await.unwrap().unwrap_or_else(|| panic!("token {hash:?} not found"))
}

fn assert_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{what}: expected Conflict, got {r:?}");
}

// ---------------------------------------------------------------------------------------------
// Cases.

/// `ensure_tenant` creates once and then returns the same tenant; unknown names are `None`.
pub async fn tenants_ensure_is_idempotent(store: SharedStore) {
    assert!(store.find_tenant_by_name("acme").await.unwrap().is_none());
    let first = store.ensure_tenant("acme", NOW).await.unwrap();
    assert_eq!(first.name, "acme");
    assert_eq!(first.created_at, NOW);
    let again = store.ensure_tenant("acme", NOW + 100).await.unwrap();
    assert_eq!(again, first, "a second ensure_tenant must return the existing tenant unchanged");
    assert_eq!(store.find_tenant_by_name("acme").await.unwrap(), Some(first.clone()));
    let other = store.ensure_tenant("globex", NOW).await.unwrap();
    assert_ne!(other.id, first.id);
    assert!(store.find_tenant_by_name("initech").await.unwrap().is_none());

    // Created with an issuer and settings, listed, updated; names and issuers are unique.
    let sandbox = Tenant {
        id: TenantId(Uuid::new_v4()),
        name: "sandbox".into(),
        issuer: Some("https://auth.example/sandbox".into()),
        settings: TenantSettings { require_state: Some(true), ..Default::default() },
        created_at: NOW + 1,
    };
    store.insert_tenant(&sandbox).await.unwrap();
    assert_eq!(store.find_tenant_by_name("sandbox").await.unwrap(), Some(sandbox.clone()));
    assert_conflict(
        store.insert_tenant(&Tenant { id: TenantId(Uuid::new_v4()), name: "other".into(), ..sandbox.clone() }).await,
        "same issuer",
    );
    assert_conflict(store.insert_tenant(&Tenant { id: TenantId(Uuid::new_v4()), issuer: None, ..sandbox.clone() }).await, "same name");
    let names: Vec<String> = store.list_tenants().await.unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, vec!["acme", "globex", "sandbox"]);
    let changed = Tenant { issuer: Some("https://sandbox.auth.example".into()), settings: TenantSettings::default(), ..sandbox.clone() };
    assert!(store.update_tenant(&changed).await.unwrap());
    assert_eq!(store.find_tenant_by_name("sandbox").await.unwrap(), Some(changed));
}

/// A user can be found by id and by email, whatever the case of the email asked for.
pub async fn users_insert_find_and_email_lookup(store: SharedStore) {
    let t = tenant(&store, "acme").await;
    let alice = user(t, "alice@example.com");
    store.insert_user(&alice).await.unwrap();
    assert_eq!(store.find_user(t, alice.id).await.unwrap(), Some(alice.clone()));
    assert!(store.find_user(t, Uuid::new_v4()).await.unwrap().is_none());
    assert_eq!(store.find_user_by_email(t, "alice@example.com").await.unwrap(), Some(alice.clone()));
    assert_eq!(store.find_user_by_email(t, "Alice@Example.COM").await.unwrap(), Some(alice.clone()));
    assert!(store.find_user_by_email(t, "bob@example.com").await.unwrap().is_none());
}

/// Emails are unique within a tenant, not across tenants.
pub async fn users_duplicate_email_conflicts_within_a_tenant_only(store: SharedStore) {
    let a = tenant(&store, "acme").await;
    let b = tenant(&store, "globex").await;
    let alice = user(a, "alice@example.com");
    store.insert_user(&alice).await.unwrap();
    assert_conflict(store.insert_user(&user(a, "alice@example.com")).await, "same email, same tenant");
    assert_eq!(store.list_users(a).await.unwrap(), vec![alice.clone()], "a conflicting insert must write nothing");

    let other = user(b, "alice@example.com");
    store.insert_user(&other).await.unwrap();
    assert_eq!(store.find_user_by_email(b, "alice@example.com").await.unwrap(), Some(other));
    assert_eq!(store.find_user_by_email(a, "alice@example.com").await.unwrap(), Some(alice));
}

/// `list_users` lists the tenant's users; `delete_user` removes the user and what is theirs.
pub async fn users_list_and_delete_cascades(store: SharedStore) {
    let w = world(&store, "acme").await;
    let bob = user(w.tenant, "bob@acme.example");
    store.insert_user(&bob).await.unwrap();
    let elsewhere = world(&store, "globex").await;

    let mut listed = store.list_users(w.tenant).await.unwrap();
    listed.sort_by(|x, y| x.email.cmp(&y.email));
    assert_eq!(listed, vec![w.user.clone(), bob.clone()]);

    // Everything Alice owns: a grant (from `world`), a session, a membership, an issued family.
    let session = Session { hash: h(1), tenant: w.tenant, user_id: w.user.id, auth_time: NOW, created_at: NOW, expires_at: NOW + 3_600 };
    store.insert_session(&session).await.unwrap();
    let biz = business(w.tenant, "Acme Retail");
    store.insert_business(&biz).await.unwrap();
    store.insert_membership(w.tenant, biz.id, w.user.id, NOW).await.unwrap();
    let issued = issue(&store, &w, 10).await;
    // And Bob's, which must survive.
    let bob_session = Session { hash: h(2), user_id: bob.id, ..session.clone() };
    store.insert_session(&bob_session).await.unwrap();
    let bob_grant = store.upsert_grant(&grant(w.tenant, bob.id, &w.client.client_id, None, "openid")).await.unwrap();

    assert!(store.delete_user(w.tenant, w.user.id).await.unwrap());
    assert!(store.find_user(w.tenant, w.user.id).await.unwrap().is_none());
    assert!(store.find_user_by_email(w.tenant, &w.user.email).await.unwrap().is_none());
    assert!(store.find_grant(w.tenant, w.user.id, &w.client.client_id).await.unwrap().is_none(), "grant survived delete_user");
    assert!(store.find_session(w.tenant, session.hash).await.unwrap().is_none(), "session survived delete_user");
    assert!(store.find_code(w.tenant, issued.code.hash).await.unwrap().is_none(), "code survived delete_user");
    assert!(store.find_token(w.tenant, issued.access.hash).await.unwrap().is_none(), "access token survived delete_user");
    assert!(store.find_token(w.tenant, issued.refresh.hash).await.unwrap().is_none(), "refresh token survived delete_user");
    assert!(store.list_user_businesses(w.tenant, w.user.id).await.unwrap().is_empty(), "membership survived delete_user");
    assert_eq!(store.list_users(w.tenant).await.unwrap(), vec![bob.clone()]);
    assert!(!store.delete_user(w.tenant, w.user.id).await.unwrap(), "a second delete must report nothing deleted");

    // The business itself, Bob's rows and the other tenant are untouched.
    assert_eq!(store.find_business_by_name(w.tenant, "Acme Retail").await.unwrap(), Some(biz));
    assert_eq!(store.find_session(w.tenant, bob_session.hash).await.unwrap(), Some(bob_session));
    assert_eq!(store.find_grant(w.tenant, bob.id, &w.client.client_id).await.unwrap(), Some(bob_grant));
    assert_eq!(store.find_user(elsewhere.tenant, elsewhere.user.id).await.unwrap(), Some(elsewhere.user));
}

/// Nothing inserted under tenant A can be seen or changed through tenant B's id.
pub async fn tenant_isolation(store: SharedStore) {
    let a = world(&store, "acme").await;
    let b = world(&store, "globex").await;
    // `world` gives both tenants a client called "app"; these names exist only in A.
    let only_a = client(a.tenant, "a-only", None);
    store.insert_client(&only_a, &[]).await.unwrap();
    let session = Session { hash: h(1), tenant: a.tenant, user_id: a.user.id, auth_time: NOW, created_at: NOW, expires_at: NOW + 3_600 };
    store.insert_session(&session).await.unwrap();
    let interaction = Interaction {
        id: Uuid::new_v4(),
        tenant: a.tenant,
        browser_hash: h(2),
        request: "response_type=code&client_id=app".to_owned(),
        login: None,
        created_at: NOW,
        expires_at: NOW + 600,
    };
    store.insert_interaction(&interaction).await.unwrap();
    let biz = business(a.tenant, "Acme Retail");
    store.insert_business(&biz).await.unwrap();
    store.insert_membership(a.tenant, biz.id, a.user.id, NOW).await.unwrap();
    let issued = issue(&store, &a, 10).await;
    let pending = code(a.tenant, h(20), a.user.id, &a.client.client_id, a.grant.id);
    store.insert_code(&pending).await.unwrap();

    let t = b.tenant;
    assert!(store.find_user(t, a.user.id).await.unwrap().is_none(), "user leaked");
    assert!(store.find_user_by_email(t, &a.user.email).await.unwrap().is_none(), "user leaked by email");
    assert!(!store.list_users(t).await.unwrap().iter().any(|u| u.id == a.user.id), "user leaked in list");
    assert!(store.find_client(t, "a-only").await.unwrap().is_none(), "client leaked");
    assert!(!store.list_clients(t).await.unwrap().iter().any(|c| c.client_id == "a-only"), "client leaked in list");
    assert!(store.find_session(t, session.hash).await.unwrap().is_none(), "session leaked");
    assert!(store.find_interaction(t, interaction.id).await.unwrap().is_none(), "interaction leaked");
    assert!(store.find_business_by_name(t, "Acme Retail").await.unwrap().is_none(), "business leaked");
    assert!(store.list_user_businesses(t, a.user.id).await.unwrap().is_empty(), "membership leaked");
    assert!(store.find_grant(t, a.user.id, "app").await.unwrap().is_none(), "grant leaked");
    assert!(store.find_code(t, issued.code.hash).await.unwrap().is_none(), "code leaked");
    assert!(store.find_code(t, pending.hash).await.unwrap().is_none(), "code leaked");
    assert!(store.find_token(t, issued.access.hash).await.unwrap().is_none(), "access token leaked");
    assert!(store.find_token(t, issued.refresh.hash).await.unwrap().is_none(), "refresh token leaked");

    // Nor can B's id change A's rows.
    let fb = Family { tenant: t, ..family(&pending) };
    let stolen = pair(&fb, h(21), h(22));
    let redeemed = store.redeem_code(t, pending.hash, NOW, &fb, &stolen).await;
    assert!(!matches!(redeemed, Ok(RedeemOutcome::Redeemed)), "redeemed another tenant's code: {redeemed:?}");
    assert_eq!(store.find_code(a.tenant, pending.hash).await.unwrap().unwrap().consumed_at, None);
    let rotated = store.rotate_refresh_token(t, issued.refresh.hash, NOW, &pair(&fb, h(23), h(24)), None).await;
    assert!(!matches!(rotated, Ok(RotateOutcome::Rotated)), "rotated another tenant's token: {rotated:?}");
    let _ = store.revoke_token(t, issued.access.hash, NOW).await;
    let _ = store.revoke_family(t, issued.family.id, NOW).await;
    let _ = store.rotate_client_secret(t, "a-only", h(25), NOW, Some(NOW + 3600)).await;
    let _ = store.delete_session(t, session.hash).await;
    let _ = store.delete_interaction(t, interaction.id).await;
    assert_eq!(store.delete_user(t, a.user.id).await.ok(), Some(false), "deleted another tenant's user");
    assert_eq!(store.delete_client(t, "a-only").await.ok(), Some(false), "deleted another tenant's client");

    let access = view(&store, a.tenant, issued.access.hash).await;
    assert!(access.is_active(NOW), "another tenant revoked a token: {access:?}");
    let refresh = view(&store, a.tenant, issued.refresh.hash).await;
    assert!(refresh.is_active(NOW) && refresh.token.rotated_at.is_none(), "another tenant touched a refresh token: {refresh:?}");
    assert_eq!(store.find_client(a.tenant, "a-only").await.unwrap(), Some(only_a));
    assert_eq!(store.find_session(a.tenant, session.hash).await.unwrap(), Some(session));
    assert_eq!(store.find_interaction(a.tenant, interaction.id).await.unwrap(), Some(interaction));
    assert_eq!(store.find_user(a.tenant, a.user.id).await.unwrap(), Some(a.user));
}

/// Businesses by name, idempotent memberships listed oldest first, the default business.
pub async fn businesses_and_memberships(store: SharedStore) {
    let t = tenant(&store, "acme").await;
    let alice = user(t, "alice@example.com");
    store.insert_user(&alice).await.unwrap();
    // Joined in an order that is not alphabetical, and within one second.
    let zeta = business(t, "Zeta Foods");
    let alpha = business(t, "Alpha Motors");
    let mid = business(t, "Midway Books");
    for b in [&zeta, &alpha, &mid] {
        store.insert_business(b).await.unwrap();
    }
    assert_eq!(store.find_business_by_name(t, "Zeta Foods").await.unwrap(), Some(zeta.clone()));
    assert!(store.find_business_by_name(t, "Nope Inc").await.unwrap().is_none());
    assert_conflict(store.insert_business(&business(t, "Zeta Foods")).await, "same business name, same tenant");

    assert!(store.list_user_businesses(t, alice.id).await.unwrap().is_empty());
    store.insert_membership(t, zeta.id, alice.id, NOW).await.unwrap();
    store.insert_membership(t, alpha.id, alice.id, NOW).await.unwrap();
    store.insert_membership(t, zeta.id, alice.id, NOW).await.unwrap(); // Idempotent.
    store.insert_membership(t, mid.id, alice.id, NOW).await.unwrap();
    store.insert_membership(t, alpha.id, alice.id, NOW).await.unwrap(); // Idempotent.
    assert_eq!(
        store.list_user_businesses(t, alice.id).await.unwrap(),
        vec![zeta.clone(), alpha.clone(), mid.clone()],
        "memberships must be listed once each, oldest first"
    );

    store.update_user_default_business(t, alice.id, Some(alpha.id)).await.unwrap();
    assert_eq!(store.find_user(t, alice.id).await.unwrap().unwrap().default_business_id, Some(alpha.id));
    store.update_user_default_business(t, alice.id, None).await.unwrap();
    assert_eq!(store.find_user(t, alice.id).await.unwrap().unwrap().default_business_id, None);

    assert_eq!(store.list_businesses(t).await.unwrap(), vec![alpha.clone(), mid.clone(), zeta.clone()], "all businesses, by name");
    assert!(store.delete_membership(t, mid.id, alice.id).await.unwrap());
    assert!(!store.delete_membership(t, mid.id, alice.id).await.unwrap(), "a second removal finds nothing");
    assert_eq!(store.list_user_businesses(t, alice.id).await.unwrap(), vec![zeta.clone(), alpha.clone()]);
    let (found, ids) = store.find_user_with_businesses(t, alice.id).await.unwrap().unwrap();
    assert_eq!((found, ids), (store.find_user(t, alice.id).await.unwrap().unwrap(), vec![zeta.id, alpha.id]), "the same as two reads");
    let bob = user(t, "bob@example.com");
    store.insert_user(&bob).await.unwrap();
    assert_eq!(store.find_user_with_businesses(t, bob.id).await.unwrap(), Some((bob, vec![])), "no business is an empty list");
    assert!(store.find_user_with_businesses(t, Uuid::new_v4()).await.unwrap().is_none());
    assert!(store.find_user_with_businesses(tenant(&store, "globex").await, alice.id).await.unwrap().is_none(), "tenant isolation");
}

/// Clients: insert, find, list, rotate a secret, delete (with what was issued to them).
pub async fn clients_crud_and_secret_rotation(store: SharedStore) {
    let w = world(&store, "acme").await; // Client "app", confidential.
    let public = client(w.tenant, "spa", None);
    store.insert_client(&public, &[]).await.unwrap();

    assert_eq!(store.find_client(w.tenant, "app").await.unwrap(), Some(w.client.clone()));
    assert_eq!(store.find_client(w.tenant, "spa").await.unwrap(), Some(public.clone()));
    assert!(store.find_client(w.tenant, "nope").await.unwrap().is_none());
    let mut listed = store.list_clients(w.tenant).await.unwrap();
    listed.sort_by(|x, y| x.client_id.cmp(&y.client_id));
    assert_eq!(listed, vec![w.client.clone(), public.clone()]);

    assert!(store.rotate_client_secret(w.tenant, "app", h(1001), NOW, None).await.unwrap());
    assert_eq!(store.find_client(w.tenant, "app").await.unwrap().unwrap().secret_hash, Some(h(1001)));
    assert!(!store.rotate_client_secret(w.tenant, "spa", h(1002), NOW, None).await.unwrap(), "a public client must stay public");
    assert_eq!(store.find_client(w.tenant, "spa").await.unwrap().unwrap().secret_hash, None);
    assert!(!store.rotate_client_secret(w.tenant, "nope", h(1003), NOW, None).await.unwrap());

    let issued = issue(&store, &w, 10).await;
    assert!(store.delete_client(w.tenant, "app").await.unwrap());
    assert!(store.find_client(w.tenant, "app").await.unwrap().is_none());
    assert!(store.find_grant(w.tenant, w.user.id, "app").await.unwrap().is_none(), "grant survived delete_client");
    assert!(store.find_code(w.tenant, issued.code.hash).await.unwrap().is_none(), "code survived delete_client");
    assert!(store.find_token(w.tenant, issued.access.hash).await.unwrap().is_none(), "access token survived delete_client");
    assert!(store.find_token(w.tenant, issued.refresh.hash).await.unwrap().is_none(), "refresh token survived delete_client");
    assert!(!store.delete_client(w.tenant, "app").await.unwrap(), "a second delete must report nothing deleted");
    assert_eq!(store.list_clients(w.tenant).await.unwrap(), vec![public]);
    assert!(store.find_user(w.tenant, w.user.id).await.unwrap().is_some(), "delete_client must not delete users");
}

/// A rotation with a grace period keeps the replaced secret (with when it was made and last
/// used) until then; one without drops it, and any kept from before.
pub async fn client_secrets_rotate_with_a_grace_period(store: SharedStore) {
    let w = world(&store, "acme").await; // Client "app", confidential.
    assert!(store.rotate_client_secret(w.tenant, "app", h(1), NOW, None).await.unwrap());
    store.record_client_secret_use(w.tenant, "app", false, NOW + 5).await.unwrap();
    let c = store.find_client(w.tenant, "app").await.unwrap().unwrap();
    assert_eq!(c.secret_info, SecretInfo { created_at: Some(NOW), last_used_at: Some(NOW + 5), previous: None });

    assert!(store.rotate_client_secret(w.tenant, "app", h(2), NOW + 10, Some(NOW + 3610)).await.unwrap());
    let c = store.find_client(w.tenant, "app").await.unwrap().unwrap();
    assert_eq!(c.secret_hash, Some(h(2)));
    let previous = PreviousSecret { hash: h(1), created_at: Some(NOW), expires_at: NOW + 3610, last_used_at: Some(NOW + 5) };
    assert_eq!(c.secret_info, SecretInfo { created_at: Some(NOW + 10), last_used_at: None, previous: Some(previous.clone()) });
    store.record_client_secret_use(w.tenant, "app", true, NOW + 20).await.unwrap();
    let c = store.find_client(w.tenant, "app").await.unwrap().unwrap();
    assert_eq!(c.secret_info.previous, Some(PreviousSecret { last_used_at: Some(NOW + 20), ..previous }));
    assert_eq!(c.secret_info.last_used_at, None, "the other secret's use is its own");

    assert!(store.rotate_client_secret(w.tenant, "app", h(3), NOW + 30, None).await.unwrap());
    let c = store.find_client(w.tenant, "app").await.unwrap().unwrap();
    assert_eq!((c.secret_hash, c.secret_info.previous), (Some(h(3)), None), "a rotation without grace ends every older secret");
}

/// Owners: an app registered with its owners is listed for each of them with its count of
/// authorizing users, and for nobody else; the profile and the developer flag round-trip.
pub async fn clients_have_owners_and_profiles(store: SharedStore) {
    let w = world(&store, "acme").await; // The user has a grant to "app".
    let (ada, bob) = (user(w.tenant, "ada@example.com"), user(w.tenant, "bob@example.com"));
    store.insert_user(&ada).await.unwrap();
    store.insert_user(&bob).await.unwrap();
    assert!(store.update_user_developer(w.tenant, ada.id, true).await.unwrap());
    assert!(store.find_user(w.tenant, ada.id).await.unwrap().unwrap().developer);
    assert!(!store.find_user(w.tenant, bob.id).await.unwrap().unwrap().developer);
    assert!(!store.update_user_developer(w.tenant, Uuid::new_v4(), true).await.unwrap());

    let mut owned = client(w.tenant, "owned", Some(h(1)));
    owned.profile = ClientProfile {
        website: Some("https://owned.example".into()),
        privacy_policy: Some("https://owned.example/privacy".into()),
        terms_of_service: None,
        logo: Some("https://owned.example/logo.png".into()),
    };
    store.insert_client(&owned, &[ada.id, bob.id]).await.unwrap();
    assert_eq!(store.find_client(w.tenant, "owned").await.unwrap(), Some(owned.clone()));
    let mut owners = store.list_client_owners(w.tenant, "owned").await.unwrap();
    owners.sort();
    let mut expected = vec![ada.id, bob.id];
    expected.sort();
    assert_eq!(owners, expected);
    assert_eq!(store.list_client_owners(w.tenant, "app").await.unwrap(), Vec::<Uuid>::new());

    // "app" gets Ada as owner through a second registration path: none exists, so she owns
    // only "owned"; the user of `world` authorized "app", nobody "owned".
    let listed = store.list_owned_clients(w.tenant, ada.id).await.unwrap();
    assert_eq!(listed, vec![ClientSummary { client: owned.clone(), authorized_users: 0 }]);
    assert_eq!(store.list_owned_clients(w.tenant, w.user.id).await.unwrap(), vec![]);
    let mut with_users = client(w.tenant, "popular", Some(h(2)));
    with_users.name = "Popular".into();
    store.insert_client(&with_users, &[ada.id]).await.unwrap();
    store.upsert_grant(&Grant { client_id: "popular".into(), id: Uuid::new_v4(), ..w.grant.clone() }).await.unwrap();
    let listed = store.list_owned_clients(w.tenant, ada.id).await.unwrap();
    let counts: Vec<(String, u64)> = listed.iter().map(|s| (s.client.client_id.clone(), s.authorized_users)).collect();
    assert_eq!(counts, vec![("owned".into(), 0), ("popular".into(), 1)], "by name, with their users");
    assert_eq!(store.list_owned_clients(tenant(&store, "globex").await, ada.id).await.unwrap(), vec![], "tenant isolation");

    owned.profile.terms_of_service = Some("https://owned.example/terms".into());
    assert!(store.update_client(&owned).await.unwrap());
    assert_eq!(store.find_client(w.tenant, "owned").await.unwrap().unwrap().profile, owned.profile);

    // An owner's account going away leaves the app to its other owners; the app going away
    // takes its ownerships with it.
    assert!(store.delete_user(w.tenant, bob.id).await.unwrap());
    assert_eq!(store.list_client_owners(w.tenant, "owned").await.unwrap(), vec![ada.id]);
    assert!(store.delete_client(w.tenant, "owned").await.unwrap());
    assert_eq!(store.list_client_owners(w.tenant, "owned").await.unwrap(), Vec::<Uuid>::new());
}

/// Invitations to own an app: listed for the app and for the invited user; accepting makes an
/// owner, declining does not, each once; the last owner cannot be removed.
pub async fn owner_invitations_are_accepted_or_declined(store: SharedStore) {
    let w = world(&store, "acme").await;
    let (ada, bob, cy) = (user(w.tenant, "ada@example.com"), user(w.tenant, "bob@example.com"), user(w.tenant, "cy@example.com"));
    for u in [&ada, &bob, &cy] {
        store.insert_user(u).await.unwrap();
    }
    let app = client(w.tenant, "shared", Some(h(1)));
    store.insert_client(&app, &[ada.id]).await.unwrap();
    let invite = |u: Uuid, at: UnixTime| OwnerInvitation {
        tenant: w.tenant,
        client_id: "shared".into(),
        client_name: app.name.clone(),
        user_id: u,
        invited_by: ada.id,
        created_at: at,
    };
    store.upsert_owner_invitation(&invite(bob.id, NOW)).await.unwrap();
    store.upsert_owner_invitation(&invite(cy.id, NOW + 1)).await.unwrap();
    store.upsert_owner_invitation(&invite(bob.id, NOW + 2)).await.unwrap(); // Renewed, not doubled.
    assert_eq!(
        store.list_owner_invitations(w.tenant, Some("shared"), None).await.unwrap(),
        vec![invite(cy.id, NOW + 1), invite(bob.id, NOW + 2)]
    );
    assert_eq!(store.list_owner_invitations(w.tenant, None, Some(bob.id)).await.unwrap(), vec![invite(bob.id, NOW + 2)]);
    assert_eq!(store.list_owner_invitations(tenant(&store, "globex").await, None, Some(bob.id)).await.unwrap(), vec![], "tenant isolation");

    assert!(store.close_owner_invitation(w.tenant, "shared", bob.id, true, NOW + 3).await.unwrap());
    assert!(!store.close_owner_invitation(w.tenant, "shared", bob.id, true, NOW + 3).await.unwrap(), "once");
    assert!(store.close_owner_invitation(w.tenant, "shared", cy.id, false, NOW + 3).await.unwrap());
    let mut owners = store.list_client_owners(w.tenant, "shared").await.unwrap();
    owners.sort();
    let mut expected = vec![ada.id, bob.id];
    expected.sort();
    assert_eq!(owners, expected, "Bob accepted, Cy declined");
    assert_eq!(store.list_owner_invitations(w.tenant, Some("shared"), None).await.unwrap(), vec![]);

    assert!(store.delete_client_owner(w.tenant, "shared", ada.id).await.unwrap());
    assert!(!store.delete_client_owner(w.tenant, "shared", bob.id).await.unwrap(), "the last owner stays");
    assert!(!store.delete_client_owner(w.tenant, "shared", cy.id).await.unwrap(), "not an owner");
    assert_eq!(store.list_client_owners(w.tenant, "shared").await.unwrap(), vec![bob.id]);
}

/// A client id is unique within a tenant.
pub async fn clients_duplicate_id_conflicts(store: SharedStore) {
    let a = tenant(&store, "acme").await;
    let b = tenant(&store, "globex").await;
    let first = client(a, "app", Some(h(1)));
    store.insert_client(&first, &[]).await.unwrap();
    assert_conflict(store.insert_client(&client(a, "app", None), &[]).await, "same client_id, same tenant");
    assert_eq!(store.find_client(a, "app").await.unwrap(), Some(first), "a conflicting insert must write nothing");
    store.insert_client(&client(b, "app", None), &[]).await.unwrap();
}

/// Signing keys come back newest first, only the tenant's own.
pub async fn signing_keys_newest_first(store: SharedStore) {
    let t = tenant(&store, "acme").await;
    let other = tenant(&store, "globex").await;
    assert!(store.list_signing_keys(t).await.unwrap().is_empty());
    let key = |tenant, kid: &str, alg, created_at| SigningKeyRecord {
        kid: kid.to_owned(),
        tenant,
        alg,
        sealed_private_key: kid.bytes().chain([0, 1, 2, 255]).collect(),
        public_jwk: format!(r#"{{"kid":"{kid}"}}"#),
        created_at,
        activates_at: created_at + 60,
        retires_at: None,
        period: None,
    };
    // Kids and insertion order chosen so that neither, in either direction, gives newest first.
    let newest = key(t, "z-newest", SigningAlg::ES256, NOW);
    let middle = key(t, "a-middle", SigningAlg::RS256, NOW - 86_400);
    let oldest = key(t, "m-oldest", SigningAlg::EdDSA, NOW - 2 * 86_400);
    for k in [&middle, &oldest, &newest] {
        store.insert_signing_key(k).await.unwrap();
    }
    store.insert_signing_key(&key(other, "elsewhere", SigningAlg::EdDSA, NOW + 1)).await.unwrap();
    assert_eq!(store.list_signing_keys(t).await.unwrap(), vec![newest, middle, oldest]);
    assert_conflict(store.insert_signing_key(&key(t, "a-middle", SigningAlg::EdDSA, NOW + 5)).await, "same kid, same tenant");

    // Rotation: the new key goes in and every current key gets its retirement, at once; a
    // second rotation for the same period (another node) writes nothing.
    let rotated = SigningKeyRecord { period: Some(7), ..key(t, "rotated", SigningAlg::ES256, NOW + 10) };
    assert!(store.rotate_signing_key(&rotated, NOW + 9_999).await.unwrap());
    let twin = SigningKeyRecord { period: Some(7), ..key(t, "twin", SigningAlg::ES256, NOW + 11) };
    assert!(!store.rotate_signing_key(&twin, NOW + 1).await.unwrap(), "one rotation per period and algorithm");
    let listed = store.list_signing_keys(t).await.unwrap();
    assert_eq!(listed.len(), 4);
    assert_eq!(listed[0].kid, "rotated");
    assert_eq!(listed[0].retires_at, None);
    let retiring: Vec<(&str, Option<UnixTime>)> = listed[1..].iter().map(|k| (k.kid.as_str(), k.retires_at)).collect();
    assert_eq!(
        retiring,
        vec![("z-newest", Some(NOW + 9_999)), ("a-middle", None), ("m-oldest", None)],
        "only the same algorithm is superseded"
    );
    assert_eq!(store.list_signing_keys(other).await.unwrap()[0].retires_at, None, "other tenants' keys are untouched");
}

/// Sessions and interactions: insert, find, update the login, delete.
pub async fn sessions_and_interactions(store: SharedStore) {
    let t = tenant(&store, "acme").await;
    let alice = user(t, "alice@example.com");
    store.insert_user(&alice).await.unwrap();

    let session = Session { hash: h(1), tenant: t, user_id: alice.id, auth_time: NOW - 10, created_at: NOW, expires_at: NOW + 3_600 };
    store.insert_session(&session).await.unwrap();
    assert_eq!(store.find_session(t, h(1)).await.unwrap(), Some(session.clone()));
    assert!(store.find_session(t, h(2)).await.unwrap().is_none());
    let with_user = store.find_session_with_user(t, h(1)).await.unwrap();
    assert_eq!(with_user, Some((session.clone(), store.find_user(t, session.user_id).await.unwrap().unwrap())), "the session and its user");
    assert!(store.find_session_with_user(t, h(2)).await.unwrap().is_none());
    store.delete_session(t, h(1)).await.unwrap();
    assert!(store.find_session(t, h(1)).await.unwrap().is_none());
    store.delete_session(t, h(1)).await.unwrap(); // Deleting nothing is fine.

    let interaction = Interaction {
        id: Uuid::new_v4(),
        tenant: t,
        browser_hash: h(3),
        request: "response_type=code&client_id=app&scope=openid&state=xyz".to_owned(),
        login: None,
        created_at: NOW,
        expires_at: NOW + 600,
    };
    store.insert_interaction(&interaction).await.unwrap();
    assert_eq!(store.find_interaction(t, interaction.id).await.unwrap(), Some(interaction.clone()));
    assert!(store.find_interaction(t, Uuid::new_v4()).await.unwrap().is_none());
    store.update_interaction_login(t, interaction.id, alice.id, NOW + 7).await.unwrap();
    let found = store.find_interaction(t, interaction.id).await.unwrap().unwrap();
    assert_eq!(found.login, Some((alice.id, NOW + 7)));
    assert_eq!(found, Interaction { login: Some((alice.id, NOW + 7)), ..interaction.clone() });
    store.delete_interaction(t, interaction.id).await.unwrap();
    assert!(store.find_interaction(t, interaction.id).await.unwrap().is_none());
}

/// Upserting a grant for the same user and client keeps one grant, with the newest scope.
pub async fn grants_upsert_keeps_one_grant(store: SharedStore) {
    let t = tenant(&store, "acme").await;
    let alice = user(t, "alice@example.com");
    store.insert_user(&alice).await.unwrap();
    store.insert_client(&client(t, "app", None), &[]).await.unwrap();
    store.insert_client(&client(t, "other", None), &[]).await.unwrap();
    let biz = business(t, "Acme Retail");
    store.insert_business(&biz).await.unwrap();

    assert!(store.find_grant(t, alice.id, "app").await.unwrap().is_none());
    let first = grant(t, alice.id, "app", None, "openid");
    let stored = store.upsert_grant(&first).await.unwrap();
    assert_eq!(stored, first);
    assert_eq!(store.find_grant(t, alice.id, "app").await.unwrap(), Some(first.clone()));

    let second = Grant { id: Uuid::new_v4(), business_id: Some(biz.id), scope: scope("openid email offline_access"), ..first.clone() };
    let stored = store.upsert_grant(&second).await.unwrap();
    assert_eq!(stored.id, first.id, "the upsert must keep the first grant's id");
    assert_eq!(stored.business_id, Some(biz.id));
    assert_eq!(stored.scope, second.scope);
    assert_eq!(store.find_grant(t, alice.id, "app").await.unwrap(), Some(stored));

    let to_other = store.upsert_grant(&grant(t, alice.id, "other", None, "openid")).await.unwrap();
    assert_ne!(to_other.id, first.id, "a grant to another client is another grant");
    assert_eq!(store.find_grant(t, alice.id, "app").await.unwrap().unwrap().id, first.id);
}

/// A code is redeemed once; the second redemption writes nothing.
pub async fn codes_redeem_exactly_once(store: SharedStore) {
    let w = world(&store, "acme").await;
    let c = AuthCode {
        business_id: None,
        nonce: None,
        code_challenge: None,
        redirect_uri_explicit: false,
        ..code(w.tenant, h(1), w.user.id, "app", w.grant.id)
    };
    store.insert_code(&c).await.unwrap();
    let full = code(w.tenant, h(2), w.user.id, "app", w.grant.id);
    store.insert_code(&full).await.unwrap();
    assert_eq!(store.find_code(w.tenant, c.hash).await.unwrap(), Some(c.clone()));
    assert_eq!(store.find_code(w.tenant, full.hash).await.unwrap(), Some(full.clone()));
    assert!(store.find_code(w.tenant, h(3)).await.unwrap().is_none());

    let f = family(&c);
    let first = pair(&f, h(10), h(11));
    assert_eq!(store.redeem_code(w.tenant, c.hash, NOW + 1, &f, &first).await.unwrap(), RedeemOutcome::Redeemed);
    assert_eq!(store.find_code(w.tenant, c.hash).await.unwrap().unwrap().consumed_at, Some(NOW + 1));
    for t in &first {
        let v = view(&store, w.tenant, t.hash).await;
        assert_eq!(&v.token, t);
        assert_eq!(v.family, f);
        assert_eq!(v.subject_email.as_deref(), Some(w.user.email.as_str()), "the view carries its user's email");
        assert!(v.is_active(NOW + 1), "freshly issued token inactive: {v:?}");
    }

    // The replay, with another family id to make any write visible.
    let f2 = Family { id: Uuid::new_v4(), ..f.clone() };
    let second = pair(&f2, h(12), h(13));
    assert_eq!(store.redeem_code(w.tenant, c.hash, NOW + 2, &f2, &second).await.unwrap(), RedeemOutcome::AlreadyConsumed);
    for t in &second {
        assert!(store.find_token(w.tenant, t.hash).await.unwrap().is_none(), "a refused redemption wrote a token");
    }
    assert_eq!(
        store.find_code(w.tenant, c.hash).await.unwrap().unwrap().consumed_at,
        Some(NOW + 1),
        "a refused redemption moved consumed_at"
    );
    assert!(view(&store, w.tenant, first[0].hash).await.is_active(NOW + 2), "a refused redemption must not by itself revoke");
    // The other code is untouched.
    assert_eq!(store.find_code(w.tenant, full.hash).await.unwrap().unwrap().consumed_at, None);
}

/// A sealed code has no row until it is redeemed: the redemption stores it consumed with the
/// family and tokens, once; a second redemption, or one whose grant is gone, writes nothing;
/// of concurrent redemptions one wins; housekeeping forgets it when it expires.
pub async fn sealed_codes_redeem_once_while_their_grant_lives(store: SharedStore) {
    let w = world(&store, "acme").await;
    let c = code(w.tenant, h(1), w.user.id, "app", w.grant.id);
    assert!(store.find_code(w.tenant, c.hash).await.unwrap().is_none(), "no row before the redemption");
    let f = family(&c);
    let first = pair(&f, h(10), h(11));
    assert_eq!(store.redeem_sealed_code(&c, NOW + 1, &f, &first).await.unwrap(), RedeemOutcome::Redeemed);
    assert_eq!(store.find_code(w.tenant, c.hash).await.unwrap(), Some(AuthCode { consumed_at: Some(NOW + 1), ..c.clone() }));
    for t in &first {
        assert_eq!(view(&store, w.tenant, t.hash).await.family, f);
    }

    // The replay writes nothing and moves nothing.
    let f2 = Family { id: Uuid::new_v4(), ..f.clone() };
    let second = pair(&f2, h(12), h(13));
    assert_eq!(store.redeem_sealed_code(&c, NOW + 2, &f2, &second).await.unwrap(), RedeemOutcome::AlreadyConsumed);
    assert!(store.find_token(w.tenant, h(12)).await.unwrap().is_none() && store.find_token(w.tenant, h(13)).await.unwrap().is_none());
    assert_eq!(store.find_code(w.tenant, c.hash).await.unwrap().unwrap().consumed_at, Some(NOW + 1));

    // Concurrent redemptions of another code: one winner.
    let other = code(w.tenant, h(2), w.user.id, "app", w.grant.id);
    let tasks: Vec<_> = (0u16..8)
        .map(|i| {
            let (store, other) = (store.clone(), other.clone());
            tokio::spawn(async move {
                let f = Family { id: Uuid::new_v4(), ..family(&other) };
                let tokens = pair(&f, h(100 + 2 * i), h(101 + 2 * i));
                store.redeem_sealed_code(&other, NOW + 1, &f, &tokens).await.unwrap()
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    assert_eq!(outcomes.iter().filter(|o| **o == RedeemOutcome::Redeemed).count(), 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| matches!(o, RedeemOutcome::Redeemed | RedeemOutcome::AlreadyConsumed)));

    // The stored code goes when it expires, no sooner.
    store.delete_expired(w.tenant, c.expires_at - 1, NOW, NOW, 1_000).await.unwrap();
    assert!(store.find_code(w.tenant, c.hash).await.unwrap().is_some());
    store.delete_expired(w.tenant, c.expires_at, NOW, NOW, 1_000).await.unwrap();
    assert!(store.find_code(w.tenant, c.hash).await.unwrap().is_none());

    // A code whose grant was withdrawn before its redemption, or one naming another user's or
    // client's grant, writes nothing.
    let stranger = user(w.tenant, "mallory@acme.example");
    store.insert_user(&stranger).await.unwrap();
    for (c, why) in [
        (code(w.tenant, h(3), stranger.id, "app", w.grant.id), "another user's grant"),
        (code(w.tenant, h(4), w.user.id, "other-app", w.grant.id), "another client's grant"),
    ] {
        let f = family(&c);
        assert_eq!(store.redeem_sealed_code(&c, NOW + 1, &f, &pair(&f, h(40), h(41))).await.unwrap(), RedeemOutcome::GrantGone, "{why}");
    }
    let late = code(w.tenant, h(5), w.user.id, "app", w.grant.id);
    assert!(store.revoke_grant(w.tenant, w.user.id, w.grant.id, NOW + 1).await.unwrap());
    let f = family(&late);
    assert_eq!(store.redeem_sealed_code(&late, NOW + 2, &f, &pair(&f, h(42), h(43))).await.unwrap(), RedeemOutcome::GrantGone);
    assert!(store.find_code(w.tenant, late.hash).await.unwrap().is_none() && store.find_token(w.tenant, h(42)).await.unwrap().is_none());
}

/// Of many concurrent redemptions of one code, exactly one wins, and only its tokens exist.
pub async fn codes_concurrent_redemption_has_one_winner(store: SharedStore) {
    let w = world(&store, "acme").await;
    let c = code(w.tenant, h(1), w.user.id, "app", w.grant.id);
    store.insert_code(&c).await.unwrap();
    let f = family(&c);
    let attempts: Vec<[TokenRecord; 2]> = (0..RACERS).map(|i| pair(&f, h(100 + 2 * i), h(101 + 2 * i))).collect();

    let handles: Vec<_> = attempts
        .iter()
        .map(|tokens| {
            let (store, tenant, f, tokens) = (store.clone(), w.tenant, f.clone(), tokens.clone());
            tokio::spawn(async move { store.redeem_code(tenant, h(1), NOW, &f, &tokens).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for handle in handles {
        outcomes.push(handle.await.expect("redeem task panicked").expect("redeem failed"));
    }
    let winners: Vec<usize> = outcomes.iter().enumerate().filter(|(_, o)| **o == RedeemOutcome::Redeemed).map(|(i, _)| i).collect();
    assert_eq!(winners.len(), 1, "expected exactly one Redeemed, got {outcomes:?}");

    for (i, tokens) in attempts.iter().enumerate() {
        for t in tokens {
            let found = store.find_token(w.tenant, t.hash).await.unwrap();
            assert_eq!(found.is_some(), i == winners[0], "attempt {i}: token presence does not match the outcome");
        }
    }
}

/// A live refresh token rotates once; its successor rotates in turn.
pub async fn refresh_rotation(store: SharedStore) {
    let w = world(&store, "acme").await;
    let issued = issue(&store, &w, 10).await;
    let f = &issued.family;

    let next = pair(f, h(20), h(21));
    assert_eq!(store.rotate_refresh_token(w.tenant, issued.refresh.hash, NOW + 5, &next, None).await.unwrap(), RotateOutcome::Rotated);
    let old = view(&store, w.tenant, issued.refresh.hash).await;
    assert_eq!(old.token.rotated_at, Some(NOW + 5));
    assert_eq!(old.token.revoked_at, None);
    for t in &next {
        let v = view(&store, w.tenant, t.hash).await;
        assert_eq!(&v.token, t);
        assert_eq!(&v.family, f);
        assert!(v.is_active(NOW + 5));
    }
    assert!(view(&store, w.tenant, issued.access.hash).await.is_active(NOW + 5), "rotation must not revoke the old access token");

    // A second rotation of the same token is refused and writes nothing.
    let replay = pair(f, h(22), h(23));
    assert_eq!(store.rotate_refresh_token(w.tenant, issued.refresh.hash, NOW + 6, &replay, None).await.unwrap(), RotateOutcome::NotCurrent);
    for t in &replay {
        assert!(store.find_token(w.tenant, t.hash).await.unwrap().is_none(), "a refused rotation wrote a token");
    }
    assert_eq!(view(&store, w.tenant, issued.refresh.hash).await.token.rotated_at, Some(NOW + 5), "a refused rotation moved rotated_at");

    // Access tokens and unknown tokens do not rotate.
    let bogus = pair(f, h(24), h(25));
    assert_eq!(store.rotate_refresh_token(w.tenant, issued.access.hash, NOW + 6, &bogus, None).await.unwrap(), RotateOutcome::NotCurrent);
    assert_eq!(store.rotate_refresh_token(w.tenant, h(999), NOW + 6, &bogus, None).await.unwrap(), RotateOutcome::NotCurrent);
    assert!(store.find_token(w.tenant, h(24)).await.unwrap().is_none());

    // The successor is current.
    let after = pair(f, h(26), h(27));
    assert_eq!(store.rotate_refresh_token(w.tenant, h(21), NOW + 7, &after, None).await.unwrap(), RotateOutcome::Rotated);
    assert!(view(&store, w.tenant, h(27)).await.is_active(NOW + 7));
}

/// Of many concurrent rotations of one refresh token, exactly one wins, and only its tokens exist.
pub async fn refresh_concurrent_rotation_has_one_winner(store: SharedStore) {
    let w = world(&store, "acme").await;
    let issued = issue(&store, &w, 10).await;
    let attempts: Vec<[TokenRecord; 2]> = (0..RACERS).map(|i| pair(&issued.family, h(100 + 2 * i), h(101 + 2 * i))).collect();

    let handles: Vec<_> = attempts
        .iter()
        .map(|tokens| {
            let (store, tenant, old, tokens) = (store.clone(), w.tenant, issued.refresh.hash, tokens.clone());
            tokio::spawn(async move { store.rotate_refresh_token(tenant, old, NOW + 1, &tokens, None).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for handle in handles {
        outcomes.push(handle.await.expect("rotate task panicked").expect("rotate failed"));
    }
    let winners: Vec<usize> = outcomes.iter().enumerate().filter(|(_, o)| **o == RotateOutcome::Rotated).map(|(i, _)| i).collect();
    assert_eq!(winners.len(), 1, "expected exactly one Rotated, got {outcomes:?}");

    for (i, tokens) in attempts.iter().enumerate() {
        for t in tokens {
            let found = store.find_token(w.tenant, t.hash).await.unwrap();
            assert_eq!(found.is_some(), i == winners[0], "attempt {i}: token presence does not match the outcome");
        }
    }
}

/// `find_client_and_token` answers what `find_client` and `find_token` answer, each side on
/// its own: a missing client does not hide the token, nor the reverse, and a tenant sees
/// neither of another's.
pub async fn client_and_token_read_together(store: SharedStore) {
    let w = world(&store, "acme").await;
    let issued = issue(&store, &w, 10).await;
    let other = world(&store, "globex").await;
    let alone = |client: &str, hash| {
        let store = store.clone();
        let client = client.to_owned();
        async move { (store.find_client(w.tenant, &client).await.unwrap(), store.find_token(w.tenant, hash).await.unwrap()) }
    };
    for (client, hash) in
        [("app", issued.access.hash), ("app", issued.refresh.hash), ("app", h(99)), ("nobody", issued.access.hash), ("nobody", h(99))]
    {
        let together = store.find_client_and_token(w.tenant, client, hash).await.unwrap();
        assert_eq!(together, alone(client, hash).await, "{client} and {hash:?} read together");
    }
    let (client, token) = store.find_client_and_token(w.tenant, "app", issued.access.hash).await.unwrap();
    assert_eq!(client, Some(w.client.clone()));
    assert_eq!(token.map(|t| t.token), Some(issued.access.clone()));
    // The other tenant has a client of the same name, and none of this tenant's tokens.
    let (client, token) = store.find_client_and_token(other.tenant, "app", issued.access.hash).await.unwrap();
    assert_eq!(client, Some(other.client));
    assert!(token.is_none(), "another tenant's token was read");
    // Still right after a write: the read sees what was committed before it began.
    store.revoke_token(w.tenant, issued.access.hash, NOW + 1).await.unwrap();
    let (_, token) = store.find_client_and_token(w.tenant, "app", issued.access.hash).await.unwrap();
    assert_eq!(token.and_then(|t| t.token.revoked_at), Some(NOW + 1));
}

/// Revoking a family ends every token in it; revoking one token ends only that token.
pub async fn revocation(store: SharedStore) {
    let w = world(&store, "acme").await;

    // A family with a rotation behind it, then revoked.
    let issued = issue(&store, &w, 10).await;
    let next = pair(&issued.family, h(20), h(21));
    assert_eq!(store.rotate_refresh_token(w.tenant, issued.refresh.hash, NOW + 1, &next, None).await.unwrap(), RotateOutcome::Rotated);
    // A second family of the same user and client, which must survive.
    let bystander = issue(&store, &w, 30).await;

    store.revoke_family(w.tenant, issued.family.id, NOW + 2).await.unwrap();
    for hash in [issued.access.hash, issued.refresh.hash, h(20), h(21)] {
        let v = view(&store, w.tenant, hash).await;
        assert_eq!(v.family.revoked_at, Some(NOW + 2));
        assert!(!v.is_active(NOW + 2), "token of a revoked family still active: {v:?}");
    }
    let refused = pair(&issued.family, h(22), h(23));
    assert_eq!(store.rotate_refresh_token(w.tenant, h(21), NOW + 3, &refused, None).await.unwrap(), RotateOutcome::NotCurrent);
    assert!(store.find_token(w.tenant, h(23)).await.unwrap().is_none());
    store.revoke_family(w.tenant, issued.family.id, NOW + 4).await.unwrap(); // Idempotent.
    for hash in [bystander.access.hash, bystander.refresh.hash] {
        assert!(view(&store, w.tenant, hash).await.is_active(NOW + 4), "revoke_family reached another family");
    }

    // Revoking the bystander's access token ends only that token.
    store.revoke_token(w.tenant, bystander.access.hash, NOW + 5).await.unwrap();
    let access = view(&store, w.tenant, bystander.access.hash).await;
    assert_eq!(access.token.revoked_at, Some(NOW + 5));
    assert_eq!(access.family.revoked_at, None);
    assert!(!access.is_active(NOW + 5));
    let refresh = view(&store, w.tenant, bystander.refresh.hash).await;
    assert!(refresh.is_active(NOW + 5), "revoking an access token revoked its refresh token: {refresh:?}");

    // Revoking a refresh token stops its rotation.
    store.revoke_token(w.tenant, bystander.refresh.hash, NOW + 6).await.unwrap();
    assert!(!view(&store, w.tenant, bystander.refresh.hash).await.is_active(NOW + 6));
    let refused = pair(&bystander.family, h(40), h(41));
    assert_eq!(
        store.rotate_refresh_token(w.tenant, bystander.refresh.hash, NOW + 7, &refused, None).await.unwrap(),
        RotateOutcome::NotCurrent
    );
    assert!(store.find_token(w.tenant, h(41)).await.unwrap().is_none());
}

/// A client acting for itself (client_credentials): a family and token with no user or grant,
/// written at once, and deleted with the client.
pub async fn client_families_have_no_user(store: SharedStore) {
    let w = world(&store, "acme").await;
    let family = Family {
        id: Uuid::new_v4(),
        tenant: w.tenant,
        grant_id: None,
        client_id: w.client.client_id.clone(),
        user_id: None,
        business_id: None,
        scope: scope("reports:read"),
        auth_time: NOW,
        created_at: NOW,
        expires_at: NOW + 3_600,
        revoked_at: None,
    };
    let access = token(&family, TokenKind::Access, h(90), Uuid::new_v4());
    store.insert_family(w.tenant, &family, std::slice::from_ref(&access)).await.unwrap();
    let v = view(&store, w.tenant, h(90)).await;
    assert_eq!(v.token.user_id, None);
    assert_eq!(v.family.grant_id, None);
    assert_eq!(v.subject_email, None, "a client's own token has no user");
    assert!(v.is_active(NOW + 1));
    assert!(store.find_token(TenantId(Uuid::new_v4()), h(90)).await.unwrap().is_none(), "tenant isolation");
    // The same family twice is a conflict, and nothing of the second attempt is written.
    let again = token(&family, TokenKind::Access, h(91), Uuid::new_v4());
    assert!(matches!(store.insert_family(w.tenant, &family, &[again]).await, Err(StoreError::Conflict(_))));
    assert!(store.find_token(w.tenant, h(91)).await.unwrap().is_none());
    assert!(store.delete_client(w.tenant, &w.client.client_id).await.unwrap());
    assert!(store.find_token(w.tenant, h(90)).await.unwrap().is_none(), "deleting the client deletes its tokens");
}

/// A client's own JWT access token is not stored: its jti is live while its client exists and
/// nobody revoked it; a revoked jti is kept until the token expires; tenants are isolated.
pub async fn self_contained_tokens_revoke_by_jti(store: SharedStore) {
    let w = world(&store, "acme").await;
    let other = world(&store, "globex").await;
    let (jti, kept) = (Uuid::new_v4(), Uuid::new_v4());
    let app = w.client.client_id.as_str();
    assert!(store.self_contained_token_live(w.tenant, app, jti).await.unwrap());
    assert!(!store.self_contained_token_live(w.tenant, "nobody", jti).await.unwrap(), "an unknown client's token is not live");
    store.revoke_jti(w.tenant, app, jti, NOW + 60, NOW).await.unwrap();
    store.revoke_jti(w.tenant, app, jti, NOW + 60, NOW + 1).await.unwrap();
    assert!(!store.self_contained_token_live(w.tenant, app, jti).await.unwrap(), "revoked");
    assert!(store.self_contained_token_live(w.tenant, app, kept).await.unwrap(), "another jti is untouched");
    assert!(store.self_contained_token_live(other.tenant, &other.client.client_id, jti).await.unwrap(), "tenant isolation");
    // A gone client revokes nothing (and its tokens are dead anyway).
    store.revoke_jti(w.tenant, "nobody", kept, NOW + 60, NOW).await.unwrap();
    assert!(store.self_contained_token_live(w.tenant, app, kept).await.unwrap());

    // Housekeeping forgets the jti once the token has expired, not before.
    assert_eq!(store.delete_expired(w.tenant, NOW + 59, NOW, NOW, 1_000).await.unwrap().revoked_jtis, 0);
    assert!(!store.self_contained_token_live(w.tenant, app, jti).await.unwrap());
    assert_eq!(store.delete_expired(w.tenant, NOW + 60, NOW, NOW, 1_000).await.unwrap().revoked_jtis, 1);

    // Deleting the client ends all its tokens and takes its revoked jtis with it.
    store.revoke_jti(w.tenant, app, kept, NOW + 600, NOW).await.unwrap();
    assert!(store.delete_client(w.tenant, app).await.unwrap());
    assert!(!store.self_contained_token_live(w.tenant, app, Uuid::new_v4()).await.unwrap());
    assert_eq!(store.delete_expired(w.tenant, NOW + 601, NOW, NOW, 1_000).await.unwrap().revoked_jtis, 0, "gone with the client");
}

/// A user's self-contained (sealed) access token has no row: its family, read with the user's
/// email, says whether it lives; a revoked jti ends it alone; revoking the family, or deleting
/// the family's grant, user or client ends every such token of it; tenants are isolated.
pub async fn users_self_contained_tokens_follow_their_family(store: SharedStore) {
    let w = world(&store, "acme").await;
    let other = world(&store, "globex").await;
    let c = code(w.tenant, h(70), w.user.id, &w.client.client_id, w.grant.id);
    let f = family(&c);
    // A family with a refresh token only: the access token is sealed.
    store.insert_family(w.tenant, &f, &[token(&f, TokenKind::Refresh, h(71), Uuid::new_v4())]).await.unwrap();
    let (jti, kept) = (Uuid::new_v4(), Uuid::new_v4());
    let found = store.find_family_of_token(w.tenant, f.id, jti).await.unwrap().expect("the family is found");
    assert_eq!(found.family, f);
    assert_eq!(found.subject_email.as_deref(), Some(w.user.email.as_str()));
    assert!(store.find_family_of_token(other.tenant, f.id, jti).await.unwrap().is_none(), "tenant isolation");
    assert!(store.find_family_of_token(w.tenant, Uuid::new_v4(), jti).await.unwrap().is_none(), "an unknown family");

    // Revoking one token's jti ends that token, not its family's others.
    store.revoke_jti(w.tenant, &w.client.client_id, jti, NOW + 3_600, NOW).await.unwrap();
    assert!(store.find_family_of_token(w.tenant, f.id, jti).await.unwrap().is_none(), "revoked jti");
    assert!(store.find_family_of_token(w.tenant, f.id, kept).await.unwrap().is_some());

    // Introspection reads its caller's client with the family: the same answers.
    let app = w.client.client_id.as_str();
    for _ in 0..2 {
        // Twice: a store that caches clients answers from its cache the second time.
        let (client, found) = store.find_client_and_family(w.tenant, app, f.id, kept).await.unwrap();
        assert_eq!((client.map(|c| c.client_id), found.map(|v| v.family)), (Some(app.to_owned()), Some(f.clone())));
    }
    let (client, found) = store.find_client_and_family(w.tenant, app, f.id, jti).await.unwrap();
    assert!(client.is_some() && found.is_none(), "the revoked jti");
    let (client, found) = store.find_client_and_family(w.tenant, app, Uuid::new_v4(), kept).await.unwrap();
    assert!(client.is_some() && found.is_none(), "an unknown family");
    assert!(store.find_client_and_family(w.tenant, "nobody", f.id, kept).await.unwrap().0.is_none(), "an unknown caller");
    assert!(store.find_client_and_family(other.tenant, app, f.id, kept).await.unwrap().1.is_none(), "tenant isolation");

    // Revoking the family shows in what is read (the caller judges it).
    store.revoke_family(w.tenant, f.id, NOW + 1).await.unwrap();
    assert_eq!(store.find_family_of_token(w.tenant, f.id, kept).await.unwrap().unwrap().family.revoked_at, Some(NOW + 1));

    // A family with no token row at all (no refresh token, a sealed access token) lives until
    // its own expiry, and housekeeping takes it then.
    let bare = Family { id: Uuid::new_v4(), expires_at: NOW + 3_600, ..f.clone() };
    store.insert_family(w.tenant, &bare, &[]).await.unwrap();
    assert!(store.find_family_of_token(w.tenant, bare.id, kept).await.unwrap().is_some());
    store.delete_expired(w.tenant, NOW + 3_599, NOW, NOW, 1_000).await.unwrap();
    assert!(store.find_family_of_token(w.tenant, bare.id, kept).await.unwrap().is_some(), "not before its expiry");
    store.delete_expired(w.tenant, NOW + 3_600, NOW, NOW, 1_000).await.unwrap();
    assert!(store.find_family_of_token(w.tenant, bare.id, kept).await.unwrap().is_none(), "taken at its expiry");

    // Deleting the user takes the families, and so every sealed token of them.
    let gone = Family { id: Uuid::new_v4(), ..f.clone() };
    store.insert_family(w.tenant, &gone, &[]).await.unwrap();
    assert!(store.delete_user(w.tenant, w.user.id).await.unwrap());
    assert!(store.find_family_of_token(w.tenant, gone.id, kept).await.unwrap().is_none(), "the user is gone");

    // Deleting the client does too.
    let c = code(other.tenant, h(72), other.user.id, &other.client.client_id, other.grant.id);
    let theirs = family(&c);
    store.insert_family(other.tenant, &theirs, &[]).await.unwrap();
    assert!(store.find_family_of_token(other.tenant, theirs.id, kept).await.unwrap().is_some());
    assert!(store.delete_client(other.tenant, &other.client.client_id).await.unwrap());
    assert!(store.find_family_of_token(other.tenant, theirs.id, kept).await.unwrap().is_none(), "the client is gone");
}

/// Personal access tokens: one record through creation, regeneration and revocation, with its
/// audit trail; isolated by tenant; deleted with their user.
pub async fn personal_tokens_lifecycle(store: SharedStore) {
    let w = world(&store, "acme").await;
    let pat = |id: Uuid, hash: SecretHash, at: UnixTime| PersonalToken {
        id,
        tenant: w.tenant,
        user_id: w.user.id,
        name: format!("token {at}"),
        hash,
        scope: scope("openid orders:read"),
        created_at: at,
        expires_at: at + 86_400,
        last_used_at: None,
        revoked_at: None,
    };
    let first = pat(Uuid::new_v4(), h(70), NOW);
    let second = pat(Uuid::new_v4(), h(71), NOW + 1);
    store.insert_personal_token(&first).await.unwrap();
    store.insert_personal_token(&second).await.unwrap();
    assert_eq!(store.find_personal_token(w.tenant, first.id).await.unwrap(), Some(first.clone()));
    assert_eq!(store.find_personal_token_by_hash(w.tenant, h(70)).await.unwrap(), Some(first.clone()));
    assert_eq!(store.list_personal_tokens(w.tenant, w.user.id).await.unwrap(), vec![second.clone(), first.clone()], "newest first");
    let other = TenantId(Uuid::new_v4());
    assert!(store.find_personal_token_by_hash(other, h(70)).await.unwrap().is_none());
    assert!(!store.revoke_personal_token(other, first.id, NOW).await.unwrap());

    assert!(store.update_personal_token_secret(w.tenant, first.id, h(72), NOW + 5).await.unwrap());
    assert!(store.find_personal_token_by_hash(w.tenant, h(70)).await.unwrap().is_none(), "the old secret is gone");
    let again = store.find_personal_token_by_hash(w.tenant, h(72)).await.unwrap().unwrap();
    assert_eq!((again.id, again.name.clone(), again.scope.clone()), (first.id, first.name.clone(), first.scope.clone()), "same record");
    store.update_personal_token_last_used(w.tenant, first.id, NOW + 6).await.unwrap();
    assert_eq!(store.find_personal_token(w.tenant, first.id).await.unwrap().unwrap().last_used_at, Some(NOW + 6));
    assert!(store.revoke_personal_token(w.tenant, first.id, NOW + 7).await.unwrap());
    assert!(!store.revoke_personal_token(w.tenant, first.id, NOW + 8).await.unwrap(), "already revoked");
    assert!(!store.update_personal_token_secret(w.tenant, first.id, h(73), NOW + 9).await.unwrap(), "a revoked token stays revoked");
    let revoked = store.find_personal_token(w.tenant, first.id).await.unwrap().unwrap();
    assert!(!revoked.is_active(NOW + 7));
    let events: Vec<(String, UnixTime)> =
        store.list_personal_token_events(w.tenant, first.id).await.unwrap().into_iter().map(|e| (e.event, e.at)).collect();
    assert_eq!(events, vec![("created".to_owned(), NOW), ("regenerated".to_owned(), NOW + 5), ("revoked".to_owned(), NOW + 7)]);

    assert!(store.delete_user(w.tenant, w.user.id).await.unwrap());
    assert!(store.find_personal_token(w.tenant, second.id).await.unwrap().is_none(), "deleted with the user");
}

/// Housekeeping removes what can no longer matter and nothing a live family or reuse
/// detection needs; it works in bounded batches.
pub async fn housekeeping_deletes_only_what_cannot_matter(store: SharedStore) {
    let w = world(&store, "acme").await;
    let live = issue(&store, &w, 10).await;
    let next = pair(&live.family, h(20), h(21));
    assert_eq!(store.rotate_refresh_token(w.tenant, live.refresh.hash, NOW + 1, &next, None).await.unwrap(), RotateOutcome::Rotated);
    // A second live family, and one whose absolute lifetime ends early, with its tokens.
    let second = issue(&store, &w, 30).await;
    let old_code = code(w.tenant, h(40), w.user.id, &w.client.client_id, w.grant.id);
    store.insert_code(&old_code).await.unwrap();
    let short = Family { id: old_code.family_id, expires_at: NOW + 100, ..family(&old_code) };
    let [sa, sr] = pair(&short, h(41), h(42));
    store.redeem_code(w.tenant, old_code.hash, NOW, &short, &[sa, sr]).await.unwrap();
    // A client's own family (client_credentials): one access token and no refresh token, so it
    // idles out when that token expires, long before its absolute lifetime.
    let own = Family { id: Uuid::new_v4(), grant_id: None, user_id: None, ..family(&old_code) };
    store.insert_family(w.tenant, &own, &[token(&own, TokenKind::Access, h(60), Uuid::new_v4())]).await.unwrap();
    let session = Session { hash: h(50), tenant: w.tenant, user_id: w.user.id, auth_time: NOW, created_at: NOW, expires_at: NOW + 10 };
    store.insert_session(&session).await.unwrap();
    store.record_attempt(w.tenant, "account:x", NOW, 900).await.unwrap();
    let other = TenantId(Uuid::new_v4());
    assert_eq!(
        store.delete_expired(other, NOW + 3_601, NOW + 1, NOW, 1_000).await.unwrap().total(),
        0,
        "another tenant's pass touches nothing"
    );

    let later = NOW + 3_601;
    let before = store.count_rows(w.tenant).await.unwrap();
    let mut total = Cleanup::default();
    // Batches of one: several passes, each bounded.
    loop {
        let c = store.delete_expired(w.tenant, later, NOW + 1, NOW, 1).await.unwrap();
        // Families: a batch past their lifetime, and the idled-out families of a batch of tokens.
        assert!(c.codes <= 1 && c.tokens <= 1 && c.families <= 2, "a pass exceeds its batch: {c:?}");
        if c.total() == 0 {
            break;
        }
        total += c;
    }
    assert_eq!(total.codes, 3, "every code has expired");
    assert_eq!(total.families, 2, "only the family past its absolute lifetime and the one that idled out");
    assert_eq!((total.sessions, total.attempts), (1, 1));
    for gone in [h(11), h(20), h(31), h(41), h(42), h(60)] {
        assert!(store.find_token(w.tenant, gone).await.unwrap().is_none(), "{gone:?} should be gone");
    }
    // The live family still works, and the rotated token is still there to detect reuse.
    assert!(view(&store, w.tenant, live.refresh.hash).await.token.rotated_at.is_some());
    assert!(view(&store, w.tenant, second.refresh.hash).await.is_active(later));
    let after = pair(&live.family, h(22), h(23));
    assert_eq!(store.rotate_refresh_token(w.tenant, h(21), later, &after, None).await.unwrap(), RotateOutcome::Rotated);
    let counts = store.count_rows(w.tenant).await.unwrap();
    assert!(counts.tokens < before.tokens + 2 && counts.codes == 0 && counts.families == 2, "{before:?} -> {counts:?}");
}

/// What a user authorized for a business ends with their membership; other businesses'
/// grants and families stay.
pub async fn removing_a_business_revokes_its_access(store: SharedStore) {
    let w = world(&store, "acme").await;
    let b1 = business(w.tenant, "One");
    let b2 = business(w.tenant, "Two");
    store.insert_business(&b1).await.unwrap();
    store.insert_business(&b2).await.unwrap();
    let for_b1 = store.upsert_grant(&grant(w.tenant, w.user.id, &w.client.client_id, Some(b1.id), "openid")).await.unwrap();
    let mut c1 = code(w.tenant, h(60), w.user.id, &w.client.client_id, for_b1.id);
    c1.business_id = Some(b1.id);
    store.insert_code(&c1).await.unwrap();
    let f1 = family(&c1);
    store.redeem_code(w.tenant, c1.hash, NOW, &f1, &pair(&f1, h(61), h(62))).await.unwrap();
    let other_client = client(w.tenant, "other", Some(h(1001)));
    store.insert_client(&other_client, &[]).await.unwrap();
    let for_b2 = store.upsert_grant(&grant(w.tenant, w.user.id, "other", Some(b2.id), "openid")).await.unwrap();
    let mut c2 = code(w.tenant, h(70), w.user.id, "other", for_b2.id);
    c2.business_id = Some(b2.id);
    store.insert_code(&c2).await.unwrap();
    let f2 = family(&c2);
    store.redeem_code(w.tenant, c2.hash, NOW, &f2, &pair(&f2, h(71), h(72))).await.unwrap();

    assert_eq!(store.revoke_user_business(w.tenant, w.user.id, b1.id, NOW + 1).await.unwrap(), 1);
    assert!(!view(&store, w.tenant, h(62)).await.is_active(NOW + 1), "the family for the business is revoked");
    assert!(store.find_grant(w.tenant, w.user.id, &w.client.client_id).await.unwrap().is_none(), "its consent is gone");
    assert!(view(&store, w.tenant, h(72)).await.is_active(NOW + 1), "another business is untouched");
    assert!(store.find_grant(w.tenant, w.user.id, "other").await.unwrap().is_some());
}

/// A rotation may keep a sealed answer for duplicates: it is found only within its window,
/// while the family lives and the successor is unused; housekeeping erases it afterwards.
pub async fn refresh_replay_answer_lives_only_in_its_window(store: SharedStore) {
    let w = world(&store, "acme").await;
    let issued = issue(&store, &w, 10).await;
    let f = &issued.family;
    let replay = SealedReplay { sealed: vec![7; 80], until: NOW + 10 };
    let next = pair(f, h(20), h(21));
    let outcome = store.rotate_refresh_token(w.tenant, issued.refresh.hash, NOW + 5, &next, Some(&replay)).await.unwrap();
    assert_eq!(outcome, RotateOutcome::Rotated);
    assert_eq!(store.find_replay(w.tenant, issued.refresh.hash, NOW + 5).await.unwrap(), Some(replay.sealed.clone()));
    assert_eq!(store.find_replay(w.tenant, issued.refresh.hash, NOW + 9).await.unwrap(), Some(replay.sealed.clone()));
    assert_eq!(store.find_replay(w.tenant, issued.refresh.hash, NOW + 10).await.unwrap(), None, "the window has ended");
    assert_eq!(store.find_replay(w.tenant, h(21), NOW + 5).await.unwrap(), None, "a current token has no replay");
    assert_eq!(store.find_replay(w.tenant, h(999), NOW + 5).await.unwrap(), None);
    assert_eq!(store.find_replay(TenantId(Uuid::new_v4()), issued.refresh.hash, NOW + 5).await.unwrap(), None, "tenant-scoped");

    // Once the successor is used, the old answer is stale: a duplicate is reuse.
    let after = pair(f, h(22), h(23));
    let second = SealedReplay { sealed: vec![8; 80], until: NOW + 16 };
    assert_eq!(store.rotate_refresh_token(w.tenant, h(21), NOW + 6, &after, Some(&second)).await.unwrap(), RotateOutcome::Rotated);
    assert_eq!(store.find_replay(w.tenant, issued.refresh.hash, NOW + 6).await.unwrap(), None, "the successor was used");
    assert_eq!(store.find_replay(w.tenant, h(21), NOW + 6).await.unwrap(), Some(second.sealed.clone()));

    // A revoked successor or family ends the replay too.
    store.revoke_token(w.tenant, h(23), NOW + 7).await.unwrap();
    assert_eq!(store.find_replay(w.tenant, h(21), NOW + 7).await.unwrap(), None, "the successor was revoked");
    let other = issue(&store, &w, 30).await;
    let third = SealedReplay { sealed: vec![9; 80], until: NOW + 20 };
    let next = pair(&other.family, h(40), h(41));
    store.rotate_refresh_token(w.tenant, other.refresh.hash, NOW + 5, &next, Some(&third)).await.unwrap();
    store.revoke_family(w.tenant, other.family.id, NOW + 6).await.unwrap();
    assert_eq!(store.find_replay(w.tenant, other.refresh.hash, NOW + 7).await.unwrap(), None, "the family was revoked");

    // A rotation without a replay keeps none.
    let plain = issue(&store, &w, 50).await;
    store.rotate_refresh_token(w.tenant, plain.refresh.hash, NOW + 5, &pair(&plain.family, h(60), h(61)), None).await.unwrap();
    assert_eq!(store.find_replay(w.tenant, plain.refresh.hash, NOW + 5).await.unwrap(), None);

    // Housekeeping erases the answers whose window has ended, and keeps the rows.
    let c = store.delete_expired(w.tenant, NOW + 17, NOW, NOW, 1_000).await.unwrap();
    assert_eq!(c.replays, 2, "the answers of h(12) and h(21) are past their window: {c:?}");
    assert_eq!(c.tokens, 0, "{c:?}");
    assert!(view(&store, w.tenant, issued.refresh.hash).await.token.rotated_at.is_some(), "the row stays for reuse detection");
    let c = store.delete_expired(w.tenant, NOW + 21, NOW, NOW, 1_000).await.unwrap();
    assert_eq!(c.replays, 1, "{c:?}");
    assert_eq!(store.delete_expired(w.tenant, NOW + 21, NOW, NOW, 1_000).await.unwrap().replays, 0);
}

/// `ensure_setting` stores the first value and returns it to every later caller.
pub async fn settings_first_writer_wins(store: SharedStore) {
    assert_eq!(store.ensure_setting("master_key_check", "abc").await.unwrap(), "abc");
    assert_eq!(store.ensure_setting("master_key_check", "xyz").await.unwrap(), "abc");
    assert_eq!(store.ensure_setting("other", "xyz").await.unwrap(), "xyz");
    let racers: Vec<_> = (0..RACERS)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.ensure_setting("raced", &i.to_string()).await.unwrap() })
        })
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    for r in racers {
        seen.insert(r.await.unwrap());
    }
    assert_eq!(seen.len(), 1, "every racer must see the one stored value: {seen:?}");
}

/// Many writes at once, some of which fail halfway: a redemption whose family id is already
/// taken fails after it consumed the code, so its code must stay unconsumed and none of its
/// tokens may exist; the writes around it (which a store may commit together with it, as
/// SQLite's group commit does) must all be there.
pub async fn concurrent_writes_fail_alone(store: SharedStore) {
    let w = world(&store, "acme").await;
    let taken = issue(&store, &w, 1).await.family;
    let n: u16 = 48;
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (store, w_tenant, user, grant) = (store.clone(), w.tenant, w.user.id, w.grant.id);
            let taken = taken.id;
            tokio::spawn(async move {
                let base = 100 + 10 * i;
                let mut c = code(w_tenant, h(base), user, "app", grant);
                let fails = i % 3 == 0;
                if fails {
                    c.family_id = taken;
                }
                store.insert_code(&c).await.unwrap();
                let f = family(&c);
                let tokens = pair(&f, h(base + 1), h(base + 2));
                (c, fails, store.redeem_code(w_tenant, h(base), NOW, &f, &tokens).await)
            })
        })
        .collect();
    for handle in handles {
        let (c, fails, outcome) = handle.await.expect("task panicked");
        let stored = store.find_code(w.tenant, c.hash).await.unwrap().expect("the code was inserted");
        if fails {
            assert_conflict(outcome, "a redemption into a taken family");
            assert_eq!(stored.consumed_at, None, "a failed redemption must leave its code unconsumed");
        } else {
            assert_eq!(outcome.unwrap(), RedeemOutcome::Redeemed);
            assert_eq!(stored.consumed_at, Some(NOW), "a redemption that succeeded must have consumed its code");
        }
    }
    for i in 0..n {
        let base = 100 + 10 * i;
        for t in [h(base + 1), h(base + 2)] {
            let found = store.find_token(w.tenant, t).await.unwrap();
            assert_eq!(found.is_some(), i % 3 != 0, "redemption {i}: its tokens exist exactly when it succeeded");
        }
    }
    let counts = store.count_rows(w.tenant).await.unwrap();
    let succeeded = u64::from(n - n.div_ceil(3));
    assert_eq!(counts.families, 1 + succeeded, "one family per successful redemption, and the first one");
    assert_eq!(counts.tokens, 2 * (1 + succeeded));
}

fn assert_invalid<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    assert!(matches!(r, Err(StoreError::Invalid(_))), "{what}: expected Invalid, got {r:?}");
}

/// Text with a NUL byte, which PostgreSQL's `text` cannot hold, is refused by every store the
/// same way, as [`StoreError::Invalid`], whether it is written or looked up; never a database
/// failure. Nothing is written, and the store keeps working.
pub async fn text_with_a_nul_is_refused(store: SharedStore) {
    let w = world(&store, "acme").await;
    let nul = "a\0b";
    assert_invalid(store.ensure_tenant(nul, NOW).await, "ensure_tenant");
    assert_invalid(store.find_tenant_by_name(nul).await, "find_tenant_by_name");
    assert_invalid(store.insert_user(&user(w.tenant, "x\0@acme.example")).await, "insert_user email");
    let mut named = user(w.tenant, "bob@acme.example");
    named.name = nul.to_owned();
    assert_invalid(store.insert_user(&named).await, "insert_user name");
    assert_invalid(store.find_user_by_email(w.tenant, nul).await, "find_user_by_email");
    assert_invalid(store.insert_business(&business(w.tenant, nul)).await, "insert_business");
    assert_invalid(store.find_business_by_name(w.tenant, nul).await, "find_business_by_name");
    assert_invalid(store.insert_client(&client(w.tenant, nul, None), &[]).await, "insert_client");
    let mut developer = client(w.tenant, "other", None);
    developer.developer = nul.to_owned();
    assert_invalid(store.insert_client(&developer, &[]).await, "insert_client developer");
    assert_invalid(store.find_client(w.tenant, nul).await, "find_client");
    assert_invalid(store.find_client_and_token(w.tenant, nul, h(1)).await, "find_client_and_token");
    assert_invalid(store.delete_client(w.tenant, nul).await, "delete_client");
    assert_invalid(store.find_grant(w.tenant, w.user.id, nul).await, "find_grant");
    assert_invalid(store.record_attempt(w.tenant, nul, NOW, 60).await, "record_attempt");
    assert_invalid(store.self_contained_token_live(w.tenant, nul, Uuid::new_v4()).await, "self_contained_token_live");
    let mut c = code(w.tenant, h(5), w.user.id, &w.client.client_id, w.grant.id);
    c.nonce = Some(nul.to_owned());
    assert_invalid(store.insert_code(&c).await, "insert_code nonce");
    let pat = PersonalToken {
        id: Uuid::new_v4(),
        tenant: w.tenant,
        user_id: w.user.id,
        name: nul.to_owned(),
        hash: h(6),
        scope: scope("openid"),
        created_at: NOW,
        expires_at: NOW + 60,
        last_used_at: None,
        revoked_at: None,
    };
    assert_invalid(store.insert_personal_token(&pat).await, "insert_personal_token");
    let interaction = Interaction {
        id: Uuid::new_v4(),
        tenant: w.tenant,
        browser_hash: h(7),
        request: nul.to_owned(),
        login: None,
        created_at: NOW,
        expires_at: NOW + 60,
    };
    assert_invalid(store.insert_interaction(&interaction).await, "insert_interaction");

    // Nothing of it was written, and the store still serves.
    assert!(store.find_code(w.tenant, h(5)).await.unwrap().is_none());
    assert!(store.find_personal_token(w.tenant, pat.id).await.unwrap().is_none());
    assert_eq!(store.list_users(w.tenant).await.unwrap().len(), 1);
    assert_eq!(store.list_clients(w.tenant).await.unwrap().len(), 1);
    issue(&store, &w, 20).await;
}

/// A user's grants come with their app, developer and business, and when the app last got
/// tokens; revoking one ends every family issued under it and its unredeemed codes at once,
/// and only its own user can.
pub async fn grants_are_listed_and_revoked_with_everything_issued_under_them(store: SharedStore) {
    let w = world(&store, "acme").await;
    let shop = business(w.tenant, "Shop");
    store.insert_business(&shop).await.unwrap();
    let g = store.upsert_grant(&grant(w.tenant, w.user.id, &w.client.client_id, Some(shop.id), "openid offline_access")).await.unwrap();
    assert_eq!(g.id, w.grant.id, "one grant per user and app");
    let before = store.list_user_grants(w.tenant, w.user.id).await.unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!((before[0].client_name.as_str(), before[0].developer.as_str()), ("App app", "Acme"));
    assert_eq!(before[0].business_name.as_deref(), Some("Shop"));
    assert_eq!(before[0].last_used_at, None, "no token yet");

    let issued = issue(&store, &w, 10).await;
    let pending = code(w.tenant, h(20), w.user.id, &w.client.client_id, w.grant.id);
    store.insert_code(&pending).await.unwrap();
    let listed = store.list_user_grants(w.tenant, w.user.id).await.unwrap();
    assert_eq!(listed[0].last_used_at, Some(NOW));
    assert_eq!(listed[0].grant.scope, scope("openid offline_access"));
    // A later family whose only token is sealed (no row) is a use all the same.
    let sealed_only = Family { id: Uuid::new_v4(), created_at: NOW + 3, ..family(&pending) };
    store.insert_family(w.tenant, &sealed_only, &[]).await.unwrap();
    assert_eq!(store.list_user_grants(w.tenant, w.user.id).await.unwrap()[0].last_used_at, Some(NOW + 3));

    let stranger = user(w.tenant, "mallory@acme.example");
    store.insert_user(&stranger).await.unwrap();
    assert!(!store.revoke_grant(w.tenant, stranger.id, w.grant.id, NOW + 1).await.unwrap(), "not the stranger's grant");
    assert!(view(&store, w.tenant, issued.refresh.hash).await.family.revoked_at.is_none());

    assert!(store.revoke_grant(w.tenant, w.user.id, w.grant.id, NOW + 1).await.unwrap());
    assert_eq!(view(&store, w.tenant, issued.access.hash).await.family.revoked_at, Some(NOW + 1));
    assert!(store.find_code(w.tenant, pending.hash).await.unwrap().is_none(), "an unredeemed code would bring it back");
    assert!(store.find_grant(w.tenant, w.user.id, &w.client.client_id).await.unwrap().is_none());
    assert!(store.list_user_grants(w.tenant, w.user.id).await.unwrap().is_empty());
    assert!(!store.revoke_grant(w.tenant, w.user.id, w.grant.id, NOW + 2).await.unwrap(), "already gone");
}

/// A new password replaces the old hash and signs out every other session of the user.
pub async fn a_password_change_ends_the_other_sessions(store: SharedStore) {
    let w = world(&store, "acme").await;
    let other = user(w.tenant, "bob@acme.example");
    store.insert_user(&other).await.unwrap();
    let session = |hash: SecretHash, user: Uuid| Session {
        hash,
        tenant: w.tenant,
        user_id: user,
        auth_time: NOW,
        created_at: NOW,
        expires_at: NOW + 600,
    };
    for (n, u) in [(1, w.user.id), (2, w.user.id), (3, w.user.id), (4, other.id)] {
        store.insert_session(&session(h(n), u)).await.unwrap();
    }
    assert!(store.update_user_password(w.tenant, w.user.id, "$argon2id$new", Some(h(2))).await.unwrap());
    assert_eq!(store.find_user(w.tenant, w.user.id).await.unwrap().unwrap().password_hash, "$argon2id$new");
    assert!(store.find_session(w.tenant, h(1)).await.unwrap().is_none());
    assert!(store.find_session(w.tenant, h(2)).await.unwrap().is_some(), "the session that changed it stays");
    assert!(store.find_session(w.tenant, h(3)).await.unwrap().is_none());
    assert!(store.find_session(w.tenant, h(4)).await.unwrap().is_some(), "another user's session stays");
    assert!(store.update_user_password(w.tenant, other.id, "$argon2id$x", None).await.unwrap());
    assert!(store.find_session(w.tenant, h(4)).await.unwrap().is_none(), "without a session to keep, all end");
    assert!(!store.update_user_password(w.tenant, Uuid::new_v4(), "$argon2id$x", None).await.unwrap());
}

/// The scope catalogue: entries by name, replaced in place, per tenant.
pub async fn scope_catalogue(store: SharedStore) {
    let a = tenant(&store, "a").await;
    let b = tenant(&store, "b").await;
    let entry = |tenant: TenantId, name: &str, description: &str, personal: bool| ScopeEntry {
        tenant,
        name: name.to_owned(),
        description: description.to_owned(),
        personal,
        created_at: NOW,
    };
    store.upsert_scope(&entry(a, "orders:read", "Read your orders", true)).await.unwrap();
    store.upsert_scope(&entry(a, "business/orders:write", "Change your business's orders", false)).await.unwrap();
    store.upsert_scope(&entry(b, "orders:read", "Other words", false)).await.unwrap();
    let names: Vec<String> = store.list_scopes(a).await.unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["business/orders:write", "orders:read"]);
    store.upsert_scope(&entry(a, "orders:read", "See your orders", false)).await.unwrap();
    let listed = store.list_scopes(a).await.unwrap();
    assert_eq!(listed[1], entry(a, "orders:read", "See your orders", false));
    assert!(store.delete_scope(a, "orders:read").await.unwrap());
    assert!(!store.delete_scope(a, "orders:read").await.unwrap());
    assert_eq!(store.list_scopes(a).await.unwrap().len(), 1);
    assert_eq!(store.list_scopes(b).await.unwrap()[0].description, "Other words", "tenants do not share a catalogue");
}

/// A user's email and name, and what a client is registered with, change in place; an email
/// taken by another user is a conflict; the client keeps its id, secret and creation.
pub async fn users_and_clients_are_updated_in_place(store: SharedStore) {
    let w = world(&store, "acme").await;
    let bob = user(w.tenant, "bob@acme.example");
    store.insert_user(&bob).await.unwrap();
    assert!(store.update_user(w.tenant, w.user.id, "alice@new.example", "Alice N.").await.unwrap());
    let found = store.find_user_by_email(w.tenant, "alice@new.example").await.unwrap().unwrap();
    assert_eq!((found.id, found.name.as_str()), (w.user.id, "Alice N."));
    assert_conflict(store.update_user(w.tenant, w.user.id, "bob@acme.example", "x").await, "another user's email");
    assert!(!store.update_user(w.tenant, Uuid::new_v4(), "nobody@acme.example", "x").await.unwrap());

    let mut changed = w.client.clone();
    changed.name = "Renamed".into();
    changed.redirect_uris = vec!["https://new.example/cb".into()];
    changed.scopes = scope("openid");
    changed.require_pkce = !changed.require_pkce;
    changed.secret_hash = Some(h(999));
    assert!(store.update_client(&changed).await.unwrap());
    let found = store.find_client(w.tenant, &w.client.client_id).await.unwrap().unwrap();
    assert_eq!(found.name, "Renamed");
    assert_eq!(found.redirect_uris, changed.redirect_uris);
    assert_eq!(found.scopes, changed.scopes);
    assert_eq!(found.require_pkce, changed.require_pkce);
    assert_eq!(found.secret_hash, w.client.secret_hash, "the secret is not changed by an update");
    let mut unknown = w.client.clone();
    unknown.client_id = "nobody".into();
    assert!(!store.update_client(&unknown).await.unwrap());
}
