//! Administrative operations, shared by the CLI and the demo mode. They work on the same
//! database while a server runs.

use crate::runtime::{new_secret, Runtime};
use crate::state::DemoInfo;
use latchkey_core::grant::{ClientTokenSettings, Lifetimes};
use latchkey_core::model::{Business, Client, ClientProfile, GrantType, SecretInfo, User};
use latchkey_core::password;
use latchkey_core::redirect;
use latchkey_core::scope::ScopeSet;
use latchkey_core::secret::{Secret, SecretKind};
use latchkey_core::text;
use latchkey_store::StoreError;
use rand::RngCore;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Exists(String),
    /// One field of a form or request is wrong; `message` says how, to a person.
    #[error("{field}: {message}")]
    Field { field: &'static str, message: String },
    /// Several fields are wrong: each with what is wrong with it (a form shows them all).
    #[error("{}", .0.iter().map(|(f, m)| format!("{f}: {m}")).collect::<Vec<_>>().join("; "))]
    Fields(Vec<(&'static str, String)>),
    /// The actor may not do this at all (not a developer, say); what is not theirs is
    /// `NotFound` instead, so that nobody learns what exists.
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => AdminError::Exists(what),
            StoreError::Invalid(what) => AdminError::Invalid(what),
            e => AdminError::Store(e),
        }
    }
}

pub type AdminResult<T> = Result<T, AdminError>;

pub struct NewUser {
    pub email: String,
    pub name: String,
    pub password: String,
    pub businesses: Vec<String>,
}

fn check_email(email: &str) -> AdminResult<String> {
    text::email(email).map_err(|_| AdminError::Invalid(format!("{email:?} is not an email address")))
}

pub(crate) fn check_name(what: &str, name: &str) -> AdminResult<String> {
    text::name(name, 200)
        .ok_or_else(|| AdminError::Invalid(format!("the {what} must have 1 to 200 characters, none of them a control character")))
}

/// Creates a user; each named business is created if needed and the user joins it. The first
/// business becomes the user's default.
pub async fn create_user(rt: &Runtime, new: NewUser) -> AdminResult<User> {
    let email = check_email(&new.email)?;
    let name = check_name("name", &new.name)?;
    password::check_policy(&new.password).map_err(|e| AdminError::Invalid(e.to_owned()))?;
    if rt.store.find_user_by_email(rt.tenant.id, &email).await?.is_some() {
        return Err(AdminError::Exists(format!("a user with the email {email}")));
    }
    let pw = new.password;
    let password_hash = tokio::task::spawn_blocking(move || password::hash(&pw, &mut rand::rngs::OsRng))
        .await
        .map_err(|e| AdminError::Invalid(format!("hashing failed: {e}")))?
        .map_err(|e| AdminError::Invalid(e.to_string()))?;
    let mut businesses = Vec::new();
    for b in &new.businesses {
        businesses.push(ensure_business(rt, b).await?);
    }
    let user = User {
        developer: false,
        id: Uuid::new_v4(),
        tenant: rt.tenant.id,
        email,
        name,
        password_hash,
        default_business_id: businesses.first().map(|b| b.id),
        created_at: rt.now(),
    };
    rt.store.insert_user(&user).await?;
    for b in &businesses {
        rt.store.insert_membership(rt.tenant.id, b.id, user.id, rt.now()).await?;
    }
    Ok(user)
}

/// Finds a business by name, creating it if needed.
pub async fn ensure_business(rt: &Runtime, name: &str) -> AdminResult<Business> {
    let name = check_name("business name", name)?;
    if let Some(b) = rt.store.find_business_by_name(rt.tenant.id, &name).await? {
        return Ok(b);
    }
    let b = Business { id: Uuid::new_v4(), tenant: rt.tenant.id, name, created_at: rt.now() };
    match rt.store.insert_business(&b).await {
        Ok(()) => Ok(b),
        // Somebody created it at the same moment: use theirs.
        Err(StoreError::Conflict(_)) => {
            rt.store.find_business_by_name(rt.tenant.id, &b.name).await?.ok_or_else(|| AdminError::NotFound(b.name))
        }
        Err(e) => Err(e.into()),
    }
}

