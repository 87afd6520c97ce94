//! Integration tests of the SQLite store: the shared conformance suite, one fresh database file
//! per case, and what only SQLite has (the file, its migrations, its durability pragmas).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use latchkey_core::model::{Client, Family, GrantType, TokenKind, TokenRecord, TokenView, User};
use latchkey_core::scope::ScopeSet;
use latchkey_core::secret::SecretHash;
use latchkey_store::prelude::*;
use latchkey_store::SharedStore;
use latchkey_store_sqlite::{Durability, SqliteStore, SCHEMA_VERSION};
use std::sync::Arc;
use tempfile::TempDir;
use uuid::Uuid;

/// A new, empty database in its own temporary directory, which lives as long as the guard.
async fn fresh() -> (SharedStore, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("latchkey.db"), Durability::Full).await.unwrap();
    (Arc::new(store), dir)
}

latchkey_store::conformance_tests!(fresh);

/// The whole suite through `run_all`, every case on its own file in one directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_run_all() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    latchkey_store::conformance::run_all(|| {
        let path = dir.path().join(format!("{}.db", n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
        async move { Arc::new(SqliteStore::open(&path, Durability::Full).await.unwrap()) as SharedStore }
    })
    .await;
    assert_eq!(n.load(std::sync::atomic::Ordering::Relaxed), latchkey_store::conformance::CASES, "run_all must make one store per case");
}

#[tokio::test]
async fn open_creates_and_migrates_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub.db");
    assert!(!path.exists());
    let store = SqliteStore::open(&path, Durability::Full).await.unwrap();
    assert!(path.exists(), "open must create the database file");
    assert_eq!(store.pragma("user_version").await.unwrap(), SCHEMA_VERSION.to_string(), "the schema must be at the latest version");
    // The schema is usable right away.
    let tenant = store.ensure_tenant("default", 1).await.unwrap();
    assert_eq!(store.find_tenant_by_name("default").await.unwrap(), Some(tenant));
}

#[tokio::test]
async fn reopen_is_idempotent_and_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latchkey.db");
    let user = {
        let store = SqliteStore::open(&path, Durability::Full).await.unwrap();
        let tenant = store.ensure_tenant("default", 1).await.unwrap();
        let user = User {
            developer: false,
            id: Uuid::new_v4(),
            tenant: tenant.id,
            email: "alice@example.com".to_owned(),
            name: "Alice".to_owned(),
            password_hash: "$argon2id$x".to_owned(),
            default_business_id: None,
            created_at: 1,
        };
        store.insert_user(&user).await.unwrap();
        user
    };
    for _ in 0..2 {
        let store = SqliteStore::open(&path, Durability::Full).await.unwrap();
        assert_eq!(store.pragma("user_version").await.unwrap(), SCHEMA_VERSION.to_string());
        assert_eq!(store.find_tenant_by_name("default").await.unwrap().map(|t| t.id), Some(user.tenant));
        assert_eq!(store.find_user(user.tenant, user.id).await.unwrap(), Some(user.clone()));
    }
}

/// A database made by the first release (schema version 1) is upgraded in place and keeps its
/// data, and what version 2 added works on it.
#[tokio::test]
async fn a_version_1_database_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../../migrations/0001_init.sql")).unwrap();
        conn.execute_batch("PRAGMA user_version = 1; INSERT INTO tenants (id, name, created_at) VALUES ('6f1c1d8e-0000-4000-8000-000000000001', 'default', 1)")
            .unwrap();
    }
    let store = SqliteStore::open(&path, Durability::Full).await.unwrap();
    assert_eq!(store.pragma("user_version").await.unwrap(), SCHEMA_VERSION.to_string());
    let tenant = store.find_tenant_by_name("default").await.unwrap().expect("the old tenant is kept");
    assert_eq!(tenant.id.0.to_string(), "6f1c1d8e-0000-4000-8000-000000000001");
    assert_eq!(store.ensure_setting("master_key_check", "k").await.unwrap(), "k");
}

