//! The authorization endpoint: what is a page, what is a redirect, and the sign-in and
//! consent rules.

use latchkey_server::admin::NewClient;
use latchkey_server::Settings;
use latchkey_testkit::{location, query_param, spawn_app, spawn_app_with, urlencode, TestApp, TestClient, PASSWORD};

fn authorize_url(app: &TestApp, client: &TestClient, extra: &str) -> String {
    app.url(&format!("/oauth/authorize?response_type=code&client_id={}&{extra}", client.client_id))
}

async fn two_uri_client(app: &TestApp) -> TestClient {
    app.client_with(NewClient {
        name: "Two".into(),
        redirect_uris: vec!["https://c.example/cb".into(), "https://c.example/other".into()],
        scopes: vec!["openid email".into()],
        ..Default::default()
    })
    .await
}

/// docs/security.md AZ-01, AZ-02: an unknown client or a redirect URI that does not match is an
/// HTML error page, never a redirect.
#[tokio::test]
async fn bad_client_or_redirect_uri_is_a_page_not_a_redirect() {
    let app = spawn_app().await;
    let c = two_uri_client(&app).await;
    let b = app.browser();
    let mut urls = vec![
        app.url("/oauth/authorize?response_type=code&client_id=nope&redirect_uri=https%3A%2F%2Fc.example%2Fcb"),
        app.url("/oauth/authorize?response_type=code"),
        authorize_url(&app, &c, ""),
    ];
    for near in [
        "https://c.example/cb/",
        "https://C.example/cb",
        "https://c.example:443/cb",
        "https://c.example/cb?x=1",
        "https://c.example/cb#f",
        "https://c.example/CB",
        "https://c.example/cb%2F",
        "https://c.example/./cb",
        "http://c.example/cb",
        "https://evil.example/cb",
    ] {
        urls.push(authorize_url(&app, &c, &format!("redirect_uri={}", urlencode(near))));
    }
    for url in urls {
        let r = b.get(&url).await;
        assert_eq!(r.status(), 400, "{url}");
        assert!(location(&r).is_none(), "{url} must not redirect");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let html = r.text().await.unwrap();
        assert!(html.contains("<h1>Invalid authorization request</h1>"), "{html}");
    }
}

