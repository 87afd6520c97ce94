//! The password grant (YOC) and the online guessing protection it shares with the sign-in form.

use futures::future::join_all;
use latchkey_server::admin::NewClient;
use latchkey_testkit::{spawn_app, TestApp, TestClient, PASSWORD};
use serde_json::Value;
use std::collections::HashMap;

async fn yoc_client(app: &TestApp) -> TestClient {
    app.client_with(NewClient {
        name: "YOC Hub".into(),
        developer: Some("YOC".into()),
        redirect_uris: vec!["https://hub.example/cb".into()],
        scopes: vec!["openid email offline_access".into()],
        grant_types: vec!["password".into(), "refresh_token".into()],
        ..Default::default()
    })
    .await
}

/// A server whose clients may each make `budget` password attempts per window.
async fn app_with_client_budget(budget: i64) -> TestApp {
    let settings = latchkey_server::Settings {
        guessing: latchkey_server::config::GuessingSettings { client_budget: Some(budget), ..Default::default() },
        ..Default::default()
    };
    latchkey_testkit::spawn_app_with(settings).await
}

async fn grant(app: &TestApp, c: &TestClient, user: &str, password: &str) -> (u16, Value) {
    let r = grant_response(app, c, user, password).await;
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn grant_response(app: &TestApp, c: &TestClient, user: &str, password: &str) -> reqwest::Response {
    app.http()
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", user),
            ("password", password),
            ("client_id", &c.client_id),
            ("client_secret", c.secret.as_deref().unwrap()),
        ])
        .send()
        .await
        .unwrap()
}

/// The YOC seed's requests: multipart, JSON and form bodies, with the client in the body or in
/// a Basic header; the answer carries user_uuid and jti, and a refresh returns a new pair.
#[tokio::test]
async fn yoc_request_formats_all_work() {
    let app = spawn_app().await;
    let user = app.user("hub@example.com", &[]).await;
    let c = yoc_client(&app).await;
    let http = app.http();
    for format in ["multipart", "json", "form"] {
        for basic in [false, true] {
            let mut fields: Vec<(&str, String)> =
                vec![("grant_type", "password".into()), ("username", "hub@example.com".into()), ("password", PASSWORD.into())];
            if !basic {
                fields.push(("client_id", c.client_id.clone()));
                fields.push(("client_secret", c.secret.clone().unwrap()));
            }
            let mut req = http.post(app.url("/oauth/token"));
            if basic {
                req = req.basic_auth(&c.client_id, c.secret.as_deref());
            }
            req = match format {
                "json" => req.json(&fields.iter().cloned().collect::<HashMap<_, _>>()),
                "form" => req.form(&fields),
                _ => req.multipart(fields.iter().fold(reqwest::multipart::Form::new(), |f, (k, v)| f.text(*k, v.clone()))),
            };
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 200, "{format} basic={basic}");
            assert_eq!(r.headers()["cache-control"], "no-store");
            assert_eq!(r.headers()["pragma"], "no-cache");
            let t: Value = r.json().await.unwrap();
            assert_eq!(t["user_uuid"], user.id.to_string());
            assert!(t["jti"].is_string() && t["access_token"].is_string() && t["refresh_token"].is_string());
            assert_eq!(t["token_type"], "Bearer");
            assert!(t["expires_in"].is_u64());

            let refreshed: Value = http
                .post(app.url("/oauth/token"))
                .json(&serde_json::json!({
                    "grant_type": "refresh_token",
                    "refresh_token": t["refresh_token"],
                    "client_id": c.client_id,
                    "client_secret": c.secret,
                }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert!(refreshed["access_token"].is_string() && refreshed["refresh_token"].is_string());
            assert_ne!(refreshed["refresh_token"], t["refresh_token"]);
            assert_ne!(refreshed["jti"], t["jti"], "jti names each access/refresh pair");
            assert_eq!(refreshed["user_uuid"], user.id.to_string());
        }
    }
}

/// docs/security.md PW-01, TE-08: off unless the client is registered for it.
#[tokio::test]
async fn the_grant_is_off_unless_registered() {
    let app = spawn_app().await;
    app.user("hub@example.com", &[]).await;
    let c = app.client("openid").await;
    let (s, b) = grant(&app, &c, "hub@example.com", PASSWORD).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("unauthorized_client")));
    let public = latchkey_server::admin::create_client(
        &app.rt,
        NewClient {
            name: "Public".into(),
            redirect_uris: vec!["https://p.example/cb".into()],
            public: true,
            grant_types: vec!["password".into()],
            ..Default::default()
        },
    )
    .await;
    assert!(public.is_err(), "a public client cannot be registered for the password grant");
}