/// Version 3 stops storing a client's own JWT access tokens: the ones an older version stored
/// and revoked (the token, or its family) stay revoked; live ones stay live.
#[tokio::test]
async fn client_tokens_revoked_before_version_3_stay_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.db");
    let (revoked, in_revoked_family, live) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../../migrations/0001_init.sql")).unwrap();
        conn.execute_batch(include_str!("../../migrations/0002_replay_and_settings.sql")).unwrap();
        conn.execute_batch(
            "PRAGMA user_version = 2;
             INSERT INTO tenants (id, name, created_at) VALUES ('6f1c1d8e-0000-4000-8000-000000000001', 'default', 1);
             INSERT INTO clients (tenant_id, client_id, name, developer, secret_hash, redirect_uris, scopes, grant_types, require_pkce, created_at)
                 VALUES ('6f1c1d8e-0000-4000-8000-000000000001', 'job', 'Job', 'dev', x'00', '[]', '[]', '[\"client_credentials\"]', 1, 1);",
        )
        .unwrap();
        for (n, (jti, token_revoked, family_revoked)) in
            [(revoked, true, false), (in_revoked_family, false, true), (live, false, false)].into_iter().enumerate()
        {
            let family = Uuid::new_v4().to_string();
            conn.execute(
                "INSERT INTO families (tenant_id, id, client_id, scope, auth_time, created_at, expires_at, revoked_at)
                 VALUES ('6f1c1d8e-0000-4000-8000-000000000001', ?1, 'job', 'reports:read', 1, 1, 9999999999, ?2)",
                rusqlite::params![family, family_revoked.then_some(5)],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO tokens (hash, tenant_id, kind, family_id, client_id, scope, jti, created_at, expires_at, revoked_at)
                 VALUES (?1, '6f1c1d8e-0000-4000-8000-000000000001', 'access_token', ?2, 'job', 'reports:read', ?3, 1, 9999999999, ?4)",
                rusqlite::params![vec![u8::try_from(n).unwrap(); 32], family, jti.to_string(), token_revoked.then_some(5)],
            )
            .unwrap();
        }
    }
    let store = SqliteStore::open(&path, Durability::Full).await.unwrap();
    let tenant = store.find_tenant_by_name("default").await.unwrap().unwrap().id;
    assert!(!store.self_contained_token_live(tenant, "job", revoked).await.unwrap());
    assert!(!store.self_contained_token_live(tenant, "job", in_revoked_family).await.unwrap());
    assert!(store.self_contained_token_live(tenant, "job", live).await.unwrap());
}

/// Version 8 moves the replay answers out of the token rows: an answer kept by version 7 in
/// its window is still found after the upgrade, and still only while its successor is current.
#[tokio::test]
async fn replay_answers_kept_before_version_8_are_still_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v7.db");
    let (old, successor, other) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        for sql in [
            include_str!("../../migrations/0001_init.sql"),
            include_str!("../../migrations/0002_replay_and_settings.sql"),
            include_str!("../../migrations/0003_revoked_jtis.sql"),
            include_str!("../../migrations/0004_housekeeping_indexes.sql"),
            include_str!("../../migrations/0005_client_generation.sql"),
            include_str!("../../migrations/0006_account.sql"),
            include_str!("../../migrations/0007_developer.sql"),
        ] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "PRAGMA user_version = 7;
             INSERT INTO tenants (id, name, created_at) VALUES ('6f1c1d8e-0000-4000-8000-000000000001', 'default', 1);
             INSERT INTO clients (tenant_id, client_id, name, developer, secret_hash, redirect_uris, scopes, grant_types, require_pkce, created_at)
                 VALUES ('6f1c1d8e-0000-4000-8000-000000000001', 'app', 'App', 'dev', x'00', '[]', '[]', '[\"refresh_token\"]', 1, 1);
             INSERT INTO families (tenant_id, id, client_id, scope, auth_time, created_at, expires_at)
                 VALUES ('6f1c1d8e-0000-4000-8000-000000000001', 'f', 'app', 'offline_access', 1, 1, 9999999999);",
        )
        .unwrap();
        // `old` was rotated into `successor` and kept its answer until 5000; so was `other`,
        // whose successor has since been rotated in turn.
        for (hash, rotated, replay, next) in [
            (old, Some(10), Some(&b"sealed answer"[..]), Some(successor)),
            (successor, None, None, None),
            (other, Some(10), Some(&b"used answer"[..]), Some(old)),
        ] {
            conn.execute(
                "INSERT INTO tokens (hash, tenant_id, kind, family_id, client_id, scope, jti, created_at, expires_at, rotated_at, replay, replay_until, successor)
                 VALUES (?1, '6f1c1d8e-0000-4000-8000-000000000001', 'refresh_token', 'f', 'app', 'offline_access', ?2, 1, 9999999999, ?3, ?4, ?5, ?6)",
                rusqlite::params![&hash[..], Uuid::new_v4().to_string(), rotated, replay, replay.map(|_| 5000), next.map(|n| n.to_vec())],
            )
            .unwrap();
        }
    }
    let store = SqliteStore::open(&path, Durability::Full).await.unwrap();
    let tenant = store.find_tenant_by_name("default").await.unwrap().unwrap().id;
    assert_eq!(store.find_replay(tenant, SecretHash(old), 20).await.unwrap().as_deref(), Some(&b"sealed answer"[..]));
    assert_eq!(store.find_replay(tenant, SecretHash(old), 5000).await.unwrap(), None, "past its window");
    assert_eq!(store.find_replay(tenant, SecretHash(other), 20).await.unwrap(), None, "its successor is no longer current");
}

