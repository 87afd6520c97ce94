//! Small HTTP helpers: cookies, request parameters, redirects and the security headers.

use crate::error::AppError;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Multipart, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use latchkey_core::params::Params;
use latchkey_core::OAuthError;

/// The largest request body accepted anywhere (token requests are a few hundred bytes).
pub const BODY_LIMIT: usize = 64 * 1024;

/// Reads one cookie from the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The token of an `Authorization: Bearer` header (RFC 6750 §2.1); `Err` for another scheme
/// or a malformed header.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, NotBearer> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let value = value.to_str().map_err(|_| NotBearer)?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => Ok(Some(token.trim())),
        _ => Err(NotBearer),
    }
}

/// The `Authorization` header holds something other than a Bearer token.
#[derive(Debug, Clone, Copy)]
pub struct NotBearer;

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Lax`, `Secure` on https issuers
/// (docs/security.md AZ-12).
pub fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool, path: &str) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let v = format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}");
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("invalid=1; Max-Age=0"))
}

/// A redirect: 303 after a POST (RFC 9700 §4.12 forbids 307), 302 after a GET. Never cached:
/// many carry a code, a `state` or an interaction (docs/pages.md).
pub fn redirect(location: &str, after_post: bool) -> Response {
    let status = if after_post { StatusCode::SEE_OTHER } else { StatusCode::FOUND };
    match HeaderValue::from_str(location) {
        Ok(v) => (status, [(header::LOCATION, v), (header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]).into_response(),
        Err(_) => {
            AppError::page(StatusCode::BAD_REQUEST, "Invalid redirect", "The redirect address contains characters that cannot be sent.")
                .into_response()
        }
    }
}

/// The headers every answer carries: no framing (RFC 9700 §4.16, RFC 6819 §5.2.2.6), no
/// referrer to any other origin (RFC 9700 §4.2.4), no third-party resources, no MIME sniffing.
/// The referrer policy is `same-origin` rather than `no-referrer`: under `no-referrer` a
/// browser sends `Origin: null` with the pages' own form posts (Fetch, "append a request
/// `Origin` header"), which then cannot be told from a post of a sandboxed foreign page; under
/// `same-origin` it sends the real origin to this server, and still no `Referer` to any other
/// (the app's redirect URI included). The policy has no `form-action`: browsers apply it to the
/// redirect that follows a form, and the consent form's answer is a redirect to the app. A plain function on
/// the response (tower's `MapResponseLayer`), so the layer neither boxes nor moves the inner
/// future, as an async middleware would on every request.
pub fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    // Room for them at once: the map would otherwise grow (and rehash) twice for them.
    h.reserve(5);
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' https:; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

/// [`security_headers`], and `Strict-Transport-Security` for a server reached over https
/// (RFC 6797; a year, the usual value; not `includeSubDomains`, which would bind sites this
/// server does not know).
pub fn security_headers_https(r: Response) -> Response {
    let mut r = security_headers(r);
    r.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    r
}

/// The parameters of a token-endpoint-like request, from a form, multipart or JSON body
/// (YOC sends all three), and the request's headers, which client authentication reads: they
/// are moved out of the request, where a `HeaderMap` extractor beside this one would copy
/// them. Malformed bodies are `invalid_request`, never axum's plain text.
pub struct OAuthBody {
    pub headers: HeaderMap,
    pub params: Params,
}

impl<S: Send + Sync> FromRequest<S> for OAuthBody {
    type Rejection = AppError;

    async fn from_request(mut req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bad = |m: &'static str| AppError::OAuth(OAuthError::invalid_request(m));
        let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let mime = content_type.split(';').next().unwrap_or_default().trim();
        let is = |expected: &str| mime.eq_ignore_ascii_case(expected);
        let body = |req: Request| async move {
            Bytes::from_request(req, state).await.map_err(|_| bad("body_unreadable: the body is too large or could not be read"))
        };
        if is("application/x-www-form-urlencoded") {
            let headers = std::mem::take(req.headers_mut());
            let body = body(req).await?;
            let text = std::str::from_utf8(&body).map_err(|_| bad("body_not_utf8: the form body is not UTF-8"))?;
            Ok(Self { headers, params: Params::from_urlencoded(text) })
        } else if is("application/json") {
            let headers = std::mem::take(req.headers_mut());
            let body = body(req).await?;
            // Every member in order, repeats included, so that a repeated parameter is
            // refused as in a form (OAuth 2.1 §3.2, docs/security.md AZ-04).
            let JsonPairs(members) = serde_json::from_slice(&body).map_err(|_| bad("json_malformed: the body must be one JSON object"))?;
            let mut pairs = Vec::with_capacity(members.len());
            for (k, v) in members {
                match v {
                    serde_json::Value::String(s) => pairs.push((k, s)),
                    serde_json::Value::Number(n) => pairs.push((k, n.to_string())),
                    serde_json::Value::Bool(b) => pairs.push((k, b.to_string())),
                    serde_json::Value::Null => {}
                    _ => return Err(bad("json_value_unsupported: every member of the JSON body must be a string")),
                }
            }
            Ok(Self { headers, params: Params::new(pairs) })
        } else if is("multipart/form-data") {
            // The multipart reader finds its boundary in the headers: they stay in the request.
            let headers = req.headers().clone();
            let mut multipart =
                Multipart::from_request(req, state).await.map_err(|_| bad("multipart_malformed: the multipart body is malformed"))?;
            let mut pairs = Vec::new();
            while let Some(field) = multipart.next_field().await.map_err(|_| bad("multipart_malformed: the multipart body is malformed"))? {
                let name = field.name().unwrap_or_default().to_owned();
                let value = field.text().await.map_err(|_| bad("multipart_malformed: a multipart field is not text"))?;
                pairs.push((name, value));
            }
            Ok(Self { headers, params: Params::new(pairs) })
        } else {
            Err(bad("content_type_unsupported: send application/x-www-form-urlencoded, multipart/form-data or application/json"))
        }
    }
}

/// The connection's peer address. The server always runs with connect info; a router driven
/// without it (a test calling the service directly) has none.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip())))
    }
}

/// A form posted by one of Latchkey's own pages.
pub struct PageForm(pub Params);

impl<S: Send + Sync> FromRequest<S> for PageForm {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|_| AppError::page(StatusCode::PAYLOAD_TOO_LARGE, "Request too large", "The form could not be read."))?;
        let text =
            std::str::from_utf8(&body).map_err(|_| AppError::page(StatusCode::BAD_REQUEST, "Invalid form", "The form is not UTF-8."))?;
        Ok(Self(Params::from_urlencoded(text)))
    }
}

/// The members of a JSON object in order, duplicates kept (`serde_json::Value` keeps only the
/// last of a repeated key).
struct JsonPairs(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for JsonPairs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = JsonPairs;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<JsonPairs, A::Error> {
                let mut members = Vec::new();
                while let Some(entry) = map.next_entry::<String, serde_json::Value>()? {
                    members.push(entry);
                }
                Ok(JsonPairs(members))
            }
        }
        d.deserialize_map(Members)
    }
}