/// docs/security.md PW-03: unknown user and wrong password get the same answer.
#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let app = spawn_app().await;
    app.user("hub@example.com", &[]).await;
    let c = yoc_client(&app).await;
    let wrong = grant(&app, &c, "hub@example.com", "not the password").await;
    let unknown = grant(&app, &c, "nobody@example.com", "not the password").await;
    assert_eq!(wrong, unknown);
    assert_eq!(wrong.0, 400);
    assert_eq!(wrong.1["error"], "invalid_grant");
}

/// docs/security.md PW-02: parallel wrong guesses never get more password checks than the budget;
/// parallel valid sign-ins of other users are not slowed; the lock ends with the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guessing_stays_within_the_budget() {
    let app = spawn_app().await;
    app.user("victim@example.com", &[]).await;
    for i in 0..8 {
        app.user(&format!("user{i}@example.com"), &[]).await;
    }
    let c = yoc_client(&app).await;
    let attacks = (0..40).map(|_| grant(&app, &c, "victim@example.com", "guess"));
    let valid = (0..8).map(|i| {
        let app = &app;
        let c = &c;
        async move { grant(app, c, &format!("user{i}@example.com"), PASSWORD).await }
    });
    let (attacks, valid) = tokio::join!(join_all(attacks), join_all(valid));
    let checked = attacks.iter().filter(|(_, b)| b["error_description"].as_str().unwrap().starts_with("invalid_credentials")).count();
    let throttled = attacks.iter().filter(|(_, b)| b["error_description"].as_str().unwrap().starts_with("too_many_attempts")).count();
    assert_eq!(checked, 10, "exactly the account budget of guesses was checked");
    assert_eq!(throttled, 30);
    assert!(attacks.iter().all(|(s, b)| (*s == 429) == b["error_description"].as_str().unwrap().starts_with("too_many_attempts")));
    assert!(valid.iter().all(|(s, _)| *s == 200), "other users sign in while one account is attacked");
    // Locked: even the right password is refused until the window ends, on the form too.
    let (s, b) = grant(&app, &c, "victim@example.com", PASSWORD).await;
    assert_eq!(s, 429, "RFC 6585 §4: throttled, not a wrong password");
    assert_eq!(b["error"], "invalid_grant");
    assert!(b["error_description"].as_str().unwrap().starts_with("too_many_attempts"));
    let r = grant_response(&app, &c, "victim@example.com", PASSWORD).await;
    let retry_after: i64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=15 * 60).contains(&retry_after), "Retry-After {retry_after} within the window");
    // The lock is aimed at the guesser (this client, for this account): the owner still signs
    // in on the form.
    let client = app.client("openid").await;
    let browser = app.browser();
    let html =
        browser.get(&app.url(&format!("/oauth/authorize?response_type=code&client_id={}", client.client_id))).await.text().await.unwrap();
    assert_eq!(browser.submit_login(&html, "victim@example.com", PASSWORD).await.status(), 303, "the form is another source");
    app.clock.advance(15 * 60);
    assert_eq!(grant(&app, &c, "victim@example.com", PASSWORD).await.0, 200, "the lock ends with the window");
}

/// The password grant counts per client and account: one abusive user of an app cannot lock
/// the app's other users out (before, 200 failures of one client locked every user of it),
/// nor lock themselves out of the sign-in form. Other clients are not affected.
#[tokio::test]
async fn one_abuser_cannot_lock_an_apps_users_out() {
    let app = app_with_client_budget(5).await;
    app.user("alice@example.com", &[]).await;
    app.user("bob@example.com", &[]).await;
    let shared = yoc_client(&app).await;
    let other = yoc_client(&app).await;
    for _ in 0..5 {
        let (_, b) = grant(&app, &shared, "alice@example.com", "guess").await;
        assert!(b["error_description"].as_str().unwrap().starts_with("invalid_credentials"));
    }
    let (s, b) = grant(&app, &shared, "alice@example.com", PASSWORD).await;
    assert_eq!(s, 429, "alice, through this client, waits: {b}");
    assert_eq!(grant(&app, &shared, "bob@example.com", PASSWORD).await.0, 200, "bob, through the same client, does not");
    assert_eq!(grant(&app, &other, "alice@example.com", PASSWORD).await.0, 200, "nor alice through another client");
    // Refused attempts check nothing and give back what they counted on the account's total:
    // many of them leave the account open.
    for _ in 0..120 {
        assert_eq!(grant(&app, &shared, "alice@example.com", "guess").await.0, 429);
    }
    assert_eq!(grant(&app, &other, "alice@example.com", PASSWORD).await.0, 200);
}