/// Two nodes on one file (or a node and a CLI command): each keeps the clients it reads in
/// memory, and a change made through the other is seen at the very next read, never served
/// stale, whether it rotates the secret, deletes the client or deletes its tenant; and whether
/// the read is introspection's, which takes the generation from the token's statement.
#[tokio::test]
async fn a_client_changed_through_another_handle_is_seen_at_the_next_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nodes.db");
    let (a, b) = (SqliteStore::open(&path, Durability::Full).await.unwrap(), SqliteStore::open(&path, Durability::Full).await.unwrap());
    let tenant = a.ensure_tenant("default", 1).await.unwrap().id;
    let client = Client {
        profile: Default::default(),
        secret_info: Default::default(),
        tenant,
        client_id: "app".to_owned(),
        name: "App".to_owned(),
        developer: "Acme".to_owned(),
        secret_hash: Some(SecretHash([1; 32])),
        redirect_uris: vec!["https://app.example/cb".to_owned()],
        scopes: ScopeSet::parse("openid").unwrap(),
        grant_types: GrantType::DEFAULT.to_vec(),
        require_pkce: true,
        token_settings: Default::default(),
        created_at: 1,
    };
    a.insert_client(&client, &[]).await.unwrap();
    // A token of the client's own, so that introspection's read finds a row: the clients'
    // generation then comes with the token, in the same statement.
    let family = Family {
        id: Uuid::new_v4(),
        tenant,
        grant_id: None,
        client_id: "app".to_owned(),
        user_id: None,
        business_id: None,
        scope: ScopeSet::parse("openid").unwrap(),
        auth_time: 1,
        created_at: 1,
        expires_at: i64::MAX,
        revoked_at: None,
    };
    let token = SecretHash([9; 32]);
    let record = TokenRecord {
        hash: token,
        tenant,
        kind: TokenKind::Access,
        family_id: family.id,
        client_id: "app".to_owned(),
        user_id: None,
        business_id: None,
        scope: family.scope.clone(),
        jti: Uuid::new_v4(),
        created_at: 1,
        expires_at: i64::MAX,
        revoked_at: None,
        rotated_at: None,
    };
    a.insert_family(tenant, &family, std::slice::from_ref(&record)).await.unwrap();
    let secret_and_token =
        |(client, view): (Option<Client>, Option<TokenView>)| (client.and_then(|c| c.secret_hash), view.map(|v| v.token.hash));
    for _ in 0..2 {
        assert_eq!(
            secret_and_token(a.find_client_and_token(tenant, "app", token).await.unwrap()),
            (Some(SecretHash([1; 32])), Some(token))
        );
    }

    assert!(b.rotate_client_secret(tenant, "app", SecretHash([2; 32]), 1, None).await.unwrap());
    assert_eq!(
        secret_and_token(a.find_client_and_token(tenant, "app", token).await.unwrap()),
        (Some(SecretHash([2; 32])), Some(token)),
        "the generation read with the token shows the change"
    );
    assert_eq!(a.find_client(tenant, "app").await.unwrap().and_then(|c| c.secret_hash), Some(SecretHash([2; 32])));
    assert!(b.rotate_client_secret(tenant, "app", SecretHash([3; 32]), 1, None).await.unwrap());
    assert_eq!(a.find_client(tenant, "app").await.unwrap().and_then(|c| c.secret_hash), Some(SecretHash([3; 32])));
    let (found, _) = a.find_client_and_token(tenant, "app", SecretHash([8; 32])).await.unwrap();
    assert_eq!(found.and_then(|c| c.secret_hash), Some(SecretHash([3; 32])), "the read of an unknown token uses the cache too");

    assert!(b.delete_client(tenant, "app").await.unwrap());
    assert_eq!(a.find_client_and_token(tenant, "app", token).await.unwrap(), (None, None), "the client's tokens go with it");
    assert_eq!(a.find_client(tenant, "app").await.unwrap(), None);

    a.insert_client(&client, &[]).await.unwrap();
    assert!(b.find_client(tenant, "app").await.unwrap().is_some());
    {
        // As an operator's tool would: straight on the file, foreign keys on.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON; DELETE FROM tenants").unwrap();
    }
    assert_eq!(b.find_client(tenant, "app").await.unwrap(), None);
}

#[tokio::test]
async fn open_url_accepts_sqlite_urls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("url.db");
    let url = format!("sqlite://{}", path.display());
    SqliteStore::open_url(&url, Durability::Full).await.unwrap();
    assert!(path.exists());
}

#[tokio::test]
async fn durability_pragmas() {
    let dir = tempfile::tempdir().unwrap();
    let full = SqliteStore::open(&dir.path().join("full.db"), Durability::Full).await.unwrap();
    assert_eq!(full.pragma("journal_mode").await.unwrap(), "wal");
    assert_eq!(full.pragma("synchronous").await.unwrap(), "2", "Durability::Full must be synchronous=FULL");
    assert_eq!(full.pragma("foreign_keys").await.unwrap(), "1");
    assert_eq!(full.pragma("cache_size").await.unwrap(), "-512", "a small private page cache (PAGE_CACHE_KIB)");
    let normal = SqliteStore::open(&dir.path().join("normal.db"), Durability::Normal).await.unwrap();
    assert_eq!(normal.pragma("journal_mode").await.unwrap(), "wal");
    assert_eq!(normal.pragma("synchronous").await.unwrap(), "1", "Durability::Normal must be synchronous=NORMAL");
    assert!(full.pragma("journal_mode; DROP TABLE users").await.is_err(), "pragma must refuse anything but a name");
}