/// Finds a user by id or email.
pub async fn find_user(rt: &Runtime, id_or_email: &str) -> AdminResult<User> {
    let found = match id_or_email.parse::<Uuid>() {
        Ok(id) => rt.store.find_user(rt.tenant.id, id).await?,
        // What is not an email address names nobody.
        Err(_) => match text::email(id_or_email) {
            Ok(email) => rt.store.find_user_by_email(rt.tenant.id, &email).await?,
            Err(_) => None,
        },
    };
    found.ok_or_else(|| AdminError::NotFound(format!("user {id_or_email}")))
}

#[derive(Default)]
pub struct NewClient {
    pub name: String,
    pub developer: Option<String>,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub public: bool,
    pub grant_types: Vec<String>,
    pub require_pkce: bool,
    /// A chosen client_id (the demo's); random when `None`.
    pub client_id: Option<String>,
    /// Token lifetimes and refresh policy of this client, over the server's.
    pub token_settings: ClientTokenSettings,
    /// The consent page's links and logo.
    pub profile: ClientProfile,
    /// The developers who manage it (none for one an operator registers).
    pub owners: Vec<Uuid>,
}

pub(crate) fn parse_developer(developer: Option<&str>) -> AdminResult<String> {
    match developer.map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) => check_name("developer name", d),
        None => Ok("an unnamed developer".into()),
    }
}

pub(crate) fn parse_redirect_uris(uris: &[String]) -> AdminResult<Vec<String>> {
    for uri in uris {
        redirect::validate_registration(uri).map_err(|e| AdminError::Invalid(e.safe_description()))?;
    }
    Ok(uris.to_vec())
}

pub(crate) fn parse_scopes(scopes: &[String]) -> AdminResult<ScopeSet> {
    if scopes.is_empty() {
        ScopeSet::parse("openid profile email offline_access")
    } else {
        ScopeSet::from_tokens(scopes.iter().flat_map(|s| s.split(' ')).filter(|s| !s.is_empty()))
    }
    .map_err(|e| AdminError::Invalid(e.safe_description()))
}

pub(crate) fn parse_grant_types(names: &[String]) -> AdminResult<Vec<GrantType>> {
    let mut grant_types = Vec::new();
    for g in names {
        let parsed = GrantType::parse(g).ok_or_else(|| {
            AdminError::Invalid(format!("unknown grant type {g:?}; use authorization_code, refresh_token, client_credentials or password"))
        })?;
        if !grant_types.contains(&parsed) {
            grant_types.push(parsed);
        }
    }
    Ok(if grant_types.is_empty() { GrantType::DEFAULT.to_vec() } else { grant_types })
}

/// An address of a client's profile (`ClientProfile`): empty is none; otherwise an absolute
/// https URL, or http on a loopback host (a developer trying things locally), without a user
/// name or password (RFC 3986 §7.6: `https://trusted.example@evil.example/`). `https_only` for
/// what the consent page loads (the logo): mixed content would be blocked or warned about.
pub(crate) fn profile_address(value: &str, https_only: bool) -> Result<Option<String>, &'static str> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let ok = url::Url::parse(value).ok().filter(|u| {
        let loopback = matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
        u.username().is_empty()
            && u.password().is_none()
            && u.host_str().is_some()
            && (u.scheme() == "https" || (!https_only && u.scheme() == "http" && loopback))
    });
    match ok {
        Some(_) if value.len() <= 2000 => Ok(Some(value.to_owned())),
        _ if https_only => Err("Enter an address that starts with https://, such as https://example.com/logo.png."),
        _ => Err("Enter an address that starts with https://, such as https://example.com/privacy."),
    }
}

