//! The token endpoint (RFC 6749 §3.2, §4.1.3, §6): authorization_code and refresh_token.

use crate::auth::{authenticate_client, check_password, CredentialFailure};
use crate::error::{no_store, AppError, AppResult};
use crate::keys::KeyRing;
use crate::runtime::new_secret;
use crate::state::AppState;
use crate::web::{OAuthBody, Peer};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use latchkey_core::business::business_for;
use latchkey_core::claims::{id_token_claims, AccessTokenClaims, IdTokenInput, Subject};
use latchkey_core::grant;
use latchkey_core::grant::authorization_code::check_redemption;
use latchkey_core::grant::refresh_token::{check_refresh, RefreshCheck, ReplayBinding};
use latchkey_core::grant::AccessTokenFormat;
use latchkey_core::jose::{KeyPair, SystemRandom};
use latchkey_core::model::{Client, Family, FamilyOwner, GrantType, TokenKind, TokenRecord};
use latchkey_core::params::Params;
use latchkey_core::scope::ScopeSet;
use latchkey_core::sealed_code;
use latchkey_core::sealed_token::{self, Sealed};
use latchkey_core::secret::SecretHash;
use latchkey_core::secret::{Secret, SecretKind};
use latchkey_core::{ErrorCode, OAuthError};
use latchkey_proto::TokenResponse;
use latchkey_store::{RedeemOutcome, RotateOutcome, SealedReplay};
use uuid::Uuid;

pub(crate) async fn token_post(
    Extension(state): Extension<AppState>,
    peer: Peer,
    OAuthBody { headers, params }: OAuthBody,
) -> AppResult<Response> {
    let grant_type = params.get("grant_type")?.ok_or_else(|| OAuthError::invalid_request("grant_type_missing: grant_type is required"))?;
    let client = authenticate_client(&state, peer, &headers, &params).await?;
    let answer = match grant_type {
        "authorization_code" => {
            require_grant(&client, GrantType::AuthorizationCode)?;
            authorization_code(&state, &client, &params).await?
        }
        "refresh_token" => {
            require_grant(&client, GrantType::RefreshToken)?;
            refresh_token(&state, &client, &params).await?
        }
        "client_credentials" => {
            require_grant(&client, GrantType::ClientCredentials)?;
            client_credentials(&state, &client, &params).await?
        }
        "password" => {
            require_grant(&client, GrantType::Password)?;
            password(&state, &client, &params).await?
        }
        other => {
            return Err(
                OAuthError::new(ErrorCode::UnsupportedGrantType, format!("grant_type_unsupported: {other} is not supported")).into()
            );
        }
    };
    Ok(no_store(axum::Json(answer).into_response()))
}

/// ASVS V10.4.4: each client uses only the grant types it was registered for.
fn require_grant(client: &Client, g: GrantType) -> Result<(), OAuthError> {
    if client.allows_grant(g) {
        Ok(())
    } else {
        Err(OAuthError::unauthorized_client(format!("grant_type_not_allowed: this client is not registered for {}", g.as_str())))
    }
}

