//! The token endpoint: body formats, client authentication, code and refresh rules.

use latchkey_server::admin::NewClient;
use latchkey_testkit::{spawn_app, TestApp, TestClient};
use serde_json::{json, Value};

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

async fn setup() -> (TestApp, TestClient) {
    let app = spawn_app().await;
    app.user("ada@example.com", &["Ada Coffee"]).await;
    let c = app.client("openid email offline_access").await;
    (app, c)
}

async fn post(app: &TestApp, form: &[(&str, &str)]) -> (u16, Value) {
    let r = app.http().post(app.url("/oauth/token")).form(form).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

fn secret(c: &TestClient) -> &str {
    c.secret.as_deref().unwrap()
}

/// A refresh request with `client`'s credentials in the body, and `scope` when given.
async fn refresh(app: &TestApp, client: &TestClient, token: &str, scope: Option<&str>) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", token),
        ("client_id", &client.client_id),
        ("client_secret", secret(client)),
    ];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    post(app, &form).await
}

#[tokio::test]
async fn every_body_format_and_auth_method_works() {
    let (app, c) = setup().await;
    for format in ["form", "json", "multipart"] {
        for basic in [true, false] {
            let code = app.code_for(&c, "ada@example.com", "scope=openid%20email").await;
            let mut fields = vec![("grant_type", "authorization_code".to_owned()), ("code", code)];
            if !basic {
                fields.push(("client_id", c.client_id.clone()));
                fields.push(("client_secret", secret(&c).to_owned()));
            }
            let mut req = app.http().post(app.url("/oauth2/token"));
            if basic {
                req = req.basic_auth(&c.client_id, c.secret.as_deref());
            }
            req = match format {
                "form" => req.form(&fields),
                "json" => req.json(&fields.iter().cloned().collect::<std::collections::HashMap<_, _>>()),
                _ => {
                    let mut f = reqwest::multipart::Form::new();
                    for (k, v) in fields.clone() {
                        f = f.text(k, v);
                    }
                    req.multipart(f)
                }
            };
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 200, "{format} basic={basic}");
            assert_eq!(r.headers()["cache-control"], "no-store");
            assert_eq!(r.headers()["pragma"], "no-cache");
            let t: Value = r.json().await.unwrap();
            assert_eq!(t["token_type"], "Bearer");
            assert_eq!(t["expires_in"], 3600);
            assert!(t["access_token"].as_str().unwrap().starts_with("lk_st_"));
            assert!(t["refresh_token"].as_str().unwrap().starts_with("lk_rt_"));
            assert_eq!(t["scope"], "email openid");
            assert!(t["id_token"].is_string());
            assert!(t["user_uuid"].is_string() && t["jti"].is_string());
        }
    }
}

