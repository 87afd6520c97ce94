//! Discovery (OpenID Connect Discovery 1.0, RFC 8414) and the JWKS (RFC 7517), built once at
//! startup.

use crate::state::AppState;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use latchkey_core::model::SigningAlg;
use latchkey_proto::ProviderMetadata;

/// The metadata: every member states something the server really does.
pub(crate) fn metadata(issuer: &str, algs: &[SigningAlg]) -> ProviderMetadata {
    let v = |xs: &[&str]| xs.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let auth_methods = v(&["client_secret_basic", "client_secret_post", "none"]);
    ProviderMetadata {
        issuer: issuer.to_owned(),
        authorization_endpoint: format!("{issuer}/oauth/authorize"),
        token_endpoint: format!("{issuer}/oauth/token"),
        jwks_uri: format!("{issuer}/.well-known/jwks.json"),
        revocation_endpoint: format!("{issuer}/oauth/revoke"),
        introspection_endpoint: format!("{issuer}/oauth/introspect"),
        userinfo_endpoint: format!("{issuer}/oauth/userinfo"),
        scopes_supported: v(&["openid", "profile", "email", "offline_access"]),
        response_types_supported: v(&["code"]),
        response_modes_supported: v(&["query"]),
        grant_types_supported: v(&["authorization_code", "refresh_token", "client_credentials", "password"]),
        subject_types_supported: v(&["public"]),
        id_token_signing_alg_values_supported: algs.iter().map(|a| a.as_str().to_owned()).collect(),
        token_endpoint_auth_methods_supported: auth_methods.clone(),
        revocation_endpoint_auth_methods_supported: auth_methods,
        // RFC 7662 §2.1: introspection needs an authenticated (confidential) caller.
        introspection_endpoint_auth_methods_supported: v(&["client_secret_basic", "client_secret_post"]),
        code_challenge_methods_supported: v(&["S256"]),
        claims_supported: v(&[
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "at_hash",
            "name",
            "email",
            "user_id",
            "user_name",
            "user_email",
            "default_business_id",
            "business_ids",
            "authorized_business_id",
        ]),
        prompt_values_supported: v(&["none", "login", "consent", "select_account"]),
        authorization_response_iss_parameter_supported: true,
        claims_parameter_supported: false,
        request_parameter_supported: false,
        request_uri_parameter_supported: false,
    }
}

fn json(body: &str) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body.to_owned()).into_response()
}

pub(crate) async fn openid_configuration(Extension(state): Extension<AppState>) -> Response {
    json(&state.openid_configuration)
}

pub(crate) async fn oauth_metadata(Extension(state): Extension<AppState>) -> Response {
    json(&state.oauth_metadata)
}

pub(crate) async fn jwks(Extension(state): Extension<AppState>) -> Response {
    let ring = state.keys.current(&state.rt).await;
    let mut r = json(&ring.jwks_json);
    // Short enough that a new key, published `signing_key_publish_delay` before it signs,
    // reaches every cache in time.
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
    r
}
