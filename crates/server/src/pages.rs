//! The HTML pages: the templates' data and how a page becomes an answer. Every field has a
//! label and every button visible text, so people, screen readers and browser tests can find
//! them; every page works without JavaScript (`latchkey.js` only adds copy buttons). The site
//! map is in `docs/pages.md`.

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// What every page's header shows: the tenant, and the signed-in user with the account
/// navigation and a sign-out button.
pub struct Layout<'a> {
    /// The tenant's path prefix ("" for the default tenant), for every link and form.
    pub base: &'a str,
    /// The tenant's name as people read it.
    pub site: &'a str,
    /// The signed-in user's name, if any.
    pub user: Option<&'a str>,
    /// The CSRF token of the sign-out form (empty when nobody is signed in).
    pub csrf: String,
    /// Which entry of the account navigation is this page ("" for none).
    pub current: &'static str,
}

impl Layout<'_> {
    /// `aria-current` for a navigation entry.
    pub fn is_current(&self, entry: &str) -> bool {
        self.current == entry
    }
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub layout: Layout<'a>,
    /// The app the sign-in is for; `None` for a sign-in to the account.
    pub client_name: Option<&'a str>,
    pub interaction: Option<String>,
    /// Where a sign-in to the account goes on (a path of this site).
    pub next: Option<&'a str>,
    pub csrf: &'a str,
    pub email: &'a str,
    pub error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage<'a> {
    pub layout: Layout<'a>,
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
    layout: Layout<'a>,
    title: &'a str,
    message: &'a str,
}

#[derive(Template)]
#[template(path = "home.html")]
pub struct HomePage<'a> {
    pub layout: Layout<'a>,
    pub issuer: &'a str,
}

#[derive(Template)]
#[template(path = "demo_callback.html")]
pub struct DemoCallbackPage<'a> {
    pub layout: Layout<'a>,
    pub curl: String,
    pub state: &'a str,
    pub iss: &'a str,
    pub error: Option<&'a str>,
    pub error_description: Option<&'a str>,
}

/// Renders a page with the given status. Pages are never cached (UI.md: every HTML answer
/// carries `Cache-Control: no-store`): they hold a person's data and single-use form tokens.
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (
            status,
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// An error page. Errors are answered where no tenant state is at hand (`error.rs`), so its
/// header is the plain one of the default tenant.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let layout = Layout { base: "", site: "Latchkey", user: None, csrf: String::new(), current: "" };
    render(status, &ErrorPage { layout, title, message })
}

pub const STYLESHEET: &str = include_str!("../assets/latchkey.css");
pub const SCRIPT: &str = include_str!("../assets/latchkey.js");