/// docs/security.md TE-02, TE-03: errors are JSON; invalid_client is 401 with a challenge; two
/// methods at once are refused.
#[tokio::test]
async fn client_authentication_rules() {
    let (app, c) = setup().await;
    let code = app.code_for(&c, "ada@example.com", "").await;
    let r = app
        .http()
        .post(app.url("/oauth/token"))
        .basic_auth(&c.client_id, Some("wrong"))
        .form(&[("grant_type", "authorization_code"), ("code", &code)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");

    let r = app
        .http()
        .post(app.url("/oauth/token"))
        .basic_auth(&c.client_id, c.secret.as_deref())
        .form(&[("grant_type", "authorization_code"), ("code", &code), ("client_secret", secret(&c))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");

    let (s, b) = post(&app, &[("grant_type", "authorization_code"), ("code", &code), ("client_id", &c.client_id)]).await;
    assert_eq!((s, b["error"].as_str()), (401, Some("invalid_client")), "a confidential client must authenticate");
    let (s, b) =
        post(&app, &[("grant_type", "authorization_code"), ("code", &code), ("client_id", "unknown"), ("client_secret", "x")]).await;
    assert_eq!((s, b["error"].as_str()), (401, Some("invalid_client")));
    // The code survived all of that: failures consume nothing.
    let (s, _) =
        post(&app, &[("grant_type", "authorization_code"), ("code", &code), ("client_id", &c.client_id), ("client_secret", secret(&c))])
            .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn malformed_requests_are_clear_4xx() {
    let (app, c) = setup().await;
    let auth = |r: reqwest::RequestBuilder| r.basic_auth(&c.client_id, c.secret.as_deref());
    let cases: Vec<reqwest::RequestBuilder> = vec![
        auth(app.http().post(app.url("/oauth/token"))).body("grant_type=authorization_code"),
        auth(app.http().post(app.url("/oauth/token"))).header("content-type", "application/json").body("{not json"),
        auth(app.http().post(app.url("/oauth/token"))).header("content-type", "application/json").body("[1,2]"),
        auth(app.http().post(app.url("/oauth/token"))).header("content-type", "multipart/form-data; boundary=x").body("garbage"),
        auth(app.http().post(app.url("/oauth/token"))).form(&[("grant_type", "password")]),
        auth(app.http().post(app.url("/oauth/token"))).form(&[("grant_type", "authorization_code")]),
        auth(app.http().post(app.url("/oauth/token"))).form(&[("grant_type", "authorization_code"), ("code", "a"), ("code", "b")]),
        auth(app.http().post(app.url("/oauth/token"))).form(&[("grant_type", "authorization_code"), ("code", &"x".repeat(100_000))]),
        app.http().post(app.url("/oauth/token")).header("authorization", "Basic %%%").form(&[("grant_type", "authorization_code")]),
    ];
    for (i, req) in cases.into_iter().enumerate() {
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        assert!((400..500).contains(&status), "case {i}: {status}");
        let body: Value = r.json().await.unwrap_or_else(|_| panic!("case {i}: JSON error body"));
        assert!(body["error"].is_string(), "case {i}");
        let d = body["error_description"].as_str().unwrap();
        assert!(!d.contains(['\r', '\n', '\t', '"', '\\']), "case {i}");
    }
    let (s, b) = post(&app, &[("grant_type", "implicit"), ("client_id", &c.client_id), ("client_secret", secret(&c))]).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("unsupported_grant_type")));
}

/// docs/security.md AC-01, AC-02: a second valid redemption fails and revokes what the first
/// issued; an invalid replay revokes nothing.
#[tokio::test]
async fn code_reuse_revokes_the_tokens_it_issued() {
    let (app, c) = setup().await;
    let code = app.code_for(&c, "ada@example.com", "").await;
    let redeem = [("grant_type", "authorization_code"), ("code", &code), ("client_id", &c.client_id), ("client_secret", secret(&c))];
    let (s, first) = post(&app, &redeem).await;
    assert_eq!(s, 200);
    let other = app.client("openid").await;
    let (s, b) = post(
        &app,
        &[("grant_type", "authorization_code"), ("code", &code), ("client_id", &other.client_id), ("client_secret", secret(&other))],
    )
    .await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_grant")), "another client's replay is refused");
    let refresh = [
        ("grant_type", "refresh_token"),
        ("refresh_token", first["refresh_token"].as_str().unwrap()),
        ("client_id", &c.client_id),
        ("client_secret", secret(&c)),
    ];
    // The invalid replay revoked nothing: the refresh token still works (and rotates).
    let (s, second) = post(&app, &refresh).await;
    assert_eq!(s, 200);
    let (s, b) = post(&app, &redeem).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_grant")));
    assert!(b["error_description"].as_str().unwrap().starts_with("code_reused"));
    let refresh2 = [
        ("grant_type", "refresh_token"),
        ("refresh_token", second["refresh_token"].as_str().unwrap()),
        ("client_id", &c.client_id),
        ("client_secret", secret(&c)),
    ];
    let (s, b) = post(&app, &refresh2).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_grant")), "the valid replay revoked the family");
}

/// docs/security.md AC-03, AC-04, AC-05, PK-03.
#[tokio::test]
async fn code_binding_expiry_and_pkce_rules() {
    let (app, c) = setup().await;
    let base = |code: &str| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("client_id", c.client_id.clone()),
            ("client_secret", secret(&c).to_owned()),
        ]
    };
    let run = |form: Vec<(&'static str, String)>| {
        let app = &app;
        async move {
            let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            post(app, &pairs).await
        }
    };
    let reason = |b: &Value| b["error_description"].as_str().unwrap().split(':').next().unwrap().to_owned();

    let code = app.code_for(&c, "ada@example.com", "redirect_uri=https%3A%2F%2Fapp.example%2Fcb").await;
    let (_, b) = run(base(&code)).await;
    assert_eq!(reason(&b), "redirect_uri_missing");
    let mut f = base(&code);
    f.push(("redirect_uri", "https://app.example/other".into()));
    assert_eq!(reason(&run(f).await.1), "redirect_uri_mismatch");

    let code = app.code_for(&c, "ada@example.com", &format!("code_challenge={CHALLENGE}&code_challenge_method=S256")).await;
    assert_eq!(reason(&run(base(&code)).await.1), "pkce_verifier_missing");
    let mut f = base(&code);
    f.push(("code_verifier", VERIFIER.replace('d', "e")));
    assert_eq!(reason(&run(f).await.1), "pkce_mismatch");
    let mut f = base(&code);
    f.push(("code_verifier", VERIFIER.into()));
    assert_eq!(run(f).await.0, 200);

    let code = app.code_for(&c, "ada@example.com", "").await;
    let mut f = base(&code);
    f.push(("code_verifier", VERIFIER.into()));
    assert_eq!(reason(&run(f).await.1), "pkce_downgrade");

    let code = app.code_for(&c, "ada@example.com", "").await;
    app.clock.advance(601);
    assert_eq!(reason(&run(base(&code)).await.1), "code_expired");
    assert_eq!(reason(&run(base("lk_ac_unknown")).await.1), "code_invalid");
}

/// docs/security.md RT-01, RT-02, RT-03, RT-08.
#[tokio::test]
async fn refresh_rotation_scope_and_reuse_rules() {
    let (app, c) = setup().await;
    let t = app.tokens_for(&c, "ada@example.com", "openid email offline_access").await;
    let rt1 = t["refresh_token"].as_str().unwrap().to_owned();
    // A failed refresh never consumes the token: wrong client, widened scope.
    let other = app.client("openid email offline_access").await;
    let (s, b) = refresh(&app, &other, &rt1, None).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_grant")));
    let (s, b) = refresh(&app, &c, &rt1, Some("openid email profile")).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_scope")));
    // Narrowing works; the new refresh token keeps the full scope.
    let (s, n) = refresh(&app, &c, &rt1, Some("email")).await;
    assert_eq!(s, 200);
    assert_eq!(n["scope"], "email");
    assert!(n["id_token"].is_null(), "no openid in the narrowed scope, no id_token");
    let rt2 = n["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt2);
    let (s, n) = refresh(&app, &c, &rt2, None).await;
    assert_eq!(s, 200);
    assert_eq!(n["scope"], "email offline_access openid");
    let rt3 = n["refresh_token"].as_str().unwrap().to_owned();
    // Reuse of a rotated token revokes the family, including the newest token.
    let (s, b) = refresh(&app, &c, &rt1, None).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_grant")));
    assert!(b["error_description"].as_str().unwrap().starts_with("refresh_token_reused"));
    let (s, b) = refresh(&app, &c, &rt3, None).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_grant")));
}

/// Issue 5 and docs/security.md RT-07 b: an exact duplicate of a refresh within the replay window
/// gets the very same answer; a duplicate that differs, or comes after the window, is reuse.
#[tokio::test]
async fn duplicate_refreshes_within_the_window_get_the_same_answer() {
    let (app, c) = setup().await;
    let fresh = || async { app.tokens_for(&c, "ada@example.com", "openid email").await["refresh_token"].as_str().unwrap().to_owned() };

    // The same request again, 4 seconds later: the very same answer, and it still works.
    let rt = fresh().await;
    let (s, first) = refresh(&app, &c, &rt, None).await;
    assert_eq!(s, 200);
    app.clock.advance(4);
    let (s, again) = refresh(&app, &c, &rt, None).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again, first, "a duplicate gets the identical answer, not a second pair");
    let (s, _) = refresh(&app, &c, first["refresh_token"].as_str().unwrap(), None).await;
    assert_eq!(s, 200, "the answer's refresh token works");
    // Once the new token has been used, the old answer is stale: presenting it is reuse.
    let (s, b) = refresh(&app, &c, &rt, None).await;
    assert_eq!((s, b["error_description"].as_str().unwrap_or_default().split(':').next()), (400, Some("refresh_token_reused")));

    // A duplicate that asks for another scope is not the same request: reuse, family revoked.
    let rt = fresh().await;
    let (s, first) = refresh(&app, &c, &rt, None).await;
    assert_eq!(s, 200);
    let (s, b) = refresh(&app, &c, &rt, Some("email")).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_grant")));
    let (s, _) = refresh(&app, &c, first["refresh_token"].as_str().unwrap(), None).await;
    assert_eq!(s, 400, "reuse revoked the family");

    // After the window, a duplicate is reuse.
    let rt = fresh().await;
    let (s, first) = refresh(&app, &c, &rt, None).await;
    assert_eq!(s, 200);
    app.clock.advance(5);
    let (s, b) = refresh(&app, &c, &rt, None).await;
    assert_eq!((s, b["error_description"].as_str().unwrap_or_default().split(':').next()), (400, Some("refresh_token_reused")));
    let (s, _) = refresh(&app, &c, first["refresh_token"].as_str().unwrap(), None).await;
    assert_eq!(s, 400, "reuse revoked the family");
}

/// A replay window of 0 is strict single use (docs/security.md RT-07 a): a duplicate is reuse.
#[tokio::test]
async fn a_zero_replay_window_makes_every_duplicate_reuse() {
    let app =
        latchkey_testkit::spawn_app_with(latchkey_server::Settings { refresh_token_replay_window: Some(0), ..Default::default() }).await;
    app.user("ada@example.com", &["Ada Coffee"]).await;
    let c = app.client("openid email").await;
    let t = app.tokens_for(&c, "ada@example.com", "openid email").await;
    let rt = t["refresh_token"].as_str().unwrap();
    let (s, first) = refresh(&app, &c, rt, None).await;
    assert_eq!(s, 200);
    let (s, _) = refresh(&app, &c, rt, None).await;
    assert_eq!(s, 400, "no replay window: the duplicate is reuse");
    let (s, _) = refresh(&app, &c, first["refresh_token"].as_str().unwrap(), None).await;
    assert_eq!(s, 400, "and the family is revoked");
}

#[tokio::test]
async fn refresh_tokens_expire_and_grants_are_restricted_per_client() {
    let app = spawn_app().await;
    app.user("ada@example.com", &[]).await;
    let c = app
        .client_with(NewClient {
            name: "No refresh".into(),
            redirect_uris: vec!["https://app.example/cb".into()],
            scopes: vec!["openid".into()],
            grant_types: vec!["authorization_code".into()],
            ..Default::default()
        })
        .await;
    let t = app.tokens_for(&c, "ada@example.com", "openid").await;
    assert!(t["refresh_token"].is_null(), "a client without the refresh grant gets no refresh token");
    let (s, b) = post(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "lk_rt_x"),
            ("client_id", &c.client_id),
            ("client_secret", c.secret.as_deref().unwrap()),
        ],
    )
    .await;
    assert_eq!((s, b["error"].as_str()), (400, Some("unauthorized_client")));

    let full = app.client("openid").await;
    let t = app.tokens_for(&full, "ada@example.com", "openid").await;
    app.clock.advance(30 * 24 * 3600 + 1);
    let (s, b) = post(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
            ("client_id", &full.client_id),
            ("client_secret", secret(&full)),
        ],
    )
    .await;
    assert_eq!((s, b["error_description"].as_str().map(|d| d.starts_with("refresh_token_expired"))), (400, Some(true)));
}

