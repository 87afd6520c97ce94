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

/// Checks an RS256 signature against the published JWKS, with ring: another implementation
/// than the server's (AWS-LC).
pub(crate) async fn verify_rs256(app: &latchkey_testkit::TestApp, jwt: &str) {
    use ring::signature::{RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
    let header = part(jwt, 0);
    let jwks: Value = app.http().get(app.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let key = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == header["kid"]).expect("the kid is published");
    let member = |name: &str| URL_SAFE_NO_PAD.decode(key[name].as_str().unwrap()).unwrap();
    let public = RsaPublicKeyComponents { n: member("n"), e: member("e") };
    let (input, sig) = jwt.rsplit_once('.').unwrap();
    public
        .verify(&RSA_PKCS1_2048_8192_SHA256, input.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap())
        .expect("the signature verifies with the JWKS");
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
    assert!(t["access_token"].as_str().unwrap().starts_with("lk_st_"));
}

/// A client's own token as a JWT (here ES256): the subject is the client, and it is
/// self-contained. Nothing is stored, yet introspection, UserInfo and revocation judge it like
/// any other token, through a real OAuth client library.
#[tokio::test]
async fn client_credentials_jwt_is_self_contained_and_still_revokes() {
    a_clients_own_token_is_self_contained_and_still_revokes(AccessTokenFormat::Jwt).await;
}

/// The same with opaque tokens: the claims are sealed instead of signed (`lk_st_`), and the
/// client cannot read them; nothing is stored either, and every rule holds alike.
#[tokio::test]
async fn client_credentials_opaque_token_is_sealed_and_still_revokes() {
    a_clients_own_token_is_self_contained_and_still_revokes(AccessTokenFormat::Opaque).await;
}

async fn a_clients_own_token_is_self_contained_and_still_revokes(format: AccessTokenFormat) {
    use latchkey_core::sealed_token::{self, Sealed};
    use latchkey_testkit::rp::OpenIdClient;

    let app =
        latchkey_testkit::spawn_app_with(latchkey_server::Settings { id_token_signing_alg: Some("ES256".into()), ..Default::default() })
            .await;
    let job = |name: &str| NewClient {
        name: name.into(),
        redirect_uris: vec!["https://job.example/cb".into()],
        scopes: vec!["reports:read reports:write".into()],
        grant_types: vec!["client_credentials".into()],
        token_settings: ClientTokenSettings { access_token_format: Some(format), ..Default::default() },
        ..Default::default()
    };
    let c = app.client_with(job("Job")).await;
    let other = app.client_with(job("Other job")).await;
    let job_rp = OpenIdClient::discover(&app.issuer, &c.client_id, c.secret.as_deref()).await;
    let other_rp = OpenIdClient::discover(&app.issuer, &other.client_id, other.secret.as_deref()).await;
    let rows = || async { app.rt.store.count_rows(app.rt.tenant.id).await.unwrap() };
    let before = rows().await;

    let at = job_rp.client_credentials(None).await.unwrap().access_token().to_owned();
    // What the token says: read from the JWT as anyone can, or opened with the server's key.
    let claims = match format {
        AccessTokenFormat::Jwt => {
            let header = part(&at, 0);
            assert_eq!((header["typ"].as_str(), header["alg"].as_str()), (Some("at+jwt"), Some("ES256")));
            part(&at, 1)
        }
        AccessTokenFormat::Opaque => {
            assert!(at.starts_with("lk_st_") && !at.contains('.'), "{at}");
            let sealed = sealed_token::open(&app.rt.sealed_token_key, &at).expect("it opens");
            assert_eq!(sealed.family, None, "a client's own token has no family");
            serde_json::to_value(sealed.claims).unwrap()
        }
    };
    assert_eq!(claims["sub"], c.client_id.as_str());
    assert!(claims.get("auth_time").is_none());
    assert_eq!(rows().await, before, "a client's own token is not stored");

    // Introspection: active, with what the token says, for any confidential client (IN-03).
    let active = |token: String| {
        let other_rp = &other_rp;
        async move { other_rp.introspect(&token).await.unwrap()["active"].as_bool().expect("active is a boolean") }
    };
    let i = other_rp.introspect(&at).await.unwrap();
    assert_eq!(i["active"], true);
    assert_eq!(i["client_id"].as_str(), Some(c.client_id.as_str()));
    assert_eq!(i["sub"].as_str(), Some(c.client_id.as_str()));
    assert_eq!(i["jti"].as_str(), claims["jti"].as_str());
    assert_eq!(i["exp"].as_i64(), claims["exp"].as_i64());
    assert_eq!(i["scope"].as_str().map(|s| s.split(' ').collect::<Vec<_>>()), Some(vec!["reports:read", "reports:write"]));

    // Forgeries are inactive (IN-02). A JWT: a wider payload under the real signature, or the
    // real payload with another signature. A sealed token: a changed character, a wider claim
    // set sealed under another key, the sealed part under another prefix.
    let mut wider = claims.clone();
    wider["scope"] = "reports:read reports:write admin".into();
    let fakes = match format {
        AccessTokenFormat::Jwt => {
            let (head, rest) = at.split_once('.').unwrap();
            let (body, sig) = rest.split_once('.').unwrap();
            let forged = format!("{head}.{}.{sig}", URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wider).unwrap()));
            let other_sig = part_raw(active_token_of(&app, &other).await.as_str(), 2);
            vec![forged, format!("{head}.{body}.{other_sig}")]
        }
        AccessTokenFormat::Opaque => {
            let mut changed = at.clone().into_bytes();
            let last = changed.len() - 1;
            changed[last] = if changed[last] == b'A' { b'B' } else { b'A' };
            let wider = Sealed { claims: serde_json::from_value(wider).unwrap(), family: None };
            let resealed = sealed_token::seal(&[7; 32], &wider, &mut rand::thread_rng()).unwrap();
            vec![String::from_utf8(changed).unwrap(), resealed, at.replacen("lk_st_", "lk_at_", 1)]
        }
    };
    for fake in fakes {
        let r = app
            .http()
            .post(app.url("/oauth/introspect"))
            .basic_auth(&c.client_id, c.secret.as_deref())
            .form(&[("token", fake.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.json::<Value>().await.unwrap(), json!({"active": false}));
    }

    // UserInfo knows the token but wants openid, which a client's own token never has (403);
    // once revoked, the token is unknown there too (401).
    let userinfo = |token: String| {
        let app = &app;
        async move { app.http().get(app.url("/oauth/userinfo")).bearer_auth(token).send().await.unwrap().status() }
    };
    assert_eq!(userinfo(at.clone()).await, 403);

    // Revocation through the library (RFC 7009; `Ok` is a 200). RFC 7009 §2.1: another client
    // cannot revoke it (200, and nothing happens)...
    other_rp.revoke(&at, "access_token").await.unwrap();
    assert!(active(at.clone()).await);
    // ...its own client can, at once, and again without harm; other tokens live on.
    let second = job_rp.client_credentials(None).await.unwrap().access_token().to_owned();
    for _ in 0..2 {
        job_rp.revoke(&at, "access_token").await.unwrap();
    }
    assert!(!active(at.clone()).await);
    assert_eq!(userinfo(at.clone()).await, 401);
    assert!(active(second.clone()).await);

    // It ends at its exp.
    app.clock.advance(3_600);
    assert!(!active(second.clone()).await, "expired");

    // Deleting the client ends its tokens, though none is stored.
    let third = job_rp.client_credentials(None).await.unwrap().access_token().to_owned();
    assert!(active(third.clone()).await);
    assert!(app.rt.store.delete_client(app.rt.tenant.id, &c.client_id).await.unwrap());
    assert!(!active(third).await, "the client is gone");
}

/// The third part of a compact JWS, as it is.
fn part_raw(jwt: &str, i: usize) -> String {
    jwt.split('.').nth(i).unwrap().to_owned()
}

/// A fresh client_credentials access token of `client`.
async fn active_token_of(app: &latchkey_testkit::TestApp, client: &latchkey_testkit::TestClient) -> String {
    let t: Value = app.client_credentials(client).await.json().await.unwrap();
    t["access_token"].as_str().unwrap().to_owned()
}
