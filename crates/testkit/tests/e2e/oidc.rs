//! The whole flow with a real OpenID Connect client library: discovery, PKCE, login, consent
//! with a business, code exchange, id_token verification against the JWKS, refresh rotation,
//! reuse detection and revocation.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use latchkey_server::admin::NewClient;
use latchkey_server::Settings;
use latchkey_testkit::{fields, location, query_param, spawn_app, spawn_app_with, TestApp, PASSWORD};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreRevocableToken};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    RedirectUrl, RefreshToken, RevocationUrl, Scope, TokenResponse,
};

fn http() -> reqwest::Client {
    // openidconnect asks that the HTTP client follows no redirects (SSRF).
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn payload(jwt: &str) -> serde_json::Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(jwt.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

pub(crate) async fn full_flow(app: &TestApp) {
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
    let http = http();
    let meta = CoreProviderMetadata::discover_async(IssuerUrl::new(app.issuer.clone()).unwrap(), &http).await.unwrap();
    let rp =
        CoreClient::from_provider_metadata(meta, ClientId::new(client.client_id.clone()), client.secret.clone().map(ClientSecret::new))
            // RFC 8252 §7.3: any port on a loopback redirect URI.
            .set_redirect_uri(RedirectUrl::new("http://127.0.0.1:43123/callback".into()).unwrap())
            .set_revocation_url(RevocationUrl::new(app.url("/oauth/revoke")).unwrap());

    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf, nonce) = rp
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("offline_access".into()))
        .add_scope(Scope::new("business/orders:read".into()))
        .set_pkce_challenge(challenge)
        .url();

    // The browser: login page, then consent page with a business picker.
    let b = app.browser();
    let login = b.get(auth_url.as_str()).await;
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
    assert_eq!(query_param(&loc, "state").as_deref(), Some(csrf.secret().as_str()));
    assert_eq!(query_param(&loc, "iss").as_deref(), Some(app.issuer.as_str()));
    let code = query_param(&loc, "code").unwrap();

    // The relying party exchanges the code with the PKCE verifier.
    let tokens = rp.exchange_code(AuthorizationCode::new(code)).unwrap().set_pkce_verifier(verifier).request_async(&http).await.unwrap();
    assert!(tokens.access_token().secret().starts_with("lk_st_"));
    let id_token = tokens.id_token().expect("an id_token for openid");
    let verifier = rp.id_token_verifier();
    let claims = id_token.claims(&verifier, &nonce).expect("the id_token verifies against the JWKS");
    assert_eq!(claims.subject().as_str(), user.id.to_string());
    let at_hash =
        AccessTokenHash::from_token(tokens.access_token(), id_token.signing_alg().unwrap(), id_token.signing_key(&verifier).unwrap())
            .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&at_hash));
    let raw = payload(&id_token.to_string());
    assert_eq!(raw["user_id"], user.id.to_string());
    assert_eq!(raw["user_email"], "ada@example.com");
    assert_eq!(raw["authorized_business_id"], picked.as_str());
    assert_eq!(raw["default_business_id"], businesses[0].as_str());
    assert_eq!(raw["business_ids"].as_array().unwrap().len(), 2);

    // Refresh rotates: a new pair, and the old refresh token is spent.
    let rt1 = tokens.refresh_token().unwrap().clone();
    let refreshed = rp.exchange_refresh_token(&rt1).unwrap().request_async(&http).await.unwrap();
    let rt2 = refreshed.refresh_token().unwrap().clone();
    assert_ne!(rt1.secret(), rt2.secret());
    assert_ne!(tokens.access_token().secret(), refreshed.access_token().secret());
    let refreshed_id = refreshed.id_token().expect("an id_token on refresh");
    assert_eq!(payload(&refreshed_id.to_string())["sub"], user.id.to_string());

    // Revocation of the current refresh token ends the session.
    // The oauth2 crate refuses to send a revocation request to a plain-http endpoint, and the
    // test server has no TLS; the request is the RFC 7009 one it would send.
    let err = rp.revoke_token(CoreRevocableToken::RefreshToken(rt2.clone())).unwrap_err();
    assert!(format!("{err:?}").contains("InsecureUrl"));
    let r = http
        .post(app.url("/oauth/revoke"))
        .basic_auth(&client.client_id, client.secret.as_deref())
        .form(&[("token", rt2.secret().as_str()), ("token_type_hint", "refresh_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let err = rp.exchange_refresh_token(&rt2).unwrap().request_async(&http).await.unwrap_err();
    assert!(format!("{err:?}").contains("invalid_grant"), "{err:?}");
    let err = rp.exchange_refresh_token(&RefreshToken::new(rt1.secret().clone())).unwrap().request_async(&http).await.unwrap_err();
    assert!(format!("{err:?}").contains("invalid_grant"), "{err:?}");
}

#[tokio::test]
async fn openidconnect_crate_completes_the_flow_rs256() {
    full_flow(&spawn_app().await).await;
}

#[tokio::test]
async fn openidconnect_crate_completes_the_flow_es256() {
    full_flow(&spawn_app_with(Settings { id_token_signing_alg: Some("ES256".into()), ..Default::default() }).await).await;
}

#[tokio::test]
async fn openidconnect_crate_completes_the_flow_eddsa() {
    full_flow(&spawn_app_with(Settings { id_token_signing_alg: Some("EdDSA".into()), ..Default::default() }).await).await;
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
async fn openidconnect_crate_uses_the_password_and_client_credentials_grants() {
    use openidconnect::{ResourceOwnerPassword, ResourceOwnerUsername};
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
    let http = http();
    let meta = CoreProviderMetadata::discover_async(IssuerUrl::new(app.issuer.clone()).unwrap(), &http).await.unwrap();
    let rp =
        CoreClient::from_provider_metadata(meta, ClientId::new(client.client_id.clone()), client.secret.clone().map(ClientSecret::new));

    let username = ResourceOwnerUsername::new("hub@example.com".into());
    let password = ResourceOwnerPassword::new(PASSWORD.into());
    let t = rp.exchange_password(&username, &password).unwrap().add_scope(Scope::new("openid".into())).request_async(&http).await.unwrap();
    assert!(t.refresh_token().is_some());
    let id_token = t.id_token().expect("openid was asked");
    // No nonce in a password grant: accept its absence.
    let claims = id_token.claims(&rp.id_token_verifier(), |_: Option<&Nonce>| Ok(())).unwrap();
    assert_eq!(claims.subject().as_str(), user.id.to_string());
    let wrong = ResourceOwnerPassword::new("wrong".into());
    let err = rp.exchange_password(&username, &wrong).unwrap().request_async(&http).await.unwrap_err();
    assert!(format!("{err:?}").contains("invalid_grant"), "{err:?}");

    let t = rp.exchange_client_credentials().unwrap().add_scope(Scope::new("reports:read".into())).request_async(&http).await.unwrap();
    assert!(t.refresh_token().is_none());
    assert_eq!(t.scopes().unwrap()[0].as_str(), "reports:read");
}
