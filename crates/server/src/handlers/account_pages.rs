//! The account area (`/account`, docs/pages.md): the profile and password, the developer
//! settings with personal access tokens (YouCan's "Settings > Developer Settings"), and the
//! authorized applications (UltraCart's "Authorized Applications"). Each page turns a form
//! into a call of `crate::account` and its outcome into a page; a destructive action asks
//! first, on a page of its own, so that it works without JavaScript.

use crate::account::{self, Actor, NewPersonalToken, PERSONAL_TOKEN_DEFAULT_LIFETIME, PERSONAL_TOKEN_LIFETIME_CHOICES};
use crate::admin::AdminError;
use crate::auth::{check_password, CredentialFailure};
use crate::browser::{self, check_form};
use crate::catalogue;
use crate::error::{AppError, AppResult, PageResult};
use crate::pages::{
    self, AppRow, AppsPage, ConfirmPage, FieldErrors, ProfilePage, ScopeChoice, ScopeLine, TokenRow, TokenSecretPage, TokensPage, When,
};
use crate::state::AppState;
use crate::web::{self, PageForm, Peer};
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use latchkey_core::model::{ScopeEntry, Session, User};
use latchkey_core::params::Params;
use uuid::Uuid;

const TOKENS: &str = "/account/developer-settings";
const APPS: &str = "/account/authorized-applications";

/// The signed-in person, or the sign-in page first (and back here after it).
pub(crate) async fn person(state: &AppState, headers: &HeaderMap, here: &str) -> AppResult<Result<(Session, User), Response>> {
    match browser::current_user(state, headers).await? {
        Some(found) => Ok(Ok(found)),
        None => {
            let next: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
            Ok(Err(web::redirect(&state.path(&format!("/login?next={next}")), false)))
        }
    }
}

/// Runs `page` for the signed-in person; without one, the sign-in page comes first.
macro_rules! signed_in {
    ($state:expr, $headers:expr, $here:expr) => {
        match person(&$state, &$headers, $here).await? {
            Ok(found) => found,
            Err(to_sign_in) => return Ok(to_sign_in),
        }
    };
}
pub(crate) use signed_in;

pub(crate) fn csrf(state: &AppState, headers: &HeaderMap) -> String {
    browser::csrf_token(state, headers, browser::browser_cookie(state, headers).unwrap_or_default())
}

