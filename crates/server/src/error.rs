//! The one place where errors become HTTP answers.

use crate::pages;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use latchkey_core::{ErrorCode, OAuthError};
use latchkey_proto::ErrorResponse;
use latchkey_store::StoreError;

/// Every failure a handler can return.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A protocol error answered as RFC 6749 §5.2 JSON (token, revocation endpoints).
    #[error("{0}")]
    OAuth(#[from] OAuthError),
    /// An error shown to a person as an HTML page (no redirect is safe, or a form failed).
    #[error("{title}: {message}")]
    Page { status: StatusCode, title: &'static str, message: String },
    /// A protected resource refused the bearer token (RFC 6750 §3): `error` is `None` when
    /// the request carried no token at all (§3.1).
    #[error("bearer token refused: {description}")]
    Bearer { status: StatusCode, error: Option<&'static str>, description: &'static str },
    /// A JSON API error for the signed-in user's own API (`{"error", "error_description"}`,
    /// and `field` when one field of the request is wrong).
    #[error("{error}: {description}")]
    Api { status: StatusCode, error: &'static str, description: String, field: Option<&'static str> },
    /// Refused without looking, because the caller used up its attempts (docs/security.md TE-04):
    /// 429 with `Retry-After` (RFC 6585 §4) and the protocol error as the JSON body.
    #[error("too many attempts: {error}")]
    TooManyAttempts { retry_after: i64, error: OAuthError },
    #[error("storage failure")]
    Store(#[from] StoreError),
    /// A fault of the server; its cause stays its `source()`, for the log's chain.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl AppError {
    pub fn page(status: StatusCode, title: &'static str, message: impl Into<String>) -> Self {
        Self::Page { status, title, message: message.into() }
    }
}

/// Writes the error and its whole `source()` chain, for logs.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Headers every token-endpoint-like answer carries (RFC 6749 §5.1, OAuth 2.1 §3.2.3).
pub fn no_store(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

pub fn oauth_json(e: &OAuthError) -> Response {
    let status = match e.code {
        // RFC 6749 §5.2: invalid_client MAY be 401, and MUST be when the client used the
        // Authorization header; Latchkey always answers 401 with a challenge.
        ErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    tracing::info!(error = %e.code, reason = %e.reason, "request refused");
    let body = ErrorResponse { error: e.code, error_description: e.safe_description(), error_uri: None };
    let mut r = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"latchkey\", charset=\"UTF-8\""));
    }
    no_store(r)
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            AppError::OAuth(e) => oauth_json(&e),
            AppError::TooManyAttempts { retry_after, error } => {
                let mut r = oauth_json(&error);
                *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                r.headers_mut().remove(header::WWW_AUTHENTICATE);
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
                r
            }
            AppError::Page { status, title, message } => pages::error_page(status, title, &message),
            AppError::Bearer { status, error, description } => {
                let challenge = match error {
                    Some(e) => format!("Bearer realm=\"latchkey\", error=\"{e}\", error_description=\"{description}\""),
                    None => "Bearer realm=\"latchkey\"".to_owned(),
                };
                let body = serde_json::json!({"error": error.unwrap_or("invalid_request"), "error_description": description});
                let mut r = (status, axum::Json(body)).into_response();
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
                no_store(r)
            }
            AppError::Api { status, error, description, field } => {
                let mut body = serde_json::json!({"error": error, "error_description": description});
                if let Some(f) = field {
                    body["field"] = serde_json::json!(f);
                }
                no_store((status, axum::Json(body)).into_response())
            }
            // Input that slipped past its grammar and that no store can hold: the caller's
            // mistake, a 400 (docs/design.md principle 5), never a 500.
            AppError::Store(StoreError::Invalid(what)) => oauth_json(&invalid_input(&what)),
            AppError::Store(StoreError::Unavailable(source)) => {
                let id = uuid::Uuid::new_v4();
                tracing::warn!(reference = %id, cause = %error_chain(source.as_ref()), "database unavailable");
                let e = OAuthError::new(
                    ErrorCode::TemporarilyUnavailable,
                    format!("the database is unavailable; retry shortly (reference {id})"),
                );
                let mut r = oauth_json(&e);
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
            other => {
                // A 5xx body is generic and carries a reference; the cause goes to the log.
                let id = uuid::Uuid::new_v4();
                tracing::error!(reference = %id, cause = %error_chain(&other), "internal error");
                oauth_json(&OAuthError::new(ErrorCode::ServerError, format!("internal error (reference {id})")))
            }
        }
    }
}

pub type AppResult<T> = Result<T, AppError>;

fn invalid_input(what: &str) -> OAuthError {
    OAuthError::invalid_request(format!("input_invalid: the request holds a value no store can keep ({what})"))
}

impl AppError {
    /// The answer for a person in a browser: every failure is an HTML page, never JSON.
    pub fn into_page_response(self) -> Response {
        match self {
            AppError::Page { status, title, message } => pages::error_page(status, title, &message),
            AppError::OAuth(e) => pages::error_page(StatusCode::BAD_REQUEST, "Invalid request", &e.safe_description()),
            AppError::Store(StoreError::Invalid(what)) => {
                tracing::info!(reason = %invalid_input(&what), "request refused");
                pages::error_page(StatusCode::BAD_REQUEST, "Invalid request", "The request contains characters that are not allowed.")
            }
            AppError::Store(StoreError::Unavailable(source)) => {
                let id = uuid::Uuid::new_v4();
                tracing::warn!(reference = %id, cause = %error_chain(source.as_ref()), "database unavailable");
                let mut r = pages::error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Temporarily unavailable",
                    &format!("The service is busy. Try again in a moment (reference {id})."),
                );
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
            other => {
                let id = uuid::Uuid::new_v4();
                tracing::error!(reference = %id, cause = %error_chain(&other), "internal error");
                pages::error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    &format!("An internal error occurred (reference {id})."),
                )
            }
        }
    }
}

/// The error of a handler that serves people: whatever failed, the answer is an HTML page
/// (`AppError::into_page_response`). The handler's error type decides, not a wrapper call: a
/// page handler returns `PageResult`, and `?` turns any error into a page.
#[derive(Debug)]
pub struct PageError(pub AppError);

impl<E: Into<AppError>> From<E> for PageError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        self.0.into_page_response()
    }
}

pub type PageResult<T> = Result<T, PageError>;