async fn authorization_code(state: &AppState, client: &Client, params: &Params) -> AppResult<TokenResponse> {
    let now = state.now();
    let code = params.get("code")?.ok_or_else(|| OAuthError::invalid_request("code_missing: code is required"))?;
    let hash = state.hasher().hash(code);
    let unknown = || OAuthError::invalid_grant("code_invalid: the authorization code is unknown");
    // A sealed code carries its record (`core::sealed_code`); a code of an earlier version has
    // a row.
    let sealed = sealed_code::is_sealed(code);
    let record = if sealed {
        sealed_code::open(&state.rt.sealed_token_key, code, hash).filter(|c| c.tenant == state.tenant_id()).ok_or_else(unknown)?
    } else {
        state.store().find_code(state.tenant_id(), hash).await?.ok_or_else(unknown)?
    };
    check_redemption(&record, client, params.get("redirect_uri")?, params.get("code_verifier")?, now)?;
    let owner = FamilyOwner::User {
        user_id: record.user_id,
        grant_id: Some(record.grant_id),
        business_id: record.business_id,
        auth_time: record.auth_time,
    };
    let lifetime = state.lifetimes_for(client).refresh_token;
    let mut family = Family::new(record.family_id, state.tenant_id(), &client.client_id, owner, record.scope.clone(), now, lifetime);
    let ring = state.keys.current(&state.rt).await;
    let minted = mint(state, &ring, client, &mut family, &record.scope, now)?;
    let (outcome, answer) = if record.consumed_at.is_some() {
        (RedeemOutcome::AlreadyConsumed, None)
    } else {
        // docs/security.md RT-08: every read and signature happens before the code is consumed, so
        // nothing can fail between the commit and the answer and make a retry look like a
        // replay.
        let answer = respond(state, client, &family, &record.scope, record.nonce.as_deref(), &minted, now).await?;
        let outcome = if sealed {
            state.store().redeem_sealed_code(&record, now, &family, &minted.records).await?
        } else {
            state.store().redeem_code(state.tenant_id(), hash, now, &family, &minted.records).await?
        };
        (outcome, Some(answer))
    };
    if outcome == RedeemOutcome::GrantGone {
        // The consent behind the code was withdrawn (or its business or user removed) before
        // the code was redeemed: as with a stored code, which that deleted, it is unknown.
        return Err(unknown().into());
    }
    if outcome == RedeemOutcome::AlreadyConsumed {
        // OAuth 2.1 §4.1.3: a second valid redemption is refused and everything issued from
        // the code is revoked.
        state.store().revoke_family(state.tenant_id(), record.family_id, now).await?;
        tracing::warn!(client = %client.client_id, family = %record.family_id, "authorization code replayed; its tokens are revoked");
        return Err(
            OAuthError::invalid_grant("code_reused: the authorization code was already used; tokens issued from it are revoked").into()
        );
    }
    answer.ok_or_else(|| AppError::Internal("redeemed without an answer".into()))
}

async fn refresh_token(state: &AppState, client: &Client, params: &Params) -> AppResult<TokenResponse> {
    let now = state.now();
    let presented =
        params.get("refresh_token")?.ok_or_else(|| OAuthError::invalid_request("refresh_token_missing: refresh_token is required"))?;
    let requested = ScopeSet::from_params(params)?;
    let binding = ReplayBinding { refresh_token: presented, client_id: &client.client_id, scope: params.get("scope")? };
    let hash = state.hasher().hash(presented);
    let Some(view) = state.store().find_token(state.tenant_id(), hash).await? else {
        return Err(OAuthError::invalid_grant("refresh_token_invalid: the refresh token is unknown").into());
    };
    let access_scope = match check_refresh(&view, client, requested, now)? {
        RefreshCheck::Rotate { access_scope } => access_scope,
        RefreshCheck::Reused => return replay_or_revoke(state, &binding, hash, view.family.id, now).await,
    };
    let ring = state.keys.current(&state.rt).await;
    let minted = mint_rotation(state, &ring, client, &view.family, &view.token.scope, &access_scope, now)?;
    // docs/security.md RT-08: the answer is complete before the rotation commits.
    let answer = respond(state, client, &view.family, &access_scope, None, &minted, now).await?;
    let window = state.config.refresh_token_replay_window;
    let replay = if window > 0 {
        let json = serde_json::to_vec(&answer).map_err(|e| AppError::Internal(e.into()))?;
        let sealed = binding.seal(&json, &mut rand::thread_rng()).map_err(|e| AppError::Internal(e.into()))?;
        Some(SealedReplay { sealed, until: now + window })
    } else {
        None
    };
    match state.store().rotate_refresh_token(state.tenant_id(), hash, now, &minted.records, replay.as_ref()).await? {
        RotateOutcome::Rotated => Ok(answer),
        // Another request rotated it first, on this node or another (or the family was
        // revoked meanwhile).
        RotateOutcome::NotCurrent => replay_or_revoke(state, &binding, hash, view.family.id, now).await,
    }
}

