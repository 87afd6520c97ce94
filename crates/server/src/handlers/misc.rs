//! Health checks, the assets, the start page, the pages for unknown addresses and methods,
//! and the demo callback page.

use crate::browser;
use crate::error::{no_store, PageResult};
use crate::pages::{self, DemoCallbackPage, HomePage, SCRIPT, STYLESHEET};
use crate::state::AppState;
use axum::extract::RawQuery;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use latchkey_core::params::Params;
use latchkey_core::text;

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
    asset("text/css; charset=utf-8", STYLESHEET)
}

pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: what this server is, and the ways on.
pub(crate) async fn home(Extension(state): Extension<AppState>, headers: HeaderMap) -> PageResult<Response> {
    let user = browser::current_user(&state, &headers).await?;
    let page = HomePage { layout: browser::layout(&state, &headers, user.as_ref().map(|(_, u)| u), ""), issuer: &state.issuer };
    Ok(pages::render(StatusCode::OK, &page))
}

/// Any address the router does not know: a page for a person, JSON for a program.
pub(crate) async fn not_found(headers: HeaderMap) -> Response {
    if wants_html(&headers) {
        pages::error_page(StatusCode::NOT_FOUND, "Page not found", "There is no page at this address. Check it for typing mistakes.")
    } else {
        no_store(
            (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({"error": "not_found", "error_description": "no such endpoint"})))
                .into_response(),
        )
    }
}

/// A known address asked with a method it does not take (RFC 9110 §15.5.6; the router adds
/// `Allow`).
pub(crate) async fn method_not_allowed(headers: HeaderMap) -> Response {
    if wants_html(&headers) {
        pages::error_page(
            StatusCode::METHOD_NOT_ALLOWED,
            "This page cannot be used this way",
            "The address exists, but not for this kind of request. If you followed a link or reloaded a form, go back and start again.",
        )
    } else {
        let body = serde_json::json!({"error": "invalid_request", "error_description": "method_not_allowed: this endpoint does not take this method"});
        no_store((StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response())
    }
}

/// Whether the client asked for HTML, as a browser's navigation does.
fn wants_html(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"))
}

/// Quotes a value for a POSIX shell: inside single quotes nothing is special but the quote.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Stands in for the demo app's redirect URI: shows the code and the curl command that
/// exchanges it, every pasted value quoted for the shell.
pub(crate) async fn demo_callback(
    Extension(state): Extension<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> PageResult<Response> {
    let Some(demo) = &state.demo else {
        return Ok(pages::error_page(StatusCode::NOT_FOUND, "Page not found", "The demo is not running on this server."));
    };
    let q = Params::from_urlencoded(query.as_deref().unwrap_or_default());
    let get = |k: &str| q.get(k).ok().flatten();
    // RFC 6749 Appendix A.7, A.8: error and error_description are NQSCHAR; anything else is
    // not shown as the server's words.
    fn nqs(v: Option<&str>) -> Option<&str> {
        v.filter(|v| text::is_nqschar(v))
    }
    let curl = format!(
        "curl -s -X POST {token} \\\n  -u {auth} \\\n  -d grant_type=authorization_code \\\n  --data-urlencode code={code} \\\n  --data-urlencode redirect_uri={redirect}",
        token = shell_quote(&format!("{}/oauth/token", state.issuer)),
        auth = shell_quote(&format!("{}:{}", demo.client_id, demo.client_secret)),
        code = shell_quote(get("code").unwrap_or_default()),
        redirect = shell_quote(&demo.redirect_uri),
    );
    let user = browser::current_user(&state, &headers).await?;
    let page = DemoCallbackPage {
        layout: browser::layout(&state, &headers, user.as_ref().map(|(_, u)| u), ""),
        curl,
        state: get("state").unwrap_or_default(),
        iss: get("iss").unwrap_or_default(),
        error: nqs(get("error")).or(get("error").map(|_| "an error it did not name")),
        error_description: nqs(get("error_description")),
    };
    Ok(pages::render(StatusCode::OK, &page))
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn shell_quoting_keeps_every_value_one_word() {
        assert_eq!(shell_quote("lk_ac_abc"), "'lk_ac_abc'");
        assert_eq!(shell_quote("x'; rm -rf / #"), "'x'\\''; rm -rf / #'");
    }
}
