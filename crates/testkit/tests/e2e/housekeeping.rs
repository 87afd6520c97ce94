//! Bounded storage: under a steady load with short lifetimes, the tables stop growing.

use latchkey_core::model::{Family, FamilyOwner, TokenKind, TokenRecord};
use latchkey_core::scope::ScopeSet;
use latchkey_core::secret::SecretHash;
use latchkey_server::admin::NewClient;
use latchkey_server::config::LifetimeSettings;
use latchkey_server::{housekeeping, Settings};
use latchkey_testkit::{spawn_app_with, TestApp, TestClient};
use uuid::Uuid;

/// A client that only acts for itself (client_credentials).
async fn job_client(app: &TestApp) -> TestClient {
    app.client_with(NewClient {
        name: "Job".into(),
        redirect_uris: vec!["https://job.example/cb".into()],
        scopes: vec!["reports:read".into()],
        grant_types: vec!["client_credentials".into()],
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn token_tables_stop_growing_under_steady_load() {
    let settings = Settings {
        lifetimes: LifetimeSettings {
            access_token: Some(60),
            refresh_token: Some(10_000),
            refresh_token_idle: Some(120),
            code: Some(60),
            id_token: Some(60),
        },
        ..Default::default()
    };
    let app = spawn_app_with(settings).await;
    app.user("ada@example.com", &[]).await;
    let web = app.client("openid offline_access").await;
    let job = job_client(&app).await;
    // A session that keeps refreshing all along must survive every pass.
    let mut live_refresh =
        app.tokens_for(&web, "ada@example.com", "openid offline_access").await["refresh_token"].as_str().unwrap().to_owned();
    let mut sizes = Vec::new();
    for _round in 0..6 {
        for _ in 0..15 {
            let r = app.client_credentials(&job).await;
            assert_eq!(r.status(), 200);
        }
        for _ in 0..2 {
            app.tokens_for(&web, "ada@example.com", "openid offline_access").await;
        }
        let r: serde_json::Value = app
            .http()
            .post(app.url("/oauth/token"))
            .basic_auth(&web.client_id, web.secret.as_deref())
            .form(&[("grant_type", "refresh_token"), ("refresh_token", live_refresh.as_str())])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        live_refresh = r["refresh_token"].as_str().unwrap_or_else(|| panic!("the live family keeps working: {r}")).to_owned();
        app.clock.advance(100);
        housekeeping::run_once(&app.rt, 900).await.unwrap();
        let c = app.rt.store.count_rows(app.rt.tenant.id).await.unwrap();
        sizes.push(c.tokens + c.codes + c.families + c.interactions);
    }
    // After the first lifetimes have passed, the size no longer grows.
    let steady = &sizes[2..];
    assert!(steady.iter().all(|s| *s <= sizes[2]), "storage keeps growing: {sizes:?}");
    assert!(sizes[5] < 6 * 15, "expired rows are removed: {sizes:?}");
}

/// A pass goes on batch after batch until nothing expired is left: more expired rows than one
/// round of statements may remove (a batch of tokens, a batch of families with theirs) are all
/// gone after one pass.
#[tokio::test]
async fn one_pass_removes_more_than_a_batch() {
    let settings = Settings { lifetimes: LifetimeSettings { access_token: Some(60), ..Default::default() }, ..Default::default() };
    let app = spawn_app_with(settings).await;
    let job = job_client(&app).await;
    let issued = 2 * housekeeping::BATCH as usize + 30;
    // Client tokens as versions before sealed client tokens stored them, a family each,
    // expiring in 60 s (the token endpoint stores a client's own tokens no more).
    let (tenant, now) = (app.rt.tenant.id, app.rt.now());
    for _ in 0..issued {
        let scope = ScopeSet::parse("reports:read").unwrap();
        let family = Family::new(Uuid::new_v4(), tenant, &job.client_id, FamilyOwner::Client, scope.clone(), now, 60);
        let token = TokenRecord {
            hash: SecretHash(rand::random()),
            tenant,
            kind: TokenKind::Access,
            family_id: family.id,
            client_id: job.client_id.clone(),
            user_id: None,
            business_id: None,
            scope,
            jti: Uuid::new_v4(),
            created_at: now,
            expires_at: now + 60,
            revoked_at: None,
            rotated_at: None,
        };
        app.rt.store.insert_family(tenant, &family, &[token]).await.unwrap();
    }
    let before = app.rt.store.count_rows(app.rt.tenant.id).await.unwrap();
    assert_eq!((before.tokens, before.families), (issued as u64, issued as u64));

    app.clock.advance(61);
    let cleanup = housekeeping::run_once(&app.rt, 900).await.unwrap();
    let after = app.rt.store.count_rows(app.rt.tenant.id).await.unwrap();
    assert_eq!((after.tokens, after.families), (0, 0), "{cleanup:?}");
}