/// A refresh token presented after its rotation. An exact duplicate of the rotating request,
/// within the replay window and while the new refresh token is unused, gets the very same
/// answer: the client whose answer was lost keeps its session, and N concurrent presentations
/// make one new pair (docs/security.md RT-07 b; with a window of 0, RT-07 a: strict single use).
/// Anything else is reuse (RFC 9700 §4.14.2): the family is revoked, grace answers included.
async fn replay_or_revoke(
    state: &AppState,
    binding: &ReplayBinding<'_>,
    hash: SecretHash,
    family: Uuid,
    now: i64,
) -> AppResult<TokenResponse> {
    if state.config.refresh_token_replay_window > 0 {
        if let Some(sealed) = state.store().find_replay(state.tenant_id(), hash, now).await? {
            if let Some(answer) = binding.open(&sealed).and_then(|json| serde_json::from_slice::<TokenResponse>(&json).ok()) {
                tracing::info!(client = %binding.client_id, %family, "duplicate refresh answered from the replay window");
                return Ok(answer);
            }
        }
    }
    state.store().revoke_family(state.tenant_id(), family, now).await?;
    tracing::warn!(client = %binding.client_id, %family, "refresh token reused; family revoked");
    Err(OAuthError::invalid_grant("refresh_token_reused: the refresh token was already used; the session is revoked").into())
}

/// RFC 6749 §4.4: a confidential client acting for itself. The token's subject is the client,
/// and no refresh token is issued (§4.4.3). The rules are `core::grant::client_credentials`.
async fn client_credentials(state: &AppState, client: &Client, params: &Params) -> AppResult<TokenResponse> {
    let scope = grant::client_credentials::check_request(client, params)?;
    let now = state.now();
    let lifetime = state.lifetimes_for(client).access_token;
    let mut family =
        Family::new(state.new_family_id(), state.tenant_id(), &client.client_id, FamilyOwner::Client, scope.clone(), now, lifetime);
    let ring = state.keys.current(&state.rt).await;
    // A client's own access token is self-contained: it has no user or grant to end with, so
    // its signature (a JWT, as RFC 9068 means it) or its sealed claims (an opaque one,
    // `core::sealed_token`) stand in for a row, `mint` makes no record and nothing is written
    // (`bearer::self_contained`; revoking one records its jti).
    let minted = mint(state, &ring, client, &mut family, &scope, now)?;
    respond(state, client, &family, &scope, None, &minted, now).await
}

/// The client's access token format, or the server's.
fn access_format(state: &AppState, client: &Client) -> AccessTokenFormat {
    client.token_settings.access_token_format.unwrap_or(state.config.access_token_format)
}