/// A public client authenticates with its client_id alone, and must use PKCE.
#[tokio::test]
async fn public_client_flow() {
    let app = spawn_app().await;
    app.user("ada@example.com", &[]).await;
    let c = app
        .client_with(NewClient {
            name: "CLI tool".into(),
            redirect_uris: vec!["http://127.0.0.1/cb".into()],
            scopes: vec!["openid".into()],
            public: true,
            ..Default::default()
        })
        .await;
    let code = app
        .code_for(
            &c,
            "ada@example.com",
            &format!("redirect_uri=http%3A%2F%2F127.0.0.1%3A5555%2Fcb&code_challenge={CHALLENGE}&code_challenge_method=S256"),
        )
        .await;
    let (s, t) = post(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &c.client_id),
            ("code_verifier", VERIFIER),
            ("redirect_uri", "http://127.0.0.1:5555/cb"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{t}");
    let (s, b) = post(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
            ("client_id", &c.client_id),
            ("client_secret", "made-up"),
        ],
    )
    .await;
    assert_eq!((s, b["error"].as_str()), (401, Some("invalid_client")));
    let _ = json!({});
}

/// Yoco: a refresh token only when `offline_access` was granted, when the server is set so.
#[tokio::test]
async fn refresh_tokens_can_require_offline_access() {
    let app = latchkey_testkit::spawn_app_with(latchkey_server::Settings {
        refresh_token_policy: Some("offline_access".into()),
        ..Default::default()
    })
    .await;
    app.user("ada@example.com", &["Ada Coffee"]).await;
    let c = app.client("openid offline_access business/orders:read").await;
    let without = app.tokens_for(&c, "ada@example.com", "openid business/orders:read").await;
    assert!(without["refresh_token"].is_null());
    assert!(without["id_token"].is_string());
    let with = app.tokens_for(&c, "ada@example.com", "openid offline_access business/orders:read").await;
    assert!(with["refresh_token"].as_str().unwrap().starts_with("lk_rt_"));
    assert_eq!(with["scope"], "business/orders:read offline_access openid");
}

