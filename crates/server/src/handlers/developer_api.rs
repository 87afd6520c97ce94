//! The developer's JSON API (`/developer/api/apps`): the developer pages' operations
//! (`crate::developer`) for scripts. Like the account API it needs the session cookie, and
//! every change the CSRF token that `GET /developer/api/apps` hands out, in `X-CSRF-Token`.

use super::account_api::{api, check_csrf, signed_in, JsonBody};
use crate::account::Actor;
use crate::browser;
use crate::developer::{self, AppForm, AppKind};
use crate::error::{no_store, AppResult};
use crate::state::AppState;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use latchkey_core::model::Client;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

/// An app as the API shows it (never a secret, only when each was made and used).
fn describe(c: &Client) -> Value {
    let info = &c.secret_info;
    let secret = (!c.is_public()).then(|| {
        json!({
            "created_at": info.created_at,
            "last_used_at": info.last_used_at,
            "previous": info.previous.as_ref().map(|p| json!({
                "created_at": p.created_at,
                "expires_at": p.expires_at,
                "last_used_at": p.last_used_at,
            })),
        })
    });
    json!({
        "client_id": c.client_id,
        "name": c.name,
        "developer": c.developer,
        "kind": AppKind::of(c).as_str(),
        "public": c.is_public(),
        "redirect_uris": c.redirect_uris,
        "scopes": c.scopes.iter().collect::<Vec<_>>(),
        "grant_types": c.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        "website": c.profile.website,
        "privacy_policy": c.profile.privacy_policy,
        "terms_of_service": c.profile.terms_of_service,
        "logo": c.profile.logo,
        "secret": secret,
        "created_at": c.created_at,
    })
}

/// Who makes a change: the signed-in developer, once the change passed the CSRF checks.
async fn changer(state: &AppState, headers: &HeaderMap) -> AppResult<Actor> {
    let session = signed_in(state, headers).await?;
    check_csrf(state, headers)?;
    Ok(Actor::User(session.user_id))
}

fn parse<T: DeserializeOwned>(body: &JsonBody, what: &str) -> AppResult<T> {
    serde_json::from_slice(&body.0)
        .map_err(|e| api(StatusCode::BAD_REQUEST, "invalid_request", format!("the body must be JSON with {what}: {e}")))
}

/// What a registration or a change sends; in a change, what is absent stays.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AppBody {
    name: Option<String>,
    developer: Option<String>,
    kind: Option<String>,
    website: Option<String>,
    privacy_policy: Option<String>,
    terms_of_service: Option<String>,
    logo: Option<String>,
    redirect_uris: Option<Vec<String>>,
    scopes: Option<Vec<String>>,
}

impl AppBody {
    /// `base` with what the body sets.
    fn over(self, base: AppForm) -> AppForm {
        AppForm {
            name: self.name.unwrap_or(base.name),
            developer: self.developer.unwrap_or(base.developer),
            website: self.website.unwrap_or(base.website),
            privacy_policy: self.privacy_policy.unwrap_or(base.privacy_policy),
            terms_of_service: self.terms_of_service.unwrap_or(base.terms_of_service),
            logo: self.logo.unwrap_or(base.logo),
            kind: self.kind.or(base.kind),
            redirect_uris: self.redirect_uris.unwrap_or(base.redirect_uris),
            scopes: self.scopes.unwrap_or(base.scopes),
        }
    }
}

pub(crate) async fn apps_get(Extension(state): Extension<AppState>, headers: HeaderMap) -> AppResult<Response> {
    let actor = Actor::User(signed_in(&state, &headers).await?.user_id);
    let apps = developer::list_apps(&state.rt, actor).await?;
    let apps: Vec<Value> = apps
        .iter()
        .map(|s| {
            let mut v = describe(&s.client);
            v["authorized_users"] = json!(s.authorized_users);
            v
        })
        .collect();
    let (browser, new_cookie) = browser::ensure_browser(&state, &headers);
    let csrf = browser::csrf_token(&state, &headers, &browser);
    Ok(browser::with_browser_cookie(&state, no_store(axum::Json(json!({"csrf_token": csrf, "apps": apps})).into_response()), new_cookie))
}

pub(crate) async fn apps_post(Extension(state): Extension<AppState>, headers: HeaderMap, body: JsonBody) -> AppResult<Response> {
    let actor = changer(&state, &headers).await?;
    let form =
        parse::<AppBody>(&body, "name, developer, kind (web, native or machine), redirect_uris and scopes")?.over(AppForm::default());
    let (client, secret) = developer::register_app(&state.rt, actor, &form).await?;
    let mut body = describe(&client);
    body["client_secret"] = json!(secret.as_ref().map(|s| s.expose()));
    Ok(no_store((StatusCode::CREATED, axum::Json(body)).into_response()))
}

