//! What the server knows of a browser: its cookies, its signed-in session, and the checks every
//! form post and every change through the account API must pass (one CSRF scheme for all).
//!
//! Two cookies, both `HttpOnly; SameSite=Lax` (and `Secure` on an https issuer):
//! - `lk_browser` binds a browser: an authorization request in progress belongs to the browser
//!   whose cookie hashes to its `browser_hash`, and the CSRF token derives from it;
//! - `lk_session` is the signed-in session, stored by its hash.
//!
//! A change is accepted only from the server's own pages (docs/security.md AZ-12; OWASP's
//! Cross-Site Request Forgery Prevention Cheat Sheet):
//! 1. Fetch metadata: a browser that sends `Sec-Fetch-Site` (Chromium, Firefox since 90,
//!    Safari since 16.4) says whether the request came from a page of the same origin. Only
//!    `same-origin` (or `none`, a person's own action such as a bookmark) passes.
//! 2. Without it, the `Origin` header, when present and not `null`, must be the issuer's. A
//!    browser sends `Origin: null` when a referrer policy of `no-referrer` is in force (Fetch,
//!    "append a request `Origin` header"), which is why the pages' own policy is `same-origin`.
//! 3. Always: the CSRF token, a MAC of the browser and session cookies under the server's
//!    key, which a page of another origin can neither read nor compute. It changes when the
//!    session does (a sign-in, a sign-out), as Django's does, so a token captured before a
//!    sign-in is useless after it.

use crate::state::AppState;
use crate::web;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use latchkey_core::model::{Session, User};
use latchkey_core::secret::{ct_str_eq, SecretHash, SecretKind};

pub(crate) const BROWSER_COOKIE: &str = "lk_browser";
pub(crate) const SESSION_COOKIE: &str = "lk_session";
pub(crate) const SESSION_TTL: i64 = 14 * 24 * 3600;
const BROWSER_TTL: i64 = 365 * 24 * 3600;

/// Why a post was refused, for the log (the person sees a page that says what to do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `Sec-Fetch-Site` said the request came from another site (its value).
    CrossSite(String),
    /// `Origin` named another origin (its value).
    ForeignOrigin(String),
    /// No CSRF token, or one made for other cookies (an old page, another browser).
    Token,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::CrossSite(site) => write!(f, "cross_site: Sec-Fetch-Site is {site}"),
            Refusal::ForeignOrigin(origin) => write!(f, "foreign_origin: Origin is {origin}"),
            Refusal::Token => f.write_str("csrf_token: missing, or made for other cookies"),
        }
    }
}

/// The browser's binding cookie, if it sent one of ours.
pub(crate) fn browser_cookie<'h>(state: &AppState, headers: &'h HeaderMap) -> Option<&'h str> {
    web::cookie(headers, &state.cookie_name(BROWSER_COOKIE)).filter(|b| b.starts_with(SecretKind::Browser.prefix()))
}

fn session_cookie<'h>(state: &AppState, headers: &'h HeaderMap) -> Option<&'h str> {
    web::cookie(headers, &state.cookie_name(SESSION_COOKIE))
}

/// The hash of the browser's session cookie, if it sent one.
pub(crate) fn session_hash(state: &AppState, headers: &HeaderMap) -> Option<SecretHash> {
    session_cookie(state, headers).map(|cookie| state.hasher().hash(cookie))
}

/// The browser's live session, if any.
pub(crate) async fn current_session(state: &AppState, headers: &HeaderMap) -> crate::error::AppResult<Option<Session>> {
    let Some(hash) = session_hash(state, headers) else { return Ok(None) };
    let session = state.store().find_session(state.tenant_id(), hash).await?;
    Ok(session.filter(|s| s.expires_at > state.now()))
}

/// The browser's live session and its user, read together.
pub(crate) async fn current_user(state: &AppState, headers: &HeaderMap) -> crate::error::AppResult<Option<(Session, User)>> {
    let Some(hash) = session_hash(state, headers) else { return Ok(None) };
    let found = state.store().find_session_with_user(state.tenant_id(), hash).await?;
    Ok(found.filter(|(s, _)| s.expires_at > state.now()))
}

/// The browser's binding cookie, or a new one to set with [`with_browser_cookie`].
pub(crate) fn ensure_browser(state: &AppState, headers: &HeaderMap) -> (String, Option<String>) {
    match browser_cookie(state, headers) {
        Some(b) => (b.to_owned(), None),
        None => {
            let b = crate::runtime::new_secret(SecretKind::Browser, &mut rand::thread_rng()).expose().to_owned();
            (b.clone(), Some(b))
        }
    }
}

/// Sets a new binding cookie on `r`, if there is one.
pub(crate) fn with_browser_cookie(state: &AppState, mut r: Response, cookie: Option<String>) -> Response {
    if let Some(c) = cookie {
        r.headers_mut().append(
            header::SET_COOKIE,
            web::set_cookie(&state.cookie_name(BROWSER_COOKIE), &c, BROWSER_TTL, state.secure_cookies, &state.path("/")),
        );
    }
    r
}

/// Sets the session cookie of a new sign-in.
pub(crate) fn set_session_cookie(state: &AppState, r: &mut Response, secret: &str) {
    r.headers_mut().append(
        header::SET_COOKIE,
        web::set_cookie(&state.cookie_name(SESSION_COOKIE), secret, SESSION_TTL, state.secure_cookies, &state.path("/")),
    );
}

/// Ends the session cookie (sign-out).
pub(crate) fn clear_session_cookie(state: &AppState, r: &mut Response) {
    r.headers_mut()
        .append(header::SET_COOKIE, web::set_cookie(&state.cookie_name(SESSION_COOKIE), "", 0, state.secure_cookies, &state.path("/")));
}

