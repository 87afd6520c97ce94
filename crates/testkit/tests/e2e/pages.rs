//! The account area and the site's other pages, in a real browser (headless Chromium): a
//! person signs in, creates, copies, regenerates and revokes a personal access token, revokes
//! an app's access, changes their password and signs out. Every effect is checked on the wire
//! (the token works, then it does not), and every page is checked with axe-core and saved as
//! screenshots under `target/screenshots/`.

use latchkey_server::admin::NewClient;
use latchkey_testkit::chromium::Chromium;
use latchkey_testkit::{query_param, spawn_app, TestApp, TestClient, PASSWORD};
use serde_json::Value;

async fn userinfo_status(app: &TestApp, token: &str) -> u16 {
    app.http().get(app.url("/oauth/userinfo")).bearer_auth(token).send().await.unwrap().status().as_u16()
}

/// Signs in through the account's sign-in page (the address asked for comes first).
async fn sign_in(browser: &Chromium, app: &TestApp, email: &str, password: &str) {
    browser.fill("Email", email).await;
    browser.fill("Password", password).await;
    browser.click("Sign in").await;
    assert!(!browser.url().await.contains("/login"), "signed in as {email}: {}", browser.text().await);
    let _ = app;
}

#[tokio::test]
async fn a_person_manages_personal_access_tokens_in_the_browser() {
    let app = spawn_app().await;
    app.user("ada@example.com", &["Ada's Shop"]).await;
    latchkey_server::catalogue::create(&app.rt, "business/orders:read", "Read your business's orders", true).await.unwrap();
    let browser = Chromium::start("account-tokens").await;

    // The account area asks for a sign-in first, then comes back.
    browser.goto(&app.url("/account/developer-settings")).await;
    assert_eq!(browser.title().await, "Sign in · Latchkey");
    browser.check_page("sign-in").await;
    sign_in(&browser, &app, "ada@example.com", PASSWORD).await;
    assert_eq!(browser.url().await, app.url("/account/developer-settings"));
    assert!(browser.text().await.contains("You have no personal access tokens yet."));
    browser.check_page("developer-settings-empty").await;

    // A token without a name: the error is next to the field, and what was chosen is kept.
    browser.choose("Confirm who you are").await;
    browser.click("Create token").await;
    assert!(browser.text().await.contains("Give the token a name"));
    browser.check_page("create-token-error").await;
    browser.fill("Name", "Nightly export").await;
    browser.choose("Read your business's orders").await;
    browser.select("Expires after", "30 days").await;
    browser.click("Create token").await;

    // Shown once, with the warning; it works on the wire.
    let page = browser.text().await;
    assert!(page.contains("You will not see it again") || page.contains("you will not see it again"), "{page}");
    browser.check_page("token-created").await;
    let first = browser.value("Your token").await;
    assert!(first.starts_with("lk_pat_"), "{first}");
    browser.allow_clipboard().await;
    browser.click("Copy token").await;
    assert_eq!(browser.clipboard().await, first, "the copy button copies the token");
    assert_eq!(userinfo_status(&app, &first).await, 200, "the token works");
    browser.click("Done").await;
    let listing = browser.text().await;
    assert!(
        listing.contains("Nightly export") && listing.contains("Read your business's orders") && listing.contains("in 30 days"),
        "{listing}"
    );
    assert!(!listing.contains(&first), "the secret is shown only once");
    browser.check_page("developer-settings").await;

    // Regenerate, after a confirmation: the old secret stops, the new one works.
    browser.click("Regenerate").await;
    assert_eq!(browser.title().await, "Regenerate this token? · Latchkey");
    browser.check_page("regenerate-confirm").await;
    browser.click("Regenerate token").await;
    let second = browser.value("Your token").await;
    assert_ne!(second, first);
    assert_eq!(userinfo_status(&app, &first).await, 401, "the old secret no longer works");
    assert_eq!(userinfo_status(&app, &second).await, 200);
    browser.click("Done").await;

    // Revoke, after a confirmation: the token stops working at once.
    browser.click("Revoke").await;
    browser.check_page("revoke-confirm").await;
    browser.click("Revoke token").await;
    assert!(browser.text().await.contains("The token is revoked."));
    assert_eq!(userinfo_status(&app, &second).await, 401, "a revoked token is refused");
    browser.check_page("developer-settings-revoked").await;
}

