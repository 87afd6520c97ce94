//! Token introspection (RFC 7662) for resource servers.

use crate::auth::ClientAuth;
use crate::bearer::{self, ActiveToken, Lookup, Presented};
use crate::error::{no_store, AppResult};
use crate::state::AppState;
use crate::web::{OAuthBody, Peer};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use latchkey_core::model::TokenKind;
use latchkey_core::OAuthError;
use latchkey_proto::IntrospectionResponse;

/// RFC 7662 §2.1: the caller authenticates as a confidential client, so nobody can scan for
/// tokens anonymously (docs/security.md IN-01). Any confidential client of the tenant may
/// introspect any of its tokens: that is the resource-server role (IN-03).
pub(crate) async fn introspect_post(
    Extension(state): Extension<AppState>,
    peer: Peer,
    OAuthBody { headers, params }: OAuthBody,
) -> AppResult<Response> {
    let auth = ClientAuth::start(&state, peer, &headers, &params)?;
    let token = params.get("token");
    // What judges the token (its row, or the family a user's sealed token names) is read
    // together with the caller's client, in one read (on SQLite one statement, when the client
    // is cached), and judged without I/O. The verdict stays unused until the caller has
    // authenticated, and an unauthenticated caller gets the same 401 whether the token exists
    // or not.
    let lookup = token.as_ref().ok().copied().flatten().map_or(Lookup::Later, |t| bearer::lookup(&state, t));
    let (tenant, caller_id, now) = (state.tenant_id(), auth.client_id(), state.now());
    let (client, judged) = match lookup {
        Lookup::Row(hash) => {
            let (client, row) = state.store().find_client_and_token(tenant, caller_id, hash).await?;
            (client, Some(bearer::from_row(row, now)))
        }
        Lookup::Family { claims, family, jti } => {
            let (client, family) = state.store().find_client_and_family(tenant, caller_id, family, jti).await?;
            (client, Some(bearer::from_family(claims, family, now)))
        }
        Lookup::Later => (state.store().find_client(tenant, caller_id).await?, None),
    };
    let caller = auth.finish(&state, client).await?;
    if caller.is_public() {
        return Err(OAuthError::invalid_client("introspection_needs_confidential_client: a public client cannot introspect tokens").into());
    }
    let token = token?.ok_or_else(|| OAuthError::invalid_request("token_missing: token is required"))?;
    let _ = params.get("token_type_hint")?;
    let active = match judged {
        Some(active) => active,
        None => bearer::active_token(&state, token).await?,
    };
    Ok(no_store(axum::Json(introspect(&state, active)).into_response()))
}

fn introspect(state: &AppState, active: Option<ActiveToken>) -> IntrospectionResponse {
    // IN-02: unknown, expired, revoked or malformed tokens all answer exactly {"active": false}.
    let Some(t) = active else { return IntrospectionResponse::default() };
    // A user token whose user is gone is not active; a client's own token has the client as
    // its subject (RFC 9700 §4.15: client ids never look like user ids, which are UUIDs). The
    // user's email came with the token, in the same read.
    let (sub, username) = match (t.user_id, &t.user_email, &t.client_id) {
        (Some(id), Some(email), _) => (id.to_string(), Some(email.clone())),
        (Some(_), None, _) => return IntrospectionResponse::default(),
        (None, _, Some(client)) => (client.clone(), None),
        (None, _, None) => return IntrospectionResponse::default(),
    };
    IntrospectionResponse {
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
    }
}