/// The rules every registration must keep, checked on the whole client: at creation and after
/// every change.
pub(crate) fn check_client(client: &Client) -> AdminResult<()> {
    // RFC 6749 §3.1.2.2: a client of the authorization code grant registers its redirect
    // URIs; one that acts only for itself (client_credentials, password) has none.
    if client.redirect_uris.is_empty() && client.grant_types.contains(&GrantType::AuthorizationCode) {
        return Err(AdminError::Invalid(
            "a client of the authorization code grant needs at least one --redirect-uri (a machine-to-machine client: --grant-type client_credentials)".into(),
        ));
    }
    if client.is_public() && client.grant_types.contains(&GrantType::ClientCredentials) {
        return Err(AdminError::Invalid("a public client cannot use client_credentials (OAuth 2.1 §4.2)".into()));
    }
    if client.is_public() && client.grant_types.contains(&GrantType::Password) {
        return Err(AdminError::Invalid("a public client cannot use the password grant (RFC 9700 §2.4)".into()));
    }
    let p = &client.profile;
    for (what, address, https_only) in [
        ("website", &p.website, false),
        ("privacy policy", &p.privacy_policy, false),
        ("terms of service", &p.terms_of_service, false),
        ("logo", &p.logo, true),
    ] {
        if let Some(a) = address {
            profile_address(a, https_only).map_err(|m| AdminError::Invalid(format!("the {what} address {a:?} is refused: {m}")))?;
        }
    }
    // docs/security.md TK-01: absurd lifetimes are refused when they are set, not when they bite.
    client.token_settings.lifetimes(Lifetimes::default()).validate().map_err(AdminError::Invalid)
}

/// Registers a client and returns it with its secret (shown once; only the hash is stored).
pub async fn create_client(rt: &Runtime, new: NewClient) -> AdminResult<(Client, Option<Secret>)> {
    // RFC 9700 §4.15: a client acting for itself has its client_id as subject, so a client_id
    // must never look like a user's subject (a UUID, in any of its spellings).
    if let Some(id) = &new.client_id {
        if id.parse::<Uuid>().is_ok() || id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AdminError::Invalid(format!(
                "{id:?} cannot be a client_id: use 1 to 128 visible characters that do not form a UUID"
            )));
        }
    }
    let secret = (!new.public).then(|| new_secret(SecretKind::ClientSecret, &mut rand::rngs::OsRng));
    let client_id = new.client_id.unwrap_or_else(|| {
        // 48 hex characters: 192 bits, and never parseable as a UUID.
        let mut b = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut b);
        b.iter().map(|x| format!("{x:02x}")).collect()
    });
    let client = Client {
        tenant: rt.tenant.id,
        client_id,
        name: check_name("client name", &new.name)?,
        developer: parse_developer(new.developer.as_deref())?,
        secret_hash: secret.as_ref().map(|s| rt.hasher.hash(s.expose())),
        redirect_uris: parse_redirect_uris(&new.redirect_uris)?,
        scopes: parse_scopes(&new.scopes)?,
        grant_types: parse_grant_types(&new.grant_types)?,
        require_pkce: new.require_pkce,
        token_settings: new.token_settings,
        profile: new.profile,
        secret_info: SecretInfo { created_at: secret.as_ref().map(|_| rt.now()), ..SecretInfo::default() },
        created_at: rt.now(),
    };
    check_client(&client)?;
    rt.store.insert_client(&client, &new.owners).await?;
    Ok((client, secret))
}

/// What `update_client` changes; `None` keeps what the client has. Lists replace the whole
/// list.
#[derive(Default)]
pub struct ClientChanges {
    pub name: Option<String>,
    pub developer: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub scopes: Option<Vec<String>>,
    pub grant_types: Option<Vec<String>>,
    pub require_pkce: Option<bool>,
    /// Laid over the client's own token settings (only the values given change).
    pub token_settings: Option<ClientTokenSettings>,
    /// Replaces the consent page's links and logo.
    pub profile: Option<ClientProfile>,
}