/// YouCan's long-lived tokens: `expires_in` follows the configured lifetime.
#[tokio::test]
async fn access_token_lifetime_is_configurable() {
    let settings = latchkey_server::Settings {
        lifetimes: latchkey_server::config::LifetimeSettings { access_token: Some(1_295_999), ..Default::default() },
        ..Default::default()
    };
    let app = latchkey_testkit::spawn_app_with(settings).await;
    app.user("ada@example.com", &[]).await;
    let c = app.client("openid").await;
    let t = app.tokens_for(&c, "ada@example.com", "openid").await;
    assert_eq!(t["expires_in"], 1_295_999);
}

/// RFC 6749 §4.4: the client acts for itself; no refresh token; its subject never collides
/// with a user's (docs/security.md TE-07, TE-09).
#[tokio::test]
async fn client_credentials_grant() {
    let app = spawn_app().await;
    let c = app
        .client_with(NewClient {
            name: "Reporting job".into(),
            redirect_uris: vec!["https://jobs.example/cb".into()],
            scopes: vec!["openid reports:read reports:write".into()],
            grant_types: vec!["client_credentials".into()],
            ..Default::default()
        })
        .await;
    assert!(c.client_id.parse::<uuid::Uuid>().is_err(), "client ids never look like user subjects");
    let r = app.client_credentials(&c).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["scope"], "reports:read reports:write");
    assert!(t["refresh_token"].is_null() && t["id_token"].is_null() && t["user_uuid"].is_null());
    assert!(t["jti"].is_string());
    let (s, narrowed) = post(
        &app,
        &[("grant_type", "client_credentials"), ("scope", "reports:read"), ("client_id", &c.client_id), ("client_secret", secret(&c))],
    )
    .await;
    assert_eq!((s, narrowed["scope"].as_str()), (200, Some("reports:read")));
    let (s, b) = post(
        &app,
        &[("grant_type", "client_credentials"), ("scope", "openid"), ("client_id", &c.client_id), ("client_secret", secret(&c))],
    )
    .await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_scope")));

    let (_, intro) = {
        let r = app
            .http()
            .post(app.url("/oauth/introspect"))
            .basic_auth(&c.client_id, c.secret.as_deref())
            .form(&[("token", t["access_token"].as_str().unwrap())])
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(intro["active"], true);
    assert_eq!(intro["sub"], c.client_id.as_str());
    assert!(intro.get("username").is_none());
    let r = app.http().get(app.url("/oauth/userinfo")).bearer_auth(t["access_token"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(r.status(), 403, "no user behind a client_credentials token");

    // A client not registered for the grant may not use it.
    let other = app.client("reports:read").await;
    let (s, b) =
        post(&app, &[("grant_type", "client_credentials"), ("client_id", &other.client_id), ("client_secret", secret(&other))]).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("unauthorized_client")));
}