/// docs/security.md PW-02 with device cookies (OWASP): anyone who knows an email can use up the
/// attempts of unknown browsers and of their own address, never those of a browser the owner
/// has signed in with; a known browser's own budget holds against parallel guesses too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_never_lock_the_owner_out_of_a_known_browser() {
    let settings = latchkey_server::Settings {
        guessing: latchkey_server::config::GuessingSettings { account_total_budget: Some(20), ..Default::default() },
        ..Default::default()
    };
    let app = latchkey_testkit::spawn_app_with(settings).await;
    app.user("owner@example.com", &[]).await;
    let client = app.client("openid").await;
    let authorize = app.url(&format!("/oauth/authorize?response_type=code&client_id={}", client.client_id));
    let owner = app.browser();
    owner.sign_in_and_consent(&authorize, "owner@example.com", "allow").await;

    // The attacker: fresh browsers (no device cookie) on the form, then apps' password grants
    // from everywhere, until the account's total for unknown sources is used up.
    let attacker = app.browser();
    let mut throttled = false;
    for _ in 0..12 {
        let html = attacker.get(&authorize).await.text().await.unwrap();
        let page = attacker.submit_login(&html, "owner@example.com", "guess").await.text().await.unwrap();
        throttled |= page.contains("Too many attempts");
    }
    assert!(throttled, "the attacker's address is stopped after its budget (10)");
    for _ in 0..3 {
        let c = yoc_client(&app).await;
        for _ in 0..5 {
            grant(&app, &c, "owner@example.com", "guess").await;
        }
    }
    let c = yoc_client(&app).await;
    let (s, _) = grant(&app, &c, "owner@example.com", PASSWORD).await;
    assert_eq!(s, 429, "every unknown source waits once the account's total is used up");
    let stranger = app.browser();
    let html = stranger.get(&authorize).await.text().await.unwrap();
    let page = stranger.submit_login(&html, "owner@example.com", PASSWORD).await.text().await.unwrap();
    assert!(page.contains("Too many attempts"), "an unknown browser waits too");

    // The owner's browser signs in at once, with a forced new sign-in.
    let html = owner.get(&format!("{authorize}&prompt=login")).await.text().await.unwrap();
    assert_eq!(owner.submit_login(&html, "owner@example.com", PASSWORD).await.status(), 303, "the known browser is never locked out");

    // Parallel guesses from the known browser get exactly its budget of checks.
    let html = owner.get(&format!("{authorize}&prompt=login")).await.text().await.unwrap();
    let pages =
        join_all((0..30).map(|_| async { owner.submit_login(&html, "owner@example.com", "guess").await.text().await.unwrap() })).await;
    let checked = pages.iter().filter(|p| p.contains("The email or password is incorrect.")).count();
    assert_eq!(checked, 10, "exactly the known browser's budget of guesses was checked");
}

/// A right password settles its attempt, in the same commit as what the sign-in writes: it
/// never uses up the account's budget (10) nor the client's (5 here), and it forgets the
/// account's earlier failures, on the password grant and on the sign-in form alike.
#[tokio::test]
async fn right_passwords_never_use_up_the_budgets() {
    let app = app_with_client_budget(5).await;
    app.user("regular@example.com", &[]).await;
    let c = yoc_client(&app).await;
    for i in 0..12 {
        assert_eq!(grant(&app, &c, "regular@example.com", PASSWORD).await.0, 200, "grant {i}");
    }

    let client = app.client("openid").await;
    let browser = app.browser();
    let login_page = || async {
        browser.get(&app.url(&format!("/oauth/authorize?response_type=code&client_id={}", client.client_id))).await.text().await.unwrap()
    };
    for round in 0..2 {
        for i in 0..9 {
            let page = browser.submit_login(&login_page().await, "regular@example.com", "guess").await.text().await.unwrap();
            assert!(page.contains("The email or password is incorrect."), "round {round}, failure {i} was checked");
        }
        let signed_in = browser.submit_login(&login_page().await, "regular@example.com", PASSWORD).await;
        assert_eq!(signed_in.status(), 303, "round {round}: the right password signs in");
    }
    assert_eq!(grant(&app, &c, "regular@example.com", PASSWORD).await.0, 200);
}