pub(crate) async fn app_get(Extension(state): Extension<AppState>, headers: HeaderMap, Path(id): Path<String>) -> AppResult<Response> {
    let actor = Actor::User(signed_in(&state, &headers).await?.user_id);
    let client = developer::find_app(&state.rt, actor, &id).await?;
    Ok(no_store(axum::Json(describe(&client)).into_response()))
}

pub(crate) async fn app_patch(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: JsonBody,
) -> AppResult<Response> {
    let actor = changer(&state, &headers).await?;
    let client = developer::find_app(&state.rt, actor, &id).await?;
    let changes = parse::<AppBody>(&body, "the fields to change")?;
    if changes.kind.is_some() {
        return Err(api(StatusCode::BAD_REQUEST, "invalid_request", "an app's kind cannot change; register a new app"));
    }
    let client = developer::update_app(&state.rt, actor, &client.client_id, &changes.over(AppForm::of(&client))).await?;
    Ok(no_store(axum::Json(describe(&client)).into_response()))
}

pub(crate) async fn app_delete(Extension(state): Extension<AppState>, headers: HeaderMap, Path(id): Path<String>) -> AppResult<Response> {
    let actor = changer(&state, &headers).await?;
    let client = developer::find_app(&state.rt, actor, &id).await?;
    // A script names the app in the path; the typed name is the pages' confirmation.
    developer::delete_app(&state.rt, actor, &client.client_id, &client.name).await?;
    Ok(no_store(axum::Json(json!({"client_id": client.client_id, "deleted": true})).into_response()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    /// How long the old secret keeps working, in seconds (0: it stops at once).
    grace_seconds: i64,
}

pub(crate) async fn secret_post(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: JsonBody,
) -> AppResult<Response> {
    let actor = changer(&state, &headers).await?;
    let rotate = parse::<RotateBody>(&body, "grace_seconds")?;
    let secret = developer::rotate_secret(&state.rt, actor, &id, rotate.grace_seconds).await?;
    let client = developer::find_app(&state.rt, actor, &id).await?;
    let mut body = describe(&client);
    body["client_secret"] = json!(secret.expose());
    Ok(no_store(axum::Json(body).into_response()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteBody {
    email: String,
}

pub(crate) async fn owners_post(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: JsonBody,
) -> AppResult<Response> {
    let actor = changer(&state, &headers).await?;
    let invite = parse::<InviteBody>(&body, "the email of a developer")?;
    let i = developer::invite_owner(&state.rt, actor, &id, &invite.email).await?;
    let body = json!({"client_id": i.client_id, "user_id": i.user_id, "created_at": i.created_at});
    Ok(no_store((StatusCode::CREATED, axum::Json(body)).into_response()))
}

pub(crate) async fn owner_delete(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    Path((id, user)): Path<(String, String)>,
) -> AppResult<Response> {
    let actor = changer(&state, &headers).await?;
    let user = user.parse().map_err(|_| api(StatusCode::NOT_FOUND, "not_found", "no such owner"))?;
    developer::remove_owner(&state.rt, actor, &id, user).await?;
    Ok(no_store(axum::Json(json!({"client_id": id, "user_id": user, "removed": true})).into_response()))
}

pub(crate) async fn invitations_get(Extension(state): Extension<AppState>, headers: HeaderMap) -> AppResult<Response> {
    let actor = Actor::User(signed_in(&state, &headers).await?.user_id);
    let invitations: Vec<Value> = developer::my_invitations(&state.rt, actor)
        .await?
        .iter()
        .map(|i| json!({"client_id": i.client_id, "name": i.client_name, "invited_by": i.invited_by, "created_at": i.created_at}))
        .collect();
    Ok(no_store(axum::Json(json!({"invitations": invitations})).into_response()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerBody {
    accept: bool,
}

pub(crate) async fn invitation_post(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: JsonBody,
) -> AppResult<Response> {
    let actor = changer(&state, &headers).await?;
    let answer = parse::<AnswerBody>(&body, "accept (true or false)")?;
    developer::answer_invitation(&state.rt, actor, &id, answer.accept).await?;
    Ok(no_store(axum::Json(json!({"client_id": id, "accepted": answer.accept})).into_response()))
}