/// docs/security.md AZ-08, AZ-16: errors after validation redirect with error, state (byte for
/// byte) and iss.
#[tokio::test]
async fn later_errors_redirect_with_state_and_iss() {
    let app = spawn_app().await;
    let c = app.client("openid email").await;
    let b = app.browser();
    // Every VSCHAR that needs encoding (RFC 6749 Appendix A.5); see inputs.rs for the rest.
    let state = "a b&c=d/~?%\"'#+";
    let cases = [
        ("response_type=token", "unsupported_response_type"),
        ("response_type=code&scope=admin", "invalid_scope"),
        ("response_type=code&code_challenge=abc&code_challenge_method=S256", "invalid_request"),
        ("response_type=code&code_challenge_method=plain&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "invalid_request"),
        ("response_type=code&request=eyJ", "request_not_supported"),
        ("response_type=code&prompt=none", "login_required"),
    ];
    for (q, want) in cases {
        let url = app.url(&format!("/oauth/authorize?{q}&client_id={}&state={}", c.client_id, urlencode(state)));
        let r = b.get(&url).await;
        assert_eq!(r.status(), 302, "{q}");
        let loc = location(&r).unwrap();
        assert!(loc.starts_with("https://app.example/cb?"), "{loc}");
        assert_eq!(query_param(&loc, "error").as_deref(), Some(want), "{q}");
        assert!(query_param(&loc, "error_description").is_some());
        assert_eq!(query_param(&loc, "state").as_deref(), Some(state));
        assert_eq!(query_param(&loc, "iss").as_deref(), Some(app.issuer.as_str()));
    }
}

#[tokio::test]
async fn public_clients_must_use_pkce() {
    let app = spawn_app().await;
    let c = app
        .client_with(NewClient {
            name: "SPA".into(),
            redirect_uris: vec!["https://spa.example/cb".into()],
            scopes: vec!["openid".into()],
            public: true,
            ..Default::default()
        })
        .await;
    let r = app.browser().get(&authorize_url(&app, &c, "state=s")).await;
    let loc = location(&r).unwrap();
    assert_eq!(query_param(&loc, "error").as_deref(), Some("invalid_request"));
    assert!(query_param(&loc, "error_description").unwrap().starts_with("pkce_required"));
}

#[tokio::test]
async fn deny_redirects_with_access_denied() {
    let app = spawn_app().await;
    app.user("ada@example.com", &[]).await;
    let c = app.client("openid email").await;
    let loc = app.browser().sign_in_and_consent(&authorize_url(&app, &c, "state=xyz"), "ada@example.com", "deny").await;
    assert!(loc.starts_with("https://app.example/cb?"));
    assert_eq!(query_param(&loc, "error").as_deref(), Some("access_denied"));
    assert_eq!(query_param(&loc, "state").as_deref(), Some("xyz"));
    assert_eq!(query_param(&loc, "iss").as_deref(), Some(app.issuer.as_str()));
    assert!(query_param(&loc, "code").is_none());
}

#[tokio::test]
async fn consent_is_remembered_unless_prompt_consent() {
    let app = spawn_app().await;
    app.user("ada@example.com", &["Shop"]).await;
    let c = app.client("openid email").await;
    let b = app.browser();
    let loc = b.sign_in_and_consent(&authorize_url(&app, &c, "scope=openid%20email&state=1"), "ada@example.com", "allow").await;
    assert!(query_param(&loc, "code").is_some());
    // Same client and scopes (any order, and a subset): straight back with a code.
    for q in ["scope=email%20openid&state=2", "scope=email&state=3", "scope=openid%20email&prompt=none&state=4"] {
        let r = b.get(&authorize_url(&app, &c, q)).await;
        assert_eq!(r.status(), 302, "{q}");
        assert!(query_param(&location(&r).unwrap(), "code").is_some(), "{q}");
    }
    // prompt=consent asks again.
    let r = b.get(&authorize_url(&app, &c, "scope=email&prompt=consent")).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("action=\"/consent?interaction="));
}

