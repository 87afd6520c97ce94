//! Signing in and out. The sign-in form (email and password, checked with Argon2id off the
//! async runtime) serves two purposes: an app's authorization request, carried by its
//! interaction, and the account area, which returns to the page that asked (`next`).

use super::authorize::find_interaction;
use crate::auth::{check_password, CredentialFailure};
use crate::browser::{self, check_form, SESSION_TTL};
use crate::error::{AppResult, PageResult};
use crate::pages::{self, LoginPage};
use crate::runtime::new_secret;
use crate::state::AppState;
use crate::web::{self, PageForm, Peer};
use axum::extract::RawQuery;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use latchkey_core::model::Session;
use latchkey_core::params::Params;
use latchkey_core::secret::SecretKind;
use latchkey_core::text;
use uuid::Uuid;

/// What a sign-in is for.
pub(crate) enum SignIn<'a> {
    /// An app's authorization request in progress.
    App { client_name: &'a str, interaction: Uuid },
    /// The account area; `next` is the page of this site to go on to.
    Account { next: &'a str },
}

/// The sign-in page for `purpose`, with the CSRF token of `browser` (the binding cookie the
/// answer carries) and, after a failed attempt, what was typed and what went wrong.
pub(crate) fn sign_in_page(
    state: &AppState,
    headers: &HeaderMap,
    purpose: &SignIn<'_>,
    browser: &str,
    email: &str,
    error: Option<&str>,
) -> Response {
    let (client_name, interaction, next) = match purpose {
        SignIn::App { client_name, interaction } => (Some(*client_name), Some(interaction.to_string()), None),
        SignIn::Account { next } => (None, None, Some(*next)),
    };
    let page = LoginPage {
        layout: browser::layout(state, headers, None, "login"),
        client_name,
        interaction,
        next,
        csrf: &browser::csrf_token(state, headers, browser),
        email,
        error,
    };
    pages::render(StatusCode::OK, &page)
}

/// Where a sign-in to the account may go on to: a path of this site, never another origin
/// (docs/security.md AZ-03: `next=https://evil.example` or `//evil.example` goes to the account).
pub(crate) fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.starts_with("/\\") && text::is_vschar(n) && n.len() <= 512 => n,
        _ => "/account",
    }
}

/// `GET /login`: the sign-in page. With the interaction of an authorization request (the
/// address after a failed sign-in), the request goes on where it stood; without, it is a
/// sign-in to the account.
pub(crate) async fn login_get(Extension(state): Extension<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let q = Params::from_urlencoded(query.as_deref().unwrap_or_default());
    if let Some(id) = q.get("interaction").ok().flatten() {
        if find_interaction(&state, &headers, id).await.is_ok() {
            return web::redirect(&state.path(&format!("/oauth/authorize/continue?interaction={id}")), false);
        }
    }
    let next = safe_next(q.get("next").ok().flatten());
    let (browser, new_cookie) = browser::ensure_browser(&state, &headers);
    let page = sign_in_page(&state, &headers, &SignIn::Account { next }, &browser, "", None);
    browser::with_browser_cookie(&state, page, new_cookie)
}

pub(crate) async fn login_post(
    Extension(state): Extension<AppState>,
    peer: Peer,
    headers: HeaderMap,
    PageForm(form): PageForm,
) -> PageResult<Response> {
    Ok(login(state, peer, headers, form).await?)
}

