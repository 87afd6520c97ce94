//! The signed-in user's own JSON API: personal access tokens (YouCan's "Developer Settings"),
//! for scripts; the account pages do the same through the same operations (`crate::account`).
//! It needs the session cookie, and every change the CSRF token that `GET` hands out, in an
//! `X-CSRF-Token` header.

use crate::account::{self, Actor, NewPersonalToken};
use crate::admin::AdminError;
use crate::browser::{self, Refusal};
use crate::catalogue;
use crate::error::{no_store, AppError, AppResult};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use latchkey_core::model::{PersonalToken, Session};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

pub(crate) fn api(status: StatusCode, error: &'static str, description: impl Into<String>) -> AppError {
    AppError::Api { status, error, description: description.into(), field: None }
}

impl From<AdminError> for AppError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Invalid(d) => api(StatusCode::BAD_REQUEST, "invalid_request", d),
            AdminError::Field { field, message } => {
                AppError::Api { status: StatusCode::BAD_REQUEST, error: "invalid_request", description: message, field: Some(field) }
            }
            AdminError::Fields(mut fields) => {
                let (field, message) = fields.remove(0);
                AppError::Api { status: StatusCode::BAD_REQUEST, error: "invalid_request", description: message, field: Some(field) }
            }
            AdminError::Forbidden(d) => api(StatusCode::FORBIDDEN, "forbidden", d),
            AdminError::NotFound(d) => api(StatusCode::NOT_FOUND, "not_found", format!("{d} not found")),
            AdminError::Exists(d) => api(StatusCode::CONFLICT, "conflict", format!("{d} already exists")),
            AdminError::Store(e) => AppError::Store(e),
        }
    }
}

/// The session, or 401.
pub(crate) async fn signed_in(state: &AppState, headers: &HeaderMap) -> AppResult<Session> {
    browser::current_session(state, headers).await?.ok_or_else(|| api(StatusCode::UNAUTHORIZED, "login_required", "sign in first"))
}

/// Every change passes the checks of the pages' forms (`browser::check_post`), with the CSRF
/// token in `X-CSRF-Token`: a custom header cannot be sent cross-site without CORS, which
/// Latchkey never grants.
pub(crate) fn check_csrf(state: &AppState, headers: &HeaderMap) -> AppResult<()> {
    let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
    browser::check_post(state, headers, sent).map_err(|refusal| {
        let description = match refusal {
            Refusal::Token => "send in X-CSRF-Token the csrf_token that a GET of this API answers (GET /account/api/personal-tokens, GET /developer/api/apps)".to_owned(),
            other => format!("this change was sent from another site ({other})"),
        };
        api(StatusCode::FORBIDDEN, "csrf_failed", description)
    })
}

/// A JSON body: `Content-Type: application/json`, within the body limit, or a JSON error.
pub(crate) struct JsonBody(pub(crate) Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")));
        if !json {
            return Err(api(StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request", "send the body as application/json"));
        }
        Bytes::from_request(req, state)
            .await
            .map(Self)
            .map_err(|_| api(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request", "the body is too large (at most 64 KiB)"))
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
    let session = signed_in(&state, &headers).await?;
    let tokens = state.store().list_personal_tokens(state.tenant_id(), session.user_id).await?;
    let scopes: Vec<Value> = catalogue::entries(&state.rt)
        .await?
        .into_iter()
        .filter(|e| e.personal)
        .map(|e| json!({"name": e.name, "description": e.description}))
        .collect();
    let (browser, new_cookie) = browser::ensure_browser(&state, &headers);
    let csrf = browser::csrf_token(&state, &headers, &browser);
    let body = json!({"csrf_token": csrf, "scopes": scopes, "tokens": tokens.iter().map(describe).collect::<Vec<_>>()});
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

pub(crate) async fn personal_tokens_post(Extension(state): Extension<AppState>, headers: HeaderMap, body: JsonBody) -> AppResult<Response> {
    let session = signed_in(&state, &headers).await?;
    check_csrf(&state, &headers)?;
    let new: NewToken = serde_json::from_slice(&body.0).map_err(|e| {
        api(StatusCode::BAD_REQUEST, "invalid_request", format!("the body must be JSON with name, scope and optionally expires_in: {e}"))
    })?;
    let scopes = match new.scope {
        ScopeField::One(s) => vec![s],
        ScopeField::Many(v) => v,
    };
    let new = NewPersonalToken { name: new.name, scopes, expires_in: new.expires_in };
    let (token, secret) = account::create_personal_token(&state.rt, Actor::User(session.user_id), session.user_id, new).await?;
    let mut body = describe(&token);
    body["token"] = json!(secret.expose());
    Ok(no_store((StatusCode::CREATED, axum::Json(body)).into_response()))
}

/// The session and the token id of a change to one token (another user's is "not found").
async fn change(state: &AppState, headers: &HeaderMap, id: &str) -> AppResult<(Actor, Uuid)> {
    let session = signed_in(state, headers).await?;
    check_csrf(state, headers)?;
    let id = id.parse().map_err(|_| api(StatusCode::NOT_FOUND, "not_found", "no such personal token"))?;
    Ok((Actor::User(session.user_id), id))
}

pub(crate) async fn personal_token_regenerate(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let (actor, id) = change(&state, &headers, &id).await?;
    let (token, secret) = account::regenerate_personal_token(&state.rt, actor, id).await?;
    let mut body = describe(&token);
    body["token"] = json!(secret.expose());
    Ok(no_store(axum::Json(body).into_response()))
}

pub(crate) async fn personal_token_revoke(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let (actor, id) = change(&state, &headers, &id).await?;
    let token = account::revoke_personal_token(&state.rt, actor, id).await?;
    Ok(no_store(axum::Json(json!({"id": token.id, "revoked": true})).into_response()))
}
