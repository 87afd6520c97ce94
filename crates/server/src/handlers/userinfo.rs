//! The UserInfo endpoint (OpenID Connect Core §5.3) for access tokens.

use crate::bearer::{active_token, Presented};
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::web::{self, PageForm};
use axum::extract::RawQuery;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use latchkey_core::claims::{userinfo_claims, Subject};
use latchkey_core::model::TokenKind;
use latchkey_core::params::Params;

fn invalid_token(description: &'static str) -> AppError {
    AppError::Bearer { status: StatusCode::UNAUTHORIZED, error: Some("invalid_token"), description }
}

pub(crate) async fn userinfo_get(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> AppResult<Response> {
    // docs/security.md TK-04: never a bearer token in the URL (RFC 6750 §2.3 is not supported).
    if Params::from_urlencoded(query.as_deref().unwrap_or_default()).contains("access_token") {
        return Err(AppError::Bearer {
            status: StatusCode::BAD_REQUEST,
            error: Some("invalid_request"),
            description: "tokens in the query string are refused; use the Authorization header",
        });
    }
    userinfo(&state, &headers, None).await
}

/// RFC 6750 §2.2: POST may carry the token in a form body instead of the header.
pub(crate) async fn userinfo_post(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    PageForm(form): PageForm,
) -> AppResult<Response> {
    let body_token = form.get("access_token").ok().flatten().map(str::to_owned);
    userinfo(&state, &headers, body_token).await
}

async fn userinfo(state: &AppState, headers: &HeaderMap, body_token: Option<String>) -> AppResult<Response> {
    let header_token = web::bearer_token(headers).map_err(|_| invalid_token("the Authorization header is not a Bearer token"))?;
    let token = match (header_token, body_token.as_deref()) {
        (Some(_), Some(_)) => {
            // RFC 6750 §2: a client MUST NOT use more than one method per request.
            return Err(AppError::Bearer {
                status: StatusCode::BAD_REQUEST,
                error: Some("invalid_request"),
                description: "send the token once, in the header or the body",
            });
        }
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => {
            return Err(AppError::Bearer { status: StatusCode::UNAUTHORIZED, error: None, description: "a Bearer token is required" })
        }
    };
    let Some(t) = active_token(state, token).await? else {
        return Err(invalid_token("the token is unknown, expired or revoked"));
    };
    // docs/security.md RT-09: refresh tokens are never accepted here.
    if t.kind == Presented::Issued(TokenKind::Refresh) {
        return Err(invalid_token("only access tokens are accepted"));
    }
    // OpenID Connect Core §5.3: UserInfo answers tokens issued for an OpenID request.
    if !t.scope.contains("openid") {
        return Err(AppError::Bearer {
            status: StatusCode::FORBIDDEN,
            error: Some("insufficient_scope"),
            description: "the token was not granted the openid scope",
        });
    }
    let Some(user_id) = t.user_id else {
        return Err(invalid_token("the token does not belong to a user"));
    };
    let Some((user, business_ids)) = state.store().find_user_with_businesses(state.tenant_id(), user_id).await? else {
        return Err(invalid_token("the user no longer exists"));
    };
    let claims = userinfo_claims(&Subject { user: &user, business_ids: &business_ids, authorized_business_id: t.business_id }, &t.scope);
    Ok(crate::error::no_store(axum::Json(claims).into_response()))
}
