//! A user's opaque access token is sealed (`core::sealed_token`): nothing is stored for it, and
//! every way its grant can end still ends it, judged on the wire by introspection (RFC 7662)
//! and UserInfo. So is an authorization code (`core::sealed_code`), stored only once redeemed.
//! Tokens and codes of an earlier version, judged by their rows, keep working.

use latchkey_core::model::{AuthCode, Family, FamilyOwner, TokenKind, TokenRecord};
use latchkey_core::scope::ScopeSet;
use latchkey_core::sealed_token;
use latchkey_core::secret::SecretKind;
use latchkey_server::admin::NewClient;
use latchkey_server::housekeeping;
use latchkey_server::runtime::new_secret;
use latchkey_server::Clock;
use latchkey_testkit::{location, query_param, spawn_app, TestApp, TestClient};
use serde_json::{json, Value};
use uuid::Uuid;

async fn introspect(app: &TestApp, by: &TestClient, token: &str) -> Value {
    let r = app
        .http()
        .post(app.url("/oauth/introspect"))
        .basic_auth(&by.client_id, by.secret.as_deref())
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn userinfo(app: &TestApp, token: &str) -> u16 {
    app.http().get(app.url("/oauth/userinfo")).bearer_auth(token).send().await.unwrap().status().as_u16()
}

async fn token_request(app: &TestApp, c: &TestClient, form: &[(&str, &str)]) -> Value {
    let r = app.http().post(app.url("/oauth/token")).basic_auth(&c.client_id, c.secret.as_deref()).form(form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn revoke(app: &TestApp, c: &TestClient, token: &str) {
    let r = app.http().post(app.url("/oauth/revoke")).basic_auth(&c.client_id, c.secret.as_deref()).form(&[("token", token)]);
    assert_eq!(r.send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_users_access_token_is_sealed_not_stored_and_ends_with_its_grant() {
    let app = spawn_app().await;
    let user = app.user("ada@example.com", &["Ada Coffee"]).await;
    let c = app.client("openid offline_access orders:read").await;
    let api = app.client("introspect").await;
    let rows = || async { app.rt.store.count_rows(app.rt.tenant.id).await.unwrap() };
    let before = rows().await;

    let t = app.tokens_for(&c, "ada@example.com", "openid offline_access orders:read").await;
    let at = t["access_token"].as_str().unwrap();
    assert!(at.starts_with("lk_st_") && !at.contains('.'), "{at}");
    let sealed = sealed_token::open(&app.rt.sealed_token_key, at).expect("it opens with the server's key");
    assert_eq!(sealed.claims.sub, user.id.to_string());
    assert_eq!(sealed.claims.jti, t["jti"].as_str().unwrap());
    assert!(!at.contains(&user.id.to_string()) && !at.contains("orders"), "the client cannot read it");
    let after = rows().await;
    assert_eq!((after.families, after.tokens), (before.families + 1, before.tokens + 1), "a family and its refresh token only");

    // Introspection and UserInfo judge it as any access token.
    let i = introspect(&app, &api, at).await;
    assert_eq!(i["active"], true);
    assert_eq!(i["sub"], user.id.to_string());
    assert_eq!(i["username"], "ada@example.com");
    assert_eq!(i["client_id"], c.client_id.as_str());
    assert_eq!(i["scope"], "offline_access openid orders:read");
    assert_eq!(i["jti"], t["jti"]);
    assert_eq!(i["token_type"], "Bearer");
    assert_eq!(userinfo(&app, at).await, 200);

    // Revoking it ends it alone (RFC 7009 §2.1): the refresh token still works.
    revoke(&app, &c, at).await;
    assert_eq!(introspect(&app, &api, at).await, json!({"active": false}));
    assert_eq!(userinfo(&app, at).await, 401);
    let rt = t["refresh_token"].as_str().unwrap();
    let r = token_request(&app, &c, &[("grant_type", "refresh_token"), ("refresh_token", rt)]).await;
    let at2 = r["access_token"].as_str().unwrap();
    assert_eq!(introspect(&app, &api, at2).await["active"], true);
    assert_eq!(rows().await.tokens, after.tokens + 1, "the rotation wrote the new refresh token only");

    // Revoking the refresh token ends the grant's family, and so its sealed access tokens.
    revoke(&app, &c, r["refresh_token"].as_str().unwrap()).await;
    assert_eq!(introspect(&app, &api, at2).await, json!({"active": false}));
    assert_eq!(userinfo(&app, at2).await, 401);

    // So does reuse of a rotated refresh token (RFC 9700 §4.14.2), once the replay window is over.
    let t = app.tokens_for(&c, "ada@example.com", "openid offline_access").await;
    let r = token_request(&app, &c, &[("grant_type", "refresh_token"), ("refresh_token", t["refresh_token"].as_str().unwrap())]).await;
    let at3 = r["access_token"].as_str().unwrap();
    app.clock.advance(60);
    let reuse = app
        .http()
        .post(app.url("/oauth/token"))
        .basic_auth(&c.client_id, c.secret.as_deref())
        .form(&[("grant_type", "refresh_token"), ("refresh_token", t["refresh_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(reuse.status(), 400);
    assert_eq!(introspect(&app, &api, at3).await, json!({"active": false}), "reuse ends the family");

    // The user withdrawing consent, and the user being deleted, end them too.
    let t = app.tokens_for(&c, "ada@example.com", "openid").await;
    let at4 = t["access_token"].as_str().unwrap();
    let grants = app.rt.store.list_user_grants(app.rt.tenant.id, user.id).await.unwrap();
    assert!(app.rt.store.revoke_grant(app.rt.tenant.id, user.id, grants[0].grant.id, app.clock.now()).await.unwrap());
    assert_eq!(introspect(&app, &api, at4).await, json!({"active": false}), "consent withdrawn");
    let t = app.tokens_for(&c, "ada@example.com", "openid").await;
    let at5 = t["access_token"].as_str().unwrap();
    assert_eq!(introspect(&app, &api, at5).await["active"], true);
    assert!(app.rt.store.delete_user(app.rt.tenant.id, user.id).await.unwrap());
    assert_eq!(introspect(&app, &api, at5).await, json!({"active": false}), "the user is gone");
}

/// A grant without a refresh token stores a family alone, which ends with its access token:
/// the token works until its `exp`, and housekeeping then takes the family.
#[tokio::test]
async fn a_grant_without_a_refresh_token_ends_with_its_access_token() {
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
    let api = app.client("introspect").await;
    let before = app.rt.store.count_rows(app.rt.tenant.id).await.unwrap();
    let t = app.tokens_for(&c, "ada@example.com", "openid").await;
    assert!(t.get("refresh_token").is_none());
    let at = t["access_token"].as_str().unwrap();
    let after = app.rt.store.count_rows(app.rt.tenant.id).await.unwrap();
    assert_eq!((after.families, after.tokens), (before.families + 1, before.tokens), "no token row at all");

    app.clock.advance(3_599);
    housekeeping::run_once(&app.rt, 900).await.unwrap();
    assert_eq!(introspect(&app, &api, at).await["active"], true, "alive until its exp");
    assert_eq!(app.rt.store.count_rows(app.rt.tenant.id).await.unwrap().families, after.families);
    app.clock.advance(1);
    housekeeping::run_once(&app.rt, 900).await.unwrap();
    assert_eq!(introspect(&app, &api, at).await, json!({"active": false}));
    assert_eq!(app.rt.store.count_rows(app.rt.tenant.id).await.unwrap().families, before.families, "the family went with it");
}

/// An opaque access token issued before tokens were sealed (`lk_at_`, a row of its own) is
/// still judged by its row until it expires: introspection, UserInfo and revocation.
#[tokio::test]
async fn an_access_token_stored_by_an_earlier_version_keeps_working() {
    let app = spawn_app().await;
    let user = app.user("ada@example.com", &[]).await;
    let c = app.client("openid").await;
    let api = app.client("introspect").await;
    let now = app.clock.now();
    let owner = FamilyOwner::User { user_id: user.id, grant_id: None, business_id: None, auth_time: now };
    let scope = ScopeSet::parse("openid").unwrap();
    let family = Family::new(Uuid::new_v4(), app.rt.tenant.id, &c.client_id, owner, scope.clone(), now, 86_400);
    let secret = new_secret(SecretKind::AccessToken, &mut rand::thread_rng());
    let old = secret.expose();
    assert!(old.starts_with("lk_at_"));
    let record = TokenRecord {
        hash: app.rt.hasher.hash(old),
        tenant: app.rt.tenant.id,
        kind: TokenKind::Access,
        family_id: family.id,
        client_id: c.client_id.clone(),
        user_id: Some(user.id),
        business_id: None,
        scope,
        jti: Uuid::new_v4(),
        created_at: now,
        expires_at: now + 3_600,
        revoked_at: None,
        rotated_at: None,
    };
    app.rt.store.insert_family(app.rt.tenant.id, &family, &[record]).await.unwrap();

    let i = introspect(&app, &api, old).await;
    assert_eq!((i["active"].as_bool(), i["sub"].as_str()), (Some(true), Some(user.id.to_string().as_str())));
    assert_eq!(userinfo(&app, old).await, 200);
    revoke(&app, &c, old).await;
    assert_eq!(introspect(&app, &api, old).await, json!({"active": false}));
    assert_eq!(userinfo(&app, old).await, 401);
}

async fn redeem(app: &TestApp, c: &TestClient, code: &str) -> (u16, Value) {
    let r = app
        .http()
        .post(app.url("/oauth/token"))
        .basic_auth(&c.client_id, c.secret.as_deref())
        .form(&[("grant_type", "authorization_code"), ("code", code)])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// The authorization code carries its record sealed (`core::sealed_code`): an authorization
/// the user already consented to writes nothing, and the client cannot read the code. It is
/// still single use (a replay revokes what it gave, OAuth 2.1 §4.1.3), and ends with its
/// consent when that is withdrawn before the redemption.
#[tokio::test]
async fn an_authorization_code_is_sealed_single_use_and_ends_with_its_consent() {
    let app = spawn_app().await;
    let user = app.user("ada@example.com", &["Ada Coffee"]).await;
    let c = app.client("openid offline_access").await;
    let api = app.client("introspect").await;
    let rows = || async { app.rt.store.count_rows(app.rt.tenant.id).await.unwrap() };
    let url =
        |state: &str| format!("{}?response_type=code&client_id={}&scope=openid&state={state}", app.url("/oauth/authorize"), c.client_id);
    let b = app.browser();
    let first = query_param(&b.sign_in_and_consent(&url("1"), "ada@example.com", "allow").await, "code").unwrap();

    // Consent remembered: straight back with a code, and not a row written for it.
    let before = rows().await;
    let again = b.get(&url("2")).await;
    assert_eq!(again.status(), 302);
    let second = query_param(&location(&again).unwrap(), "code").unwrap();
    assert_eq!(rows().await, before, "the authorization wrote nothing");
    assert!(second.starts_with("lk_sc_") && second.len() < 450, "{second}");
    assert!(!second.contains(&user.id.to_string()) && !second.contains("openid"), "the client cannot read it");

    // Redeemed once; the replay is refused and revokes what the code gave.
    let (status, t) = redeem(&app, &c, &second).await;
    assert_eq!(status, 200, "{t}");
    let at = t["access_token"].as_str().unwrap().to_owned();
    assert_eq!(introspect(&app, &api, &at).await["active"], true);
    let (status, err) = redeem(&app, &c, &second).await;
    assert_eq!((status, err["error"].as_str()), (400, Some("invalid_grant")), "{err}");
    assert_eq!(introspect(&app, &api, &at).await, json!({"active": false}), "the replay revoked the family");
    // Another client cannot redeem a code, nor can a changed one be redeemed.
    let other = app.client("openid").await;
    let (status, _) = redeem(&app, &other, &first).await;
    assert_eq!(status, 400);
    let mut changed = first.clone().into_bytes();
    let last = changed.len() - 1;
    changed[last] = if changed[last] == b'A' { b'B' } else { b'A' };
    assert_eq!(redeem(&app, &c, &String::from_utf8(changed).unwrap()).await.0, 400);

    // The user withdraws consent before the first code is redeemed: it is no longer good.
    let grants = app.rt.store.list_user_grants(app.rt.tenant.id, user.id).await.unwrap();
    assert!(app.rt.store.revoke_grant(app.rt.tenant.id, user.id, grants[0].grant.id, app.clock.now()).await.unwrap());
    let (status, err) = redeem(&app, &c, &first).await;
    assert_eq!((status, err["error"].as_str()), (400, Some("invalid_grant")), "{err}");
}

/// A code stored by an earlier version (`lk_ac_`, a row of its own) is still redeemed once.
#[tokio::test]
async fn a_code_stored_by_an_earlier_version_is_still_redeemed_once() {
    let app = spawn_app().await;
    let user = app.user("ada@example.com", &[]).await;
    let c = app.client("openid").await;
    // A grant to redeem it under: the user consents once.
    app.code_for(&c, "ada@example.com", "scope=openid").await;
    let grant = app.rt.store.find_grant(app.rt.tenant.id, user.id, &c.client_id).await.unwrap().unwrap();
    let now = app.clock.now();
    let secret = new_secret(SecretKind::AuthorizationCode, &mut rand::thread_rng());
    let code = AuthCode {
        hash: app.rt.hasher.hash(secret.expose()),
        tenant: app.rt.tenant.id,
        client_id: c.client_id.clone(),
        user_id: user.id,
        grant_id: grant.id,
        business_id: None,
        redirect_uri: c.redirect_uri.clone(),
        redirect_uri_explicit: false,
        scope: ScopeSet::parse("openid").unwrap(),
        nonce: None,
        code_challenge: None,
        auth_time: now,
        created_at: now,
        expires_at: now + 60,
        consumed_at: None,
        family_id: Uuid::new_v4(),
    };
    app.rt.store.insert_code(&code).await.unwrap();
    assert!(secret.expose().starts_with("lk_ac_"));
    assert_eq!(redeem(&app, &c, secret.expose()).await.0, 200);
    assert_eq!(redeem(&app, &c, secret.expose()).await.0, 400);
}