/// Changes what a client is registered with; its id and secret stay (rotate the secret with
/// `rotate_client_secret`). Every rule of a registration holds afterwards, or nothing changes.
pub async fn update_client(rt: &Runtime, client_id: &str, changes: ClientChanges) -> AdminResult<Client> {
    let mut client = find_client(rt, client_id).await?;
    if let Some(name) = &changes.name {
        client.name = check_name("client name", name)?;
    }
    if let Some(developer) = &changes.developer {
        client.developer = parse_developer(Some(developer))?;
    }
    if let Some(uris) = &changes.redirect_uris {
        client.redirect_uris = parse_redirect_uris(uris)?;
    }
    if let Some(scopes) = &changes.scopes {
        client.scopes = parse_scopes(scopes)?;
    }
    if let Some(grant_types) = &changes.grant_types {
        client.grant_types = parse_grant_types(grant_types)?;
    }
    if let Some(pkce) = changes.require_pkce {
        client.require_pkce = pkce;
    }
    if let Some(t) = changes.token_settings {
        client.token_settings = t.over(client.token_settings);
    }
    if let Some(profile) = changes.profile {
        client.profile = profile;
    }
    check_client(&client)?;
    if !rt.store.update_client(&client).await? {
        return Err(AdminError::NotFound(format!("client {client_id:?}")));
    }
    Ok(client)
}

/// Changes a user's email or name.
pub async fn update_user(rt: &Runtime, id_or_email: &str, email: Option<&str>, name: Option<&str>) -> AdminResult<User> {
    let mut user = find_user(rt, id_or_email).await?;
    if let Some(e) = email {
        user.email = check_email(e)?;
    }
    if let Some(n) = name {
        user.name = check_name("name", n)?;
    }
    match rt.store.update_user(rt.tenant.id, user.id, &user.email, &user.name).await {
        Ok(true) => Ok(user),
        Ok(false) => Err(AdminError::NotFound(format!("user {id_or_email}"))),
        Err(StoreError::Conflict(_)) => Err(AdminError::Exists(format!("a user with the email {}", user.email))),
        Err(e) => Err(e.into()),
    }
}

/// Lets a user register apps in the developer area, or no longer (their apps stay theirs).
pub async fn set_developer(rt: &Runtime, id_or_email: &str, developer: bool) -> AdminResult<User> {
    let mut user = find_user(rt, id_or_email).await?;
    if !rt.store.update_user_developer(rt.tenant.id, user.id, developer).await? {
        return Err(AdminError::NotFound(format!("user {id_or_email}")));
    }
    user.developer = developer;
    Ok(user)
}

pub async fn find_client(rt: &Runtime, client_id: &str) -> AdminResult<Client> {
    let found = match text::client_id(client_id) {
        Ok(id) => rt.store.find_client(rt.tenant.id, id).await?,
        Err(_) => None,
    };
    found.ok_or_else(|| AdminError::NotFound(format!("client {client_id:?}")))
}

/// The longest grace period a replaced client secret may have.
pub const MAX_SECRET_GRACE: i64 = 30 * 24 * 3600;

/// Replaces a confidential client's secret. The old one keeps working for `grace` seconds
/// (so that a deployed app switches without downtime), or stops at once with 0; a secret kept
/// from an earlier rotation stops now either way.
pub async fn rotate_client_secret(rt: &Runtime, client_id: &str, grace: i64) -> AdminResult<Secret> {
    let client = find_client(rt, client_id).await?;
    if client.is_public() {
        return Err(AdminError::Invalid(format!("client {client_id} is public and has no secret")));
    }
    if !(0..=MAX_SECRET_GRACE).contains(&grace) {
        return Err(AdminError::Field {
            field: "grace",
            message: format!("the old secret may keep working for 0 to {MAX_SECRET_GRACE} seconds (30 days)"),
        });
    }
    let secret = new_secret(SecretKind::ClientSecret, &mut rand::rngs::OsRng);
    let now = rt.now();
    let until = (grace > 0).then_some(now + grace);
    if !rt.store.rotate_client_secret(rt.tenant.id, client_id, rt.hasher.hash(secret.expose()), now, until).await? {
        return Err(AdminError::NotFound(format!("client {client_id:?}")));
    }
    Ok(secret)
}

