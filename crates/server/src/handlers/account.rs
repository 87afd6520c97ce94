//! The signed-in user's own JSON API: personal access tokens (YouCan's "Developer Settings").
//! The account pages of a later issue call it; it needs the session cookie, and every change
//! needs the CSRF token it hands out in an `X-CSRF-Token` header.

use crate::admin::{self, AdminError};
use crate::browser::{self, Refusal};
use crate::error::{no_store, AppError, AppResult};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use latchkey_core::model::{PersonalToken, Session};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

fn api(status: StatusCode, error: &'static str, description: impl Into<String>) -> AppError {
    AppError::Api { status, error, description: description.into() }
}

impl From<AdminError> for AppError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Invalid(d) => api(StatusCode::BAD_REQUEST, "invalid_request", d),
            AdminError::NotFound(d) => api(StatusCode::NOT_FOUND, "not_found", format!("{d} not found")),
            AdminError::Exists(d) => api(StatusCode::CONFLICT, "conflict", format!("{d} already exists")),
            AdminError::Store(e) => AppError::Store(e),
        }
    }
}

/// The session, or 401.
async fn signed_in(state: &AppState, headers: &HeaderMap) -> AppResult<Session> {
    browser::current_session(state, headers).await?.ok_or_else(|| api(StatusCode::UNAUTHORIZED, "login_required", "sign in first"))
}

/// Every change passes the checks of the pages' forms (`browser::check_post`), with the CSRF
/// token in `X-CSRF-Token`: a custom header cannot be sent cross-site without CORS, which
/// Latchkey never grants.
fn check_csrf(state: &AppState, headers: &HeaderMap) -> AppResult<()> {
    let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
    browser::check_post(state, headers, sent).map_err(|refusal| {
        let description = match refusal {
            Refusal::Token => "send the csrf_token of GET /account/api/personal-tokens in X-CSRF-Token".to_owned(),
            other => format!("this change was sent from another site ({other})"),
        };
        api(StatusCode::FORBIDDEN, "csrf_failed", description)
    })
}

fn describe(t: &PersonalToken) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "scope": t.scope.to_string(),
        "created_at": t.created_at,
        "expires_at": t.expires_at,
        "last_used_at": t.last_used_at,
        "revoked_at": t.revoked_at,
    })
}

pub(crate) async fn personal_tokens_get(Extension(state): Extension<AppState>, headers: HeaderMap) -> AppResult<Response> {
    let session = signed_in(&state, &headers).await?;
    let tokens = state.store().list_personal_tokens(state.tenant_id(), session.user_id).await?;
    let (browser, new_cookie) = browser::ensure_browser(&state, &headers);
    let csrf = browser::csrf_token(&state, &headers, &browser);
    let body = json!({"csrf_token": csrf, "tokens": tokens.iter().map(describe).collect::<Vec<_>>()});
    Ok(browser::with_browser_cookie(&state, no_store(axum::Json(body).into_response()), new_cookie))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    /// A space-separated string or an array.
    scope: ScopeField,
    expires_in: Option<i64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ScopeField {
    One(String),
    Many(Vec<String>),
}

pub(crate) async fn personal_tokens_post(Extension(state): Extension<AppState>, headers: HeaderMap, body: Bytes) -> AppResult<Response> {
    let session = signed_in(&state, &headers).await?;
    check_csrf(&state, &headers)?;
    let new: NewToken = serde_json::from_slice(&body).map_err(|e| {
        api(StatusCode::BAD_REQUEST, "invalid_request", format!("the body must be JSON with name, scope and optionally expires_in: {e}"))
    })?;
    let scopes = match new.scope {
        ScopeField::One(s) => vec![s],
        ScopeField::Many(v) => v,
    };
    let (token, secret) = admin::create_personal_token(&state.rt, session.user_id, &new.name, &scopes, new.expires_in).await?;
    let mut body = describe(&token);
    body["token"] = json!(secret.expose());
    Ok(no_store((StatusCode::CREATED, axum::Json(body)).into_response()))
}

/// For a change to one token: the session, its CSRF token, and the token, which must be the
/// signed-in user's own (another user's is "not found").
async fn own_token_to_change(state: &AppState, headers: &HeaderMap, id: &str) -> AppResult<PersonalToken> {
    let session = signed_in(state, headers).await?;
    check_csrf(state, headers)?;
    let not_found = || api(StatusCode::NOT_FOUND, "not_found", "no such personal token");
    let id: Uuid = id.parse().map_err(|_| not_found())?;
    match state.store().find_personal_token(state.tenant_id(), id).await? {
        Some(t) if t.user_id == session.user_id => Ok(t),
        _ => Err(not_found()),
    }
}

pub(crate) async fn personal_token_regenerate(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let token = own_token_to_change(&state, &headers, &id).await?;
    let secret = admin::regenerate_personal_token(&state.rt, token.id).await?;
    let mut body = describe(&token);
    body["token"] = json!(secret.expose());
    Ok(no_store(axum::Json(body).into_response()))
}

pub(crate) async fn personal_token_revoke(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let token = own_token_to_change(&state, &headers, &id).await?;
    admin::revoke_personal_token(&state.rt, token.id).await?;
    Ok(no_store(axum::Json(json!({"id": token.id, "revoked": true})).into_response()))
}