async fn login(state: AppState, peer: Peer, headers: HeaderMap, form: Params) -> AppResult<Response> {
    check_form(&state, &headers, &form)?;
    // An app's sign-in carries its interaction; the account's, where to go on to.
    let app = match form.get("interaction").ok().flatten() {
        Some(id) => {
            let interaction = find_interaction(&state, &headers, id).await?;
            let client_id = Params::from_urlencoded(&interaction.request).get("client_id").ok().flatten().unwrap_or_default().to_owned();
            let client_name = state.store().find_client(state.tenant_id(), &client_id).await?.map(|c| c.name).unwrap_or_default();
            Some((interaction, client_name))
        }
        None => None,
    };
    let next = safe_next(form.get("next").ok().flatten());
    let purpose = match &app {
        Some((interaction, client_name)) => SignIn::App { client_name, interaction: interaction.id },
        None => SignIn::Account { next },
    };
    let browser = browser::browser_cookie(&state, &headers).unwrap_or_default();
    let again = |email: &str, message: &str| sign_in_page(&state, &headers, &purpose, browser, email, Some(message));

    let typed = form.get("email").ok().flatten().unwrap_or_default();
    // Checked before any store sees it; what is not an email address is said so at once, and
    // costs no guess (the form shows what was typed only if it is printable).
    let email = match text::email(typed) {
        Ok(email) => email,
        Err(_) => {
            let shown = if text::is_printable(typed) { typed } else { "" };
            return Ok(again(shown, "Enter your email address, such as name@example.com."));
        }
    };
    let pw = form.get("password").ok().flatten().unwrap_or_default().to_owned();

    let source = browser::PasswordSource::of(&state, &headers, peer, &email);
    let verified = match check_password(&state, &email, pw, source.as_source()).await? {
        Ok(v) => v,
        Err(CredentialFailure::Invalid) => {
            tracing::info!("sign-in failed");
            return Ok(again(&email, "The email or password is incorrect."));
        }
        Err(CredentialFailure::TooManyAttempts { .. }) => {
            return Ok(again(&email, "Too many attempts for this account. Wait a few minutes, then try again."));
        }
    };

    let now = state.now();
    let user_id = verified.user().id;
    let secret = new_secret(SecretKind::Session, &mut rand::thread_rng());
    let session = Session {
        hash: state.hasher().hash(secret.expose()),
        tenant: state.tenant_id(),
        user_id,
        auth_time: now,
        created_at: now,
        expires_at: now + SESSION_TTL,
    };
    // The sign-in's writes go to the store at once, with the attempt's settling, so that the
    // SQLite writer commits them together: one `fsync` instead of up to four.
    let store = state.store();
    let sign_in = async {
        // A new session at every sign-in: no session fixation.
        let forget_old = async {
            match browser::session_hash(&state, &headers) {
                Some(old) => store.delete_session(state.tenant_id(), old).await,
                None => Ok(()),
            }
        };
        let record_login = async {
            match &app {
                Some((interaction, _)) => store.update_interaction_login(state.tenant_id(), interaction.id, user_id, now).await,
                None => Ok(()),
            }
        };
        tokio::try_join!(forget_old, store.insert_session(&session), record_login)?;
        Ok(())
    };
    verified.settle_with(&state, sign_in).await?;
    tracing::info!(user = %user_id, "signed in");
    let to = match &app {
        Some((interaction, _)) => state.path(&format!("/oauth/authorize/continue?interaction={}", interaction.id)),
        None => state.path(next),
    };
    let mut r = web::redirect(&to, true);
    browser::set_session_cookie(&state, &mut r, secret.expose());
    browser::set_device_cookie(&state, &mut r, &email);
    Ok(r)
}

/// `POST /logout`: ends the session (its row and its cookie), then the sign-in page.
pub(crate) async fn logout_post(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    PageForm(form): PageForm,
) -> PageResult<Response> {
    Ok(logout(state, headers, form).await?)
}

async fn logout(state: AppState, headers: HeaderMap, form: Params) -> AppResult<Response> {
    check_form(&state, &headers, &form)?;
    if let Some(hash) = browser::session_hash(&state, &headers) {
        state.store().delete_session(state.tenant_id(), hash).await?;
        tracing::info!("signed out");
    }
    let mut r = web::redirect(&state.path("/login"), true);
    browser::clear_session_cookie(&state, &mut r);
    Ok(r)
}