/// RFC 6749 §4.3, for YOC. The request's rules are `core::grant::password`; the password
/// check is behind the guessing protection of `auth::check_password`, counted per client and
/// account.
async fn password(state: &AppState, client: &Client, params: &Params) -> AppResult<TokenResponse> {
    let grant::password::PasswordRequest { username, password, scope } = grant::password::check_request(client, params)?;
    let source = latchkey_core::guessing::Source::Client { client_id: &client.client_id };
    let verified = match check_password(state, username, password.to_owned(), source).await? {
        Ok(verified) => verified,
        Err(CredentialFailure::Invalid) => {
            return Err(OAuthError::invalid_grant("invalid_credentials: the username or password is incorrect").into())
        }
        // RFC 6585 §4: 429 with Retry-After, as for a client locked out of its secret, so that
        // a client can tell "wait" from "wrong password" without parsing the description.
        Err(CredentialFailure::TooManyAttempts { retry_after }) => {
            return Err(AppError::TooManyAttempts {
                retry_after,
                error: OAuthError::invalid_grant(format!("too_many_attempts: try again in {retry_after} seconds")),
            });
        }
    };
    let now = state.now();
    let user = verified.user();
    let businesses = state.store().list_user_businesses(state.tenant_id(), user.id).await?;
    let member_of: Vec<Uuid> = businesses.iter().map(|b| b.id).collect();
    let business_id = business_for(&member_of, None, user.default_business_id);
    let owner = FamilyOwner::User { user_id: user.id, grant_id: None, business_id, auth_time: now };
    let lifetime = state.lifetimes_for(client).refresh_token;
    let mut family = Family::new(state.new_family_id(), state.tenant_id(), &client.client_id, owner, scope.clone(), now, lifetime);
    let ring = state.keys.current(&state.rt).await;
    let minted = mint(state, &ring, client, &mut family, &scope, now)?;
    let answer = respond(state, client, &family, &scope, None, &minted, now).await?;
    // The attempt settles in the same commit as the tokens.
    let store_tokens = async { Ok(state.store().insert_family(state.tenant_id(), &family, &minted.records).await?) };
    verified.settle_with(state, store_tokens).await?;
    Ok(answer)
}

/// The key that signs JWTs now.
fn signer(ring: &KeyRing, now: i64) -> AppResult<&KeyPair> {
    ring.signer(now).ok_or_else(|| AppError::Internal("no signing key".into()))
}

/// Freshly minted secrets and the records that store them.
struct Minted {
    access: Secret,
    refresh: Option<Secret>,
    jti: Uuid,
    records: Vec<TokenRecord>,
}

/// A new family's first tokens. A family that gets no refresh token can never get another
/// token, so it ends with its access token: housekeeping then takes it (a sealed access token
/// has no row whose expiry would tell it), and the token's own expiry still holds if the
/// refresh lifetime is the shorter.
fn mint(state: &AppState, ring: &KeyRing, client: &Client, family: &mut Family, scope: &ScopeSet, now: i64) -> AppResult<Minted> {
    let minted = mint_rotation(state, ring, client, family, scope, scope, now)?;
    if minted.refresh.is_none() {
        family.expires_at = now + state.lifetimes_for(client).access_token;
    }
    Ok(minted)
}

