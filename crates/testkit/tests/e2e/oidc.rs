//! The whole flow with a real OpenID Connect client library, panva's openid-client (see
//! `latchkey_testkit::rp`): discovery, PKCE, login, consent with a business, code exchange,
//! id_token verification against the JWKS, refresh rotation, reuse detection and revocation.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use latchkey_server::admin::NewClient;
use latchkey_server::Settings;
use latchkey_testkit::rp::OpenIdClient;
use latchkey_testkit::{fields, location, query_param, spawn_app, spawn_app_with, TestApp, PASSWORD};

fn payload(jwt: &str) -> serde_json::Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(jwt.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

/// OpenID Connect Core §3.1.3.6: the base64url of the left half of the access token's hash,
/// with the hash of the id_token's `alg` (SHA-512 for EdDSA with Ed25519). Computed with ring,
/// not with the server's code.
fn at_hash(alg: &str, access_token: &str) -> String {
    let hash = match alg {
        "RS256" | "ES256" => &ring::digest::SHA256,
        "EdDSA" => &ring::digest::SHA512,
        other => panic!("no at_hash for {other}"),
    };
    let digest = ring::digest::digest(hash, access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest.as_ref()[..digest.as_ref().len() / 2])
}

/// The flow with the relying party openid-client, on a server whose id_tokens are signed with
/// `alg`.
pub(crate) async fn full_flow(app: &TestApp, alg: &str) {
    let user = app.user("ada@example.com", &["Ada Coffee", "Ada Bakery"]).await;
    let client = app
        .client_with(NewClient {
            name: "Orders Dashboard".into(),
            developer: Some("Acme Apps".into()),
            redirect_uris: vec!["http://127.0.0.1/callback".into()],
            scopes: vec!["openid profile email offline_access business/orders:read".into()],
            require_pkce: true,
            ..Default::default()
        })
        .await;
    let rp = OpenIdClient::discover(&app.issuer, &client.client_id, client.secret.as_deref()).await;
    // RFC 8252 §7.3: any port on a loopback redirect URI (the client registered it without one).
    let auth = rp.authorization_url("http://127.0.0.1:43123/callback", "openid email offline_access business/orders:read", true).await;
    assert_eq!(query_param(&auth.url, "code_challenge_method").as_deref(), Some("S256"), "{}", auth.url);

    // The browser: login page, then consent page with a business picker.
    let b = app.browser();
    let login = b.get(&auth.url).await;
    assert_eq!(login.status(), 200);
    let login = login.text().await.unwrap();
    assert!(login.contains("<label for=\"email\">Email</label>") && login.contains("<label for=\"password\">Password</label>"));
    let r = b.submit_login(&login, "ada@example.com", PASSWORD).await;
    assert_eq!(r.status(), 303);
    let consent = b.follow(&r).await.text().await.unwrap();
    assert!(consent.contains("Orders Dashboard") && consent.contains("Acme Apps"), "{consent}");
    assert!(consent.contains("Read your business&#39;s orders"), "{consent}");
    assert!(consent.contains(">Allow</button>") && consent.contains(">Deny</button>"));
    let businesses = fields(&consent, "business_id");
    assert_eq!(businesses.len(), 2);
    let picked = businesses[1].clone();
    let r = b.submit_consent(&consent, "allow", Some(&picked)).await;
    assert_eq!(r.status(), 303);
    let loc = location(&r).unwrap();
    assert!(loc.starts_with("http://127.0.0.1:43123/callback?"), "{loc}");
    assert_eq!(query_param(&loc, "state").as_deref(), Some(auth.state.as_str()));
    assert_eq!(query_param(&loc, "iss").as_deref(), Some(app.issuer.as_str()));
    assert!(query_param(&loc, "code").is_some(), "{loc}");

    // The relying party receives the callback URL, as a real one does. The library checks its
    // state and iss, exchanges the code with the PKCE verifier, and validates the id_token: its
    // signature against the published JWKS, iss, aud, exp, and this request's nonce.
    let tokens = rp.callback(&loc).await.unwrap();
    assert!(tokens.access_token().starts_with("lk_st_"));
    let id_token = tokens.id_token().expect("an id_token for openid");
    let claims = tokens.claims.as_ref().expect("the id_token verifies against the JWKS");
    assert_eq!(super::jwt::part(id_token, 0)["alg"], alg, "the library verified a signature of this algorithm");
    assert_eq!(claims["sub"], user.id.to_string());
    // at_hash is optional to check in the code flow (OpenID Connect Core §3.1.3.8) and the
    // library does not; the test does.
    assert_eq!(claims["at_hash"].as_str(), Some(at_hash(alg, tokens.access_token()).as_str()));
    let raw = payload(id_token);
    assert_eq!(raw["user_id"], user.id.to_string());
    assert_eq!(raw["user_email"], "ada@example.com");
    assert_eq!(raw["authorized_business_id"], picked.as_str());
    assert_eq!(raw["default_business_id"], businesses[0].as_str());
    assert_eq!(raw["business_ids"].as_array().unwrap().len(), 2);

    // Refresh rotates: a new pair, and the old refresh token is spent. The library validates
    // the new id_token too (signature, iss, aud, exp).
    let rt1 = tokens.refresh_token().unwrap().to_owned();
    let refreshed = rp.refresh(&rt1).await.unwrap();
    let rt2 = refreshed.refresh_token().unwrap().to_owned();
    assert_ne!(rt1, rt2);
    assert_ne!(tokens.access_token(), refreshed.access_token());
    let refreshed_id = refreshed.id_token().expect("an id_token on refresh");
    assert_eq!(payload(refreshed_id)["sub"], user.id.to_string());

    // Revocation of the current refresh token ends the session: the library's RFC 7009 request
    // succeeds (200), then neither refresh token works.
    rp.revoke(&rt2, "refresh_token").await.unwrap();
    let err = rp.refresh(&rt2).await.unwrap_err();
    assert_eq!(err.error.as_deref(), Some("invalid_grant"), "{err}");
    let err = rp.refresh(&rt1).await.unwrap_err();
    assert_eq!(err.error.as_deref(), Some("invalid_grant"), "{err}");
}

#[tokio::test]
async fn openid_client_completes_the_flow_rs256() {
    full_flow(&spawn_app().await, "RS256").await;
}

#[tokio::test]
async fn openid_client_completes_the_flow_es256() {
    full_flow(&spawn_app_with(Settings { id_token_signing_alg: Some("ES256".into()), ..Default::default() }).await, "ES256").await;
}

#[tokio::test]
async fn openid_client_completes_the_flow_eddsa() {
    full_flow(&spawn_app_with(Settings { id_token_signing_alg: Some("EdDSA".into()), ..Default::default() }).await, "EdDSA").await;
}

/// The library itself verifies each id_token's signature against the published JWKS, whichever
/// algorithm the server signs with: the same answer with one character of the signature changed
/// on the way is refused.
#[tokio::test]
async fn openid_client_refuses_an_id_token_whose_signature_does_not_verify() {
    for alg in ["RS256", "ES256", "EdDSA"] {
        let app = spawn_app_with(Settings { id_token_signing_alg: Some(alg.into()), ..Default::default() }).await;
        app.user("hub@example.com", &[]).await;
        let client = app
            .client_with(NewClient {
                name: "First party".into(),
                redirect_uris: vec!["https://hub.example/cb".into()],
                scopes: vec!["openid".into()],
                grant_types: vec!["password".into()],
                ..Default::default()
            })
            .await;
        let rp = OpenIdClient::discover(&app.issuer, &client.client_id, client.secret.as_deref()).await;
        let t = rp.password("hub@example.com", PASSWORD, Some("openid")).await.unwrap();
        assert_eq!(super::jwt::part(t.id_token().unwrap(), 0)["alg"], alg);
        let forged = OpenIdClient::discover_forging_id_token_signatures(&app.issuer, &client.client_id, client.secret.as_deref()).await;
        let err = forged.password("hub@example.com", PASSWORD, Some("openid")).await.unwrap_err();
        assert_eq!(err.code.as_deref(), Some("OAUTH_INVALID_RESPONSE"), "{alg}: {err}");
        assert!(err.to_string().contains("JWT signature verification failed"), "{alg}: {err}");
    }
}

/// docs/security.md TE-06: after a flow, no issued secret appears in the database (its files, or a
/// dump of its PostgreSQL schema).
#[tokio::test]
async fn nothing_secret_is_stored_in_clear() {
    let app = spawn_app().await;
    app.user("ada@example.com", &["Ada Coffee"]).await;
    let client = app.client("openid email").await;
    let tokens = app.tokens_for(&client, "ada@example.com", "openid email").await;
    // A refresh, so that a sealed replay answer is stored too.
    let refreshed: serde_json::Value = app
        .http()
        .post(app.url("/oauth/token"))
        .basic_auth(&client.client_id, client.secret.as_deref())
        .form(&[("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let haystack = app.db.dump();
    let text = String::from_utf8_lossy(&haystack);
    for secret in [
        tokens["access_token"].as_str().unwrap(),
        tokens["refresh_token"].as_str().unwrap(),
        refreshed["access_token"].as_str().unwrap(),
        refreshed["refresh_token"].as_str().unwrap(),
        client.secret.as_deref().unwrap(),
        PASSWORD,
    ] {
        let body = secret.trim_start_matches("lk_st_").trim_start_matches("lk_rt_").trim_start_matches("lk_cs_");
        assert!(!text.contains(body), "found a secret in the database files");
        // Nor its random bits as bytes (SQLite's files) or hex (pg_dump's bytea): the stored
        // key keeps only the secret's ordering bytes.
        if let Ok(bytes) = URL_SAFE_NO_PAD.decode(body) {
            let random = &bytes[bytes.len().saturating_sub(32)..];
            let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
            assert!(!haystack.windows(random.len()).any(|w| w == random), "found a secret's random bytes in the database files");
            assert!(!text.contains(&hex), "found a secret's random bytes, in hex, in the database dump");
        }
    }
}

/// The password (YOC) and client credentials grants through the same client library.
#[tokio::test]
async fn openid_client_uses_the_password_and_client_credentials_grants() {
    let app = spawn_app().await;
    let user = app.user("hub@example.com", &[]).await;
    let client = app
        .client_with(NewClient {
            name: "First party".into(),
            redirect_uris: vec!["https://hub.example/cb".into()],
            scopes: vec!["openid email reports:read".into()],
            grant_types: vec!["password".into(), "client_credentials".into(), "refresh_token".into()],
            ..Default::default()
        })
        .await;
    let rp = OpenIdClient::discover(&app.issuer, &client.client_id, client.secret.as_deref()).await;

    let t = rp.password("hub@example.com", PASSWORD, Some("openid")).await.unwrap();
    assert!(t.refresh_token().is_some());
    t.id_token().expect("openid was asked");
    // The library validated the id_token (signature against the JWKS, iss, aud, exp); a
    // password grant has no nonce, and it expects none.
    let claims = t.claims.as_ref().expect("the id_token verifies against the JWKS");
    assert_eq!(claims["sub"], user.id.to_string());
    let err = rp.password("hub@example.com", "wrong", None).await.unwrap_err();
    assert_eq!(err.error.as_deref(), Some("invalid_grant"), "{err}");

    let t = rp.client_credentials(Some("reports:read")).await.unwrap();
    assert!(t.refresh_token().is_none());
    assert_eq!(t.scopes()[0], "reports:read");
}