pub const DEMO_EMAIL: &str = "demo@latchkey.test";
pub const DEMO_PASSWORD: &str = "demo-password";
pub const DEMO_CLIENT_ID: &str = "demo-app";

/// Seeds a demo user in two businesses and a demo client whose redirect URI is the server's
/// own `/demo/callback`; the client secret is replaced at every start and returned.
pub async fn seed_demo(rt: &Runtime, issuer: &str) -> AdminResult<DemoInfo> {
    let redirect_uri = format!("{issuer}/demo/callback");
    if rt.store.find_user_by_email(rt.tenant.id, DEMO_EMAIL).await?.is_none() {
        create_user(
            rt,
            NewUser {
                email: DEMO_EMAIL.into(),
                name: "Demo User".into(),
                password: DEMO_PASSWORD.into(),
                businesses: vec!["Demo Coffee Roasters".into(), "Demo Bakery".into()],
            },
        )
        .await?;
    }
    // The redirect URI follows the issuer, so the demo client is registered anew each start.
    rt.store.delete_client(rt.tenant.id, DEMO_CLIENT_ID).await?;
    let (client, secret) = create_client(
        rt,
        NewClient {
            name: "Demo App".into(),
            developer: Some("Latchkey demo".into()),
            redirect_uris: vec![redirect_uri.clone()],
            scopes: vec!["openid profile email offline_access business/orders:read".into()],
            public: false,
            grant_types: vec![],
            require_pkce: false,
            client_id: Some(DEMO_CLIENT_ID.into()),
            ..NewClient::default()
        },
    )
    .await?;
    // The demo's API scope, in words, and on offer for personal tokens.
    let orders = "business/orders:read";
    if !rt.store.list_scopes(rt.tenant.id).await?.iter().any(|e| e.name == orders) {
        crate::catalogue::create(rt, orders, "Read your business's orders", true).await?;
    }
    let client_secret = secret.map(|s| s.expose().to_owned()).unwrap_or_default();
    Ok(DemoInfo { client_id: client.client_id, client_secret, redirect_uri })
}

/// Creates a business; its name is unique in the tenant.
pub async fn create_business(rt: &Runtime, name: &str) -> AdminResult<Business> {
    let name = check_name("business name", name)?;
    if rt.store.find_business_by_name(rt.tenant.id, &name).await?.is_some() {
        return Err(AdminError::Exists(format!("a business named {name}")));
    }
    let b = Business { id: Uuid::new_v4(), tenant: rt.tenant.id, name, created_at: rt.now() };
    rt.store.insert_business(&b).await?;
    Ok(b)
}

/// Finds a business by id or name.
pub async fn find_business(rt: &Runtime, id_or_name: &str) -> AdminResult<Business> {
    if let Ok(id) = id_or_name.parse::<Uuid>() {
        if let Some(b) = rt.store.list_businesses(rt.tenant.id).await?.into_iter().find(|b| b.id == id) {
            return Ok(b);
        }
    }
    let found = match text::name(id_or_name, 200) {
        Some(name) => rt.store.find_business_by_name(rt.tenant.id, &name).await?,
        None => None,
    };
    found.ok_or_else(|| AdminError::NotFound(format!("business {id_or_name:?}")))
}

/// Adds a user to a business. It becomes the user's default when asked, or when the user had
/// none.
pub async fn add_member(rt: &Runtime, business: &str, user: &str, make_default: bool) -> AdminResult<(Business, User)> {
    let b = find_business(rt, business).await?;
    let u = find_user(rt, user).await?;
    rt.store.insert_membership(rt.tenant.id, b.id, u.id, rt.now()).await?;
    if make_default || u.default_business_id.is_none() {
        rt.store.update_user_default_business(rt.tenant.id, u.id, Some(b.id)).await?;
    }
    Ok((b, u))
}