/// Issue 3: lifetimes and refresh policy per client, over the server's.
#[tokio::test]
async fn per_client_lifetimes_and_refresh_policy() {
    let app = spawn_app().await;
    app.user("ada@example.com", &[]).await;
    let youcan = app
        .client_with(NewClient {
            name: "Long lived".into(),
            redirect_uris: vec!["https://app.example/cb".into()],
            scopes: vec!["openid offline_access".into()],
            token_settings: latchkey_core::grant::ClientTokenSettings {
                access_token_lifetime: Some(1_295_999),
                refresh_policy: Some(latchkey_core::grant::RefreshPolicy::OfflineAccess),
                ..Default::default()
            },
            ..Default::default()
        })
        .await;
    let plain = app.client("openid offline_access").await;
    let t = app.tokens_for(&youcan, "ada@example.com", "openid").await;
    assert_eq!(t["expires_in"], 1_295_999);
    assert!(t["refresh_token"].is_null(), "this client gets refresh tokens only with offline_access");
    let t = app.tokens_for(&plain, "ada@example.com", "openid").await;
    assert_eq!(t["expires_in"], 3600, "other clients keep the server's settings");
    assert!(t["refresh_token"].is_string());

    let absurd = latchkey_server::admin::create_client(
        &app.rt,
        NewClient {
            name: "Absurd".into(),
            redirect_uris: vec!["https://app.example/cb".into()],
            token_settings: latchkey_core::grant::ClientTokenSettings { access_token_lifetime: Some(3_600_000_000), ..Default::default() },
            ..Default::default()
        },
    )
    .await;
    assert!(absurd.is_err(), "milliseconds given for seconds are refused");
}

