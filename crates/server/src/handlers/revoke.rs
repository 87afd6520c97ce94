//! Token revocation (RFC 7009), answering with the body UltraCart's SDKs read.

use crate::auth::authenticate_client;
use crate::bearer::self_contained;
use crate::error::{no_store, AppResult};
use crate::state::AppState;
use crate::web::{OAuthBody, Peer};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use latchkey_core::model::Client;
use latchkey_core::params::Params;
use latchkey_core::revocation::{self, Revocation};
use latchkey_core::text;
use latchkey_core::OAuthError;
use latchkey_proto::RevocationResponse;

pub(crate) async fn revoke_post(
    Extension(state): Extension<AppState>,
    peer: Peer,
    OAuthBody { headers, params }: OAuthBody,
) -> AppResult<Response> {
    let client = revoking_client(&state, peer, &headers, &params).await?;
    let token = revocation::presented_token(&params)?;
    let now = state.now();
    // The rules (whose token, what it ends) are `core::revocation`; here, the lookups.
    let ends = match self_contained(&state, token).await {
        Some(s) => revocation::of_self_contained(&s.claims.client_id, &s.claims.jti, s.claims.exp, &client.client_id, now),
        None => match state.store().find_token(state.tenant_id(), state.hasher().hash(token)).await? {
            Some(view) => revocation::of_stored(&view, &client.client_id),
            None => Revocation::Nothing,
        },
    };
    let kind = match ends {
        Revocation::Nothing => None,
        Revocation::Jti { jti, until } => {
            state.store().revoke_jti(state.tenant_id(), &client.client_id, jti, until, now).await?;
            Some("self-contained access_token")
        }
        Revocation::Family(family) => {
            state.store().revoke_family(state.tenant_id(), family, now).await?;
            Some("refresh_token")
        }
        Revocation::Token(hash) => {
            state.store().revoke_token(state.tenant_id(), hash, now).await?;
            Some("access_token")
        }
    };
    if let Some(kind) = kind {
        tracing::info!(client = %client.client_id, kind, "token revoked");
    }
    // RFC 7009 §2.2: 200 whether or not the token was valid.
    Ok(no_store(axum::Json(RevocationResponse { successful: true, message: "The token is revoked.".into() }).into_response()))
}

/// The client a revocation speaks for. RFC 7009 §2.1 asks confidential clients to
/// authenticate; UltraCart's SDKs send only `client_id` and `token`, so a server may accept
/// that (`revocation_without_client_auth`, off by default, docs/design.md principle 1). Then the
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
