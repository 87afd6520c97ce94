//! What a developer may do to their apps, and an operator to any app: register, list, change,
//! rotate a secret with a grace period, delete. The developer pages, the developer JSON API
//! and the CLI all call these (docs/pages.md), so that they agree on every rule; the rules of
//! a registration itself are `admin`'s (`check_client`), the same for all of them.
//!
//! YouCan: "Go to the OAuth tab in the Partner Dashboard and create a new client. Fill in the
//! app details including name and redirect URLs. Select the required scopes. After saving,
//! your Client ID and Client Secret will be generated and displayed." UltraCart's "Developer
//! Applications" adds the developer's information and the permissions.

use crate::account::Actor;
use crate::admin::{self, AdminError, AdminResult, NewClient};
use crate::catalogue;
use crate::runtime::Runtime;
use latchkey_core::model::{Client, ClientProfile, ClientSummary, DeveloperSignup, GrantType, OwnerInvitation};
use latchkey_core::redirect;
use latchkey_core::secret::Secret;
use uuid::Uuid;

/// What kind of app a developer registers; it decides the client type and the grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppKind {
    /// A server-side web application: confidential, authorization code + refresh.
    Web,
    /// A native or single-page app: public (it cannot keep a secret), PKCE required (RFC 9700
    /// §2.1.1), authorization code + refresh.
    Native,
    /// A machine-to-machine service: confidential, client_credentials only, no redirect URI.
    Machine,
}

impl AppKind {
    pub const ALL: [AppKind; 3] = [AppKind::Web, AppKind::Native, AppKind::Machine];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "web" => Some(Self::Web),
            "native" => Some(Self::Native),
            "machine" => Some(Self::Machine),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Web => "web",
            Self::Native => "native",
            Self::Machine => "machine",
        }
    }

    /// As the pages name it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Web => "Web application",
            Self::Native => "Native or single-page app",
            Self::Machine => "Machine to machine",
        }
    }

    /// What the pages say of it.
    pub fn hint(self) -> &'static str {
        match self {
            Self::Web => "Runs on your server and keeps a client secret. Signs people in with the authorization code flow.",
            Self::Native => {
                "Runs on a device or in a browser and cannot keep a secret. Signs people in with the authorization code flow and PKCE."
            }
            Self::Machine => "A service acting for itself, with a client secret and the client credentials grant. No one signs in.",
        }
    }

    /// The kind of a registered client.
    pub fn of(client: &Client) -> Self {
        if client.is_public() {
            Self::Native
        } else if client.allows_grant(GrantType::ClientCredentials) && !client.allows_grant(GrantType::AuthorizationCode) {
            Self::Machine
        } else {
            Self::Web
        }
    }

    pub fn has_redirect_uris(self) -> bool {
        self != Self::Machine
    }

    fn grant_types(self) -> Vec<String> {
        match self {
            Self::Web | Self::Native => vec!["authorization_code".into(), "refresh_token".into()],
            Self::Machine => vec!["client_credentials".into()],
        }
    }
}

/// What a developer fills in: at registration, and again to change an app (its kind stays).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppForm {
    pub name: String,
    /// The developer or company, shown on the consent page.
    pub developer: String,
    pub website: String,
    pub privacy_policy: String,
    pub terms_of_service: String,
    pub logo: String,
    /// `None` when changing an app.
    pub kind: Option<String>,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
}

impl AppForm {
    /// The form of a registered app, as its page first shows it.
    pub fn of(client: &Client) -> Self {
        let p = &client.profile;
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        Self {
            name: client.name.clone(),
            developer: client.developer.clone(),
            website: text(&p.website),
            privacy_policy: text(&p.privacy_policy),
            terms_of_service: text(&p.terms_of_service),
            logo: text(&p.logo),
            kind: None,
            redirect_uris: client.redirect_uris.clone(),
            scopes: client.scopes.iter().map(str::to_owned).collect(),
        }
    }
}

/// How long a replaced secret may keep working, as the pages offer it (none, 1 hour, 24
/// hours, 7 days); the API and the CLI take any number of seconds up to
/// `admin::MAX_SECRET_GRACE`.
pub const GRACE_CHOICES: [(i64, &str); 4] = [(0, "Stop at once"), (3600, "1 hour"), (86_400, "24 hours"), (604_800, "7 days")];

