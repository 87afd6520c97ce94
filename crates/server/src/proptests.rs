//! Property tests of the HTTP layer's parsers of outside input: token-endpoint bodies (form,
//! JSON, multipart), the sign-in pages' forms, cookies and Bearer headers. None panics on
//! generated input; each keeps what it was given. `PROPTEST_CASES` raises the case count
//! (`docs/inputs.md`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::error::AppError;
use crate::web::{bearer_token, cookie, OAuthBody, PageForm};
use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, HeaderValue};
use latchkey_core::params::Params;
use latchkey_core::ErrorCode;
use proptest::prelude::*;

fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[&=+%:;, .\\x00-\\x1f\\x7fa-zA-Z0-9é€\"'\\\\/?#\\[\\]{}<>-]{0,64}",
        "(%[0-9a-fA-FgG]{0,2}|[a-z&=+]){0,32}",
    ]
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..256)
}

/// Runs an extractor on a request with `content_type` and `body`.
fn extract<T: FromRequest<(), Rejection = AppError>>(content_type: &str, body: Vec<u8>) -> Result<T, AppError> {
    let req =
        Request::builder().method("POST").uri("/oauth/token").header(header::CONTENT_TYPE, content_type).body(Body::from(body)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(T::from_request(req, &()))
}

fn params_of(content_type: &str, body: Vec<u8>) -> Result<Params, AppError> {
    extract::<OAuthBody>(content_type, body).map(|b| b.params)
}

/// A malformed body is `invalid_request`, never anything else.
fn refused_as_invalid_request(r: &Result<Params, AppError>) -> bool {
    match r {
        Ok(_) => true,
        Err(AppError::OAuth(e)) => e.code == ErrorCode::InvalidRequest,
        Err(_) => false,
    }
}

fn members() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec(("[a-z_]{1,12}", hostile()), 0..8)
}

proptest! {
    /// Form bodies: any bytes are read or refused as `invalid_request`; a form reads as the
    /// core parser reads it.
    #[test]
    fn form_bodies(raw in bytes(), pairs in members()) {
        prop_assert!(refused_as_invalid_request(&params_of("application/x-www-form-urlencoded", raw)));
        let mut body = url::form_urlencoded::Serializer::new(String::new());
        let body = body.extend_pairs(&pairs).finish();
        let got = params_of("application/x-www-form-urlencoded; charset=UTF-8", body.clone().into_bytes()).unwrap();
        let want = Params::from_urlencoded(&body);
        prop_assert_eq!(got.pairs(), want.pairs());
    }

    /// JSON bodies: any bytes, and nesting far deeper than the parser's limit, are read or
    /// refused as `invalid_request`; an object of strings reads as its members, in order.
    #[test]
    fn json_bodies(raw in bytes(), depth in 1usize..20_000, pairs in members()) {
        prop_assert!(refused_as_invalid_request(&params_of("application/json", raw)));
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(depth), "]".repeat(depth));
        prop_assert!(params_of("application/json", deep.into_bytes()).is_err());
        let object = serde_json::Value::Object(pairs.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect());
        let got = params_of("application/json", serde_json::to_vec(&object).unwrap()).unwrap();
        let mut want: Vec<(String, String)> = object.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect();
        want.retain(|(_, v)| !v.is_empty());
        let mut got = got.pairs().to_vec();
        got.sort();
        want.sort();
        prop_assert_eq!(got, want);
    }

    /// Multipart bodies: any bytes under any boundary are read or refused as
    /// `invalid_request`; well-formed text fields read as themselves.
    #[test]
    fn multipart_bodies(raw in bytes(), boundary in "[a-zA-Z0-9'()+_,./:=?-]{1,40}", pairs in members()) {
        let content_type = format!("multipart/form-data; boundary={boundary}");
        prop_assert!(refused_as_invalid_request(&params_of(&content_type, raw.clone())));
        prop_assert!(refused_as_invalid_request(&params_of("multipart/form-data", raw)));
        let boundary = format!("x{boundary}");
        let mut body = String::new();
        for (k, v) in &pairs {
            body.push_str(&format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"));
        }
        body.push_str(&format!("--{boundary}--\r\n"));
        // A value holding a line break or the boundary itself is the one way a part can be cut
        // short; such inputs are only required not to panic.
        let clean = !pairs.iter().any(|(_, v)| v.contains(&format!("--{boundary}")) || v.contains('\r') || v.contains('\n'));
        let got = params_of(&format!("multipart/form-data; boundary=\"{boundary}\""), body.into_bytes());
        if clean {
            let want: Vec<_> = pairs.iter().filter(|(_, v)| !v.is_empty()).cloned().collect();
            let got = got.unwrap();
            prop_assert_eq!(got.pairs(), want.as_slice());
        }
    }

    /// Every other content type is refused as `invalid_request`.
    #[test]
    fn other_content_types(content_type in "[ -~]{0,40}", raw in bytes()) {
        let r = params_of(&content_type, raw);
        prop_assert!(refused_as_invalid_request(&r));
    }

    /// The sign-in pages' forms: any bytes are read or refused with a page, never a panic.
    #[test]
    fn page_forms(raw in bytes()) {
        match extract::<PageForm>("application/x-www-form-urlencoded", raw) {
            Ok(_) | Err(AppError::Page { .. }) => {}
            Err(e) => prop_assert!(false, "{e:?}"),
        }
    }

    /// Cookies: any header is read without a panic, and a cookie set among others is found.
    #[test]
    fn cookies(raw in hostile(), name in "lk_[a-z]{1,8}", value in "[A-Za-z0-9_-]{1,40}", others in proptest::collection::vec(("[a-z]{1,8}", "[A-Za-z0-9_-]{0,20}"), 0..5)) {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&raw) {
            headers.insert(header::COOKIE, v);
            let _ = cookie(&headers, &name);
        }
        let mut jar: Vec<String> = others.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let at = jar.len() / 2;
        jar.insert(at, format!("{name}={value}"));
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&jar.join("; ")).unwrap());
        prop_assert_eq!(cookie(&headers, &name), Some(value.as_str()));
    }

    /// Bearer headers: anything is a token, "no Bearer header", or refused, without a panic;
    /// a Bearer header gives back its token.
    #[test]
    fn bearer_headers(raw in hostile(), token in "[A-Za-z0-9._~+/-]{1,80}=*") {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&raw) {
            headers.insert(header::AUTHORIZATION, v);
            if let Ok(Some(t)) = bearer_token(&headers) {
                prop_assert!(!t.is_empty());
            }
        }
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
        prop_assert_eq!(bearer_token(&headers).ok().flatten(), Some(token.as_str()));
    }
}