#[tokio::test]
async fn a_person_revokes_an_apps_access_and_its_refresh_token_fails() {
    let app = spawn_app().await;
    app.user("ada@example.com", &["Ada's Shop", "Ada's Cafe"]).await;
    // The app's redirect URI is a page of this server, so the browser lands somewhere real.
    let redirect_uri = app.url("/demo/callback");
    let client: TestClient = app
        .client_with(NewClient {
            name: "Shop Sync".into(),
            developer: Some("Sync Ltd".into()),
            redirect_uris: vec![redirect_uri.clone()],
            scopes: vec!["openid email offline_access".into()],
            ..Default::default()
        })
        .await;
    let browser = Chromium::start("account-apps").await;
    browser
        .goto(&format!(
            "{}&client_id={}&scope=openid%20email%20offline_access&state=s",
            app.url("/oauth/authorize?response_type=code"),
            client.client_id
        ))
        .await;
    sign_in(&browser, &app, "ada@example.com", PASSWORD).await;
    browser.choose("Ada's Cafe").await;
    browser.click("Allow").await;
    let code = query_param(&browser.url().await, "code").expect("a code for the app");
    let tokens: Value = app
        .http()
        .post(app.url("/oauth/token"))
        .basic_auth(&client.client_id, client.secret.as_deref())
        .form(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", &redirect_uri)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh = tokens["refresh_token"].as_str().expect("a refresh token").to_owned();

    browser.goto(&app.url("/account/authorized-applications")).await;
    let page = browser.text().await;
    assert!(page.contains("Ada's Cafe") && page.contains("Shop Sync") && page.contains("Made by Sync Ltd"), "{page}");
    assert!(page.contains("See your email address"), "scopes in words: {page}");
    browser.check_page("authorized-applications").await;
    browser.click("Revoke access").await;
    browser.check_page("revoke-access-confirm").await;
    browser.click("Revoke access").await;
    assert!(browser.text().await.contains("You have not authorized any application."));
    browser.check_page("authorized-applications-empty").await;

    // On the wire: the app's refresh token fails on its next use, its access token is dead.
    let r = app
        .http()
        .post(app.url("/oauth/token"))
        .basic_auth(&client.client_id, client.secret.as_deref())
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    assert_eq!(userinfo_status(&app, tokens["access_token"].as_str().unwrap()).await, 401);
}

#[tokio::test]
async fn a_person_changes_their_password_signs_out_and_meets_the_other_pages() {
    let app = spawn_app().await;
    app.user("ada@example.com", &["Ada's Shop"]).await;
    // Another browser, signed in earlier through the API's session.
    let elsewhere = app.browser();
    let c = app.client("openid").await;
    elsewhere
        .sign_in_and_consent(
            &app.url(&format!("/oauth/authorize?response_type=code&client_id={}", c.client_id)),
            "ada@example.com",
            "allow",
        )
        .await;
    assert_eq!(elsewhere.get(&app.url("/account/api/personal-tokens")).await.status(), 200);

    let browser = Chromium::start("account-profile").await;
    browser.goto(&app.url("/")).await;
    browser.check_page("home").await;
    browser.click("Sign in").await;
    sign_in(&browser, &app, "ada@example.com", PASSWORD).await;
    assert_eq!(browser.url().await, app.url("/account"));
    let page = browser.text().await;
    assert!(page.contains("ada@example.com") && page.contains("Ada's Shop"), "{page}");
    browser.check_page("account").await;

    browser.fill("Current password", "not it").await;
    browser.fill("New password", "a much longer password").await;
    browser.fill("New password again", "a much longer password").await;
    browser.click("Change password").await;
    assert!(browser.text().await.contains("This is not your current password."));
    browser.check_page("password-error").await;
    browser.fill("Current password", PASSWORD).await;
    browser.fill("New password", "a much longer password").await;
    browser.fill("New password again", "another password").await;
    browser.click("Change password").await;
    assert!(browser.text().await.contains("The two new passwords are not the same."));
    browser.fill("Current password", PASSWORD).await;
    browser.fill("New password", "a much longer password").await;
    browser.fill("New password again", "a much longer password").await;
    browser.click("Change password").await;
    assert!(browser.text().await.contains("Your password is changed."));
    assert_eq!(elsewhere.get(&app.url("/account/api/personal-tokens")).await.status(), 401, "the other browser is signed out");

    // The menu under the person's name leads everywhere and signs out.
    browser.click("User ada@example.com").await;
    browser.check_page("menu-open").await;
    browser.click("Authorized applications").await;
    assert_eq!(browser.url().await, app.url("/account/authorized-applications"));
    browser.click("User ada@example.com").await;
    browser.click("Sign out").await;
    assert_eq!(browser.title().await, "Sign in · Latchkey");
    browser.goto(&app.url("/account")).await;
    assert_eq!(browser.title().await, "Sign in · Latchkey", "signed out for good");
    sign_in(&browser, &app, "ada@example.com", "a much longer password").await;

    // A form's address opened in the address bar is a page too, not an empty 405.
    browser.goto(&app.url("/logout")).await;
    assert_eq!(browser.title().await, "This page cannot be used this way · Latchkey");
    browser.check_page("method-not-allowed").await;

    // An address nobody serves is a page too.
    browser.goto(&app.url("/no/such/page")).await;
    assert_eq!(browser.title().await, "Page not found · Latchkey");
    browser.check_page("not-found").await;
}