/// OpenID Connect Core §3.1.2.1: prompt=login and max_age make the user sign in again.
#[tokio::test]
async fn prompt_login_and_max_age_force_a_new_sign_in() {
    let app = spawn_app().await;
    app.user("ada@example.com", &[]).await;
    let c = app.client("openid email").await;
    let b = app.browser();
    b.sign_in_and_consent(&authorize_url(&app, &c, "state=1"), "ada@example.com", "allow").await;
    let page = |r: reqwest::Response| async move { r.text().await.unwrap() };
    let html = page(b.get(&authorize_url(&app, &c, "prompt=login")).await).await;
    assert!(html.contains("action=\"/login?interaction="));
    // After signing in within this request, it completes without asking a third time.
    let r = b.submit_login(&html, "ada@example.com", PASSWORD).await;
    let r = b.follow(&r).await;
    assert_eq!(r.status(), 302);
    assert!(query_param(&location(&r).unwrap(), "code").is_some());

    app.clock.advance(120);
    let r = b.get(&authorize_url(&app, &c, "max_age=10000")).await;
    assert_eq!(r.status(), 302, "a recent sign-in satisfies max_age=10000");
    let html = page(b.get(&authorize_url(&app, &c, "max_age=60")).await).await;
    assert!(html.contains("action=\"/login?interaction="), "an older sign-in does not satisfy max_age=60");
    let r = b.get(&authorize_url(&app, &c, "max_age=60&prompt=none&state=s")).await;
    assert_eq!(query_param(&location(&r).unwrap(), "error").as_deref(), Some("login_required"));
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_answer() {
    let app = spawn_app().await;
    app.user("ada@example.com", &[]).await;
    let c = app.client("openid").await;
    let b = app.browser();
    let html = b.get(&authorize_url(&app, &c, "login_hint=ada%40example.com")).await.text().await.unwrap();
    assert!(html.contains("value=\"ada@example.com\""), "login_hint prefills the email");
    let wrong = b.submit_login(&html, "ada@example.com", "wrong password").await;
    let unknown = b.submit_login(&html, "bob@example.com", "wrong password").await;
    assert_eq!(wrong.status(), unknown.status());
    let (w, u) = (wrong.text().await.unwrap(), unknown.text().await.unwrap());
    assert!(w.contains("The email or password is incorrect."));
    assert!(u.contains("The email or password is incorrect."));
}

/// docs/security.md AZ-12: forms need the CSRF token of this browser and no foreign Origin.
#[tokio::test]
async fn forms_without_csrf_or_from_another_origin_are_refused() {
    let app = spawn_app().await;
    app.user("ada@example.com", &[]).await;
    let c = app.client("openid").await;
    let b = app.browser();
    let html = b.get(&authorize_url(&app, &c, "")).await.text().await.unwrap();
    let interaction = latchkey_testkit::field(&html, "interaction").unwrap();
    let csrf = latchkey_testkit::field(&html, "csrf").unwrap();
    let creds = [("interaction", interaction.as_str()), ("email", "ada@example.com"), ("password", PASSWORD)];
    let r = b.post_form("/login", &creds).await;
    assert_eq!(r.status(), 403);
    let mut with_bad = creds.to_vec();
    with_bad.push(("csrf", "forged"));
    assert_eq!(b.post_form("/login", &with_bad).await.status(), 403);
    let mut good = creds.to_vec();
    good.push(("csrf", &csrf));
    let r = b.http.post(app.url("/login")).header("Origin", "https://evil.example").form(&good).send().await.unwrap();
    assert_eq!(r.status(), 403);
    // Another browser (no cookie) cannot use this browser's form.
    let other = app.browser();
    assert_eq!(other.post_form("/login", &good).await.status(), 403);
    // The genuine post works, answered with 303 (never 307: RFC 9700 §4.12).
    assert_eq!(b.post_form("/login", &good).await.status(), 303);
}

/// The form check agrees with what browsers send (Fetch, "append a request `Origin` header";
/// OWASP's CSRF cheat sheet, fetch metadata): no form that Chromium, Firefox or Safari posts
/// from the sign-in page is refused, and a post from another site still is. Before, a
/// `no-referrer` policy made every browser send `Origin: null`, which was refused.
#[tokio::test]
async fn origin_checks_agree_with_how_browsers_send_origin() {
    let app = spawn_app().await;
    app.user("ada@example.com", &[]).await;
    let c = app.client("openid").await;
    let origin = app.issuer.clone();
    let same_origin: &[(&str, &str)] =
        &[("sec-fetch-site", "same-origin"), ("sec-fetch-mode", "navigate"), ("sec-fetch-dest", "document"), ("sec-fetch-user", "?1")];
    let with_origin = |extra: &[(&'static str, &'static str)]| {
        let mut h = vec![("origin", origin.clone())];
        h.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        h
    };
    let accepted: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("Chromium and Firefox", with_origin(same_origin)),
        (
            "Safari 16.4 and later",
            with_origin(&[("sec-fetch-site", "same-origin"), ("sec-fetch-mode", "navigate"), ("sec-fetch-dest", "document")]),
        ),
        ("an older browser without fetch metadata", with_origin(&[])),
        ("a browser under a no-referrer policy", {
            let mut h = vec![("origin", "null".to_owned())];
            h.extend(same_origin.iter().map(|(k, v)| (*k, v.to_string())));
            h
        }),
        ("a browser that sends no Origin", vec![]),
        ("a bookmark or typed address", vec![("sec-fetch-site", "none".to_owned())]),
    ];
    let refused: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("a cross-site form", vec![("origin", "https://evil.example".into()), ("sec-fetch-site", "cross-site".into())]),
        ("a sandboxed cross-site frame", vec![("origin", "null".into()), ("sec-fetch-site", "cross-site".into())]),
        ("a sibling site", vec![("origin", "https://other.example.test".into()), ("sec-fetch-site", "same-site".into())]),
        ("a cross-site form in an older browser", vec![("origin", "https://evil.example".into())]),
    ];
    for (who, headers, want) in accepted.into_iter().map(|(w, h)| (w, h, 303)).chain(refused.into_iter().map(|(w, h)| (w, h, 403))) {
        // A fresh browser and interaction per case, so that each post is a first sign-in.
        let b = app.browser();
        let html = b.get(&authorize_url(&app, &c, "")).await.text().await.unwrap();
        let form = [
            ("interaction", latchkey_testkit::field(&html, "interaction").unwrap()),
            ("csrf", latchkey_testkit::field(&html, "csrf").unwrap()),
            ("email", "ada@example.com".to_owned()),
            ("password", PASSWORD.to_owned()),
        ];
        let mut req = b.http.post(app.url("/login")).form(&form);
        for (k, v) in &headers {
            req = req.header(*k, v);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), want, "{who}: {headers:?}");
        if want == 403 {
            let page = r.text().await.unwrap();
            assert!(page.contains("another website"), "{who}: the page says what happened: {page}");
        }
    }
}

