//! The sign-in form: email and password, checked with Argon2id off the async runtime.

use super::authorize::{check_form, find_interaction, login_page_again, SESSION_COOKIE, SESSION_TTL};
use crate::auth::{check_password, CredentialFailure};
use crate::error::{as_page, AppResult};
use crate::runtime::new_secret;
use crate::state::AppState;
use crate::web::{self, PageForm};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use axum::Extension;
use latchkey_core::model::Session;
use latchkey_core::params::Params;
use latchkey_core::secret::SecretKind;
use latchkey_core::text;

pub(crate) async fn login_post(Extension(state): Extension<AppState>, headers: HeaderMap, PageForm(form): PageForm) -> Response {
    as_page(login(state, headers, form).await)
}

async fn login(state: AppState, headers: HeaderMap, form: Params) -> AppResult<Response> {
    check_form(&state, &headers, &form)?;
    let id = form.get("interaction").ok().flatten().unwrap_or_default();
    let interaction = find_interaction(&state, &headers, id).await?;
    let client_id = Params::from_urlencoded(&interaction.request).get("client_id").ok().flatten().unwrap_or_default().to_owned();
    let client_name = state.store().find_client(state.tenant_id(), &client_id).await?.map(|c| c.name).unwrap_or_default();
    let typed = form.get("email").ok().flatten().unwrap_or_default();
    // Checked before any store sees it; what is not an email address is said so at once, and
    // costs no guess (the form shows what was typed only if it is printable).
    let email = match text::email(typed) {
        Ok(email) => email,
        Err(_) => {
            let shown = if text::is_printable(typed) { typed } else { "" };
            let message = "Enter your email address, such as name@example.com.";
            return Ok(login_page_again(&state, &headers, &client_name, interaction.id, shown, message));
        }
    };
    let pw = form.get("password").ok().flatten().unwrap_or_default().to_owned();

    let verified = match check_password(&state, &email, pw, None).await? {
        Ok(v) => v,
        Err(CredentialFailure::Invalid) => {
            tracing::info!("sign-in failed");
            return Ok(login_page_again(&state, &headers, &client_name, interaction.id, &email, "The email or password is incorrect."));
        }
        Err(CredentialFailure::TooManyAttempts { .. }) => {
            let message = "Too many attempts for this account. Wait a few minutes, then try again.";
            return Ok(login_page_again(&state, &headers, &client_name, interaction.id, &email, message));
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
            match web::cookie(&headers, &state.cookie_name(SESSION_COOKIE)) {
                Some(old) => store.delete_session(state.tenant_id(), state.hasher().hash(old)).await,
                None => Ok(()),
            }
        };
        tokio::try_join!(
            forget_old,
            store.insert_session(&session),
            store.update_interaction_login(state.tenant_id(), interaction.id, user_id, now)
        )?;
        Ok(())
    };
    verified.settle_with(&state, sign_in).await?;
    tracing::info!(user = %user_id, "signed in");
    let mut r = web::redirect(&state.path(&format!("/oauth/authorize/continue?interaction={}", interaction.id)), true);
    r.headers_mut().append(
        header::SET_COOKIE,
        web::set_cookie(&state.cookie_name(SESSION_COOKIE), secret.expose(), SESSION_TTL, state.secure_cookies, &state.path("/")),
    );
    Ok(r)
}
