//! The authorization endpoint (RFC 6749 §3.1, §4.1; OpenID Connect Core §3.1.2) and the
//! interaction that carries a request through sign-in and consent.

use super::login::{sign_in_page, SignIn};
use crate::browser;
use crate::catalogue;
use crate::error::{AppError, AppResult, PageResult};
use crate::pages::{self, ConsentPage};
use crate::state::AppState;
use crate::web::{self, PageForm};
use axum::extract::RawQuery;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use latchkey_core::authorize::{self, AuthorizationRequest, AuthorizePolicy, RedirectError};
use latchkey_core::business::business_for;
use latchkey_core::model::{AuthCode, Client, Grant, Interaction, User};
use latchkey_core::params::Params;
use latchkey_core::sealed_code;
use latchkey_core::secret::SecretHash;
use latchkey_core::text;
use latchkey_core::{ErrorCode, OAuthError};
use uuid::Uuid;

/// How long a pending authorization request waits for the user.
const INTERACTION_TTL: i64 = 30 * 60;

pub(crate) async fn authorize_get(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> PageResult<Response> {
    let params = Params::from_urlencoded(query.as_deref().unwrap_or_default());
    Ok(start(&state, &headers, params, false).await?)
}

/// OpenID Connect Core §3.1.2.1: the authorization endpoint accepts POST as well.
pub(crate) async fn authorize_post(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    PageForm(params): PageForm,
) -> PageResult<Response> {
    Ok(start(&state, &headers, params, true).await?)
}

async fn start(state: &AppState, headers: &HeaderMap, params: Params, after_post: bool) -> AppResult<Response> {
    let (client, req) = match load_request(state, &params, after_post).await? {
        Ok(ok) => ok,
        Err(answer) => return Ok(answer),
    };
    proceed(state, headers, &client, &req, params.to_urlencoded(), None, after_post).await
}

/// `GET /oauth/authorize/continue?interaction=ID`: where sign-in returns to.
pub(crate) async fn authorize_continue(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> PageResult<Response> {
    Ok(resume(&state, &headers, query).await?)
}

async fn resume(state: &AppState, headers: &HeaderMap, query: Option<String>) -> AppResult<Response> {
    let q = Params::from_urlencoded(query.as_deref().unwrap_or_default());
    let id = q.get("interaction").ok().flatten().unwrap_or_default().to_owned();
    let interaction = find_interaction(state, headers, &id).await?;
    let params = Params::from_urlencoded(&interaction.request);
    let (client, req) = match load_request(state, &params, false).await? {
        Ok(ok) => ok,
        Err(answer) => return Ok(answer),
    };
    proceed(state, headers, &client, &req, interaction.request.clone(), Some(interaction), false).await
}

/// Validates a request: first the client and redirect URI (failures are pages, never
/// redirects: RFC 6749 §4.1.2.1, RFC 9700 §4.11.2), then the rest (failures redirect with
/// `state` and `iss`).
pub(crate) async fn load_request(
    state: &AppState,
    params: &Params,
    after_post: bool,
) -> AppResult<Result<(Client, AuthorizationRequest), Response>> {
    let bad = |m: &str| AppError::page(StatusCode::BAD_REQUEST, "Invalid authorization request", m);
    let client_id = match params.get("client_id") {
        Ok(Some(id)) => id,
        Ok(None) => return Err(bad("The request names no client (client_id is missing).")),
        Err(_) => return Err(bad("The request names its client more than once.")),
    };
    // RFC 6749 Appendix A.1: a client_id outside VSCHAR names no client; it is refused here,
    // before any store sees it.
    let Ok(client_id) = text::client_id(client_id) else {
        return Err(bad("The application that sent you here is not registered (the client_id is malformed)."));
    };
    let Some(client) = state.store().find_client(state.tenant_id(), client_id).await? else {
        return Err(bad("The application that sent you here is not registered (unknown client_id)."));
    };
    let (redirect_uri, explicit) = authorize::resolve_redirect(&client, params)
        .map_err(|e| bad(&format!("The application sent an invalid redirect address ({}).", e.0.safe_description())))?;
    let policy = AuthorizePolicy { require_state: state.config.require_state };
    match authorize::validate(&client, redirect_uri, explicit, params, policy) {
        Ok(req) => Ok(Ok((client, req))),
        Err(e) => Ok(Err(error_redirect(state, &e, after_post))),
    }
}

pub(crate) fn error_redirect(state: &AppState, e: &RedirectError, after_post: bool) -> Response {
    tracing::info!(error = %e.error.code, reason = %e.error.reason, "authorization request refused");
    web::redirect(&authorize::error_redirect(e, &state.issuer), after_post)
}

fn redirect_error(state: &AppState, req: &AuthorizationRequest, code: ErrorCode, description: &'static str, after_post: bool) -> Response {
    let e = RedirectError { redirect_uri: req.redirect_uri.clone(), state: req.state.clone(), error: OAuthError::new(code, description) };
    error_redirect(state, &e, after_post)
}

/// Finds an interaction and checks that this browser started it and that it is still fresh.
pub(crate) async fn find_interaction(state: &AppState, headers: &HeaderMap, id: &str) -> AppResult<Interaction> {
    let expired = || {
        AppError::page(
            StatusCode::BAD_REQUEST,
            "Sign-in expired",
            "This sign-in request has expired or was already used. Return to the app and start again.",
        )
    };
    let id: Uuid = id.parse().map_err(|_| expired())?;
    let browser = browser::browser_cookie(state, headers).ok_or_else(expired)?;
    let interaction = state.store().find_interaction(state.tenant_id(), id).await?.ok_or_else(expired)?;
    if !interaction.browser_hash.ct_eq(&state.hasher().hash(browser)) || interaction.expires_at <= state.now() {
        return Err(expired());
    }
    Ok(interaction)
}

/// Decides the next step for a valid request: sign in, consent, or answer with a code.
pub(crate) async fn proceed(
    state: &AppState,
    headers: &HeaderMap,
    client: &Client,
    req: &AuthorizationRequest,
    raw_request: String,
    interaction: Option<Interaction>,
    after_post: bool,
) -> AppResult<Response> {
    let now = state.now();
    let signed_in = browser::current_user(state, headers).await?;
    let fresh_login = match (&interaction, &signed_in) {
        (Some(i), Some((s, _))) => i.login.is_some_and(|(u, at)| u == s.user_id && at == s.auth_time),
        _ => false,
    };
    let (session, user) = match signed_in {
        Some((s, u)) if !authorize::needs_login(req, Some(s.auth_time), fresh_login, now) => (s, u),
        _ => {
            // OpenID Connect Core §3.1.2.6: prompt=none never shows a page.
            if req.prompt.none {
                return Ok(redirect_error(state, req, ErrorCode::LoginRequired, "login_required: the user is not signed in", after_post));
            }
            let (interaction, browser, new_cookie) = ensure_interaction(state, headers, interaction, raw_request).await?;
            let purpose = SignIn::App { client_name: &client.name, interaction: interaction.id };
            let page = sign_in_page(state, headers, &purpose, &browser, req.login_hint.as_deref().unwrap_or_default(), None);
            return Ok(browser::with_browser_cookie(state, page, new_cookie));
        }
    };
    let grant = state.store().find_grant(state.tenant_id(), user.id, &client.client_id).await?;
    if authorize::needs_consent(client, req, grant.as_ref()) {
        if req.prompt.none {
            return Ok(redirect_error(
                state,
                req,
                ErrorCode::ConsentRequired,
                "consent_required: the user has not authorized this client",
                after_post,
            ));
        }
        let (interaction, browser, new_cookie) = ensure_interaction(state, headers, interaction, raw_request).await?;
        let csrf = browser::csrf_token(state, headers, &browser);
        let page = consent_page(state, headers, client, req, &user, grant.as_ref(), interaction.id, &csrf).await?;
        return Ok(browser::with_browser_cookie(state, page, new_cookie));
    }
    let Some(grant) = grant else {
        return Err(AppError::Internal("consent not needed without a grant".into()));
    };
    if let Some(i) = interaction {
        state.store().delete_interaction(state.tenant_id(), i.id).await?;
    }
    issue_code(state, client, req, &user, &grant, session.auth_time, after_post).await
}

/// Reuses the interaction in progress or starts one bound to this browser. Returns the
/// browser's binding cookie, and the cookie to set when the browser had none.
async fn ensure_interaction(
    state: &AppState,
    headers: &HeaderMap,
    existing: Option<Interaction>,
    raw_request: String,
) -> AppResult<(Interaction, String, Option<String>)> {
    let (browser, new_cookie) = browser::ensure_browser(state, headers);
    if let Some(i) = existing {
        return Ok((i, browser, new_cookie));
    }
    let now = state.now();
    let interaction = Interaction {
        id: Uuid::new_v4(),
        tenant: state.tenant_id(),
        browser_hash: state.hasher().hash(&browser),
        request: raw_request,
        login: None,
        created_at: now,
        expires_at: now + INTERACTION_TTL,
    };
    state.store().insert_interaction(&interaction).await?;
    Ok((interaction, browser, new_cookie))
}

#[allow(clippy::too_many_arguments)]
async fn consent_page(
    state: &AppState,
    headers: &HeaderMap,
    client: &Client,
    req: &AuthorizationRequest,
    user: &User,
    grant: Option<&Grant>,
    interaction: Uuid,
    csrf: &str,
) -> AppResult<Response> {
    let businesses = state.store().list_user_businesses(state.tenant_id(), user.id).await?;
    let catalogue = catalogue::entries(&state.rt).await?;
    let member_of: Vec<Uuid> = businesses.iter().map(|b| b.id).collect();
    let preselected = business_for(&member_of, grant.and_then(|g| g.business_id), user.default_business_id);
    let page = ConsentPage {
        layout: browser::layout(state, headers, Some(user), ""),
        client_name: &client.name,
        developer: &client.developer,
        profile: &client.profile,
        user_email: &user.email,
        interaction: interaction.to_string(),
        csrf,
        scopes: req.scope.iter().map(|s| (catalogue::describe(&catalogue, s), s.to_owned())).collect(),
        businesses: businesses.iter().map(|b| (b.id.to_string(), b.name.clone(), Some(b.id) == preselected)).collect(),
    };
    Ok(pages::render(StatusCode::OK, &page))
}

/// Issues a code and sends the browser back with it, `state` and `iss` (RFC 6749 §4.1.2,
/// RFC 9207 §2).
pub(crate) async fn issue_code(
    state: &AppState,
    client: &Client,
    req: &AuthorizationRequest,
    user: &User,
    grant: &Grant,
    auth_time: i64,
    after_post: bool,
) -> AppResult<Response> {
    let now = state.now();
    let record = AuthCode {
        // The redemption keys the code by its hash (`core::sealed_code`).
        hash: SecretHash([0; 32]),
        tenant: state.tenant_id(),
        client_id: req.client_id.clone(),
        user_id: user.id,
        grant_id: grant.id,
        business_id: grant.business_id,
        redirect_uri: req.redirect_uri.clone(),
        redirect_uri_explicit: req.redirect_uri_explicit,
        scope: req.scope.clone(),
        nonce: req.nonce.clone(),
        code_challenge: req.code_challenge.as_ref().map(|c| c.as_str().to_owned()),
        auth_time,
        created_at: now,
        expires_at: now + state.lifetimes_for(client).code,
        consumed_at: None,
        family_id: state.new_family_id(),
    };
    // The code carries its record sealed: nothing is written until it is redeemed.
    let code = sealed_code::seal(&state.rt.sealed_token_key, &record, &mut rand::thread_rng()).map_err(|e| AppError::Internal(e.into()))?;
    let mut pairs = vec![("code", code.as_str())];
    if let Some(s) = &req.state {
        pairs.push(("state", s));
    }
    pairs.push(("iss", &state.issuer));
    Ok(web::redirect(&authorize::redirect_with(&req.redirect_uri, &pairs), after_post))
}