/// A developer: the user behind `actor`, if they may develop; an operator always may.
async fn check_developer(rt: &Runtime, actor: Actor) -> AdminResult<()> {
    match actor {
        Actor::Operator => Ok(()),
        Actor::User(id) => match rt.store.find_user(rt.tenant.id, id).await? {
            Some(u) if u.developer => Ok(()),
            _ => Err(AdminError::Forbidden(
                "Your account may not register apps. Ask the operator of this server to make you a developer.".into(),
            )),
        },
    }
}

/// Whether anyone signed in may make themself a developer in this tenant.
pub fn signup_open(rt: &Runtime) -> bool {
    rt.tenant.settings.developer_signup == Some(DeveloperSignup::Open)
}

/// Makes a signed-in user a developer, when the tenant's developer sign-up is open.
pub async fn sign_up(rt: &Runtime, user: Uuid) -> AdminResult<()> {
    if !signup_open(rt) {
        return Err(AdminError::Forbidden(
            "Developer sign-up is closed here. Ask the operator of this server to make you a developer.".into(),
        ));
    }
    if !rt.store.update_user_developer(rt.tenant.id, user, true).await? {
        return Err(AdminError::NotFound("user".into()));
    }
    tracing::info!(user = %user, "became a developer through the open sign-up");
    Ok(())
}

/// The apps a developer owns, with how many users authorized each.
pub async fn list_apps(rt: &Runtime, actor: Actor) -> AdminResult<Vec<ClientSummary>> {
    check_developer(rt, actor).await?;
    match actor {
        Actor::User(id) => Ok(rt.store.list_owned_clients(rt.tenant.id, id).await?),
        Actor::Operator => Ok(Vec::new()),
    }
}

/// An app `actor` may manage: a developer's own (anyone else's is "not found", so that nobody
/// learns which client ids exist), any for an operator.
pub async fn find_app(rt: &Runtime, actor: Actor, client_id: &str) -> AdminResult<Client> {
    check_developer(rt, actor).await?;
    let not_found = || AdminError::NotFound(format!("app {client_id:?}"));
    let client = match admin::find_client(rt, client_id).await {
        Ok(client) => client,
        Err(AdminError::NotFound(_)) => return Err(not_found()),
        Err(e) => return Err(e),
    };
    if let Actor::User(id) = actor {
        if !rt.store.list_client_owners(rt.tenant.id, &client.client_id).await?.contains(&id) {
            return Err(not_found());
        }
    }
    Ok(client)
}

/// A profile address from a form field: empty is none; a wrong one is said beside its field.
fn check_address(field: &'static str, value: &str, https_only: bool, errors: &mut Vec<(&'static str, String)>) -> Option<String> {
    match admin::profile_address(value, https_only) {
        Ok(address) => address,
        Err(message) => {
            errors.push((field, message.into()));
            None
        }
    }
}

