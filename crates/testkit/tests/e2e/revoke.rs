//! Revocation (RFC 7009) with UltraCart's answer body.

use latchkey_testkit::{spawn_app, TestApp, TestClient};
use serde_json::Value;

async fn revoke(app: &TestApp, c: &TestClient, token: &str, hint: Option<&str>) -> (u16, Value) {
    let mut form = vec![("token", token), ("client_id", c.client_id.as_str()), ("client_secret", c.secret.as_deref().unwrap())];
    if let Some(h) = hint {
        form.push(("token_type_hint", h));
    }
    let r = app.http().post(app.url("/oauth/revoke")).form(&form).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn refresh(app: &TestApp, c: &TestClient, rt: &str) -> u16 {
    app.http()
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", &c.client_id),
            ("client_secret", c.secret.as_deref().unwrap()),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_the_grant() {
    let app = spawn_app().await;
    app.user("ada@example.com", &[]).await;
    let c = app.client("openid").await;
    let t = app.tokens_for(&c, "ada@example.com", "openid").await;
    let rt = t["refresh_token"].as_str().unwrap();
    let (s, b) = revoke(&app, &c, rt, Some("refresh_token")).await;
    assert_eq!(s, 200);
    assert_eq!(b["successful"], true);
    assert!(b["message"].is_string());
    assert_eq!(refresh(&app, &c, rt).await, 400);
}

/// docs/security.md RV-01, RV-02: another client's token stays active; unknown tokens and odd
/// hints still get 200.
#[tokio::test]
async fn only_the_owner_can_revoke_and_unknown_tokens_get_200() {
    let app = spawn_app().await;
    app.user("ada@example.com", &[]).await;
    let a = app.client("openid").await;
    let b = app.client("openid").await;
    let t = app.tokens_for(&a, "ada@example.com", "openid").await;
    let rt = t["refresh_token"].as_str().unwrap();
    assert_eq!(revoke(&app, &b, rt, None).await.0, 200);
    assert_eq!(refresh(&app, &a, rt).await, 200, "client B could not revoke client A's token");
    assert_eq!(
        revoke(&app, &a, "lk_rt_never_issued", Some("bogus_hint")).await,
        (200, serde_json::json!({"successful": true, "message": "The token is revoked."}))
    );
    let r = app
        .http()
        .post(app.url("/oauth/revoke"))
        .form(&[("token", "x"), ("client_id", &a.client_id), ("client_secret", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// Revoking an access token leaves the refresh token of the grant usable.
#[tokio::test]
async fn revoking_an_access_token_is_narrow() {
    let app = spawn_app().await;
    app.user("ada@example.com", &[]).await;
    let c = app.client("openid").await;
    let t = app.tokens_for(&c, "ada@example.com", "openid").await;
    assert_eq!(revoke(&app, &c, t["access_token"].as_str().unwrap(), Some("access_token")).await.0, 200);
    assert_eq!(refresh(&app, &c, t["refresh_token"].as_str().unwrap()).await, 200);
}

/// UltraCart's SDKs revoke with `client_id` and `token` only: accepted when the server is set
/// so, and then still only for the named client's own tokens.
#[tokio::test]
async fn revocation_without_client_auth_is_a_switch() {
    for switch in [false, true] {
        let app = latchkey_testkit::spawn_app_with(latchkey_server::Settings {
            revocation_without_client_auth: Some(switch),
            ..Default::default()
        })
        .await;
        app.user("ada@example.com", &[]).await;
        let c = app.client("openid").await;
        let other = app.client("openid").await;
        let t = app.tokens_for(&c, "ada@example.com", "openid").await;
        let rt = t["refresh_token"].as_str().unwrap();
        let r =
            app.http().post(app.url("/oauth/revoke")).form(&[("client_id", other.client_id.as_str()), ("token", rt)]).send().await.unwrap();
        assert_eq!(r.status(), if switch { 200 } else { 401 });
        assert_eq!(refresh(&app, &c, rt).await, 200, "another client_id cannot revoke it either way");
        let t = app.tokens_for(&c, "ada@example.com", "openid").await;
        let rt = t["refresh_token"].as_str().unwrap();
        let r = app.http().post(app.url("/oauth/revoke")).form(&[("client_id", c.client_id.as_str()), ("token", rt)]).send().await.unwrap();
        if switch {
            assert_eq!(r.status(), 200);
            assert_eq!(r.json::<Value>().await.unwrap()["successful"], true);
            assert_eq!(refresh(&app, &c, rt).await, 400, "revoked without the secret");
        } else {
            assert_eq!(r.status(), 401, "RFC 7009 §2.1: a confidential client authenticates");
            assert_eq!(refresh(&app, &c, rt).await, 200);
        }
    }
}
