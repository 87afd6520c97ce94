//! Token revocation (RFC 7009), answering with the body UltraCart's SDKs read.

use crate::auth::authenticate_client;
use crate::bearer::clients_own_jwt;
use crate::error::{no_store, AppResult};
use crate::state::AppState;
use crate::web::{OAuthBody, Peer};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use latchkey_core::model::{Client, TokenKind};
use latchkey_core::params::Params;
use latchkey_core::text;
use latchkey_core::OAuthError;
use latchkey_proto::RevocationResponse;

pub(crate) async fn revoke_post(
    Extension(state): Extension<AppState>,
    peer: Peer,
    OAuthBody { headers, params }: OAuthBody,
) -> AppResult<Response> {
    let client = revoking_client(&state, peer, &headers, &params).await?;
    let token = params.get("token")?.ok_or_else(|| OAuthError::invalid_request("token_missing: token is required"))?;
    // RFC 7009 §2.1: the hint is only a hint; an unknown one is ignored (one lookup finds
    // either kind).
    let _ = params.get("token_type_hint")?;
    let now = state.now();
    if let Some(claims) = clients_own_jwt(&state, token).await {
        // RFC 7009 §2.1: only the client it was issued to may revoke it. It has no row: its jti
        // is recorded until it expires (RFC 7009 §2.2: the token is invalid from now on).
        if claims.client_id == client.client_id && claims.exp > now {
            if let Ok(jti) = uuid::Uuid::parse_str(&claims.jti) {
                state.store().revoke_jti(state.tenant_id(), &client.client_id, jti, claims.exp, now).await?;
                tracing::info!(client = %client.client_id, kind = "access_token", "token revoked");
            }
        }
    } else if let Some(view) = state.store().find_token(state.tenant_id(), state.hasher().hash(token)).await? {
        // RFC 7009 §2.1: a client may only revoke its own tokens. Another client's token is
        // left alone, and the answer does not tell whether it exists.
        if view.token.client_id == client.client_id {
            match view.token.kind {
                // RFC 7009 §2.1: revoking a refresh token revokes the access tokens of the
                // same grant too.
                TokenKind::Refresh => state.store().revoke_family(state.tenant_id(), view.family.id, now).await?,
                TokenKind::Access => state.store().revoke_token(state.tenant_id(), view.token.hash, now).await?,
            }
            tracing::info!(client = %client.client_id, kind = view.token.kind.as_str(), "token revoked");
        }
    }
    // RFC 7009 §2.2: 200 whether or not the token was valid.
    Ok(no_store(axum::Json(RevocationResponse { successful: true, message: "The token is revoked.".into() }).into_response()))
}

/// The client a revocation speaks for. RFC 7009 §2.1 asks confidential clients to
/// authenticate; UltraCart's SDKs send only `client_id` and `token`, so a server may accept
/// that (`revocation_without_client_auth`, off by default, DESIGN.md principle 1). Then the
/// named client can still only revoke its own tokens, so the worst a stranger holding a token
/// can do is end it.
async fn revoking_client(state: &AppState, peer: Peer, headers: &HeaderMap, params: &Params) -> AppResult<Client> {
    let unauthenticated = headers.get(header::AUTHORIZATION).is_none() && params.get("client_secret")?.is_none();
    if state.config.revocation_without_client_auth && unauthenticated {
        if let Some(id) = params.get("client_id")? {
            let unknown = || OAuthError::invalid_client("client_unknown: client authentication failed");
            // RFC 6749 Appendix A.1: what is not VSCHAR names no client.
            let id = text::client_id(id).map_err(|_| unknown())?;
            return state.store().find_client(state.tenant_id(), id).await?.ok_or_else(|| unknown().into());
        }
    }
    authenticate_client(state, peer, headers, params).await
}
