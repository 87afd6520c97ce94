//! Input that breaks its grammar is refused where it enters, with the RFC's error, on every
//! backend (`docs/inputs.md`): a NUL byte never reaches PostgreSQL, whose `text` cannot hold
//! it, and HTTP Basic credentials are decoded exactly as RFC 6749 §2.3.1 says.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use latchkey_server::admin::NewClient;
use latchkey_testkit::{location, query_param, spawn_app, urlencode, TestApp, TestClient, PASSWORD};
use serde_json::{json, Value};

/// A confidential client that may use every grant, as the reproductions need.
async fn all_grants(app: &TestApp) -> TestClient {
    app.client_with(NewClient {
        name: "Everything".into(),
        redirect_uris: vec!["https://app.example.test/cb".into()],
        scopes: vec!["openid email offline_access orders:read".into()],
        grant_types: ["authorization_code", "refresh_token", "client_credentials", "password"].map(String::from).to_vec(),
        ..Default::default()
    })
    .await
}

async fn post_token(app: &TestApp, body: &str, authorization: Option<&str>) -> (u16, Value) {
    let mut r = app.http().post(app.url("/oauth/token")).header("content-type", "application/x-www-form-urlencoded").body(body.to_owned());
    if let Some(a) = authorization {
        r = r.header("authorization", a);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn basic_raw(user_pass: &[u8]) -> String {
    format!("Basic {}", STANDARD.encode(user_pass))
}

/// The reproductions: each answered 500 on PostgreSQL.
#[tokio::test]
async fn a_nul_byte_is_a_client_error_at_every_entrance() {
    let app = spawn_app().await;
    app.user("ada@example.com", &["Ada's Shop"]).await;
    let c = all_grants(&app).await;
    let secret = c.secret.clone().unwrap();

    let (status, body) = post_token(&app, "grant_type=client_credentials&client_id=a%00b&client_secret=x", None).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");

    let (status, body) = post_token(&app, "grant_type=client_credentials", Some(&basic_raw(b"a%00b:x"))).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");

    let basic = basic_raw(format!("{}:{secret}", c.client_id).as_bytes());
    let (status, body) = post_token(&app, "grant_type=password&username=a%00b&password=x", Some(&basic)).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")), "{body}");
    let (status, body) = post_token(&app, "grant_type=password&username=ada%40example.com&password=a%00b", Some(&basic)).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")), "{body}");

    let r = app
        .http()
        .get(app.url("/oauth/authorize?response_type=code&client_id=a%00b&redirect_uri=https%3A%2F%2Fapp.example.test%2Fcb"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(location(&r).is_none(), "an unknown client is never redirected to");

    // The sign-in form: the email field says what is wrong, and nothing was counted or stored.
    let b = app.browser();
    let authorize = format!("/oauth/authorize?response_type=code&client_id={}&scope=openid", c.client_id);
    let login = b.get(&app.url(&authorize)).await.text().await.unwrap();
    let r = b.submit_login(&login, "ada\0@example.com", PASSWORD).await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("Enter your email address"), "{page}");
    let r = b.submit_login(&page, "ada@example.com", PASSWORD).await;
    assert_eq!(r.status(), 303, "the same form signs in with a real email");

    // A signed-in user's authorize request with a NUL in its nonce: an error for the app.
    let r = b.get(&app.url(&format!("{authorize}&redirect_uri={}&nonce=n%00x&state=s1", urlencode(&c.redirect_uri)))).await;
    assert_eq!(r.status(), 302);
    let loc = location(&r).unwrap();
    assert!(loc.starts_with(&c.redirect_uri), "{loc}");
    assert_eq!(query_param(&loc, "error").as_deref(), Some("invalid_request"), "{loc}");
    assert_eq!(query_param(&loc, "state").as_deref(), Some("s1"));

    // A state the grammar refuses is not echoed.
    let r = b.get(&app.url(&format!("{authorize}&redirect_uri={}&state=s%0D%0Ax", urlencode(&c.redirect_uri)))).await;
    let loc = location(&r).unwrap();
    assert_eq!(query_param(&loc, "error").as_deref(), Some("invalid_request"), "{loc}");
    assert_eq!(query_param(&loc, "state"), None, "{loc}");

    // The personal token API: a JSON error, and no token made.
    let api = app.url("/account/api/personal-tokens");
    let listing: Value = b.get(&api).await.json().await.unwrap();
    let csrf = listing["csrf_token"].as_str().unwrap().to_owned();
    for name in ["\u{0}", "a\u{0}b", "line\nbreak", "   "] {
        let r = b.http.post(&api).header("X-CSRF-Token", &csrf).json(&json!({"name": name, "scope": "openid"})).send().await.unwrap();
        assert_eq!(r.status(), 400, "{name:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{body}");
    }
    let listing: Value = b.get(&api).await.json().await.unwrap();
    assert_eq!(listing["tokens"], json!([]), "nothing was saved");
}

/// RFC 6749 §2.3.1: the Basic user and password are each form-decoded; a `&` or `=` in them
/// is part of the value, never a second parameter. Before, `CID&x:SECRET` authenticated as
/// `CID` at the token, introspection and revocation endpoints.
#[tokio::test]
async fn basic_credentials_are_decoded_exactly_at_every_endpoint() {
    let app = spawn_app().await;
    let c = all_grants(&app).await;
    let (id, secret) = (c.client_id.clone(), c.secret.clone().unwrap());
    let token: Value = app.client_credentials(&c).await.json().await.unwrap();
    let access = token["access_token"].as_str().unwrap().to_owned();

    let wrong = [
        format!("{id}&x:{secret}"),
        format!("{id}&y=1:{secret}"),
        format!("{id}=x:{secret}"),
        format!("{id}:{secret}&client_id=x"),
        format!("{id}:{secret}+"),
        format!("{id}%3A:{secret}"),
        format!("{id}:{secret}%3A"),
        format!("{id}{secret}"),
        format!("{id}%zz:{secret}"),
    ];
    for endpoint in ["/oauth/token", "/oauth/introspect", "/oauth/revoke"] {
        let body = match endpoint {
            "/oauth/token" => "grant_type=client_credentials".to_owned(),
            _ => format!("token={access}"),
        };
        let send = |auth: String| {
            let (app, body) = (&app, body.clone());
            async move {
                app.http()
                    .post(app.url(endpoint))
                    .header("authorization", auth)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .unwrap()
            }
        };
        for creds in &wrong {
            let r = send(basic_raw(creds.as_bytes())).await;
            assert_eq!(r.status(), 401, "{endpoint} with {creds:?}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"], "invalid_client", "{endpoint} with {creds:?}: {body}");
        }
        for raw in [basic_raw(b"\xff\xfe:x"), "Basic !!!".to_owned(), "Basic".to_owned()] {
            assert_eq!(send(raw.clone()).await.status(), 401, "{endpoint} with {raw:?}");
        }
        // The exact encoding still authenticates (this revokes the token last of all).
        let r = send(basic_raw(format!("{id}:{secret}").as_bytes())).await;
        assert_eq!(r.status(), 200, "{endpoint}");
    }
}

/// A client_id with characters that need encoding (the demo's, or an imported one) works when
/// it is form-encoded in the Basic header, as RFC 6749 §2.3.1 says the client does.
#[tokio::test]
async fn a_client_id_with_reserved_characters_authenticates_when_encoded() {
    let app = spawn_app().await;
    let c = app
        .client_with(NewClient {
            name: "Odd id".into(),
            client_id: Some("shop&co=1+x:y".into()),
            redirect_uris: vec!["https://app.example.test/cb".into()],
            grant_types: vec!["client_credentials".into()],
            ..Default::default()
        })
        .await;
    let encoded = urlencode(&c.client_id);
    let secret = c.secret.unwrap();
    let (status, body) =
        post_token(&app, "grant_type=client_credentials", Some(&basic_raw(format!("{encoded}:{secret}").as_bytes()))).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) =
        post_token(&app, "grant_type=client_credentials", Some(&basic_raw(format!("{}:{secret}", c.client_id).as_bytes()))).await;
    assert_eq!(status, 401, "unencoded, `+` is a space and the id is another");
}
