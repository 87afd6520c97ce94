//! What a presented token is: an access or refresh token with a row of its own, a
//! self-contained access token (a sealed opaque token, or a client's own JWT), or a personal
//! access token. Shared by UserInfo, introspection and revocation, so all judge tokens alike.

use crate::error::AppResult;
use crate::state::AppState;
use latchkey_core::claims::AccessTokenClaims;
use latchkey_core::jose;
use latchkey_core::model::{FamilyView, TokenKind, TokenView};
use latchkey_core::scope::ScopeSet;
use latchkey_core::sealed_token::{self, Sealed};
use latchkey_core::secret::{SecretHash, SecretKind};
use latchkey_core::UnixTime;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Presented {
    /// An access or refresh token issued by the token endpoint.
    Issued(TokenKind),
    /// A personal access token (`lk_pat_`).
    Personal,
}

/// An active token, as resource servers see it.
#[derive(Debug, Clone)]
pub(crate) struct ActiveToken {
    pub kind: Presented,
    pub client_id: Option<String>,
    pub user_id: Option<Uuid>,
    /// The user's email; `None` for a client's own token, or when the user is gone.
    pub user_email: Option<String>,
    pub business_id: Option<Uuid>,
    pub scope: ScopeSet,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    pub jti: String,
}

/// Finds the token and returns it if it is active now; `None` for anything else (unknown,
/// expired, revoked, rotated). A personal token's last-used time is recorded.
pub(crate) async fn active_token(state: &AppState, token: &str) -> AppResult<Option<ActiveToken>> {
    match row_key(state, token) {
        Some(hash) => Ok(from_row(state.store().find_token(state.tenant_id(), hash).await?, state.now())),
        None => active_unstored(state, token).await,
    }
}

/// The hash of `token` when its row in `tokens` alone decides it (a refresh token, a JWT
/// access token issued for a user, an opaque access token of an earlier version), so that the
/// row may be read beforehand: introspection reads it with the caller's client. `None` for a
/// personal access token and for what looks self-contained, which `active_token` judges
/// otherwise.
pub(crate) fn row_key(state: &AppState, token: &str) -> Option<SecretHash> {
    let personal = token.starts_with(SecretKind::PersonalAccessToken.prefix());
    // An opaque token has no dots, so the peek is quick.
    let self_contained =
        || sealed_token::is_sealed(token) || jose::peek_jwt::<AccessTokenClaims>(token).is_some_and(|c| c.is_clients_own());
    (!personal && !self_contained()).then(|| state.hasher().hash(token))
}

/// Judges the row read for `row_key(token)`: active if it is live, unrotated and not expired.
pub(crate) fn from_row(view: Option<TokenView>, now: UnixTime) -> Option<ActiveToken> {
    let view = view?;
    if !view.is_active(now) || view.token.rotated_at.is_some() {
        return None;
    }
    let t = view.token;
    Some(ActiveToken {
        kind: Presented::Issued(t.kind),
        client_id: Some(t.client_id),
        user_id: t.user_id,
        user_email: view.subject_email,
        business_id: t.business_id,
        scope: t.scope,
        issued_at: t.created_at,
        expires_at: match t.kind {
            TokenKind::Access => t.expires_at,
            TokenKind::Refresh => t.expires_at.min(view.family.expires_at),
        },
        jti: t.jti.to_string(),
    })
}

/// A token without a row of its own: a personal access token, or a self-contained token (one
/// whose signature or seal does not hold is looked up as a row, and found by no hash).
async fn active_unstored(state: &AppState, token: &str) -> AppResult<Option<ActiveToken>> {
    let now = state.now();
    if token.starts_with(SecretKind::PersonalAccessToken.prefix()) {
        let hash = state.hasher().hash(token);
        let Some(pat) = state.store().find_personal_token_by_hash(state.tenant_id(), hash).await? else { return Ok(None) };
        if !pat.is_active(now) {
            return Ok(None);
        }
        state.store().update_personal_token_last_used(state.tenant_id(), pat.id, now).await?;
        let user = state.store().find_user(state.tenant_id(), pat.user_id).await?;
        return Ok(Some(ActiveToken {
            kind: Presented::Personal,
            client_id: None,
            user_id: Some(pat.user_id),
            user_email: user.as_ref().map(|u| u.email.clone()),
            business_id: user.and_then(|u| u.default_business_id),
            scope: pat.scope,
            issued_at: pat.created_at,
            expires_at: pat.expires_at,
            jti: pat.id.to_string(),
        }));
    }
    if let Some(sealed) = self_contained(state, token).await {
        return judge_self_contained(state, sealed, now).await;
    }
    Ok(from_row(state.store().find_token(state.tenant_id(), state.hasher().hash(token)).await?, now))
}

