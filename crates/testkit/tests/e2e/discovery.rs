//! Discovery documents and the JWKS: complete and truthful.

use latchkey_testkit::spawn_app;
use serde_json::Value;

#[tokio::test]
async fn discovery_advertises_what_is_implemented() {
    let app = spawn_app().await;
    for path in ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"] {
        let r = app.http().get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        let m: Value = r.json().await.unwrap();
        assert_eq!(m["issuer"], app.issuer);
        assert_eq!(m["authorization_endpoint"], app.url("/oauth/authorize"));
        assert_eq!(m["token_endpoint"], app.url("/oauth/token"));
        assert_eq!(m["revocation_endpoint"], app.url("/oauth/revoke"));
        assert_eq!(m["jwks_uri"], app.url("/.well-known/jwks.json"));
        assert_eq!(m["response_types_supported"], serde_json::json!(["code"]));
        assert_eq!(m["code_challenge_methods_supported"], serde_json::json!(["S256"]));
        assert_eq!(
            m["grant_types_supported"],
            serde_json::json!(["authorization_code", "refresh_token", "client_credentials", "password"])
        );
        assert_eq!(m["id_token_signing_alg_values_supported"], serde_json::json!(["RS256"]));
        assert_eq!(m["authorization_response_iss_parameter_supported"], true);
        assert_eq!(m["userinfo_endpoint"], app.url("/oauth/userinfo"));
        assert_eq!(m["introspection_endpoint"], app.url("/oauth/introspect"));
        assert_eq!(m["introspection_endpoint_auth_methods_supported"], serde_json::json!(["client_secret_basic", "client_secret_post"]));
    }
    let jwks: Value = app.http().get(app.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "RSA");
    assert_eq!(keys[0]["alg"], "RS256");
    assert_eq!(keys[0]["use"], "sig");
    assert!(keys[0]["kid"].is_string() && keys[0].get("d").is_none(), "only public members");
}

#[tokio::test]
async fn health_endpoints_answer() {
    let app = spawn_app().await;
    assert_eq!(app.http().get(app.url("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(app.http().get(app.url("/readyz")).send().await.unwrap().status(), 200);
}