/// Checks every field of the form at once, so that a page can say what is wrong with each.
async fn check_form(rt: &Runtime, form: &AppForm, kind: AppKind) -> AdminResult<(NewClient, Vec<(&'static str, String)>)> {
    let mut errors = Vec::new();
    let name = match latchkey_core::text::name(&form.name, 100) {
        Some(n) => n,
        None => {
            errors.push(("name", "Enter the app's name, up to 100 characters.".into()));
            String::new()
        }
    };
    let developer = match latchkey_core::text::name(&form.developer, 100) {
        Some(d) => d,
        None => {
            errors.push(("developer", "Enter your name or your company's, up to 100 characters.".into()));
            String::new()
        }
    };
    let profile = ClientProfile {
        website: check_address("website", &form.website, false, &mut errors),
        privacy_policy: check_address("privacy_policy", &form.privacy_policy, false, &mut errors),
        terms_of_service: check_address("terms_of_service", &form.terms_of_service, false, &mut errors),
        logo: check_address("logo", &form.logo, true, &mut errors),
    };
    let uris: Vec<String> = form.redirect_uris.iter().map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()).collect();
    if kind.has_redirect_uris() {
        if uris.is_empty() {
            errors
                .push(("redirect_uris", "Enter at least one redirect URI: where people come back to your app after they sign in.".into()));
        }
        // The same rules as every registration (RFC 9700 §2.1, §4.1.1; OAuth 2.1 §2.3.1).
        for uri in &uris {
            if let Err(e) = redirect::validate_registration(uri) {
                errors.push(("redirect_uris", format!("{}.", e.description)));
                break;
            }
        }
        if uris.len() > 20 {
            errors.push(("redirect_uris", "Register at most 20 redirect URIs.".into()));
        }
    } else if !uris.is_empty() {
        errors.push(("redirect_uris", "A machine-to-machine app has no redirect URIs: nobody signs in through it.".into()));
    }
    let catalogue = catalogue::entries(rt).await?;
    let mut scopes: Vec<String> = Vec::new();
    for s in &form.scopes {
        if !catalogue.iter().any(|e| &e.name == s) {
            errors.push(("scopes", format!("{s:?} is not a scope of this server. Choose from the list.")));
            break;
        }
        if !scopes.contains(s) {
            scopes.push(s.clone());
        }
    }
    if scopes.is_empty() && !errors.iter().any(|(f, _)| *f == "scopes") {
        errors.push(("scopes", "Choose at least one scope your app may ask for.".into()));
    }
    let new = NewClient {
        name,
        developer: Some(developer),
        redirect_uris: uris,
        scopes,
        public: kind == AppKind::Native,
        grant_types: kind.grant_types(),
        require_pkce: kind == AppKind::Native,
        profile,
        ..NewClient::default()
    };
    Ok((new, errors))
}

/// Registers an app owned by the acting developer; its secret (for a confidential app) is
/// returned once. Nothing is saved when any field is wrong.
pub async fn register_app(rt: &Runtime, actor: Actor, form: &AppForm) -> AdminResult<(Client, Option<Secret>)> {
    check_developer(rt, actor).await?;
    let kind = form.kind.as_deref().and_then(AppKind::parse);
    let (mut new, mut errors) = check_form(rt, form, kind.unwrap_or(AppKind::Web)).await?;
    if kind.is_none() {
        errors.insert(0, ("kind", "Choose what kind of app this is.".into()));
    }
    if !errors.is_empty() {
        return Err(AdminError::Fields(errors));
    }
    if let Actor::User(id) = actor {
        new.owners = vec![id];
    }
    let (client, secret) = admin::create_client(rt, new).await?;
    tracing::info!(client = %client.client_id, actor = ?actor, "app registered");
    Ok((client, secret))
}

/// Changes what an app is registered with; its kind, id and secrets stay.
pub async fn update_app(rt: &Runtime, actor: Actor, client_id: &str, form: &AppForm) -> AdminResult<Client> {
    let client = find_app(rt, actor, client_id).await?;
    let kind = AppKind::of(&client);
    let (new, errors) = check_form(rt, form, kind).await?;
    if !errors.is_empty() {
        return Err(AdminError::Fields(errors));
    }
    let changes = admin::ClientChanges {
        name: Some(new.name),
        developer: new.developer,
        redirect_uris: Some(new.redirect_uris),
        scopes: Some(new.scopes),
        profile: Some(new.profile),
        ..admin::ClientChanges::default()
    };
    let client = admin::update_client(rt, &client.client_id, changes).await?;
    tracing::info!(client = %client.client_id, actor = ?actor, "app changed");
    Ok(client)
}

/// A new secret for a confidential app, shown once; the old one keeps working for `grace`
/// seconds (0: it stops at once).
pub async fn rotate_secret(rt: &Runtime, actor: Actor, client_id: &str, grace: i64) -> AdminResult<Secret> {
    let client = find_app(rt, actor, client_id).await?;
    if client.is_public() {
        return Err(AdminError::Invalid("This app is public: it has no secret to rotate.".into()));
    }
    let secret = admin::rotate_client_secret(rt, &client.client_id, grace).await?;
    tracing::info!(client = %client.client_id, actor = ?actor, grace, "client secret rotated");
    Ok(secret)
}