/// RFC 9700 §4.14.2: a refresh token unused for the idle lifetime expires; using it in time
/// keeps the session going.
#[tokio::test]
async fn idle_refresh_tokens_expire() {
    let (app, c) = setup().await;
    let t = app.tokens_for(&c, "ada@example.com", "openid offline_access").await;
    app.clock.advance(13 * 24 * 3600);
    let (s, n) = post(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
            ("client_id", &c.client_id),
            ("client_secret", secret(&c)),
        ],
    )
    .await;
    assert_eq!(s, 200, "used within the idle lifetime");
    app.clock.advance(14 * 24 * 3600 + 1);
    let (s, b) = post(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", n["refresh_token"].as_str().unwrap()),
            ("client_id", &c.client_id),
            ("client_secret", secret(&c)),
        ],
    )
    .await;
    assert_eq!(s, 400);
    assert!(b["error_description"].as_str().unwrap().starts_with("refresh_token_expired"));
}

/// docs/security.md AZ-04: a parameter repeated in a JSON body is refused like one in a form.
#[tokio::test]
async fn repeated_json_members_are_refused() {
    let (app, c) = setup().await;
    let body = format!(
        r#"{{"grant_type":"client_credentials","client_id":"{0}","client_id":"{0}","client_secret":"{1}"}}"#,
        c.client_id,
        secret(&c)
    );
    let r = app.http().post(app.url("/oauth/token")).header("content-type", "application/json").body(body).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"], "invalid_request");
    assert!(b["error_description"].as_str().unwrap().starts_with("parameter_repeated"));
}

