//! What resource servers use: introspection (RFC 7662) and UserInfo (OpenID Connect Core §5.3).

use latchkey_server::admin::NewClient;
use latchkey_testkit::{spawn_app, TestApp, TestClient};
use serde_json::{json, Value};

async fn introspect(app: &TestApp, caller: &TestClient, token: &str) -> (u16, Value) {
    let r = app
        .http()
        .post(app.url("/oauth/introspect"))
        .basic_auth(&caller.client_id, caller.secret.as_deref())
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn userinfo(app: &TestApp, token: &str) -> reqwest::Response {
    app.http().get(app.url("/oauth/userinfo")).bearer_auth(token).send().await.unwrap()
}

#[tokio::test]
async fn introspection_describes_active_tokens_and_nothing_else() {
    let app = spawn_app().await;
    let user = app.user("ada@example.com", &["Ada Coffee"]).await;
    let c = app.client("openid email offline_access").await;
    let rs = app.client("openid").await;
    let t = app.tokens_for(&c, "ada@example.com", "openid email").await;
    let at = t["access_token"].as_str().unwrap();
    let (s, body) = introspect(&app, &rs, at).await;
    assert_eq!(s, 200);
    assert_eq!(body["active"], true);
    assert_eq!(body["scope"], "email openid");
    assert_eq!(body["client_id"], c.client_id.as_str());
    assert_eq!(body["sub"], user.id.to_string());
    assert_eq!(body["username"], "ada@example.com");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["authorized_business_id"], user.default_business_id.unwrap().to_string());
    assert!(body["exp"].as_i64().unwrap() > body["iat"].as_i64().unwrap());
    let (_, body) = introspect(&app, &rs, t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(body["active"], true);
    assert_eq!(body["token_type"], "refresh_token");

    // docs/security.md IN-02: unknown, malformed, revoked and expired are all exactly {"active":false}.
    for token in ["lk_at_unknown", "%%%", &"x".repeat(5000)] {
        assert_eq!(introspect(&app, &rs, token).await.1, json!({"active": false}), "{token:.20}");
    }
    app.http()
        .post(app.url("/oauth/revoke"))
        .basic_auth(&c.client_id, c.secret.as_deref())
        .form(&[("token", t["refresh_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(introspect(&app, &rs, at).await.1, json!({"active": false}), "revoking the refresh token ends its access tokens");
    let t2 = app.tokens_for(&c, "ada@example.com", "openid").await;
    app.clock.advance(3601);
    assert_eq!(introspect(&app, &rs, t2["access_token"].as_str().unwrap()).await.1, json!({"active": false}), "expired");
}

/// docs/security.md IN-01: the caller must authenticate as a confidential client. The token's row
/// is read together with the caller's client, so each refusal is tried with a live token too:
/// it must tell nothing about it.
#[tokio::test]
async fn introspection_needs_an_authenticated_confidential_client() {
    let app = spawn_app().await;
    app.user("ada@example.com", &[]).await;
    let c = app.client("openid").await;
    let live = app.tokens_for(&c, "ada@example.com", "openid").await["access_token"].as_str().unwrap().to_owned();
    let public = app
        .client_with(NewClient {
            name: "SPA".into(),
            redirect_uris: vec!["https://spa.example/cb".into()],
            scopes: vec!["openid".into()],
            public: true,
            ..Default::default()
        })
        .await;
    for token in ["x", live.as_str()] {
        let anonymous = app.http().post(app.url("/oauth/introspect")).form(&[("token", token)]);
        let wrong_secret = app.http().post(app.url("/oauth/introspect")).basic_auth(&c.client_id, Some("wrong")).form(&[("token", token)]);
        let unknown = app.http().post(app.url("/oauth/introspect")).basic_auth("nobody", Some("secret")).form(&[("token", token)]);
        let public = app.http().post(app.url("/oauth/introspect")).form(&[("token", token), ("client_id", &public.client_id)]);
        for (what, request) in
            [("anonymous", anonymous), ("wrong secret", wrong_secret), ("unknown client", unknown), ("public client", public)]
        {
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 401, "{what}, token {token:.8}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"], "invalid_client", "{what}");
            assert!(body.get("active").is_none(), "{what}: {body}");
        }
    }
    // The caller is judged before the request's parameters: without a token, a wrong secret
    // is still a 401, and the right one a 400.
    let no_token = [("token_type_hint", "access_token")];
    let r = app.http().post(app.url("/oauth/introspect")).basic_auth(&c.client_id, Some("wrong")).form(&no_token).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r =
        app.http().post(app.url("/oauth/introspect")).basic_auth(&c.client_id, c.secret.as_deref()).form(&no_token).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // With the right secret, the live token is active.
    assert_eq!(introspect(&app, &c, &live).await.1["active"], true);
}

#[tokio::test]
async fn userinfo_answers_claims_by_scope() {
    let app = spawn_app().await;
    let user = app.user("ada@example.com", &["Ada Coffee", "Ada Bakery"]).await;
    let c = app.client("openid profile email").await;
    let t = app.tokens_for(&c, "ada@example.com", "openid email").await;
    let at = t["access_token"].as_str().unwrap();
    let r = userinfo(&app, at).await;
    assert_eq!(r.status(), 200);
    let claims: Value = r.json().await.unwrap();
    assert_eq!(claims["sub"], user.id.to_string());
    assert_eq!(claims["email"], "ada@example.com");
    assert!(claims.get("name").is_none(), "no profile scope, no name");
    assert_eq!(claims["user_name"], user.name);
    assert_eq!(claims["business_ids"].as_array().unwrap().len(), 2);
    assert!(claims.get("nonce").is_none());
    // The same with POST and a form body.
    let r = app.http().post(app.url("/oauth/userinfo")).form(&[("access_token", at)]).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["sub"], user.id.to_string());
    // The id_token's sub is the same.
    let id = t["id_token"].as_str().unwrap().split('.').nth(1).unwrap().to_owned();
    use base64::Engine;
    let id: Value = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(id).unwrap()).unwrap();
    assert_eq!(id["sub"], claims["sub"]);
}

/// RFC 6750 §3.1; docs/security.md RT-09, TK-04.
#[tokio::test]
async fn userinfo_refuses_bad_tokens() {
    let app = spawn_app().await;
    app.user("ada@example.com", &[]).await;
    let c = app.client("openid email").await;
    let t = app.tokens_for(&c, "ada@example.com", "openid").await;
    for token in ["lk_at_unknown", t["refresh_token"].as_str().unwrap()] {
        let r = userinfo(&app, token).await;
        assert_eq!(r.status(), 401);
        assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("error=\"invalid_token\""));
    }
    let r = app.http().get(app.url("/oauth/userinfo")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"latchkey\"");
    let at = t["access_token"].as_str().unwrap();
    let r = app.http().get(app.url(&format!("/oauth/userinfo?access_token={at}"))).send().await.unwrap();
    assert_eq!(r.status(), 400, "no token in the query string");
    let email_only = app.tokens_for(&c, "ada@example.com", "email").await;
    let r = userinfo(&app, email_only["access_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 403);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("insufficient_scope"));
    app.http().post(app.url("/oauth/revoke")).basic_auth(&c.client_id, c.secret.as_deref()).form(&[("token", at)]).send().await.unwrap();
    assert_eq!(userinfo(&app, at).await.status(), 401, "a revoked access token is refused");
}

/// Personal access tokens at UserInfo and introspection: active, then expired.
#[tokio::test]
async fn personal_tokens_expire_for_resource_servers() {
    let app = spawn_app().await;
    let user = app.user("ada@example.com", &[]).await;
    let rs = app.client("openid").await;
    let new = latchkey_server::account::NewPersonalToken { name: "short".into(), scopes: vec!["openid".into()], expires_in: Some(60) };
    let (_, secret) =
        latchkey_server::account::create_personal_token(&app.rt, latchkey_server::account::Actor::Operator, user.id, new).await.unwrap();
    let pat = secret.expose().to_owned();
    assert_eq!(userinfo(&app, &pat).await.status(), 200);
    let (_, body) = introspect(&app, &rs, &pat).await;
    assert_eq!(body["active"], true);
    assert_eq!(body["sub"], user.id.to_string());
    app.clock.advance(61);
    assert_eq!(userinfo(&app, &pat).await.status(), 401);
    assert_eq!(introspect(&app, &rs, &pat).await.1, json!({"active": false}));
}