/// Deletes an app, after its name was typed to confirm: every grant and token of it ends at
/// once.
pub async fn delete_app(rt: &Runtime, actor: Actor, client_id: &str, typed_name: &str) -> AdminResult<Client> {
    let client = find_app(rt, actor, client_id).await?;
    if typed_name.trim() != client.name {
        return Err(AdminError::Field { field: "confirm_name", message: format!("Type the app's name, {}, to delete it.", client.name) });
    }
    if !rt.store.delete_client(rt.tenant.id, &client.client_id).await? {
        return Err(AdminError::NotFound(format!("app {client_id:?}")));
    }
    tracing::info!(client = %client.client_id, actor = ?actor, "app deleted");
    Ok(client)
}

/// Invites another developer of the tenant, by email, to own an app with its owners; they
/// become an owner when they accept.
pub async fn invite_owner(rt: &Runtime, actor: Actor, client_id: &str, email: &str) -> AdminResult<OwnerInvitation> {
    let client = find_app(rt, actor, client_id).await?;
    let nobody = || AdminError::Field { field: "email", message: "There is no developer with this email address here.".into() };
    let email = latchkey_core::text::email(email).map_err(|_| nobody())?;
    let user = rt.store.find_user_by_email(rt.tenant.id, &email).await?.filter(|u| u.developer).ok_or_else(nobody)?;
    if rt.store.list_client_owners(rt.tenant.id, &client.client_id).await?.contains(&user.id) {
        return Err(AdminError::Field { field: "email", message: format!("{email} already owns this app.") });
    }
    let invitation = OwnerInvitation {
        tenant: rt.tenant.id,
        client_id: client.client_id.clone(),
        client_name: client.name.clone(),
        user_id: user.id,
        invited_by: match actor {
            Actor::User(id) => id,
            Actor::Operator => user.id,
        },
        created_at: rt.now(),
    };
    rt.store.upsert_owner_invitation(&invitation).await?;
    tracing::info!(client = %client.client_id, invited = %user.id, actor = ?actor, "owner invited");
    Ok(invitation)
}

/// The invitations waiting for the acting developer.
pub async fn my_invitations(rt: &Runtime, actor: Actor) -> AdminResult<Vec<OwnerInvitation>> {
    check_developer(rt, actor).await?;
    match actor {
        Actor::User(id) => Ok(rt.store.list_owner_invitations(rt.tenant.id, None, Some(id)).await?),
        Actor::Operator => Ok(Vec::new()),
    }
}

/// The invitations an app's owners have sent and that wait for an answer.
pub async fn app_invitations(rt: &Runtime, actor: Actor, client_id: &str) -> AdminResult<Vec<OwnerInvitation>> {
    let client = find_app(rt, actor, client_id).await?;
    Ok(rt.store.list_owner_invitations(rt.tenant.id, Some(&client.client_id), None).await?)
}

/// Accepts (the developer becomes an owner) or declines an invitation to the acting developer.
pub async fn answer_invitation(rt: &Runtime, actor: Actor, client_id: &str, accept: bool) -> AdminResult<()> {
    check_developer(rt, actor).await?;
    let Actor::User(id) = actor else { return Err(AdminError::Invalid("only the invited developer answers an invitation".into())) };
    if !rt.store.close_owner_invitation(rt.tenant.id, client_id, id, accept, rt.now()).await? {
        return Err(AdminError::NotFound(format!("invitation to {client_id:?}")));
    }
    tracing::info!(client = %client_id, user = %id, accept, "owner invitation answered");
    Ok(())
}

/// Removes an owner of an app (oneself included), unless they are its last.
pub async fn remove_owner(rt: &Runtime, actor: Actor, client_id: &str, owner: Uuid) -> AdminResult<()> {
    let client = find_app(rt, actor, client_id).await?;
    if !rt.store.list_client_owners(rt.tenant.id, &client.client_id).await?.contains(&owner) {
        return Err(AdminError::NotFound(format!("owner {owner}")));
    }
    if !rt.store.delete_client_owner(rt.tenant.id, &client.client_id, owner).await? {
        return Err(AdminError::Invalid("An app keeps at least one owner: invite another before you leave it.".into()));
    }
    tracing::info!(client = %client.client_id, owner = %owner, actor = ?actor, "owner removed");
    Ok(())
}
