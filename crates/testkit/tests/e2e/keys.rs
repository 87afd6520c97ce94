//! Signing key rotation: published before it signs, the old key kept until what it signed
//! has expired, and one rotation per period however many nodes try.

use super::jwt::{part, verify_rs256};
use latchkey_core::model::SigningAlg;
use latchkey_server::keys::{self, RotationPolicy};
use latchkey_testkit::{spawn_app, TestApp};
use serde_json::Value;

async fn kids(app: &TestApp) -> Vec<String> {
    let jwks: Value = app.http().get(app.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
}

const POLICY: RotationPolicy = RotationPolicy { publish_delay: 120, max_token_lifetime: 3600 };

#[tokio::test]
async fn a_token_signed_before_a_rotation_verifies_after_it() {
    let app = spawn_app().await;
    app.user("ada@example.com", &[]).await;
    let c = app.client("openid").await;
    let before = app.tokens_for(&c, "ada@example.com", "openid").await["id_token"].as_str().unwrap().to_owned();
    let old_kid = part(&before, 0)["kid"].as_str().unwrap().to_owned();

    let new = keys::rotate(&app.rt, SigningAlg::RS256, POLICY, None).await.unwrap().unwrap();
    app.clock.advance(keys::RELOAD_INTERVAL + 1);
    assert_eq!(kids(&app).await.len(), 2, "the new key is published at once");
    let during = app.tokens_for(&c, "ada@example.com", "openid").await["id_token"].as_str().unwrap().to_owned();
    assert_eq!(part(&during, 0)["kid"], old_kid.as_str(), "it does not sign before the publish delay");

    app.clock.advance(POLICY.publish_delay);
    let after = app.tokens_for(&c, "ada@example.com", "openid").await["id_token"].as_str().unwrap().to_owned();
    assert_eq!(part(&after, 0)["kid"], new.kid.as_str(), "then it signs");
    // The token signed before the rotation still verifies against the published keys.
    assert!(kids(&app).await.contains(&old_kid));
    verify_rs256(&app, &before).await;
    verify_rs256(&app, &after).await;

    // Once everything the old key signed has expired, it leaves the JWKS.
    app.clock.advance(POLICY.max_token_lifetime + 300 + keys::RELOAD_INTERVAL);
    assert_eq!(kids(&app).await, vec![new.kid.clone()]);
}

#[tokio::test]
async fn the_schedule_rotates_once_per_period_across_nodes() {
    let app = spawn_app().await;
    let interval = 7 * 86_400;
    assert!(keys::rotate_if_due(&app.rt, SigningAlg::RS256, interval, POLICY).await.unwrap().is_none(), "a fresh key is not due");
    app.clock.advance(interval + 1);
    // Two nodes (two runtimes on one database) notice at the same time: one rotation.
    let (a, b) = tokio::join!(
        keys::rotate_if_due(&app.rt, SigningAlg::RS256, interval, POLICY),
        keys::rotate_if_due(&app.rt, SigningAlg::RS256, interval, POLICY)
    );
    assert_eq!([a.unwrap().is_some(), b.unwrap().is_some()].iter().filter(|x| **x).count(), 1);
    assert!(keys::rotate_if_due(&app.rt, SigningAlg::RS256, interval, POLICY).await.unwrap().is_none(), "not twice in a period");
    assert_eq!(app.rt.store.list_signing_keys(app.rt.tenant.id).await.unwrap().len(), 2);
}

/// A key of another algorithm does not supersede the one the server signs with.
#[tokio::test]
async fn rotating_another_algorithm_leaves_the_signing_key_alone() {
    let app = spawn_app().await;
    app.user("ada@example.com", &[]).await;
    let c = app.client("openid").await;
    let first = app.tokens_for(&c, "ada@example.com", "openid").await["id_token"].as_str().unwrap().to_owned();
    keys::rotate(&app.rt, SigningAlg::ES256, POLICY, None).await.unwrap().unwrap();
    app.clock.advance(POLICY.publish_delay + POLICY.max_token_lifetime + 1_000);
    let later = app.tokens_for(&c, "ada@example.com", "openid").await["id_token"].as_str().unwrap().to_owned();
    assert_eq!(part(&later, 0)["alg"], "RS256");
    assert_eq!(part(&later, 0)["kid"], part(&first, 0)["kid"], "the RS256 key was not retired by an ES256 rotation");
    assert_eq!(kids(&app).await.len(), 2);
}

/// A new tenant's first key is made in the background: opening the tenant's keys does not
/// wait for it (the server answers meanwhile), and the first use of the ring does.
#[tokio::test]
async fn a_new_tenants_first_key_is_waited_for_where_it_is_needed() {
    use latchkey_server::Clock;
    let app = spawn_app().await;
    let tenant = latchkey_server::admin::create_tenant(&app.rt, "second", "http://second.example", Default::default()).await.unwrap();
    let rt = app.rt.clone().for_tenant(Some(&tenant.name)).await.unwrap();
    let opened = keys::Keys::open(&rt, SigningAlg::ES256, POLICY.publish_delay).await.unwrap();
    assert_eq!(opened.algs_now(), vec![SigningAlg::ES256], "discovery can be answered at once");
    let ring = opened.current(&rt).await;
    assert_eq!(ring.signer(app.clock.now()).map(|k| k.alg()), Some(SigningAlg::ES256), "the first key signs at once");
    let stored = rt.store.list_signing_keys(rt.tenant.id).await.unwrap();
    assert_eq!(stored.len(), 1);
    // A second node opening the same tenant now loads that key rather than making another.
    let again = keys::Keys::open(&rt, SigningAlg::ES256, POLICY.publish_delay).await.unwrap();
    assert_eq!(again.current(&rt).await.signer(app.clock.now()).map(|k| k.kid().to_owned()), Some(stored[0].kid.clone()));
}
