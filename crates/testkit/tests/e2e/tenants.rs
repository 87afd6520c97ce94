//! Tenants: Yoco's sandbox and live side by side on one server, each with its own issuer,
//! keys, users and clients, and nothing of one usable in the other.

use super::jwt::part;
use latchkey_testkit::rp::OpenIdClient;
use latchkey_testkit::{location, query_param, spawn_app, TestApp};
use serde_json::{json, Value};

async fn sandbox_and_live() -> (TestApp, TestApp, TestApp) {
    let app = spawn_app().await;
    let sandbox = app.tenant("sandbox", &format!("{}/sandbox", app.issuer)).await;
    let live = app.tenant("live", &format!("{}/live", app.issuer)).await;
    (app, sandbox, live)
}

#[tokio::test]
async fn sandbox_and_live_each_complete_the_flow() {
    let (_app, sandbox, live) = sandbox_and_live().await;
    for env in [&sandbox, &live] {
        let user = env.user("ada@example.com", &["Ada Coffee"]).await;
        let c = env.client("openid offline_access").await;
        // Discovery through a real client library (which also checks that the document names
        // the issuer it was fetched for): the issuer and every endpoint are the tenant's.
        let rp = OpenIdClient::discover(&env.issuer, &c.client_id, c.secret.as_deref()).await;
        let meta = rp.metadata();
        assert_eq!(meta["issuer"], env.issuer);
        assert_eq!(meta["token_endpoint"], env.url("/oauth/token"));
        assert_eq!(meta["jwks_uri"], env.url("/.well-known/jwks.json"));
        let t = env.tokens_for(&c, "ada@example.com", "openid offline_access").await;
        let claims = part(t["id_token"].as_str().unwrap(), 1);
        assert_eq!(claims["iss"], env.issuer);
        assert_eq!(claims["sub"], user.id.to_string());
    }
    // Each tenant signs with its own key.
    assert_ne!(kid(&sandbox).await, kid(&live).await);
}

#[tokio::test]
async fn nothing_crosses_from_one_tenant_to_another() {
    let (_app, sandbox, live) = sandbox_and_live().await;
    sandbox.user("ada@example.com", &[]).await;
    live.user("ada@example.com", &[]).await;
    let sc = sandbox.client("openid").await;
    let lc = live.client("openid").await;
    let t = sandbox.tokens_for(&sc, "ada@example.com", "openid").await;

    // A sandbox client is unknown to live.
    let r = live.browser().get(&live.url(&format!("/oauth/authorize?response_type=code&client_id={}", sc.client_id))).await;
    assert_eq!(r.status(), 400);
    let r = live.client_credentials(&sc).await;
    assert_eq!(r.status(), 401);
    // A sandbox token is inactive in live, and refused by live's UserInfo.
    let intro: Value = live
        .http()
        .post(live.url("/oauth/introspect"))
        .basic_auth(&lc.client_id, lc.secret.as_deref())
        .form(&[("token", t["access_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(intro, json!({"active": false}));
    let r = live.http().get(live.url("/oauth/userinfo")).bearer_auth(t["access_token"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // A browser signed in to the sandbox is not signed in to live.
    let b = sandbox.browser();
    b.sign_in_and_consent(
        &sandbox.url(&format!("/oauth/authorize?response_type=code&client_id={}", sc.client_id)),
        "ada@example.com",
        "allow",
    )
    .await;
    let r = b.get(&live.url(&format!("/oauth/authorize?response_type=code&client_id={}&prompt=none&state=s", lc.client_id))).await;
    assert_eq!(query_param(&location(&r).unwrap(), "error").as_deref(), Some("login_required"));
}

async fn kid(env: &TestApp) -> String {
    let jwks: Value = env.http().get(env.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    jwks["keys"][0]["kid"].as_str().unwrap().to_owned()
}

/// The whole flow with openid-client (PKCE, verified id_token, rotation, revocation) in each
/// tenant of one server.
#[tokio::test]
async fn openid_client_completes_the_flow_in_each_tenant() {
    let (_app, sandbox, live) = sandbox_and_live().await;
    super::oidc::full_flow(&sandbox, "RS256").await;
    super::oidc::full_flow(&live, "RS256").await;
}

/// Tenants on host names: the same path reaches different tenants by `Host`.
#[tokio::test]
async fn tenants_are_reached_by_host_name_too() {
    let app = spawn_app().await;
    let live_issuer = format!("http://live.test:{}", app.port);
    let _live = app.tenant("live", &live_issuer).await;
    let discover = |host: Option<String>| {
        let app = &app;
        async move {
            let mut req = app.http().get(app.url("/.well-known/openid-configuration"));
            if let Some(h) = host {
                req = req.header("host", h);
            }
            req.send().await.unwrap().json::<Value>().await.unwrap()["issuer"].as_str().unwrap().to_owned()
        }
    };
    assert_eq!(discover(Some(format!("live.test:{}", app.port))).await, live_issuer);
    // RFC 9110 §4.2.3: host names compare without regard to case.
    assert_eq!(discover(Some(format!("LIVE.Test:{}", app.port))).await, live_issuer, "the Host header's case does not matter");
    assert_eq!(discover(Some(format!("live.test.evil:{}", app.port))).await, app.issuer, "a host that only starts alike is another host");
    assert_eq!(discover(None).await, app.issuer, "other hosts reach the default tenant");
}

/// A tenant created while the server runs (by the CLI, or on another node) is served within a
/// second, not after the next 15-second reload: a request that finds no tenant of its own
/// rereads the tenants first (at most once a second).
#[tokio::test]
async fn a_new_tenant_is_served_at_once() {
    let app = spawn_app().await;
    let issuer = format!("{}/fresh", app.issuer);
    let discovery = format!("{issuer}/.well-known/openid-configuration");
    assert_eq!(app.http().get(&discovery).send().await.unwrap().status(), 404, "no such tenant yet");
    latchkey_server::admin::create_tenant(&app.rt, "fresh", &issuer, Default::default()).await.unwrap();
    app.clock.advance(1);
    let r = app.http().get(&discovery).send().await.unwrap();
    assert_eq!(r.status(), 200, "served a second later, not fifteen");
    let meta: Value = r.json().await.unwrap();
    assert_eq!(meta["issuer"], issuer);
}