/// A notice named in the query after a change (`?done=revoked`), in words.
pub(crate) fn notice(query: &Option<String>, known: &[(&str, &'static str)]) -> Option<&'static str> {
    let q = Params::from_urlencoded(query.as_deref().unwrap_or_default());
    let done = q.get("done").ok().flatten()?;
    known.iter().find(|(k, _)| *k == done).map(|(_, v)| *v)
}

fn scope_lines<'a>(catalogue: &[ScopeEntry], scopes: impl Iterator<Item = &'a str>) -> Vec<ScopeLine> {
    scopes.map(|s| ScopeLine { words: catalogue::describe(catalogue, s), name: s.to_owned() }).collect()
}

/// A page for a form whose errors are shown next to their fields; any other failure of the
/// operation is the usual error page.
pub(crate) fn field_errors(e: AdminError) -> AppResult<FieldErrors> {
    match e {
        AdminError::Field { field, message } => Ok(FieldErrors(vec![(field, message)])),
        AdminError::Fields(fields) => Ok(FieldErrors(fields)),
        AdminError::Invalid(m) => Ok(FieldErrors(vec![("form", m)])),
        AdminError::Forbidden(m) => Err(AppError::page(StatusCode::FORBIDDEN, "Not allowed", m)),
        AdminError::NotFound(_) => Err(AppError::page(StatusCode::NOT_FOUND, "Not found", "There is no such item in your account.")),
        AdminError::Exists(m) => Ok(FieldErrors(vec![("form", format!("{m} already exists."))])),
        AdminError::Store(e) => Err(AppError::Store(e)),
    }
}

// ------------------------------------------------------------------------------------------
// Profile and password.

pub(crate) async fn profile_get(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> PageResult<Response> {
    Ok(profile(
        &state,
        &headers,
        FieldErrors::none(),
        notice(&query, &[("password", "Your password is changed. You were signed out everywhere else.")]),
    )
    .await?)
}

async fn profile(state: &AppState, headers: &HeaderMap, errors: FieldErrors, notice: Option<&str>) -> AppResult<Response> {
    let (_, user) = signed_in!(state, headers, "/account");
    let businesses = state.store().list_user_businesses(state.tenant_id(), user.id).await?.into_iter().map(|b| b.name).collect();
    let status = if errors.0.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let page = ProfilePage {
        layout: browser::layout(state, headers, Some(&user), "account"),
        name: &user.name,
        email: &user.email,
        businesses,
        csrf: &csrf(state, headers),
        errors,
        notice,
    };
    Ok(pages::render(status, &page))
}

pub(crate) async fn password_post(
    Extension(state): Extension<AppState>,
    peer: Peer,
    headers: HeaderMap,
    PageForm(form): PageForm,
) -> PageResult<Response> {
    Ok(password(&state, peer, &headers, &form).await?)
}

async fn password(state: &AppState, peer: Peer, headers: &HeaderMap, form: &Params) -> AppResult<Response> {
    check_form(state, headers, form)?;
    let (session, user) = signed_in!(state, headers, "/account");
    let get = |k: &str| form.get(k).ok().flatten().unwrap_or_default();
    // The current password is checked as a sign-in is, behind the same guessing limits.
    let source = browser::PasswordSource::of(state, headers, peer, &user.email);
    match check_password(state, &user.email, get("current_password").to_owned(), source.as_source()).await? {
        Ok(verified) => verified.settle_with(state, async { AppResult::Ok(()) }).await?,
        Err(CredentialFailure::Invalid) => {
            return profile(state, headers, FieldErrors(vec![("current_password", "This is not your current password.".into())]), None)
                .await
        }
        Err(CredentialFailure::TooManyAttempts { .. }) => {
            let message = "Too many attempts for this account. Wait a few minutes, then try again.";
            return profile(state, headers, FieldErrors(vec![("current_password", message.into())]), None).await;
        }
    }
    match account::set_password(&state.rt, &user, get("new_password"), get("confirm_password"), Some(session.hash)).await {
        Ok(()) => Ok(web::redirect(&state.path("/account?done=password"), true)),
        Err(e) => profile(state, headers, field_errors(e)?, None).await,
    }
}

// ------------------------------------------------------------------------------------------
// Developer settings: personal access tokens.

pub(crate) async fn tokens_get(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> PageResult<Response> {
    let notice = notice(&query, &[("revoked", "The token is revoked. It no longer works.")]);
    Ok(tokens(&state, &headers, &TokenForm::default(), FieldErrors::none(), notice).await?)
}

/// What the creation form holds, kept when it is shown again with errors.
#[derive(Default)]
struct TokenForm {
    name: String,
    scopes: Vec<String>,
    days: Option<i64>,
}

async fn tokens(state: &AppState, headers: &HeaderMap, form: &TokenForm, errors: FieldErrors, notice: Option<&str>) -> AppResult<Response> {
    let (_, user) = signed_in!(state, headers, TOKENS);
    let now = state.now();
    let catalogue = catalogue::entries(&state.rt).await?;
    let tokens = state
        .store()
        .list_personal_tokens(state.tenant_id(), user.id)
        .await?
        .into_iter()
        .map(|t| {
            let status = match (t.revoked_at, t.expires_at <= now) {
                (Some(_), _) => "Revoked",
                (None, true) => "Expired",
                (None, false) => "Active",
            };
            TokenRow {
                id: t.id.to_string(),
                scopes: scope_lines(&catalogue, t.scope.iter()),
                created: When::new(now, t.created_at),
                expires: When::new(now, t.expires_at),
                last_used: t.last_used_at.map(|u| When::new(now, u)),
                active: t.is_active(now),
                name: t.name,
                status,
            }
        })
        .collect();
    let choices = catalogue
        .iter()
        .filter(|e| e.personal)
        .map(|e| ScopeChoice {
            line: ScopeLine { words: e.description.clone(), name: e.name.clone() },
            checked: form.scopes.contains(&e.name),
        })
        .collect();
    let chosen = form.days.unwrap_or(PERSONAL_TOKEN_DEFAULT_LIFETIME / 86_400);
    let lifetimes = PERSONAL_TOKEN_LIFETIME_CHOICES.iter().map(|&d| (d, format!("{d} days"), d == chosen)).collect();
    let status = if errors.0.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let page = TokensPage {
        layout: browser::layout(state, headers, Some(&user), "developer-settings"),
        tokens,
        choices,
        lifetimes,
        name: &form.name,
        csrf: &csrf(state, headers),
        errors,
        notice,
    };
    Ok(pages::render(status, &page))
}

pub(crate) async fn tokens_post(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    PageForm(form): PageForm,
) -> PageResult<Response> {
    Ok(create_token(&state, &headers, &form).await?)
}

async fn create_token(state: &AppState, headers: &HeaderMap, form: &Params) -> AppResult<Response> {
    check_form(state, headers, form)?;
    let (_, user) = signed_in!(state, headers, TOKENS);
    let days = form.get("expires_in").ok().flatten().and_then(|d| d.parse::<i64>().ok());
    let kept = TokenForm {
        name: form.get("name").ok().flatten().unwrap_or_default().to_owned(),
        scopes: form.get_all("scope").map(str::to_owned).collect(),
        days,
    };
    // Only the choices the page offers.
    let Some(days) = days.filter(|d| PERSONAL_TOKEN_LIFETIME_CHOICES.contains(d)) else {
        return tokens(state, headers, &kept, FieldErrors(vec![("expires_in", "Choose one of the offered lifetimes.".into())]), None).await;
    };
    let new = NewPersonalToken { name: kept.name.clone(), scopes: kept.scopes.clone(), expires_in: Some(days * 86_400) };
    match account::create_personal_token(&state.rt, Actor::User(user.id), user.id, new).await {
        Ok((token, secret)) => secret_page(state, headers, &user, "created", &token.name, secret.expose(), token.expires_at),
        Err(e) => tokens(state, headers, &kept, field_errors(e)?, None).await,
    }
}

fn secret_page(
    state: &AppState,
    headers: &HeaderMap,
    user: &User,
    what: &str,
    name: &str,
    secret: &str,
    expires_at: i64,
) -> AppResult<Response> {
    let page = TokenSecretPage {
        layout: browser::layout(state, headers, Some(user), "developer-settings"),
        what,
        name,
        secret,
        expires: When::new(state.now(), expires_at),
    };
    Ok(pages::render(StatusCode::OK, &page))
}

fn not_found() -> AppError {
    AppError::page(StatusCode::NOT_FOUND, "Not found", "There is no such item in your account. It may have been removed already.")
}

/// An operation's failure on one item: the store's own failure as it is, anything else as
/// "not found" (the item is gone, or was never the person's).
fn or_not_found(e: AdminError) -> AppError {
    match e {
        AdminError::Store(e) => AppError::Store(e),
        _ => not_found(),
    }
}

/// The person's own live token named in the path.
async fn own_token(state: &AppState, user: &User, id: &str) -> AppResult<latchkey_core::model::PersonalToken> {
    let id: Uuid = id.parse().map_err(|_| not_found())?;
    let token = account::find_personal_token(&state.rt, Actor::User(user.id), id).await.map_err(or_not_found)?;
    if token.is_active(state.now()) {
        Ok(token)
    } else {
        Err(not_found())
    }
}

/// Which change to a token a confirmation page asks for.
#[derive(Clone, Copy)]
enum TokenChange {
    Regenerate,
    Revoke,
}

pub(crate) async fn token_regenerate_get(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> PageResult<Response> {
    Ok(confirm_token(&state, &headers, &id, TokenChange::Regenerate).await?)
}

pub(crate) async fn token_revoke_get(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> PageResult<Response> {
    Ok(confirm_token(&state, &headers, &id, TokenChange::Revoke).await?)
}

async fn confirm_token(state: &AppState, headers: &HeaderMap, id: &str, change: TokenChange) -> AppResult<Response> {
    let (_, user) = signed_in!(state, headers, TOKENS);
    let token = own_token(state, &user, id).await?;
    let (title, message, button, path) = match change {
        TokenChange::Regenerate => (
            "Regenerate this token?",
            format!("The token \"{}\" gets a new secret, with the same name, scopes and expiry. The old secret stops working at once: whatever uses it must be given the new one.", token.name),
            "Regenerate token",
            "regenerate",
        ),
        TokenChange::Revoke => (
            "Revoke this token?",
            format!("The token \"{}\" stops working at once, for good.", token.name),
            "Revoke token",
            "revoke",
        ),
    };
    let page = ConfirmPage {
        layout: browser::layout(state, headers, Some(&user), "developer-settings"),
        title,
        message,
        action: state.path(&format!("{TOKENS}/{}/{path}", token.id)),
        button,
        cancel: state.path(TOKENS),
        csrf: &csrf(state, headers),
    };
    Ok(pages::render(StatusCode::OK, &page))
}

pub(crate) async fn token_regenerate_post(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    PageForm(form): PageForm,
) -> PageResult<Response> {
    Ok(change_token(&state, &headers, &id, &form, TokenChange::Regenerate).await?)
}

pub(crate) async fn token_revoke_post(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    PageForm(form): PageForm,
) -> PageResult<Response> {
    Ok(change_token(&state, &headers, &id, &form, TokenChange::Revoke).await?)
}

async fn change_token(state: &AppState, headers: &HeaderMap, id: &str, form: &Params, change: TokenChange) -> AppResult<Response> {
    check_form(state, headers, form)?;
    let (_, user) = signed_in!(state, headers, TOKENS);
    let token = own_token(state, &user, id).await?;
    let actor = Actor::User(user.id);
    match change {
        TokenChange::Regenerate => {
            let (token, secret) = account::regenerate_personal_token(&state.rt, actor, token.id).await.map_err(or_not_found)?;
            secret_page(state, headers, &user, "regenerated", &token.name, secret.expose(), token.expires_at)
        }
        TokenChange::Revoke => {
            account::revoke_personal_token(&state.rt, actor, token.id).await.map_err(or_not_found)?;
            Ok(web::redirect(&state.path(&format!("{TOKENS}?done=revoked")), true))
        }
    }
}

// ------------------------------------------------------------------------------------------
// Authorized applications.

pub(crate) async fn apps_get(Extension(state): Extension<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> PageResult<Response> {
    Ok(apps(&state, &headers, notice(&query, &[("revoked", "Access revoked. The app can no longer act for you.")])).await?)
}

async fn apps(state: &AppState, headers: &HeaderMap, notice: Option<&str>) -> AppResult<Response> {
    let (_, user) = signed_in!(state, headers, APPS);
    let now = state.now();
    let catalogue = catalogue::entries(&state.rt).await?;
    let mut groups: Vec<(String, Vec<AppRow>)> = Vec::new();
    for g in account::authorized_apps(&state.rt, user.id).await.map_err(or_not_found)? {
        let business = g.business_name.clone().unwrap_or_else(|| "Without a business".into());
        let row = AppRow {
            grant: g.grant.id.to_string(),
            name: g.client_name,
            developer: g.developer,
            scopes: scope_lines(&catalogue, g.grant.scope.iter()),
            granted: When::new(now, g.grant.created_at),
            last_used: g.last_used_at.map(|u| When::new(now, u)),
        };
        match groups.iter_mut().find(|(b, _)| *b == business) {
            Some((_, rows)) => rows.push(row),
            None => groups.push((business, vec![row])),
        }
    }
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    let page = AppsPage { layout: browser::layout(state, headers, Some(&user), "authorized-applications"), groups, notice };
    Ok(pages::render(StatusCode::OK, &page))
}

/// The person's own grant named in the path, with its app's name.
async fn own_grant(state: &AppState, user: &User, id: &str) -> AppResult<(Uuid, String)> {
    let id: Uuid = id.parse().map_err(|_| not_found())?;
    let grants = state.store().list_user_grants(state.tenant_id(), user.id).await?;
    grants.into_iter().find(|g| g.grant.id == id).map(|g| (id, g.client_name)).ok_or_else(not_found)
}

pub(crate) async fn app_revoke_get(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> PageResult<Response> {
    Ok(confirm_app(&state, &headers, &id).await?)
}

async fn confirm_app(state: &AppState, headers: &HeaderMap, id: &str) -> AppResult<Response> {
    let (_, user) = signed_in!(state, headers, APPS);
    let (grant, name) = own_grant(state, &user, id).await?;
    let page = ConfirmPage {
        layout: browser::layout(state, headers, Some(&user), "authorized-applications"),
        title: "Revoke access?",
        message: format!(
            "{name} can no longer act for you: every token it holds stops working at once. It must ask you again to get access back."
        ),
        action: state.path(&format!("{APPS}/{grant}/revoke")),
        button: "Revoke access",
        cancel: state.path(APPS),
        csrf: &csrf(state, headers),
    };
    Ok(pages::render(StatusCode::OK, &page))
}

pub(crate) async fn app_revoke_post(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    PageForm(form): PageForm,
) -> PageResult<Response> {
    Ok(revoke_app(&state, &headers, &id, &form).await?)
}

async fn revoke_app(state: &AppState, headers: &HeaderMap, id: &str, form: &Params) -> AppResult<Response> {
    check_form(state, headers, form)?;
    let (_, user) = signed_in!(state, headers, APPS);
    let id: Uuid = id.parse().map_err(|_| not_found())?;
    account::revoke_app(&state.rt, Actor::User(user.id), user.id, id).await.map_err(or_not_found)?;
    Ok(web::redirect(&state.path(&format!("{APPS}?done=revoked")), true))
}
