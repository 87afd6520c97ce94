//! The consent form: Allow or Deny, and the business the app may act for.

use super::authorize::{error_redirect, find_interaction, issue_code, load_request};
use crate::browser::{check_form, current_session};
use crate::error::{AppError, AppResult, PageResult};
use crate::state::AppState;
use crate::web::{self, PageForm};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use latchkey_core::authorize::{self, RedirectError};
use latchkey_core::business::business_for;
use latchkey_core::model::Grant;
use latchkey_core::params::Params;
use latchkey_core::scope::ScopeSet;
use latchkey_core::{ErrorCode, OAuthError};
use uuid::Uuid;

pub(crate) async fn consent_post(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    PageForm(form): PageForm,
) -> PageResult<Response> {
    Ok(consent(state, headers, form).await?)
}

async fn consent(state: AppState, headers: HeaderMap, form: Params) -> AppResult<Response> {
    check_form(&state, &headers, &form)?;
    let id = form.get("interaction").ok().flatten().unwrap_or_default();
    let interaction = find_interaction(&state, &headers, id).await?;
    let params = Params::from_urlencoded(&interaction.request);
    let (client, req) = match load_request(&state, &params, true).await? {
        Ok(ok) => ok,
        Err(answer) => return Ok(answer),
    };
    let continue_url = state.path(&format!("/oauth/authorize/continue?interaction={}", interaction.id));
    // The session must still be the one that signed in for this request.
    let Some(session) = current_session(&state, &headers).await? else {
        return Ok(web::redirect(&continue_url, true));
    };
    if interaction.login.is_some_and(|(u, _)| u != session.user_id) {
        return Ok(web::redirect(&continue_url, true));
    }
    // The consent form cannot stand in for a sign-in the request demands (prompt=login,
    // max_age): check again, as the authorization endpoint did.
    let fresh_login = interaction.login.is_some_and(|(u, at)| u == session.user_id && at == session.auth_time);
    if authorize::needs_login(&req, Some(session.auth_time), fresh_login, state.now()) {
        return Ok(web::redirect(&continue_url, true));
    }
    let Some(user) = state.store().find_user(state.tenant_id(), session.user_id).await? else {
        return Ok(web::redirect(&continue_url, true));
    };

    match form.get("decision").ok().flatten() {
        Some("deny") => {
            state.store().delete_interaction(state.tenant_id(), interaction.id).await?;
            // RFC 6749 §4.1.2.1: access_denied when the resource owner refuses.
            let e = RedirectError {
                redirect_uri: req.redirect_uri.clone(),
                state: req.state.clone(),
                error: OAuthError::new(ErrorCode::AccessDenied, "access_denied: the user denied the request"),
            };
            Ok(error_redirect(&state, &e, true))
        }
        Some("allow") => {
            let businesses = state.store().list_user_businesses(state.tenant_id(), user.id).await?;
            let existing = state.store().find_grant(state.tenant_id(), user.id, &client.client_id).await?;
            let business_id = match form.get("business_id").ok().flatten() {
                Some(b) => {
                    let id: Option<Uuid> = b.parse().ok();
                    match businesses.iter().find(|x| Some(x.id) == id) {
                        Some(x) => Some(x.id),
                        None => {
                            return Err(AppError::page(StatusCode::BAD_REQUEST, "Unknown business", "Pick one of your own businesses."))
                        }
                    }
                }
                None => {
                    let member_of: Vec<Uuid> = businesses.iter().map(|b| b.id).collect();
                    business_for(&member_of, existing.as_ref().and_then(|g| g.business_id), user.default_business_id)
                }
            };
            // The grant covers what was consented before for the same business, plus this.
            let scope = match &existing {
                Some(g) if g.business_id == business_id => ScopeSet::from_tokens(g.scope.iter().chain(req.scope.iter()))?,
                _ => req.scope.clone(),
            };
            let grant = state
                .store()
                .upsert_grant(&Grant {
                    id: Uuid::new_v4(),
                    tenant: state.tenant_id(),
                    user_id: user.id,
                    client_id: client.client_id.clone(),
                    business_id,
                    scope,
                    created_at: state.now(),
                })
                .await?;
            state.store().delete_interaction(state.tenant_id(), interaction.id).await?;
            issue_code(&state, &client, &req, &user, &grant, session.auth_time, true).await
        }
        _ => Err(AppError::page(StatusCode::BAD_REQUEST, "Invalid form", "Choose Allow or Deny.")),
    }
}
