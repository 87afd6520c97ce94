//! The signed-in user's JSON API for personal access tokens.

use latchkey_testkit::{spawn_app, Browser, TestApp};
use serde_json::{json, Value};

/// Signs in through the authorization flow, leaving the session cookie in the browser.
async fn signed_in(app: &TestApp, email: &str) -> Browser {
    let c = app.client("openid").await;
    let b = app.browser();
    b.sign_in_and_consent(&app.url(&format!("/oauth/authorize?response_type=code&client_id={}", c.client_id)), email, "allow").await;
    b
}

const API: &str = "/account/api/personal-tokens";

#[tokio::test]
async fn the_signed_in_user_manages_their_tokens() {
    let app = spawn_app().await;
    app.user("ada@example.com", &[]).await;
    app.user("bob@example.com", &[]).await;
    latchkey_server::catalogue::create(&app.rt, "orders:read", "Read your orders", true).await.unwrap();
    assert_eq!(app.http().get(app.url(API)).send().await.unwrap().status(), 401, "no session, no API");

    let ada = signed_in(&app, "ada@example.com").await;
    let listing: Value = ada.get(&app.url(API)).await.json().await.unwrap();
    assert_eq!(listing["tokens"], json!([]));
    let csrf = listing["csrf_token"].as_str().unwrap().to_owned();
    let new = json!({"name": "Shop sync", "scope": ["openid", "orders:read"], "expires_in": 3600});

    let r = ada.http.post(app.url(API)).json(&new).send().await.unwrap();
    assert_eq!(r.status(), 403, "no CSRF token");
    let r = ada.http.post(app.url(API)).header("X-CSRF-Token", "forged").json(&new).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r =
        ada.http.post(app.url(API)).header("X-CSRF-Token", &csrf).header("Origin", "https://evil.example").json(&new).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = ada.http.post(app.url(API)).header("X-CSRF-Token", &csrf).json(&json!({"name": "x"})).send().await.unwrap();
    assert_eq!(r.status(), 400);

    let r = ada.http.post(app.url(API)).header("X-CSRF-Token", &csrf).json(&new).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let created: Value = r.json().await.unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["scope"], "openid orders:read");
    let r = app.http().get(app.url("/oauth/userinfo")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let listing: Value = ada.get(&app.url(API)).await.json().await.unwrap();
    assert_eq!(listing["tokens"].as_array().unwrap().len(), 1);
    assert!(listing["tokens"][0].get("token").is_none(), "the secret is shown only at creation");

    // Bob cannot touch Ada's token.
    let bob = signed_in(&app, "bob@example.com").await;
    let bob_csrf: Value = bob.get(&app.url(API)).await.json().await.unwrap();
    let bob_csrf = bob_csrf["csrf_token"].as_str().unwrap().to_owned();
    let r = bob.http.post(app.url(&format!("{API}/{id}/revoke"))).header("X-CSRF-Token", &bob_csrf).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = ada.http.post(app.url(&format!("{API}/{id}/revoke"))).header("X-CSRF-Token", &bob_csrf).send().await.unwrap();
    assert_eq!(r.status(), 403, "one session's CSRF token is useless in another");

    let r = ada.http.post(app.url(&format!("{API}/{id}/regenerate"))).header("X-CSRF-Token", &csrf).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let regenerated: Value = r.json().await.unwrap();
    assert_eq!(regenerated["id"], id.as_str());
    assert_eq!(app.http().get(app.url("/oauth/userinfo")).bearer_auth(&token).send().await.unwrap().status(), 401);
    let r = ada.http.post(app.url(&format!("{API}/{id}/revoke"))).header("X-CSRF-Token", &csrf).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let fresh = regenerated["token"].as_str().unwrap();
    assert_eq!(app.http().get(app.url("/oauth/userinfo")).bearer_auth(fresh).send().await.unwrap().status(), 401);
    let listing: Value = ada.get(&app.url(API)).await.json().await.unwrap();
    assert!(listing["tokens"][0]["revoked_at"].is_i64());
}

/// A person may only put on a token what the tenant's scope catalogue lets personal tokens
/// carry; names, scopes and bodies are checked with a JSON error that names the field, and
/// nothing is saved on error. Before, `admin`, 5,000 scopes, a NUL in the name and a
/// `text/plain` body were all accepted.
#[tokio::test]
async fn the_token_api_accepts_only_the_catalogue_and_says_which_field_is_wrong() {
    let app = spawn_app().await;
    app.user("ada@example.com", &[]).await;
    latchkey_server::catalogue::create(&app.rt, "business/orders:read", "Read your business's orders", true).await.unwrap();
    latchkey_server::catalogue::create(&app.rt, "business/orders:write", "Change your business's orders", false).await.unwrap();
    let ada = signed_in(&app, "ada@example.com").await;
    let listing: Value = ada.get(&app.url(API)).await.json().await.unwrap();
    let offered: Vec<&str> = listing["scopes"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(offered, ["business/orders:read", "email", "openid", "profile"], "what personal tokens may carry");
    let csrf = listing["csrf_token"].as_str().unwrap().to_owned();
    let post = |body: Value| ada.http.post(app.url(API)).header("X-CSRF-Token", &csrf).json(&body).send();

    let many: Vec<String> = (0..5000).map(|i| format!("s{i}")).collect();
    for (body, field) in [
        (json!({"name": "x", "scope": "admin"}), "scope"),
        (json!({"name": "x", "scope": "business/orders:write"}), "scope"),
        (json!({"name": "x", "scope": "openid offline_access"}), "scope"),
        (json!({"name": "x", "scope": many}), "scope"),
        (json!({"name": "x", "scope": []}), "scope"),
        (json!({"name": "a\u{0}b", "scope": "openid"}), "name"),
        (json!({"name": "", "scope": "openid"}), "name"),
        (json!({"name": "x".repeat(101), "scope": "openid"}), "name"),
        (json!({"name": "x", "scope": "openid", "expires_in": 400 * 86_400}), "expires_in"),
    ] {
        let r = post(body.clone()).await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let answer: Value = r.json().await.unwrap();
        assert_eq!((answer["error"].as_str(), answer["field"].as_str()), (Some("invalid_request"), Some(field)), "{body}: {answer}");
    }
    let r = ada
        .http
        .post(app.url(API))
        .header("X-CSRF-Token", &csrf)
        .header("content-type", "text/plain")
        .body(r#"{"name": "x", "scope": "openid"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415, "only JSON");
    let listing: Value = ada.get(&app.url(API)).await.json().await.unwrap();
    assert_eq!(listing["tokens"], json!([]), "nothing was saved");

    let r = post(json!({"name": "Orders export", "scope": ["business/orders:read", "openid"]})).await.unwrap();
    assert_eq!(r.status(), 201);
}
