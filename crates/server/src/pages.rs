//! The HTML pages: login, consent, error and the demo callback. Every field has a label and
//! every button visible text, so people, screen readers and browser tests can find them.

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    /// The tenant's path prefix, for the form's action.
    pub base: &'a str,
    pub client_name: &'a str,
    pub interaction: String,
    pub csrf: &'a str,
    pub email: &'a str,
    pub error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage<'a> {
    pub base: &'a str,
    pub client_name: &'a str,
    pub developer: &'a str,
    pub user_email: &'a str,
    pub interaction: String,
    pub csrf: &'a str,
    /// (description, scope)
    pub scopes: Vec<(String, String)>,
    /// (id, name, preselected)
    pub businesses: Vec<(String, String, bool)>,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
}

#[derive(Template)]
#[template(path = "demo_callback.html")]
pub struct DemoCallbackPage<'a> {
    pub curl: String,
    pub state: &'a str,
    pub iss: &'a str,
    pub error: Option<&'a str>,
    pub error_description: Option<&'a str>,
}

/// Renders a page with the given status.
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, [(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"))], html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    render(status, &ErrorPage { title, message })
}

pub const STYLESHEET: &str = include_str!("../assets/latchkey.css");