/// Removes a user from a business; if it was the user's default, the oldest remaining
/// membership becomes the default.
pub async fn remove_member(rt: &Runtime, business: &str, user: &str) -> AdminResult<(Business, User)> {
    let b = find_business(rt, business).await?;
    let u = find_user(rt, user).await?;
    if !rt.store.delete_membership(rt.tenant.id, b.id, u.id).await? {
        return Err(AdminError::NotFound(format!("{} in business {}", u.email, b.name)));
    }
    // Apps the user authorized for this business lose that access now, and must ask again.
    rt.store.revoke_user_business(rt.tenant.id, u.id, b.id, rt.now()).await?;
    if u.default_business_id == Some(b.id) {
        let next = rt.store.list_user_businesses(rt.tenant.id, u.id).await?.first().map(|x| x.id);
        rt.store.update_user_default_business(rt.tenant.id, u.id, next).await?;
    }
    Ok((b, u))
}

/// Makes a business the user's default; the user must belong to it.
pub async fn set_default_business(rt: &Runtime, business: &str, user: &str) -> AdminResult<(Business, User)> {
    let b = find_business(rt, business).await?;
    let u = find_user(rt, user).await?;
    if !rt.store.list_user_businesses(rt.tenant.id, u.id).await?.iter().any(|x| x.id == b.id) {
        return Err(AdminError::Invalid(format!("{} does not belong to {}; add them first", u.email, b.name)));
    }
    rt.store.update_user_default_business(rt.tenant.id, u.id, Some(b.id)).await?;
    Ok((b, u))
}

/// Checks an issuer: an absolute http(s) URL without query or fragment (RFC 8414 §2).
fn check_issuer(issuer: &str) -> AdminResult<String> {
    let url = url::Url::parse(issuer).map_err(|_| AdminError::Invalid(format!("{issuer:?} is not a URL")))?;
    if !matches!(url.scheme(), "https" | "http") || url.query().is_some() || url.fragment().is_some() || url.host_str().is_none() {
        return Err(AdminError::Invalid(format!("{issuer:?} must be an http(s) URL without query or fragment")));
    }
    Ok(issuer.trim_end_matches('/').to_owned())
}

/// Creates a tenant reached through `issuer` (its host and path).
pub async fn create_tenant(
    rt: &Runtime,
    name: &str,
    issuer: &str,
    settings: latchkey_core::model::TenantSettings,
) -> AdminResult<latchkey_core::model::Tenant> {
    if !latchkey_core::model::valid_tenant_name(name) || name == latchkey_core::model::DEFAULT_TENANT {
        return Err(AdminError::Invalid(format!("{name:?} cannot name a tenant: use 1 to 40 of a-z, 0-9 and -")));
    }
    settings.tokens.lifetimes(Lifetimes::default()).validate().map_err(AdminError::Invalid)?;
    let tenant = latchkey_core::model::Tenant {
        id: latchkey_core::model::TenantId(Uuid::new_v4()),
        name: name.to_owned(),
        issuer: Some(check_issuer(issuer)?),
        settings,
        created_at: rt.now(),
    };
    rt.store.insert_tenant(&tenant).await?;
    Ok(tenant)
}

/// Changes a tenant's issuer and settings; nodes pick the change up within seconds.
pub async fn update_tenant(rt: &Runtime, mut tenant: latchkey_core::model::Tenant) -> AdminResult<latchkey_core::model::Tenant> {
    if let Some(i) = &tenant.issuer {
        tenant.issuer = Some(check_issuer(i)?);
    }
    tenant.settings.tokens.lifetimes(Lifetimes::default()).validate().map_err(AdminError::Invalid)?;
    if !rt.store.update_tenant(&tenant).await? {
        return Err(AdminError::NotFound(format!("tenant {}", tenant.name)));
    }
    Ok(tenant)
}