/// One client authentication at the token endpoint by HTTP Basic, through the trusted proxy
/// on 127.0.0.1 when `forwarded_for` is given: status, `Retry-After`, body.
async fn authenticate(app: &TestApp, client_id: &str, secret: &str, forwarded_for: Option<&str>) -> (u16, Option<i64>, Value) {
    let mut req =
        app.http().post(app.url("/oauth/token")).basic_auth(client_id, Some(secret)).form(&[("grant_type", "client_credentials")]);
    if let Some(f) = forwarded_for {
        req = req.header("x-forwarded-for", f);
    }
    let r = req.send().await.unwrap();
    let retry_after = r.headers().get("retry-after").map(|v| v.to_str().unwrap().parse().unwrap());
    assert!(r.status() != 429 || r.headers().get("www-authenticate").is_none(), "a 429 is not a challenge");
    (r.status().as_u16(), retry_after, r.json().await.unwrap())
}

/// docs/security.md TE-04: 50 wrong secrets for one client within a minute lock the address they
/// came from out of that client (429 with Retry-After, the right secret included, at every
/// endpoint that authenticates clients) until the window ends. Other clients, and the same
/// client from another address, are unaffected, so knowing a client_id is not enough to shut
/// the client's own servers out.
#[tokio::test]
async fn wrong_client_secrets_lock_out_their_address() {
    let settings = latchkey_server::Settings { trusted_proxies: Some(vec!["127.0.0.1".into()]), ..Default::default() };
    let app = latchkey_testkit::spawn_app_with(settings).await;
    let job = |name: &str| NewClient {
        name: name.into(),
        redirect_uris: vec!["https://jobs.example/cb".into()],
        scopes: vec!["reports:read".into()],
        grant_types: vec!["client_credentials".into()],
        ..Default::default()
    };
    let (a, b) = (app.client_with(job("A")).await, app.client_with(job("B")).await);
    const ATTACKER: &str = "198.51.100.66";
    let attacker = Some(ATTACKER);

    let mut statuses = Vec::new();
    for _ in 0..50 {
        let (status, retry_after, body) = authenticate(&app, &a.client_id, "wrong", attacker).await;
        assert_eq!(body["error"], "invalid_client");
        if status == 429 {
            let retry_after = retry_after.expect("a 429 says when to retry");
            assert!((1..=300).contains(&retry_after), "Retry-After {retry_after}");
        }
        statuses.push(status);
    }
    let refused = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(refused, 20, "the budget is 20 wrong secrets: {statuses:?}");
    assert!(statuses[20..].iter().all(|s| *s == 429), "every attempt past the budget is throttled: {statuses:?}");

    // During the lock the right secret is refused too, or a guess would still be answered.
    assert_eq!(authenticate(&app, &a.client_id, secret(&a), attacker).await.0, 429);
    let r = app
        .http()
        .post(app.url("/oauth/introspect"))
        .basic_auth(&a.client_id, a.secret.as_deref())
        .header("x-forwarded-for", ATTACKER)
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "introspection authenticates clients the same way");

    // The client's own servers, at another address, and other clients are unaffected.
    assert_eq!(authenticate(&app, &a.client_id, secret(&a), Some("203.0.113.7")).await.0, 200);
    assert_eq!(authenticate(&app, &b.client_id, secret(&b), attacker).await.0, 200);
    assert_eq!(authenticate(&app, &b.client_id, "wrong", attacker).await.0, 401, "B has its own count");
    // Unknown clients and missing secrets are not guesses and lock nothing.
    for _ in 0..25 {
        assert_eq!(authenticate(&app, "nobody", "wrong", Some("192.0.2.1")).await.0, 401);
    }

    // The lock ends with its window.
    app.clock.advance(301);
    assert_eq!(authenticate(&app, &a.client_id, secret(&a), attacker).await.0, 200);
}
