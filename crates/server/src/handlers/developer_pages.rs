//! The developer area (`/developer`, docs/pages.md): a developer's applications, registering
//! one (YouCan's "Partner Dashboard > OAuth", UltraCart's "Developer Applications"), an app's
//! page with its settings, secrets and a quick start, rotating its secret and deleting it.
//! Each page turns a form into a call of `crate::developer` and its outcome into a page.

use super::account_pages::{csrf, field_errors, notice, person, signed_in};
use crate::account::Actor;
use crate::admin::AdminError;
use crate::browser::{self, check_form};
use crate::catalogue;
use crate::developer::{self, AppForm, AppKind, GRACE_CHOICES};
use crate::error::{AppError, AppResult, PageResult};
use crate::pages::{
    self, AppFields, AppPage, AppSecretPage, DeleteAppPage, DevAppRow, DevAppsPage, FieldErrors, KindChoice, QuickStart, RegisterAppPage,
    RotateSecretPage, ScopeChoice, ScopeLine, SecretRow, SignupPage, When,
};
use crate::state::AppState;
use crate::web::{self, PageForm};
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use latchkey_core::model::{Client, User};
use latchkey_core::params::Params;

const AREA: &str = "/developer";

/// The signed-in person, who must be a developer: anyone else goes to the developer sign-up
/// when it is open, or gets a page that says whom to ask.
macro_rules! developer {
    ($state:expr, $headers:expr, $here:expr) => {{
        let (session, user) = signed_in!($state, $headers, $here);
        if !user.developer {
            if developer::signup_open(&$state.rt) {
                return Ok(web::redirect(&$state.path(SIGNUP), false));
            }
            return Err(not_a_developer());
        }
        (session, user)
    }};
}

const SIGNUP: &str = "/developer/signup";

fn not_a_developer() -> AppError {
    AppError::page(
        StatusCode::FORBIDDEN,
        "Not a developer",
        "Your account may not register apps. Ask the operator of this server to make you a developer.",
    )
}

fn not_found() -> AppError {
    AppError::page(StatusCode::NOT_FOUND, "Not found", "You have no such application. It may have been deleted.")
}

/// An operation's failure on one app: the store's own failure as it is, anything else as
/// "not found" (the app is gone, or was never the developer's).
fn or_not_found(e: AdminError) -> AppError {
    match e {
        AdminError::Store(e) => AppError::Store(e),
        AdminError::Forbidden(_) => not_a_developer(),
        _ => not_found(),
    }
}

/// What a form sent.
fn app_form(form: &Params, with_kind: bool) -> AppForm {
    let get = |k: &str| form.get(k).ok().flatten().unwrap_or_default().to_owned();
    AppForm {
        name: get("name"),
        developer: get("developer"),
        website: get("website"),
        privacy_policy: get("privacy_policy"),
        terms_of_service: get("terms_of_service"),
        logo: get("logo"),
        kind: with_kind.then(|| get("kind")).filter(|k| !k.is_empty()),
        redirect_uris: get("redirect_uris").lines().map(str::to_owned).collect(),
        scopes: form.get_all("scope").map(str::to_owned).collect(),
    }
}

async fn fields(state: &AppState, form: &AppForm, has_redirect_uris: bool) -> AppResult<AppFields> {
    let catalogue = catalogue::entries(&state.rt).await?;
    let choices = catalogue
        .iter()
        .map(|e| ScopeChoice {
            line: ScopeLine { words: e.description.clone(), name: e.name.clone() },
            checked: form.scopes.contains(&e.name),
        })
        .collect();
    Ok(AppFields { form: form.clone(), has_redirect_uris, choices })
}

fn status(errors: &FieldErrors) -> StatusCode {
    if errors.0.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    }
}

// ------------------------------------------------------------------------------------------
// The developer sign-up (when the tenant's `developer_signup` is `open`).

pub(crate) async fn signup_get(Extension(state): Extension<AppState>, headers: HeaderMap) -> PageResult<Response> {
    Ok(signup_page(&state, &headers).await?)
}

async fn signup_page(state: &AppState, headers: &HeaderMap) -> AppResult<Response> {
    let (_, user) = signed_in!(state, headers, SIGNUP);
    if user.developer {
        return Ok(web::redirect(&state.path(AREA), false));
    }
    if !developer::signup_open(&state.rt) {
        return Err(not_a_developer());
    }
    let page = SignupPage { layout: browser::layout(state, headers, Some(&user), "developer"), csrf: &csrf(state, headers) };
    Ok(pages::render(StatusCode::OK, &page))
}