/// An access token with `access_scope`, and (if the client may refresh) a refresh token that
/// keeps the family's full `refresh_scope` (OAuth 2.1 §4.3.3: same scope as the old one).
fn mint_rotation(
    state: &AppState,
    ring: &KeyRing,
    client: &Client,
    family: &Family,
    refresh_scope: &ScopeSet,
    access_scope: &ScopeSet,
    now: i64,
) -> AppResult<Minted> {
    let mut rng = rand::thread_rng();
    let jti = Uuid::new_v4();
    let lifetimes = state.lifetimes_for(client);
    let claims = || AccessTokenClaims {
        iss: state.issuer.clone(),
        exp: now + lifetimes.access_token,
        aud: state.issuer.clone(),
        sub: family.user_id.map_or_else(|| client.client_id.clone(), |u| u.to_string()),
        client_id: client.client_id.clone(),
        iat: now,
        jti: jti.to_string(),
        scope: access_scope.to_string(),
        auth_time: family.user_id.map(|_| family.auth_time),
        authorized_business_id: family.business_id.map(|b| b.to_string()),
    };
    let format = access_format(state, client);
    let access = match format {
        // An opaque token carries its claims sealed, and a user's its family: it needs no row
        // (`bearer::self_contained`).
        AccessTokenFormat::Opaque => {
            let sealed = Sealed { claims: claims(), family: (!family.is_clients_own()).then_some(family.id) };
            Secret::from_presented(
                sealed_token::seal(&state.rt.sealed_token_key, &sealed, &mut rng).map_err(|e| AppError::Internal(e.into()))?,
            )
        }
        // RFC 9068 §2.1: typ "at+jwt", so it cannot pass for an id_token (RFC 8725 §3.11).
        AccessTokenFormat::Jwt => Secret::from_presented(
            signer(ring, now)?.sign_jwt("at+jwt", &claims(), &SystemRandom::new()).map_err(|e| AppError::Internal(e.into()))?,
        ),
    };
    // RFC 6749 §4.4.3: a client acting for itself gets no refresh token.
    let refresh = (!family.is_clients_own()
        && client.allows_grant(GrantType::RefreshToken)
        && state.refresh_policy_for(client).issues_refresh_token(refresh_scope))
    .then(|| new_secret(SecretKind::RefreshToken, &mut rng));
    let record = |secret: &Secret, kind: TokenKind, scope: &ScopeSet, expires_at: i64| TokenRecord {
        hash: state.hasher().hash(secret.expose()),
        tenant: state.tenant_id(),
        kind,
        family_id: family.id,
        client_id: client.client_id.clone(),
        user_id: family.user_id,
        business_id: family.business_id,
        scope: scope.clone(),
        jti,
        created_at: now,
        expires_at,
        revoked_at: None,
        rotated_at: None,
    };
    // Only a user's JWT gets a row: a JWT does not name its family, which a resource server
    // would read, so introspection and revocation find it by hash. A sealed token and a
    // client's own JWT are self-contained (above).
    let mut records = Vec::new();
    if format == AccessTokenFormat::Jwt && !family.is_clients_own() {
        records.push(record(&access, TokenKind::Access, access_scope, now + lifetimes.access_token));
    }
    if let Some(r) = &refresh {
        // RFC 9700 §4.14.2: a refresh token expires when unused for the idle lifetime, and
        // never outlives its family.
        records.push(record(r, TokenKind::Refresh, refresh_scope, (now + lifetimes.refresh_token_idle).min(family.expires_at)));
    }
    Ok(Minted { access, refresh, jti, records })
}

/// The answer of RFC 6749 §5.1 with the seeds' `user_uuid` and `jti`, and an id_token when
/// `openid` was granted (OpenID Connect Core §3.1.3.3).
async fn respond(
    state: &AppState,
    client: &Client,
    family: &Family,
    scope: &ScopeSet,
    nonce: Option<&str>,
    minted: &Minted,
    now: i64,
) -> AppResult<TokenResponse> {
    let id_token = if let (true, Some(user_id)) = (scope.contains("openid"), family.user_id) {
        let ring = state.keys.current(&state.rt).await;
        let key = signer(&ring, now)?;
        let (user, business_ids) = state
            .store()
            .find_user_with_businesses(state.tenant_id(), user_id)
            .await?
            .ok_or_else(|| OAuthError::invalid_grant("user_gone: the user no longer exists"))?;
        let claims = id_token_claims(IdTokenInput {
            issuer: &state.issuer,
            client_id: &client.client_id,
            subject: Subject { user: &user, business_ids: &business_ids, authorized_business_id: family.business_id },
            scope,
            nonce,
            auth_time: family.auth_time,
            access_token: minted.access.expose(),
            alg: key.alg(),
            now,
            lifetime: state.lifetimes_for(client).id_token,
        });
        Some(key.sign_jwt("JWT", &claims, &SystemRandom::new()).map_err(|e| AppError::Internal(e.into()))?)
    } else {
        None
    };
    Ok(TokenResponse {
        access_token: minted.access.expose().to_owned(),
        token_type: "Bearer".into(),
        expires_in: u64::try_from(state.lifetimes_for(client).access_token).unwrap_or(0),
        refresh_token: minted.refresh.as_ref().map(|r| r.expose().to_owned()),
        scope: scope.to_string(),
        id_token,
        user_uuid: family.user_id.map(|u| u.to_string()),
        jti: minted.jti.to_string(),
    })
}
