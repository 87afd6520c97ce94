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
    /// The signed-in user may use the developer area.
    pub developer: bool,
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
    /// The app's links and logo.
    pub profile: &'a latchkey_core::model::ClientProfile,
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

/// A moment as pages show it: in words ("3 days ago"), with the exact time for
/// `<time datetime>` and its tooltip (docs/pages.md).
pub struct When {
    pub words: String,
    /// RFC 3339, UTC.
    pub exact: String,
}

impl When {
    pub fn new(now: i64, at: i64) -> Self {
        let exact = time::OffsetDateTime::from_unix_timestamp(at)
            .ok()
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
            .unwrap_or_default();
        Self { words: in_words(now, at), exact }
    }
}

/// "just now", "5 minutes ago", "in 3 days".
fn in_words(now: i64, at: i64) -> String {
    let d = at - now;
    let n = d.abs();
    let (count, unit) = match n {
        0..=59 => return "just now".into(),
        60..=3_599 => (n / 60, "minute"),
        3_600..=86_399 => (n / 3_600, "hour"),
        // Days up to two months: "in 30 days" says what a token's expiry was chosen as.
        86_400..=5_183_999 => (n / 86_400, "day"),
        5_184_000..=31_535_999 => (n / 2_592_000, "month"),
        _ => (n / 31_536_000, "year"),
    };
    let unit = if count == 1 { unit.to_owned() } else { format!("{unit}s") };
    if d < 0 {
        format!("{count} {unit} ago")
    } else {
        format!("in {count} {unit}")
    }
}

/// A scope as pages show it: the sentence of the catalogue, the raw name in small type.
pub struct ScopeLine {
    pub words: String,
    pub name: String,
}

/// A field's error, for the form that shows it next to the field.
pub struct FieldErrors(pub Vec<(&'static str, String)>);

impl FieldErrors {
    pub fn none() -> Self {
        Self(Vec::new())
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.iter().find(|(f, _)| *f == field).map(|(_, m)| m.as_str())
    }

    pub fn has(&self, field: &str) -> bool {
        self.get(field).is_some()
    }
}

#[derive(Template)]
#[template(path = "account/profile.html")]
pub struct ProfilePage<'a> {
    pub layout: Layout<'a>,
    pub name: &'a str,
    pub email: &'a str,
    pub businesses: Vec<String>,
    pub csrf: &'a str,
    pub errors: FieldErrors,
    pub notice: Option<&'a str>,
}

/// A personal token in the list.
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub scopes: Vec<ScopeLine>,
    pub created: When,
    pub expires: When,
    pub last_used: Option<When>,
    /// "Active", "Expired" or "Revoked".
    pub status: &'static str,
    pub active: bool,
}

/// A scope a person may put on a token, and whether the form has it ticked.
pub struct ScopeChoice {
    pub line: ScopeLine,
    pub checked: bool,
}

#[derive(Template)]
#[template(path = "account/tokens.html")]
pub struct TokensPage<'a> {
    pub layout: Layout<'a>,
    pub tokens: Vec<TokenRow>,
    pub choices: Vec<ScopeChoice>,
    /// (days, label, selected)
    pub lifetimes: Vec<(i64, String, bool)>,
    pub name: &'a str,
    pub csrf: &'a str,
    pub errors: FieldErrors,
    pub notice: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "account/token_secret.html")]
pub struct TokenSecretPage<'a> {
    pub layout: Layout<'a>,
    /// "created" or "regenerated".
    pub what: &'a str,
    pub name: &'a str,
    pub secret: &'a str,
    pub expires: When,
}

#[derive(Template)]
#[template(path = "account/confirm.html")]
pub struct ConfirmPage<'a> {
    pub layout: Layout<'a>,
    pub title: &'a str,
    pub message: String,
    pub action: String,
    pub button: &'a str,
    pub cancel: String,
    pub csrf: &'a str,
}

/// An authorized app in the list.
pub struct AppRow {
    pub grant: String,
    pub name: String,
    pub developer: String,
    pub scopes: Vec<ScopeLine>,
    pub granted: When,
    pub last_used: Option<When>,
}