/// docs/security.md AZ-10, AZ-11, AZ-06: framing, referrer and CORS headers.
#[tokio::test]
async fn pages_carry_the_security_headers() {
    let app = spawn_app().await;
    let c = app.client("openid").await;
    let r = app.http().get(authorize_url(&app, &c, "")).header("Origin", "https://x.example").send().await.unwrap();
    let h = r.headers();
    assert!(h["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    assert_eq!(h["x-frame-options"], "DENY");
    // No referrer to any other origin (RFC 9700 §4.2.4); the pages' own posts keep their
    // Origin (see `origin_checks_agree_with_how_browsers_send_origin`).
    assert_eq!(h["referrer-policy"], "same-origin");
    assert!(h.get("access-control-allow-origin").is_none());
    let cookie = h["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
    let html = r.text().await.unwrap();
    assert!(!html.contains("http://") && !html.contains("https://"), "no third-party resources or links");
}

/// docs/pages.md: pages and redirects that carry a code are never cached; a server on https tells
/// browsers to stay on https (RFC 6797), and one on http does not.
#[tokio::test]
async fn pages_and_code_redirects_are_not_cached_and_https_servers_send_hsts() {
    let app = spawn_app().await;
    app.user("ada@example.com", &[]).await;
    let c = app.client("openid").await;
    let b = app.browser();
    let page = b.get(&authorize_url(&app, &c, "state=1")).await;
    assert_eq!(page.headers()["cache-control"], "no-store");
    assert!(page.headers().get("strict-transport-security").is_none(), "not on http");
    let loc = b.sign_in_and_consent(&authorize_url(&app, &c, "state=1"), "ada@example.com", "allow").await;
    assert!(loc.contains("code="));
    let again = b.get(&authorize_url(&app, &c, "state=2")).await;
    assert_eq!(again.status(), 302, "consent remembered: a redirect with a code");
    assert_eq!(again.headers()["cache-control"], "no-store");
    for path in ["/", "/login", "/nope"] {
        let r = b.get(&app.url(path)).await;
        assert_eq!(r.headers()["cache-control"], "no-store", "{path}");
    }

    let https = spawn_app_with(Settings { issuer: Some("https://auth.example.test".into()), ..Default::default() }).await;
    let r = reqwest::get(format!("http://127.0.0.1:{}/.well-known/openid-configuration", https.port)).await.unwrap();
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
}

#[tokio::test]
async fn post_to_the_authorization_endpoint_works_and_answers_303() {
    let app = spawn_app().await;
    app.user("ada@example.com", &[]).await;
    let c = app.client("openid").await;
    let b = app.browser();
    b.sign_in_and_consent(&authorize_url(&app, &c, "state=1"), "ada@example.com", "allow").await;
    let r = b
        .http
        .post(app.url("/oauth2/authorize"))
        .form(&[("response_type", "code"), ("client_id", &c.client_id), ("state", "p")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let loc = location(&r).unwrap();
    assert!(query_param(&loc, "code").is_some());
    assert_eq!(query_param(&loc, "state").as_deref(), Some("p"));
}

/// YouCan's `scope[]` array and `*`; UltraCart's absent scope and redirect_uri.
#[tokio::test]
async fn scope_array_star_and_registered_defaults() {
    let app = spawn_app().await;
    app.user("ada@example.com", &[]).await;
    let c = app.client("read_orders write_products").await;
    let b = app.browser();
    for (q, want) in
        [("scope%5B%5D=*", "read_orders write_products"), ("scope%5B%5D=read_orders", "read_orders"), ("", "read_orders write_products")]
    {
        let loc = b.sign_in_and_consent(&authorize_url(&app, &c, &format!("{q}&state=s&prompt=consent")), "ada@example.com", "allow").await;
        let code = query_param(&loc, "code").unwrap();
        let t: serde_json::Value = app
            .http()
            .post(app.url("/oauth/token"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", &c.client_id),
                ("client_secret", c.secret.as_deref().unwrap()),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(t["scope"], want, "{q}");
    }
}

/// UltraCart's compatibility switch: state required.
#[tokio::test]
async fn state_can_be_required() {
    let app = spawn_app_with(Settings { require_state: Some(true), ..Default::default() }).await;
    let c = app.client("openid").await;
    let r = app.browser().get(&authorize_url(&app, &c, "")).await;
    assert_eq!(query_param(&location(&r).unwrap(), "error").as_deref(), Some("invalid_request"));
}

/// People get pages, never JSON: a form too large to read is an HTML 4xx.
#[tokio::test]
async fn page_errors_are_html() {
    let app = spawn_app().await;
    let big = "x".repeat(100_000);
    let r = app.browser().post_form("/login", &[("interaction", big.as_str())]).await;
    assert!(r.status().is_client_error(), "{}", r.status());
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let r = app.browser().get(&app.url("/oauth/authorize/continue?interaction=not-a-uuid")).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("Sign-in expired"));
}

/// RFC 8252 §8.6: a public client on a loopback redirect is asked every time, since any local
/// app could claim to be it; `prompt=none` gets consent_required.
#[tokio::test]
async fn public_loopback_clients_are_always_asked() {
    let app = spawn_app().await;
    app.user("ada@example.com", &[]).await;
    let c = app
        .client_with(NewClient {
            name: "Desktop".into(),
            redirect_uris: vec!["http://127.0.0.1/cb".into()],
            scopes: vec!["openid".into()],
            public: true,
            ..Default::default()
        })
        .await;
    let pkce = "code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256";
    let b = app.browser();
    let loc = b
        .sign_in_and_consent(
            &authorize_url(&app, &c, &format!("{pkce}&redirect_uri=http%3A%2F%2F127.0.0.1%3A4000%2Fcb")),
            "ada@example.com",
            "allow",
        )
        .await;
    assert!(query_param(&loc, "code").is_some());
    let again = b.get(&authorize_url(&app, &c, &format!("{pkce}&redirect_uri=http%3A%2F%2F127.0.0.1%3A5555%2Fcb"))).await;
    assert_eq!(again.status(), 200, "asked again, not redirected");
    assert!(again.text().await.unwrap().contains("action=\"/consent?interaction="));
    let silent = b.get(&authorize_url(&app, &c, &format!("{pkce}&prompt=none&state=s"))).await;
    assert_eq!(query_param(&location(&silent).unwrap(), "error").as_deref(), Some("consent_required"));
}

/// The consent form cannot stand in for the sign-in that prompt=login demands.
#[tokio::test]
async fn consent_form_cannot_skip_a_required_sign_in() {
    let app = spawn_app().await;
    app.user("ada@example.com", &[]).await;
    let c = app.client("openid").await;
    let b = app.browser();
    b.sign_in_and_consent(&authorize_url(&app, &c, "state=1"), "ada@example.com", "allow").await;
    let login_page = b.get(&authorize_url(&app, &c, "prompt=login&state=2")).await.text().await.unwrap();
    assert!(login_page.contains("action=\"/login?interaction="));
    // Posting the consent form with the login page's fields, without signing in:
    let r = b.submit_consent(&login_page, "allow", None).await;
    assert_eq!(r.status(), 303);
    let loc = location(&r).unwrap();
    assert!(loc.starts_with("/oauth/authorize/continue"), "back to sign-in, no code: {loc}");
}

/// One rule chooses the business an authorization acts for (`core::business::business_for`):
/// a default business the person no longer belongs to is never preselected on the consent
/// page (it was, while the token endpoint and the consent form skipped it).
#[tokio::test]
async fn the_consent_page_preselects_only_a_business_the_person_belongs_to() {
    let app = spawn_app().await;
    let ada = app.user("ada@example.com", &["Ada's Shop", "Ada's Cafe"]).await;
    let elsewhere = latchkey_server::admin::create_business(&app.rt, "Not Ada's").await.unwrap();
    app.rt.store.update_user_default_business(app.rt.tenant.id, ada.id, Some(elsewhere.id)).await.unwrap();
    let c = app.client("openid").await;
    let b = app.browser();
    let login = b.get(&authorize_url(&app, &c, "state=1")).await.text().await.unwrap();
    let r = b.submit_login(&login, "ada@example.com", PASSWORD).await;
    let consent = b.follow(&r).await.text().await.unwrap();
    let shop = latchkey_server::admin::find_business(&app.rt, "Ada's Shop").await.unwrap();
    assert_eq!(consent.matches(" checked").count(), 1, "exactly one business is preselected: {consent}");
    assert!(consent.contains(&format!("value=\"{}\" checked", shop.id)), "the first business Ada joined");
}

/// docs/security.md AZ-03: the sign-in page's `next` only ever leads to a page of this site;
/// another site's address (in any spelling a browser would follow) leads to the account.
#[tokio::test]
async fn the_sign_in_page_never_leads_to_another_site() {
    let app = spawn_app().await;
    app.user("ada@example.com", &[]).await;
    for next in ["https://evil.example/x", "//evil.example/x", "/\\evil.example/x", "https:evil.example", "/account/developer-settings"] {
        let b = app.browser();
        let html = b.get(&app.url(&format!("/login?next={}", urlencode(next)))).await.text().await.unwrap();
        let form = [
            ("next", latchkey_testkit::field(&html, "next").unwrap()),
            ("csrf", latchkey_testkit::field(&html, "csrf").unwrap()),
            ("email", "ada@example.com".to_owned()),
            ("password", PASSWORD.to_owned()),
        ];
        let r = b.post_form("/login", &form.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>()).await;
        assert_eq!(r.status(), 303, "{next}");
        let to = location(&r).unwrap();
        let want = if next == "/account/developer-settings" { next } else { "/account" };
        assert_eq!(to, want, "next={next} leads to {to}");
        // A forged form field fares no better than the query.
        let b2 = app.browser();
        let csrf = latchkey_testkit::field(&b2.get(&app.url("/login")).await.text().await.unwrap(), "csrf").unwrap();
        let forged = [("next", next), ("csrf", csrf.as_str()), ("email", "ada@example.com"), ("password", PASSWORD)];
        let to = location(&b2.post_form("/login", &forged).await).unwrap();
        assert!(to.starts_with('/') && !to.starts_with("//") && !to.starts_with("/\\"), "next={next} leads to {to}");
    }
}
