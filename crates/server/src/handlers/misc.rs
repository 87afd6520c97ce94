//! Health checks, the stylesheet and the demo callback page.

use crate::error::AppResult;
use crate::pages::{self, DemoCallbackPage, STYLESHEET};
use crate::state::AppState;
use axum::extract::RawQuery;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use latchkey_core::params::Params;

pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the database answers. A 503 says why in the log (the answer does not: it is
/// for load balancers, not for people).
pub(crate) async fn readyz(Extension(state): Extension<AppState>) -> Response {
    match state.store().find_tenant_by_name(&state.tenant().name).await {
        Ok(Some(_)) => return (StatusCode::OK, "ready").into_response(),
        Ok(None) => tracing::warn!(tenant = %state.tenant().name, "not ready: the tenant's row is gone from the database"),
        Err(e) => tracing::warn!(cause = %e, "not ready: the database does not answer"),
    }
    (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
}

pub(crate) async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// Stands in for the demo app's redirect URI: shows the code and the curl command that
/// exchanges it.
pub(crate) async fn demo_callback(Extension(state): Extension<AppState>, RawQuery(query): RawQuery) -> AppResult<Response> {
    let Some(demo) = &state.demo else {
        return Ok(pages::error_page(StatusCode::NOT_FOUND, "Not found", "The demo is not running."));
    };
    let q = Params::from_urlencoded(query.as_deref().unwrap_or_default());
    let get = |k: &str| q.get(k).ok().flatten();
    let curl = format!(
        "curl -s -X POST {issuer}/oauth/token \\\n  -u '{id}:{secret}' \\\n  -d grant_type=authorization_code \\\n  -d code='{code}' \\\n  -d redirect_uri='{redirect}'",
        issuer = state.issuer,
        id = demo.client_id,
        secret = demo.client_secret,
        code = get("code").unwrap_or_default(),
        redirect = demo.redirect_uri,
    );
    let page = DemoCallbackPage {
        curl,
        state: get("state").unwrap_or_default(),
        iss: get("iss").unwrap_or_default(),
        error: get("error"),
        error_description: get("error_description"),
    };
    Ok(pages::render(StatusCode::OK, &page))
}
