//! The developer area (issue 26), as developers use it: in a real browser (headless Chromium)
//! a developer registers a web application, copies its client ID and secret from the page, and
//! a real OpenID Connect client library signs a person in with them; the secret is rotated
//! with a grace period (both work, then only the new one), and the app deleted (its tokens
//! stop). A machine-to-machine app is registered through the JSON API. Nobody reaches another
//! developer's app, through any page or API route.

use latchkey_server::admin;
use latchkey_server::runtime::Clock;
use latchkey_testkit::chromium::Chromium;
use latchkey_testkit::rp::OpenIdClient;
use latchkey_testkit::{field, location, query_param, spawn_app, Browser, TestApp, PASSWORD};
use serde_json::{json, Value};

/// A user who may use the developer area.
async fn developer(app: &TestApp, email: &str) {
    app.user(email, &[]).await;
    admin::set_developer(&app.rt, email, true).await.unwrap();
}

/// Introspection's status with these client credentials: 200 when they authenticate.
async fn authenticates(app: &TestApp, client_id: &str, secret: &str, token: &str) -> u16 {
    let r =
        app.http().post(app.url("/oauth/introspect")).basic_auth(client_id, Some(secret)).form(&[("token", token)]).send().await.unwrap();
    r.status().as_u16()
}

#[tokio::test]
async fn a_developer_registers_a_web_app_that_a_client_library_signs_people_in_with() {
    let app = spawn_app().await;
    developer(&app, "dev@example.com").await;
    developer(&app, "bob@example.com").await;
    app.user("ada@example.com", &["Ada Coffee"]).await;
    let browser = Chromium::start("developer-web-app").await;

    browser.goto(&app.url("/developer")).await;
    browser.fill("Email", "dev@example.com").await;
    browser.fill("Password", PASSWORD).await;
    browser.click("Sign in").await;
    assert_eq!(browser.url().await, app.url("/developer"));
    assert!(browser.text().await.contains("You have not registered an application yet."));
    browser.check_page("developer-empty").await;

    // Wrong fields: each says what is wrong beside it, what was typed stays, nothing is saved.
    browser.click("Register an application").await;
    browser.check_page("developer-register").await;
    browser.fill("Application name", "Orders Dashboard").await;
    browser.fill("Redirect URIs", "http://shop.example/callback#top").await;
    browser.fill("Privacy policy address (optional)", "javascript:alert(1)").await;
    browser.click("Register application").await;
    let page = browser.text().await;
    for expected in [
        "Choose what kind of app this is.",
        "Enter your name or your company's",
        "Enter an address that starts with https://",
        "http://shop.example/callback#top must not contain a fragment",
        "Choose at least one scope",
    ] {
        assert!(page.contains(expected), "{expected:?} in {page}");
    }
    assert_eq!(browser.value("Application name").await, "Orders Dashboard", "what was typed is kept");
    browser.check_page("developer-register-errors").await;
    assert!(app.rt.store.list_clients(app.rt.tenant.id).await.unwrap().is_empty(), "nothing saved on error");

    browser.choose("Web application").await;
    browser.fill("Developer or company name", "Acme Apps").await;
    browser.fill("Redirect URIs", "http://127.0.0.1/callback").await;
    browser.fill("Privacy policy address (optional)", "https://acme.example/privacy").await;
    browser.choose("Confirm who you are").await;
    browser.choose("See your email address").await;
    browser.choose("Keep access while you are not using the app").await;
    browser.click("Register application").await;

    // The client ID and secret, shown once, copied with their buttons.
    assert!(browser.text().await.contains("you will not see it again"));
    browser.check_page("developer-registered").await;
    browser.allow_clipboard().await;
    browser.click("Copy client ID").await;
    let client_id = browser.clipboard().await;
    assert_eq!(client_id, browser.value("Client ID").await);
    browser.click("Copy client secret").await;
    let secret = browser.clipboard().await;
    assert!(secret.starts_with("lk_cs_"), "{secret}");

    // A real client library, with what was copied: discovery, sign-in and consent, the code.
    let rp = OpenIdClient::discover(&app.issuer, &client_id, Some(&secret)).await;
    // RFC 8252 §7.3: any port on the loopback redirect URI registered above.
    let auth = rp.authorization_url("http://127.0.0.1:43123/callback", "openid email offline_access", false).await;
    // Ada signs in; the consent page names the developer and links the privacy policy.
    let person = app.browser();
    let login = person.get(&auth.url).await.text().await.unwrap();
    let r = person.submit_login(&login, "ada@example.com", PASSWORD).await;
    let consent = person.follow(&r).await.text().await.unwrap();
    assert!(consent.contains("Acme Apps") && consent.contains(r#"href="https://acme.example/privacy""#), "{consent}");
    let back = location(&person.submit_consent(&consent, "allow", None).await).expect("back to the app");
    assert_eq!(query_param(&back, "state").as_deref(), Some(auth.state.as_str()));
    assert!(query_param(&back, "code").is_some(), "a code in {back}");
    // The library exchanges the code, authenticating with the copied secret, and validates the
    // id_token (signature against the JWKS, iss, aud, exp, nonce).
    let tokens = rp.callback(&back).await.unwrap();
    let access = tokens.access_token().to_owned();
    let refresh = tokens.refresh_token().expect("a refresh token for offline_access").to_owned();
    let userinfo = app.http().get(app.url("/oauth/userinfo")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(userinfo.json::<Value>().await.unwrap()["email"], "ada@example.com");

    // The app's page: the list counts Ada, the page has the quick start with its own values.
    browser.click("Go to Orders Dashboard").await;
    let page = browser.text().await;
    assert!(page.contains(&client_id) && page.contains("1 person"), "{page}");
    assert!(browser.value("The token request").await.contains(&format!("-u '{client_id}:YOUR_CLIENT_SECRET'")));
    assert_eq!(browser.value("Discovery document").await, app.url("/.well-known/openid-configuration"));
    browser.check_page("developer-app").await;

    // Invite another owner: only a developer of this server can be; Bob accepts.
    browser.fill("Email of a developer to invite", "ada@example.com").await;
    browser.click("Invite owner").await;
    assert!(browser.text().await.contains("There is no developer with this email address here."));
    assert_eq!(browser.value("Email of a developer to invite").await, "ada@example.com");
    browser.fill("Email of a developer to invite", "bob@example.com").await;
    browser.click("Invite owner").await;
    assert!(browser.text().await.contains("bob@example.com (invited, no answer yet)"));
    let app_path = format!("/developer/apps/{client_id}");
    let bob = app.browser();
    account_sign_in(&app, &bob, "bob@example.com").await;
    assert_eq!(bob.get(&app.url(&app_path)).await.status(), 404, "not Bob's before he accepts");

    // Bob, in this browser: the invitation waits on his list; he accepts and manages the app.
    browser.click("User dev@example.com").await;
    browser.click("Sign out").await;
    browser.goto(&app.url("/developer")).await;
    browser.fill("Email", "bob@example.com").await;
    browser.fill("Password", PASSWORD).await;
    browser.click("Sign in").await;
    assert!(browser.text().await.contains("dev@example.com invites you to own Orders Dashboard"), "{}", browser.text().await);
    browser.check_page("developer-invitation").await;
    browser.click("Accept").await;
    assert!(browser.text().await.contains("You own the application now."));
    assert_eq!(bob.get(&app.url(&app_path)).await.status(), 200, "Bob owns it now");
    browser.click("Orders Dashboard").await;
    let owners = browser.text().await;
    assert!(owners.contains("dev@example.com") && owners.contains("bob@example.com (you)"), "{owners}");

    // Rotate with a grace of one hour: both secrets work, then only the new one.
    browser.click("Rotate secret").await;
    browser.check_page("developer-rotate").await;
    browser.choose("1 hour").await;
    browser.click("Rotate secret").await;
    assert!(browser.text().await.contains("The old secret keeps working for 1 hour"));
    browser.check_page("developer-new-secret").await;
    let new_secret = browser.value("Client secret").await;
    assert_ne!(new_secret, secret);
    assert_eq!(authenticates(&app, &client_id, &secret, &access).await, 200, "the old secret, in its grace period");
    assert_eq!(authenticates(&app, &client_id, &new_secret, &access).await, 200, "the new secret");
    browser.click("Go to Orders Dashboard").await;
    assert!(browser.text().await.contains("Previous secret, still accepted"));
    browser.check_page("developer-app-rotated").await;
    app.clock.advance(3601);
    assert_eq!(authenticates(&app, &client_id, &secret, &access).await, 401, "the old secret after its grace period");
    assert_eq!(authenticates(&app, &client_id, &new_secret, &access).await, 200);

    // Change a setting: saved, and shown again.
    browser.fill("Application name", "Orders Board").await;
    browser.click("Save changes").await;
    assert!(browser.text().await.contains("Your changes are saved."));
    assert_eq!(browser.value("Application name").await, "Orders Board");

    // Delete, after typing the name: the app's tokens stop at once.
    browser.click("Delete application").await;
    browser.check_page("developer-delete").await;
    browser.fill("Type the app's name to confirm", "Orders").await;
    browser.click("Delete application").await;
    assert!(browser.text().await.contains("Type the app's name, Orders Board, to delete it."));
    browser.check_page("developer-delete-error").await;
    browser.fill("Type the app's name to confirm", "Orders Board").await;
    browser.click("Delete application").await;
    assert_eq!(browser.url().await, app.url("/developer?done=deleted"));
    assert!(browser.text().await.contains("The application is deleted."));
    let r = app
        .http()
        .post(app.url("/oauth/token"))
        .basic_auth(&client_id, Some(&new_secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the client is gone");
    let userinfo = app.http().get(app.url("/oauth/userinfo")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(userinfo.status(), 401, "its access token no longer works");
}

/// Signs `b` in to the account area (no app involved).
async fn account_sign_in(app: &TestApp, b: &Browser, email: &str) {
    let page = b.get(&app.url("/login?next=%2Fdeveloper")).await.text().await.unwrap();
    let csrf = field(&page, "csrf").expect("a csrf field");
    let r = b.post_form("/login", &[("csrf", &csrf), ("email", email), ("password", PASSWORD), ("next", "/developer")]).await;
    assert_eq!(r.status(), 303, "signed in as {email}");
}

/// The developer API's CSRF token, from its own GET.
async fn api_csrf(app: &TestApp, b: &Browser) -> String {
    let r = b.http.get(app.url("/developer/api/apps")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["csrf_token"].as_str().unwrap().to_owned()
}

/// A JSON call to the developer API, with what a script sends: the session cookie, the CSRF
/// token, and the same-origin metadata of a browser's fetch.
async fn api(app: &TestApp, b: &Browser, method: reqwest::Method, path: &str, csrf: &str, body: Option<Value>) -> (u16, Value) {
    let origin = url::Url::parse(&app.issuer).unwrap().origin().ascii_serialization();
    let mut req = b
        .http
        .request(method, app.url(path))
        .header("x-csrf-token", csrf)
        .header("origin", origin)
        .header("sec-fetch-site", "same-origin")
        .header("sec-fetch-mode", "cors");
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_machine_to_machine_app_is_registered_without_a_redirect_uri_and_gets_tokens() {
    let app = spawn_app().await;
    developer(&app, "dev@example.com").await;
    latchkey_server::catalogue::create(&app.rt, "reports:read", "Read reports", false).await.unwrap();
    let b = app.browser();
    account_sign_in(&app, &b, "dev@example.com").await;
    let csrf = api_csrf(&app, &b).await;

    let (status, body) = api(
        &app,
        &b,
        reqwest::Method::POST,
        "/developer/api/apps",
        &csrf,
        Some(json!({"name": "Nightly Reports", "developer": "Acme Ops", "kind": "machine", "redirect_uris": ["https://x.example/cb"], "scopes": ["reports:read"]})),
    )
    .await;
    assert_eq!((status, body["field"].as_str()), (400, Some("redirect_uris")), "{body}");

    let (status, body) = api(
        &app,
        &b,
        reqwest::Method::POST,
        "/developer/api/apps",
        &csrf,
        Some(json!({"name": "Nightly Reports", "developer": "Acme Ops", "kind": "machine", "scopes": ["reports:read"]})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["redirect_uris"], json!([]));
    assert_eq!(body["grant_types"], json!(["client_credentials"]));
    let (client_id, secret) = (body["client_id"].as_str().unwrap().to_owned(), body["client_secret"].as_str().unwrap().to_owned());

    let r = app
        .http()
        .post(app.url("/oauth/token"))
        .basic_auth(&client_id, Some(&secret))
        .form(&[("grant_type", "client_credentials"), ("scope", "reports:read")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token: Value = r.json().await.unwrap();
    assert_eq!(token["scope"], "reports:read");

    // Rotating through the API, with a grace period in seconds.
    let (status, body) = api(
        &app,
        &b,
        reqwest::Method::POST,
        &format!("/developer/api/apps/{client_id}/secret"),
        &csrf,
        Some(json!({"grace_seconds": 600})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["secret"]["previous"]["expires_at"].as_i64(), Some(app.clock.now() + 600));
    let (status, listed) = api(&app, &b, reqwest::Method::GET, "/developer/api/apps", &csrf, None).await;
    assert_eq!((status, listed["apps"][0]["client_id"].as_str()), (200, Some(client_id.as_str())));
    assert!(listed["apps"][0].get("client_secret").is_none(), "a secret is never listed");
}

#[tokio::test]
async fn nobody_reaches_another_developers_app_through_any_route() {
    let app = spawn_app().await;
    developer(&app, "ada@example.com").await;
    developer(&app, "bob@example.com").await;
    app.user("carol@example.com", &[]).await; // Not a developer.
    let ada = app.browser();
    account_sign_in(&app, &ada, "ada@example.com").await;
    let csrf = api_csrf(&app, &ada).await;
    let (status, body) = api(
        &app,
        &ada,
        reqwest::Method::POST,
        "/developer/api/apps",
        &csrf,
        Some(json!({"name": "Ada's App", "developer": "Ada", "kind": "web", "redirect_uris": ["https://ada.example/cb"], "scopes": ["openid"]})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["client_id"].as_str().unwrap().to_owned();
    let ada_id = app.rt.store.find_user_by_email(app.rt.tenant.id, "ada@example.com").await.unwrap().unwrap().id;

    let bob = app.browser();
    account_sign_in(&app, &bob, "bob@example.com").await;
    let page = bob.get(&app.url("/developer")).await.text().await.unwrap();
    assert!(!page.contains(&id) && !page.contains("Ada's App"), "Bob's list has only his apps");
    let bob_csrf = api_csrf(&app, &bob).await;
    let page_csrf = field(&bob.get(&app.url("/developer/apps/new")).await.text().await.unwrap(), "csrf").unwrap();
    let r = bob.post_form(&format!("/developer/apps/{id}/owners"), &[("csrf", &page_csrf), ("email", "bob@example.com")]).await;
    assert_eq!(r.status(), 404, "Bob cannot invite himself to Ada's app");
    for path in [format!("/developer/apps/{id}"), format!("/developer/apps/{id}/rotate-secret"), format!("/developer/apps/{id}/delete")] {
        let r = bob.get(&app.url(&path)).await;
        assert_eq!(r.status(), 404, "GET {path}");
        let r = bob
            .post_form(
                &path,
                &[("csrf", &page_csrf), ("name", "Bob's now"), ("developer", "Bob"), ("grace", "0"), ("confirm_name", "Ada's App")],
            )
            .await;
        assert_eq!(r.status(), 404, "POST {path}");
    }
    for (method, path, body) in [
        (reqwest::Method::GET, format!("/developer/api/apps/{id}"), None),
        (reqwest::Method::PATCH, format!("/developer/api/apps/{id}"), Some(json!({"name": "Bob's now"}))),
        (reqwest::Method::DELETE, format!("/developer/api/apps/{id}"), None),
        (reqwest::Method::POST, format!("/developer/api/apps/{id}/secret"), Some(json!({"grace_seconds": 0}))),
        (reqwest::Method::POST, format!("/developer/api/apps/{id}/owners"), Some(json!({"email": "bob@example.com"}))),
        (reqwest::Method::DELETE, format!("/developer/api/apps/{id}/owners/{ada_id}"), None),
        (reqwest::Method::POST, format!("/developer/api/invitations/{id}"), Some(json!({"accept": true}))),
    ] {
        let (status, answer) = api(&app, &bob, method.clone(), &path, &bob_csrf, body).await;
        assert_eq!((status, answer["error"].as_str()), (404, Some("not_found")), "{method} {path}: {answer}");
    }
    let client = app.rt.store.find_client(app.rt.tenant.id, &id).await.unwrap().expect("Ada's app is still there");
    assert_eq!(client.name, "Ada's App", "and unchanged");
    assert_eq!(app.rt.store.list_client_owners(app.rt.tenant.id, &id).await.unwrap(), vec![ada_id], "and still only Ada's");

    // Someone who is not a developer is told so, on the pages and the API.
    let carol = app.browser();
    account_sign_in(&app, &carol, "carol@example.com").await;
    let r = carol.get(&app.url("/developer")).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("Ask the operator of this server to make you a developer."));
    let r = carol.http.get(app.url("/developer/api/apps")).send().await.unwrap();
    assert_eq!(r.status(), 403);

    // Signed out: the pages ask for a sign-in, the API says 401.
    let nobody = app.browser();
    let r = nobody.get(&app.url("/developer")).await;
    assert!(r.status().is_redirection(), "{}", r.status());
    assert!(location(&r).unwrap().contains("/login?next="));
    assert_eq!(nobody.http.get(app.url("/developer/api/apps")).send().await.unwrap().status(), 401);
}

/// Developer sign-up is closed unless the tenant opens it; then a signed-in user makes
/// themself a developer on its page.
#[tokio::test]
async fn developer_sign_up_opens_only_when_the_tenant_says_so() {
    let app = spawn_app().await;
    app.user("carol@example.com", &[]).await;
    let carol = app.browser();
    account_sign_in(&app, &carol, "carol@example.com").await;
    assert_eq!(carol.get(&app.url("/developer")).await.status(), 403, "closed by default");
    assert_eq!(carol.get(&app.url("/developer/signup")).await.status(), 403);

    let mut tenant = app.rt.tenant.clone();
    tenant.settings.developer_signup = Some(latchkey_core::model::DeveloperSignup::Open);
    admin::update_tenant(&app.rt, tenant).await.unwrap();
    app.clock.advance(16); // The server rereads its tenants.
    let r = carol.get(&app.url("/developer")).await;
    let to = location(&r).expect("a redirect");
    assert!(to.ends_with("/developer/signup"), "{to}");

    // In a real browser: the developer area leads to the sign-up, which leads back.
    let browser = Chromium::start("developer-signup").await;
    browser.goto(&app.url("/developer")).await;
    browser.fill("Email", "carol@example.com").await;
    browser.fill("Password", PASSWORD).await;
    browser.click("Sign in").await;
    assert_eq!(browser.url().await, app.url("/developer/signup"));
    browser.check_page("developer-signup").await;
    browser.click("Become a developer").await;
    assert_eq!(browser.url().await, app.url("/developer"));
    assert_eq!(carol.get(&app.url("/developer")).await.status(), 200, "a developer now, in every browser");
    assert!(app.rt.store.find_user_by_email(app.rt.tenant.id, "carol@example.com").await.unwrap().unwrap().developer);
}
