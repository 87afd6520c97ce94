//! Token introspection (RFC 7662) for resource servers.

use crate::auth::authenticate_client;
use crate::bearer::{active_token, Presented};
use crate::error::{no_store, AppResult};
use crate::state::AppState;
use crate::web::{OAuthBody, Peer};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use latchkey_core::model::TokenKind;
use latchkey_core::OAuthError;
use latchkey_proto::IntrospectionResponse;

/// RFC 7662 §2.1: the caller authenticates as a confidential client, so nobody can scan for
/// tokens anonymously (SECURITY.md IN-01). Any confidential client of the tenant may
/// introspect any of its tokens: that is the resource-server role (IN-03).
pub(crate) async fn introspect_post(
    Extension(state): Extension<AppState>,
    peer: Peer,
    headers: HeaderMap,
    OAuthBody(params): OAuthBody,
) -> AppResult<Response> {
    let caller = authenticate_client(&state, peer, &headers, &params).await?;
    if caller.is_public() {
        return Err(OAuthError::invalid_client("introspection_needs_confidential_client: a public client cannot introspect tokens").into());
    }
    let token = params.get("token")?.ok_or_else(|| OAuthError::invalid_request("token_missing: token is required"))?;
    let _ = params.get("token_type_hint")?;
    let answer = introspect(&state, token).await?;
    Ok(no_store(axum::Json(answer).into_response()))
}

async fn introspect(state: &AppState, token: &str) -> AppResult<IntrospectionResponse> {
    // IN-02: unknown, expired, revoked or malformed tokens all answer exactly {"active": false}.
    let Some(t) = active_token(state, token).await? else { return Ok(IntrospectionResponse::default()) };
    // A user token whose user is gone is not active; a client's own token has the client as
    // its subject (RFC 9700 §4.15: client ids never look like user ids, which are UUIDs). The
    // user's email came with the token, in the same read.
    let (sub, username) = match (t.user_id, &t.user_email, &t.client_id) {
        (Some(id), Some(email), _) => (id.to_string(), Some(email.clone())),
        (Some(_), None, _) => return Ok(IntrospectionResponse::default()),
        (None, _, Some(client)) => (client.clone(), None),
        (None, _, None) => return Ok(IntrospectionResponse::default()),
    };
    Ok(IntrospectionResponse {
        active: true,
        scope: Some(t.scope.to_string()),
        client_id: t.client_id,
        username,
        token_type: Some(match t.kind {
            Presented::Issued(TokenKind::Refresh) => "refresh_token".into(),
            Presented::Issued(TokenKind::Access) | Presented::Personal => "Bearer".into(),
        }),
        exp: Some(t.expires_at),
        iat: Some(t.issued_at),
        sub: Some(sub),
        iss: Some(state.issuer.clone()),
        jti: Some(t.jti),
        authorized_business_id: t.business_id.map(|b| b.to_string()),
    })
}