/// What `token` carries if it is a self-contained access token that this tenant made: an
/// opaque token it sealed (`core::sealed_token`), for a user or for a client acting for
/// itself, or a client's own JWT it signed. Those are not stored (`token::mint`): the seal or
/// the signature stands in for the row. Every other token has a row, and is judged by it.
pub(crate) async fn self_contained(state: &AppState, token: &str) -> Option<Sealed> {
    if sealed_token::is_sealed(token) {
        return opened(state, token);
    }
    // The unverified claims only choose the way (an opaque token has no dots, so this is
    // quick); the verified ones decide.
    if !jose::peek_jwt::<AccessTokenClaims>(token)?.is_clients_own() {
        return None;
    }
    // RFC 9068 §2.1 and RFC 8725 §3.11: only an `at+jwt`, so an id_token never passes.
    let claims: AccessTokenClaims = state.keys.current(&state.rt).await.verify(token, "at+jwt")?;
    // A user's JWT has a row; only a client's own is self-contained. A token another tenant
    // made (the key is the server's) names that tenant's issuer.
    (claims.is_clients_own() && claims.iss == state.issuer).then_some(Sealed { claims, family: None })
}

/// A sealed token that this tenant made, opened: no I/O.
fn opened(state: &AppState, token: &str) -> Option<Sealed> {
    let sealed = sealed_token::open(&state.rt.sealed_token_key, token)?;
    (sealed.claims.iss == state.issuer).then_some(sealed)
}

/// What introspection reads together with its caller's client, before it judges the token.
pub(crate) enum Lookup {
    /// The row of a token that has one (`row_key`).
    Row(SecretHash),
    /// The family that a user's sealed token names, with the token's jti.
    Family { claims: AccessTokenClaims, family: Uuid, jti: Uuid },
    /// Nothing ahead: `active_token` judges it (a personal token, a client's own token, junk).
    Later,
}

/// What to read for `token` with the caller's client; no I/O.
pub(crate) fn lookup(state: &AppState, token: &str) -> Lookup {
    if sealed_token::is_sealed(token) {
        return match opened(state, token) {
            Some(Sealed { claims, family: Some(family) }) => match Uuid::parse_str(&claims.jti) {
                Ok(jti) => Lookup::Family { claims, family, jti },
                Err(_) => Lookup::Later,
            },
            _ => Lookup::Later,
        };
    }
    row_key(state, token).map_or(Lookup::Later, Lookup::Row)
}

/// A self-contained token is active until its `exp` (RFC 7519 §4.1.4) while its jti is not
/// revoked and, for a user's token, its family is neither revoked nor gone (with its client,
/// its user or its consent); for a client's own token, while the client exists. One read.
async fn judge_self_contained(state: &AppState, s: Sealed, now: UnixTime) -> AppResult<Option<ActiveToken>> {
    let Ok(jti) = Uuid::parse_str(&s.claims.jti) else { return Ok(None) };
    if s.claims.exp <= now {
        return Ok(None);
    }
    match s.family {
        Some(family) => Ok(from_family(s.claims, state.store().find_family_of_token(state.tenant_id(), family, jti).await?, now)),
        None if s.claims.is_clients_own() => {
            if !state.store().self_contained_token_live(state.tenant_id(), &s.claims.client_id, jti).await? {
                return Ok(None);
            }
            Ok(active_self_contained(s.claims, None, None, None, now))
        }
        None => Ok(None),
    }
}

/// Judges a user's sealed token (`claims`) by the family read for it
/// (`Store::find_family_of_token`): `None` there means gone, or its jti revoked.
pub(crate) fn from_family(claims: AccessTokenClaims, view: Option<FamilyView>, now: UnixTime) -> Option<ActiveToken> {
    let view = view?;
    let f = view.family;
    if f.revoked_at.is_some() || f.client_id != claims.client_id {
        return None;
    }
    active_self_contained(claims, f.user_id, view.subject_email, f.business_id, now)
}

fn active_self_contained(
    c: AccessTokenClaims,
    user_id: Option<Uuid>,
    user_email: Option<String>,
    business_id: Option<Uuid>,
    now: UnixTime,
) -> Option<ActiveToken> {
    let scope = ScopeSet::parse(&c.scope).ok()?;
    (c.exp > now).then_some(ActiveToken {
        kind: Presented::Issued(TokenKind::Access),
        client_id: Some(c.client_id),
        user_id,
        user_email,
        business_id,
        scope,
        issued_at: c.iat,
        expires_at: c.exp,
        jti: c.jti,
    })
}
