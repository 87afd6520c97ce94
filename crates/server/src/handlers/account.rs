//! The signed-in user's own JSON API: personal access tokens (YouCan's "Developer Settings").
//! The account pages of a later issue call it; it needs the session cookie, and every change
//! needs the CSRF token it hands out in an `X-CSRF-Token` header.

use super::authorize::{current_session, SESSION_COOKIE};
use crate::admin::{self, AdminError};
use crate::error::{no_store, AppError, AppResult};
use crate::state::AppState;
use crate::web;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{header, HeaderMap, StatusCode};
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

/// The session and its cookie, or 401.
async fn signed_in(state: &AppState, headers: &HeaderMap) -> AppResult<(Session, String)> {
    let session = current_session(state, headers).await?;
    let cookie = web::cookie(headers, &state.cookie_name(SESSION_COOKIE)).map(str::to_owned);
    match (session, cookie) {
        (Some(s), Some(c)) => Ok((s, c)),
        _ => Err(api(StatusCode::UNAUTHORIZED, "login_required", "sign in first")),
    }
}

/// The CSRF token of a session: a MAC of its cookie.
fn csrf_token(state: &AppState, session_cookie: &str) -> String {
    state.hasher().derive(b"account-csrf", session_cookie.as_bytes())
}

/// Every change needs the session's CSRF token in `X-CSRF-Token` and no foreign `Origin`
/// (SECURITY.md AZ-12). A custom header cannot be sent cross-site without CORS, which
/// Latchkey never grants.
fn check_csrf(state: &AppState, headers: &HeaderMap, session_cookie: &str) -> AppResult<()> {
    let forbidden = || api(StatusCode::FORBIDDEN, "csrf_failed", "send the csrf_token of GET /account/api/personal-tokens in X-CSRF-Token");
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        if origin != state.issuer_origin() {
            return Err(forbidden());
        }
    }
    let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).ok_or_else(forbidden)?;
    if latchkey_core::secret::ct_str_eq(sent, &csrf_token(state, session_cookie)) {
        Ok(())
    } else {
        Err(forbidden())
    }
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
    let (session, cookie) = signed_in(&state, &headers).await?;
    let tokens = state.store().list_personal_tokens(state.tenant_id(), session.user_id).await?;
    let body = json!({"csrf_token": csrf_token(&state, &cookie), "tokens": tokens.iter().map(describe).collect::<Vec<_>>()});
    Ok(no_store(axum::Json(body).into_response()))
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
    let (session, cookie) = signed_in(&state, &headers).await?;
    check_csrf(&state, &headers, &cookie)?;
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
    let (session, cookie) = signed_in(state, headers).await?;
    check_csrf(state, headers, &cookie)?;
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