#[derive(Template)]
#[template(path = "account/apps.html")]
pub struct AppsPage<'a> {
    pub layout: Layout<'a>,
    /// (business name, its apps)
    pub groups: Vec<(String, Vec<AppRow>)>,
    pub notice: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "developer/signup.html")]
pub struct SignupPage<'a> {
    pub layout: Layout<'a>,
    pub csrf: &'a str,
}

/// An app in the developer's list.
pub struct DevAppRow {
    pub client_id: String,
    pub name: String,
    pub kind: &'static str,
    pub users: u64,
    pub created: When,
}

#[derive(Template)]
#[template(path = "developer/apps.html")]
pub struct DevAppsPage<'a> {
    pub layout: Layout<'a>,
    pub apps: Vec<DevAppRow>,
    /// (client_id, app name, who invited): invitations to own an app, waiting for an answer.
    pub invitations: Vec<(String, String, String)>,
    pub csrf: &'a str,
    pub notice: Option<&'a str>,
}

/// A kind of app to choose at registration.
pub struct KindChoice {
    pub value: &'static str,
    pub label: &'static str,
    pub hint: &'static str,
    pub checked: bool,
}

/// The fields of an app, as its form shows them (what was typed, kept on an error).
pub struct AppFields {
    pub form: crate::developer::AppForm,
    pub has_redirect_uris: bool,
    pub choices: Vec<ScopeChoice>,
}

#[derive(Template)]
#[template(path = "developer/register.html")]
pub struct RegisterAppPage<'a> {
    pub layout: Layout<'a>,
    pub kinds: Vec<KindChoice>,
    pub fields: AppFields,
    pub csrf: &'a str,
    pub errors: FieldErrors,
}

/// A secret of an app, as its page lists it.
pub struct SecretRow {
    pub label: &'static str,
    pub created: Option<When>,
    pub last_used: Option<When>,
    /// The end of a replaced secret's grace period.
    pub expires: Option<When>,
}

/// The app's own values, ready to paste.
pub struct QuickStart {
    pub discovery: String,
    pub authorize: Option<String>,
    pub curl: String,
}

#[derive(Template)]
#[template(path = "developer/app.html")]
pub struct AppPage<'a> {
    pub layout: Layout<'a>,
    pub client_id: &'a str,
    pub title: &'a str,
    pub kind: &'static str,
    pub users: u64,
    pub fields: AppFields,
    pub secrets: Vec<SecretRow>,
    pub confidential: bool,
    pub quick: QuickStart,
    pub owners: Vec<String>,
    /// The emails of developers invited to own it, who have not answered.
    pub invited: Vec<String>,
    pub invite_email: &'a str,
    pub csrf: &'a str,
    pub errors: FieldErrors,
    pub notice: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "developer/secret.html")]
pub struct AppSecretPage<'a> {
    pub layout: Layout<'a>,
    pub heading: &'a str,
    pub name: &'a str,
    pub client_id: &'a str,
    pub secret: Option<&'a str>,
    /// What happens to the old secret, after a rotation.
    pub old: Option<String>,
}

#[derive(Template)]
#[template(path = "developer/rotate.html")]
pub struct RotateSecretPage<'a> {
    pub layout: Layout<'a>,
    pub client_id: &'a str,
    pub name: &'a str,
    /// (seconds, label, checked)
    pub graces: Vec<(i64, &'static str, bool)>,
    pub csrf: &'a str,
}

#[derive(Template)]
#[template(path = "developer/delete.html")]
pub struct DeleteAppPage<'a> {
    pub layout: Layout<'a>,
    pub client_id: &'a str,
    pub name: &'a str,
    pub users: u64,
    pub typed: &'a str,
    pub csrf: &'a str,
    pub errors: FieldErrors,
}

/// Renders a page with the given status. Pages are never cached (docs/pages.md: every HTML answer
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
    let layout = Layout { base: "", site: "Latchkey", user: None, csrf: String::new(), current: "", developer: false };
    render(status, &ErrorPage { layout, title, message })
}

pub const STYLESHEET: &str = include_str!("../assets/latchkey.css");
pub const SCRIPT: &str = include_str!("../assets/latchkey.js");