/// The CSRF token for a page rendered to a browser with `browser` as its binding cookie and
/// `session` as its session cookie (if any).
pub(crate) fn csrf_token_for(state: &AppState, browser: &str, session: Option<&str>) -> String {
    let session = session.unwrap_or_default();
    // Lengths first, so that no two pairs of cookies make the same input.
    let input = format!("{}:{browser}{}:{session}", browser.len(), session.len());
    state.hasher().derive(b"csrf", input.as_bytes())
}

/// The CSRF token of the request's own cookies (`browser` when the page is about to set a new
/// binding cookie).
pub(crate) fn csrf_token(state: &AppState, headers: &HeaderMap, browser: &str) -> String {
    csrf_token_for(state, browser, session_cookie(state, headers))
}

/// Whether a change may proceed: it came from one of the server's own pages (fetch metadata,
/// `Origin`), and carries the CSRF token of this browser's cookies. A refusal is logged at
/// `info` with its reason.
pub(crate) fn check_post(state: &AppState, headers: &HeaderMap, sent_token: Option<&str>) -> Result<(), Refusal> {
    let verdict = judge(state, headers, sent_token);
    if let Err(reason) = &verdict {
        tracing::info!(%reason, "form or change refused");
    }
    verdict
}

fn judge(state: &AppState, headers: &HeaderMap, sent_token: Option<&str>) -> Result<(), Refusal> {
    let header_str = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    match header_str("sec-fetch-site") {
        Some("same-origin" | "none") => {}
        Some(other) => return Err(Refusal::CrossSite(other.to_owned())),
        None => match header_str(header::ORIGIN.as_str()) {
            None | Some("null") => {}
            Some(origin) if origin == state.issuer_origin() => {}
            Some(origin) => return Err(Refusal::ForeignOrigin(origin.to_owned())),
        },
    }
    let browser = browser_cookie(state, headers).unwrap_or_default();
    let expected = csrf_token(state, headers, browser);
    match sent_token {
        Some(sent) if ct_str_eq(sent, &expected) => Ok(()),
        _ => Err(Refusal::Token),
    }
}

/// [`check_post`] for a form of the server's pages, whose token is its `csrf` field: a refusal
/// is a 403 page that says what the person can do.
pub(crate) fn check_form(state: &AppState, headers: &HeaderMap, form: &latchkey_core::params::Params) -> crate::error::AppResult<()> {
    check_post(state, headers, form.get("csrf").ok().flatten()).map_err(|refusal| {
        let message = match refusal {
            Refusal::CrossSite(_) | Refusal::ForeignOrigin(_) => {
                "This form was sent from another website, so it was not accepted. If you meant to send it, open this site yourself and try again."
            }
            Refusal::Token => {
                "This form has expired: it was opened before a sign-in or sign-out, or in another browser. Go back, reload the page and try again."
            }
        };
        crate::error::AppError::page(axum::http::StatusCode::FORBIDDEN, "Request refused", message)
    })
}

/// The header of a page for this request: the tenant, and `user` when someone is signed in
/// (with the CSRF token of the sign-out form).
pub(crate) fn layout<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    user: Option<&'a User>,
    current: &'static str,
) -> crate::pages::Layout<'a> {
    let csrf = match user {
        Some(_) => csrf_token(state, headers, browser_cookie(state, headers).unwrap_or_default()),
        None => String::new(),
    };
    crate::pages::Layout {
        base: &state.base_path,
        site: state.site_name(),
        user: user.map(|u| u.name.as_str()),
        csrf,
        current,
        developer: user.is_some_and(|u| u.developer),
    }
}

/// The device cookie (OWASP, "Slow Down Online Guessing Attacks with Device Cookies"): a
/// browser that has signed in to an account keeps a budget of password attempts of its own,
/// which nobody else's guesses use up (`core::guessing`).
pub(crate) const DEVICE_COOKIE: &str = "lk_device";
const DEVICE_TTL: i64 = 365 * 24 * 3600;

fn device_mac(state: &AppState, id: &str, email: &str) -> String {
    state.hasher().derive(b"device", format!("{id}:{email}").as_bytes())
}

/// Where a password attempt from this browser comes from: a browser that has signed in to
/// `email` before (its device cookie names the account, under the server's MAC), or an
/// address.
pub(crate) enum PasswordSource {
    Known(String),
    Address(std::net::IpAddr),
}

impl PasswordSource {
    pub(crate) fn of(state: &AppState, headers: &HeaderMap, peer: crate::web::Peer, email: &str) -> Self {
        let known = web::cookie(headers, &state.cookie_name(DEVICE_COOKIE))
            .and_then(|v| v.split_once('.'))
            .filter(|(id, mac)| ct_str_eq(mac, &device_mac(state, id, email)))
            .map(|(id, _)| id.to_owned());
        match known {
            Some(id) => Self::Known(id),
            None => Self::Address(crate::auth::client_address(state, peer, headers)),
        }
    }

    pub(crate) fn as_source(&self) -> latchkey_core::guessing::Source<'_> {
        match self {
            Self::Known(device) => latchkey_core::guessing::Source::KnownBrowser { device },
            Self::Address(address) => latchkey_core::guessing::Source::Browser { address: *address },
        }
    }
}

/// Remembers this browser for `email` after a sign-in (a new id each time).
pub(crate) fn set_device_cookie(state: &AppState, r: &mut Response, email: &str) {
    use base64::Engine;
    let mut id = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut id);
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id);
    let value = format!("{id}.{}", device_mac(state, &id, email));
    r.headers_mut().append(
        header::SET_COOKIE,
        web::set_cookie(&state.cookie_name(DEVICE_COOKIE), &value, DEVICE_TTL, state.secure_cookies, &state.path("/")),
    );
}
