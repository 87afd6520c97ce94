//! JWT access tokens (RFC 9068) as a per-client option.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use latchkey_core::grant::{AccessTokenFormat, ClientTokenSettings};
use latchkey_server::admin::NewClient;
use latchkey_testkit::spawn_app;
use serde_json::{json, Value};

pub(crate) fn part(jwt: &str, i: usize) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(jwt.split('.').nth(i).unwrap()).unwrap()).unwrap()
}

/// Checks an RS256 signature against the published JWKS.
pub(crate) async fn verify_rs256(app: &latchkey_testkit::TestApp, jwt: &str) {
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::signature::Verifier;
    let header = part(jwt, 0);
    let jwks: Value = app.http().get(app.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let key = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == header["kid"]).expect("the kid is published");
    let n = rsa::BigUint::from_bytes_be(&URL_SAFE_NO_PAD.decode(key["n"].as_str().unwrap()).unwrap());
    let e = rsa::BigUint::from_bytes_be(&URL_SAFE_NO_PAD.decode(key["e"].as_str().unwrap()).unwrap());
    let vk = VerifyingKey::<sha2::Sha256>::new(rsa::RsaPublicKey::new(n, e).unwrap());
    let (input, sig) = jwt.rsplit_once('.').unwrap();
    let sig = Signature::try_from(URL_SAFE_NO_PAD.decode(sig).unwrap().as_slice()).unwrap();
    vk.verify(input.as_bytes(), &sig).expect("the signature verifies with the JWKS");
}

#[tokio::test]
async fn jwt_access_tokens_verify_and_still_revoke() {
    let app = spawn_app().await;
    let user = app.user("ada@example.com", &["Ada Coffee"]).await;
    let c = app
        .client_with(NewClient {
            name: "API client".into(),
            redirect_uris: vec!["https://app.example/cb".into()],
            scopes: vec!["openid orders:read".into()],
            token_settings: ClientTokenSettings { access_token_format: Some(AccessTokenFormat::Jwt), ..Default::default() },
            ..Default::default()
        })
        .await;
    let t = app.tokens_for(&c, "ada@example.com", "openid orders:read").await;
    let at = t["access_token"].as_str().unwrap();
    let header = part(at, 0);
    assert_eq!(header["typ"], "at+jwt", "RFC 9068 §2.1");
    assert_eq!(header["alg"], "RS256");
    let claims = part(at, 1);
    assert_eq!(claims["iss"], app.issuer);
    assert_eq!(claims["aud"], app.issuer);
    assert_eq!(claims["sub"], user.id.to_string());
    assert_eq!(claims["client_id"], c.client_id.as_str());
    assert_eq!(claims["scope"], "openid orders:read");
    assert_eq!(claims["jti"], t["jti"]);
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);
    assert_eq!(claims["authorized_business_id"], user.default_business_id.unwrap().to_string());
    verify_rs256(&app, at).await;
    // The id_token's at_hash covers the JWT.
    assert!(part(t["id_token"].as_str().unwrap(), 1)["at_hash"].is_string());

    // Userinfo and introspection accept it; revocation ends it there too.
    assert_eq!(app.http().get(app.url("/oauth/userinfo")).bearer_auth(at).send().await.unwrap().status(), 200);
    let intro = |token: String| {
        let app = &app;
        let c = &c;
        async move {
            app.http()
                .post(app.url("/oauth/introspect"))
                .basic_auth(&c.client_id, c.secret.as_deref())
                .form(&[("token", token.as_str())])
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(intro(at.to_owned()).await["active"], true);
    app.http().post(app.url("/oauth/revoke")).basic_auth(&c.client_id, c.secret.as_deref()).form(&[("token", at)]).send().await.unwrap();
    assert_eq!(intro(at.to_owned()).await, json!({"active": false}));

    // Other clients keep opaque tokens.
    let opaque = app.client("openid").await;
    let t = app.tokens_for(&opaque, "ada@example.com", "openid").await;
    assert!(t["access_token"].as_str().unwrap().starts_with("lk_at_"));
}

/// A client's own token as a JWT: the subject is the client.
#[tokio::test]
async fn client_credentials_jwt_names_the_client() {
    let app = spawn_app().await;
    let c = app
        .client_with(NewClient {
            name: "Job".into(),
            redirect_uris: vec!["https://job.example/cb".into()],
            scopes: vec!["reports:read".into()],
            grant_types: vec!["client_credentials".into()],
            token_settings: ClientTokenSettings { access_token_format: Some(AccessTokenFormat::Jwt), ..Default::default() },
            ..Default::default()
        })
        .await;
    let t: Value = app.client_credentials(&c).await.json().await.unwrap();
    let claims = part(t["access_token"].as_str().unwrap(), 1);
    assert_eq!(claims["sub"], c.client_id.as_str());
    assert!(claims.get("auth_time").is_none());
}