pub(crate) async fn signup_post(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    PageForm(form): PageForm,
) -> PageResult<Response> {
    Ok(signup(&state, &headers, &form).await?)
}

async fn signup(state: &AppState, headers: &HeaderMap, form: &Params) -> AppResult<Response> {
    check_form(state, headers, form)?;
    let (_, user) = signed_in!(state, headers, SIGNUP);
    developer::sign_up(&state.rt, user.id).await.map_err(or_not_found)?;
    Ok(web::redirect(&state.path(AREA), true))
}

// ------------------------------------------------------------------------------------------
// The list.

pub(crate) async fn apps_get(Extension(state): Extension<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> PageResult<Response> {
    Ok(apps(&state, &headers, &query).await?)
}

async fn apps(state: &AppState, headers: &HeaderMap, query: &Option<String>) -> AppResult<Response> {
    let (_, user) = developer!(state, headers, AREA);
    let now = state.now();
    let apps = developer::list_apps(&state.rt, Actor::User(user.id))
        .await
        .map_err(or_not_found)?
        .into_iter()
        .map(|s| DevAppRow {
            kind: AppKind::of(&s.client).label(),
            created: When::new(now, s.client.created_at),
            users: s.authorized_users,
            client_id: s.client.client_id,
            name: s.client.name,
        })
        .collect();
    let mut invitations = Vec::new();
    for i in developer::my_invitations(&state.rt, Actor::User(user.id)).await.map_err(or_not_found)? {
        let by = state.store().find_user(state.tenant_id(), i.invited_by).await?.map_or_else(|| "A developer".to_owned(), |u| u.email);
        invitations.push((i.client_id, i.client_name, by));
    }
    let notice = notice(
        query,
        &[
            ("deleted", "The application is deleted. Its tokens no longer work."),
            ("accepted", "You own the application now."),
            ("declined", "Invitation declined."),
        ],
    );
    let page = DevAppsPage {
        layout: browser::layout(state, headers, Some(&user), "developer"),
        apps,
        invitations,
        csrf: &csrf(state, headers),
        notice,
    };
    Ok(pages::render(StatusCode::OK, &page))
}

// ------------------------------------------------------------------------------------------
// Registering.

pub(crate) async fn new_get(Extension(state): Extension<AppState>, headers: HeaderMap) -> PageResult<Response> {
    Ok(register_page(&state, &headers, &AppForm::default(), FieldErrors::none()).await?)
}

async fn register_page(state: &AppState, headers: &HeaderMap, form: &AppForm, errors: FieldErrors) -> AppResult<Response> {
    let (_, user) = developer!(state, headers, "/developer/apps/new");
    let kinds = AppKind::ALL
        .iter()
        .map(|k| KindChoice { value: k.as_str(), label: k.label(), hint: k.hint(), checked: form.kind.as_deref() == Some(k.as_str()) })
        .collect();
    let page = RegisterAppPage {
        layout: browser::layout(state, headers, Some(&user), "developer"),
        kinds,
        // Every kind but machine to machine has redirect URIs; the field is there for all
        // (a page without JavaScript cannot hide it on a choice) and the hint says so.
        fields: fields(state, form, true).await?,
        csrf: &csrf(state, headers),
        errors,
    };
    let code = status(&page.errors);
    Ok(pages::render(code, &page))
}

pub(crate) async fn apps_post(Extension(state): Extension<AppState>, headers: HeaderMap, PageForm(form): PageForm) -> PageResult<Response> {
    Ok(register(&state, &headers, &form).await?)
}

async fn register(state: &AppState, headers: &HeaderMap, form: &Params) -> AppResult<Response> {
    check_form(state, headers, form)?;
    let (_, user) = developer!(state, headers, "/developer/apps/new");
    let typed = app_form(form, true);
    match developer::register_app(&state.rt, Actor::User(user.id), &typed).await {
        Ok((client, secret)) => {
            let page = AppSecretPage {
                layout: browser::layout(state, headers, Some(&user), "developer"),
                heading: "Application registered",
                name: &client.name,
                client_id: &client.client_id,
                secret: secret.as_ref().map(|s| s.expose()),
                old: None,
            };
            Ok(pages::render(StatusCode::OK, &page))
        }
        Err(e) => register_page(state, headers, &typed, field_errors(e)?).await,
    }
}

// ------------------------------------------------------------------------------------------
// An app's page: settings, secrets, quick start.

/// The developer's own app named in the path.
async fn own_app(state: &AppState, user: &User, client_id: &str) -> AppResult<Client> {
    developer::find_app(&state.rt, Actor::User(user.id), client_id).await.map_err(or_not_found)
}

pub(crate) async fn app_get(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> PageResult<Response> {
    let notice =
        notice(&query, &[("saved", "Your changes are saved."), ("invited", "Invitation sent. They become an owner when they accept it.")]);
    Ok(app_page(&state, &headers, &id, AppPageForms::default(), FieldErrors::none(), notice).await?)
}

/// How many people authorized the developer's app.
async fn authorized_users(state: &AppState, user: &User, client: &Client) -> AppResult<u64> {
    let apps = developer::list_apps(&state.rt, Actor::User(user.id)).await.map_err(or_not_found)?;
    Ok(apps.into_iter().find(|s| s.client.client_id == client.client_id).map_or(0, |s| s.authorized_users))
}

/// The quick start of an app: its own values in the requests it will make.
fn quick_start(state: &AppState, client: &Client) -> QuickStart {
    let issuer = &state.issuer;
    let token = format!("{issuer}/oauth/token");
    let scope = client.scopes.to_string();
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let kind = AppKind::of(client);
    let redirect = client.redirect_uris.first().cloned().unwrap_or_default();
    let authorize = kind.has_redirect_uris().then(|| {
        let pkce = if kind == AppKind::Native { "&code_challenge=YOUR_CHALLENGE&code_challenge_method=S256" } else { "" };
        format!(
            "{issuer}/oauth/authorize?response_type=code&client_id={}&redirect_uri={}&scope={}&state=YOUR_STATE{pkce}",
            enc(&client.client_id),
            enc(&redirect),
            enc(&scope)
        )
    });
    let curl = match kind {
        AppKind::Web => format!(
            "curl {token} \\\n  -u '{}:YOUR_CLIENT_SECRET' \\\n  -d grant_type=authorization_code \\\n  -d code=THE_CODE \\\n  --data-urlencode redirect_uri='{redirect}'",
            client.client_id
        ),
        AppKind::Native => format!(
            "curl {token} \\\n  -d grant_type=authorization_code \\\n  -d client_id='{}' \\\n  -d code=THE_CODE \\\n  -d code_verifier=YOUR_VERIFIER \\\n  --data-urlencode redirect_uri='{redirect}'",
            client.client_id
        ),
        AppKind::Machine => format!(
            "curl {token} \\\n  -u '{}:YOUR_CLIENT_SECRET' \\\n  -d grant_type=client_credentials \\\n  --data-urlencode scope='{scope}'",
            client.client_id
        ),
    };
    QuickStart { discovery: format!("{issuer}/.well-known/openid-configuration"), authorize, curl }
}

/// What the forms of an app's page hold when it is shown again with errors.
#[derive(Default)]
struct AppPageForms<'a> {
    settings: Option<&'a AppForm>,
    invite_email: &'a str,
}

async fn app_page(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    typed: AppPageForms<'_>,
    errors: FieldErrors,
    notice: Option<&str>,
) -> AppResult<Response> {
    let (_, user) = developer!(state, headers, &format!("/developer/apps/{id}"));
    let client = own_app(state, &user, id).await?;
    let now = state.now();
    let info = &client.secret_info;
    let mut secrets = Vec::new();
    if !client.is_public() {
        secrets.push(SecretRow {
            label: "Current secret",
            created: info.created_at.map(|t| When::new(now, t)),
            last_used: info.last_used_at.map(|t| When::new(now, t)),
            expires: None,
        });
        if let Some(p) = info.previous.as_ref().filter(|p| p.expires_at > now) {
            secrets.push(SecretRow {
                label: "Previous secret, still accepted",
                created: p.created_at.map(|t| When::new(now, t)),
                last_used: p.last_used_at.map(|t| When::new(now, t)),
                expires: Some(When::new(now, p.expires_at)),
            });
        }
    }
    let mut owners = Vec::new();
    for owner in state.store().list_client_owners(state.tenant_id(), &client.client_id).await? {
        if let Some(u) = state.store().find_user(state.tenant_id(), owner).await? {
            owners.push(if u.id == user.id { format!("{} (you)", u.email) } else { u.email });
        }
    }
    let users = authorized_users(state, &user, &client).await?;
    let kind = AppKind::of(&client);
    let form = typed.settings.cloned().unwrap_or_else(|| AppForm::of(&client));
    let mut invited = Vec::new();
    for i in developer::app_invitations(&state.rt, Actor::User(user.id), &client.client_id).await.map_err(or_not_found)? {
        if let Some(u) = state.store().find_user(state.tenant_id(), i.user_id).await? {
            invited.push(u.email);
        }
    }
    let page = AppPage {
        layout: browser::layout(state, headers, Some(&user), "developer"),
        client_id: &client.client_id,
        title: &client.name,
        kind: kind.label(),
        users,
        fields: fields(state, &form, kind.has_redirect_uris()).await?,
        secrets,
        confidential: !client.is_public(),
        quick: quick_start(state, &client),
        owners,
        invited,
        invite_email: typed.invite_email,
        csrf: &csrf(state, headers),
        errors,
        notice,
    };
    let code = status(&page.errors);
    Ok(pages::render(code, &page))
}

pub(crate) async fn app_post(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    PageForm(form): PageForm,
) -> PageResult<Response> {
    Ok(save(&state, &headers, &id, &form).await?)
}

async fn save(state: &AppState, headers: &HeaderMap, id: &str, form: &Params) -> AppResult<Response> {
    check_form(state, headers, form)?;
    let (_, user) = developer!(state, headers, &format!("/developer/apps/{id}"));
    let client = own_app(state, &user, id).await?;
    let typed = app_form(form, false);
    match developer::update_app(&state.rt, Actor::User(user.id), &client.client_id, &typed).await {
        Ok(c) => Ok(web::redirect(&state.path(&format!("/developer/apps/{}?done=saved", c.client_id)), true)),
        Err(AdminError::NotFound(_)) => Err(not_found()),
        Err(e) => {
            app_page(state, headers, id, AppPageForms { settings: Some(&typed), ..AppPageForms::default() }, field_errors(e)?, None).await
        }
    }
}

// ------------------------------------------------------------------------------------------
// Owners: invitations.

pub(crate) async fn owners_post(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    PageForm(form): PageForm,
) -> PageResult<Response> {
    Ok(invite(&state, &headers, &id, &form).await?)
}

async fn invite(state: &AppState, headers: &HeaderMap, id: &str, form: &Params) -> AppResult<Response> {
    check_form(state, headers, form)?;
    let (_, user) = developer!(state, headers, &format!("/developer/apps/{id}"));
    let client = own_app(state, &user, id).await?;
    let email = form.get("email").ok().flatten().unwrap_or_default();
    match developer::invite_owner(&state.rt, Actor::User(user.id), &client.client_id, email).await {
        Ok(_) => Ok(web::redirect(&state.path(&format!("/developer/apps/{}?done=invited", client.client_id)), true)),
        Err(e @ AdminError::Field { .. }) => {
            app_page(state, headers, id, AppPageForms { invite_email: email, ..AppPageForms::default() }, field_errors(e)?, None).await
        }
        Err(e) => Err(or_not_found(e)),
    }
}

pub(crate) async fn invitation_accept(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    PageForm(form): PageForm,
) -> PageResult<Response> {
    Ok(answer(&state, &headers, &id, &form, true).await?)
}

pub(crate) async fn invitation_decline(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    PageForm(form): PageForm,
) -> PageResult<Response> {
    Ok(answer(&state, &headers, &id, &form, false).await?)
}

async fn answer(state: &AppState, headers: &HeaderMap, id: &str, form: &Params, accept: bool) -> AppResult<Response> {
    check_form(state, headers, form)?;
    let (_, user) = developer!(state, headers, AREA);
    developer::answer_invitation(&state.rt, Actor::User(user.id), id, accept).await.map_err(or_not_found)?;
    let done = if accept { "accepted" } else { "declined" };
    Ok(web::redirect(&state.path(&format!("{AREA}?done={done}")), true))
}

// ------------------------------------------------------------------------------------------
// Rotating the secret.

pub(crate) async fn rotate_get(Extension(state): Extension<AppState>, headers: HeaderMap, Path(id): Path<String>) -> PageResult<Response> {
    Ok(rotate_page(&state, &headers, &id).await?)
}

async fn rotate_page(state: &AppState, headers: &HeaderMap, id: &str) -> AppResult<Response> {
    let (_, user) = developer!(state, headers, &format!("/developer/apps/{id}"));
    let client = own_app(state, &user, id).await?;
    if client.is_public() {
        return Err(not_found());
    }
    let page = RotateSecretPage {
        layout: browser::layout(state, headers, Some(&user), "developer"),
        client_id: &client.client_id,
        name: &client.name,
        graces: GRACE_CHOICES.iter().map(|&(s, l)| (s, l, s == 3600)).collect(),
        csrf: &csrf(state, headers),
    };
    Ok(pages::render(StatusCode::OK, &page))
}

pub(crate) async fn rotate_post(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    PageForm(form): PageForm,
) -> PageResult<Response> {
    Ok(rotate(&state, &headers, &id, &form).await?)
}

async fn rotate(state: &AppState, headers: &HeaderMap, id: &str, form: &Params) -> AppResult<Response> {
    check_form(state, headers, form)?;
    let (_, user) = developer!(state, headers, &format!("/developer/apps/{id}"));
    let client = own_app(state, &user, id).await?;
    // Only the choices the page offers.
    let grace = form.get("grace").ok().flatten().and_then(|g| g.parse::<i64>().ok()).filter(|g| GRACE_CHOICES.iter().any(|c| c.0 == *g));
    let Some(grace) = grace else {
        return rotate_page(state, headers, id).await;
    };
    let secret = developer::rotate_secret(&state.rt, Actor::User(user.id), &client.client_id, grace).await.map_err(or_not_found)?;
    let old = match GRACE_CHOICES.iter().find(|c| c.0 == grace) {
        Some((0, _)) | None => "The old secret no longer works.".to_owned(),
        Some((_, label)) => format!("The old secret keeps working for {label}, then stops."),
    };
    let page = AppSecretPage {
        layout: browser::layout(state, headers, Some(&user), "developer"),
        heading: "New client secret",
        name: &client.name,
        client_id: &client.client_id,
        secret: Some(secret.expose()),
        old: Some(old),
    };
    Ok(pages::render(StatusCode::OK, &page))
}

// ------------------------------------------------------------------------------------------
// Deleting.

pub(crate) async fn delete_get(Extension(state): Extension<AppState>, headers: HeaderMap, Path(id): Path<String>) -> PageResult<Response> {
    Ok(delete_page(&state, &headers, &id, "", FieldErrors::none()).await?)
}

async fn delete_page(state: &AppState, headers: &HeaderMap, id: &str, typed: &str, errors: FieldErrors) -> AppResult<Response> {
    let (_, user) = developer!(state, headers, &format!("/developer/apps/{id}"));
    let client = own_app(state, &user, id).await?;
    let users = authorized_users(state, &user, &client).await?;
    let page = DeleteAppPage {
        layout: browser::layout(state, headers, Some(&user), "developer"),
        client_id: &client.client_id,
        name: &client.name,
        users,
        typed,
        csrf: &csrf(state, headers),
        errors,
    };
    let code = status(&page.errors);
    Ok(pages::render(code, &page))
}

pub(crate) async fn delete_post(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    PageForm(form): PageForm,
) -> PageResult<Response> {
    Ok(delete(&state, &headers, &id, &form).await?)
}

async fn delete(state: &AppState, headers: &HeaderMap, id: &str, form: &Params) -> AppResult<Response> {
    check_form(state, headers, form)?;
    let (_, user) = developer!(state, headers, &format!("/developer/apps/{id}"));
    let typed = form.get("confirm_name").ok().flatten().unwrap_or_default();
    match developer::delete_app(&state.rt, Actor::User(user.id), id, typed).await {
        Ok(_) => Ok(web::redirect(&state.path("/developer?done=deleted"), true)),
        Err(e @ AdminError::Field { .. }) => delete_page(state, headers, id, typed, field_errors(e)?).await,
        Err(e) => Err(or_not_found(e)),
    }
}
