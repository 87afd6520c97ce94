//! Integration tests of the PostgreSQL store: the shared conformance suite, one fresh schema
//! per case, and what only PostgreSQL has (schemas selected by URL, migrations shared by
//! several nodes, SQLSTATEs and their retries).
//!
//! They need a database: `LATCHKEY_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres`
//! (CI sets it). Without it, every test prints that it was skipped and passes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use latchkey_core::grant::ClientTokenSettings;
use latchkey_core::model::{AuthCode, Client, Family, Grant, GrantType, TenantId, TokenKind, TokenRecord, User};
use latchkey_core::scope::ScopeSet;
use latchkey_core::secret::SecretHash;
use latchkey_core::UnixTime;
use latchkey_store::prelude::*;
use latchkey_store::{RedeemOutcome, RotateOutcome, SharedStore, StoreError};
use latchkey_store_postgres::testing::{create_schema, drop_schema, schema_url, valid_schema_name};
use latchkey_store_postgres::{PgStore, SCHEMA_VERSION};
use sqlx::{Connection, Executor, PgConnection};
use std::sync::Arc;
use uuid::Uuid;

const URL_VAR: &str = "LATCHKEY_TEST_POSTGRES_URL";
const NOW: UnixTime = 1_700_000_000;

/// The database the tests create their schemas in, if one is configured.
fn base_url() -> Option<String> {
    std::env::var(URL_VAR).ok().filter(|url| !url.is_empty())
}

/// True, after saying so, when no database is configured and the current test must end.
fn skipped() -> bool {
    if base_url().is_some() {
        return false;
    }
    // libtest names each test's thread after the test; `#[tokio::test]` runs the body on it.
    let name = std::thread::current().name().unwrap_or("test").to_owned();
    println!("{name}: skipped, {URL_VAR} is not set");
    true
}

/// A fresh, empty schema `lk_test_<uuid>`, dropped with the guard (even when the test fails).
struct Schema {
    base: String,
    name: String,
    url: String,
}

impl Schema {
    async fn new() -> Schema {
        let base = base_url().expect("LATCHKEY_TEST_POSTGRES_URL is set");
        let name = format!("lk_test_{}", Uuid::new_v4().simple());
        let url = create_schema(&base, &name).await.unwrap();
        Schema { base, name, url }
    }

    /// A connection of its own on the schema, for what the store does not offer (triggers).
    async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.unwrap()
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot block on a future: a thread with a
        // runtime of its own does the work. Errors are reported, not raised: this may run
        // while a failing test unwinds.
        let (base, name) = (self.base.clone(), self.name.clone());
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            runtime.block_on(drop_schema(&base, &name)).map_err(|e| format!("{e}: {:?}", std::error::Error::source(&e)))
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop schema {}: {e}", self.name),
            Err(_) => eprintln!("could not drop schema {}: the dropping thread panicked", self.name),
        }
    }
}

/// A store on a fresh schema, and the guard that drops the schema.
async fn fresh() -> (SharedStore, Schema) {
    let schema = Schema::new().await;
    let store = PgStore::open(&schema.url).await.unwrap();
    (Arc::new(store), schema)
}

// One test per conformance case. The macro puts its argument at the top of each test body, so
// the `return` ends the test there when no database is configured.
latchkey_store::conformance_tests!({
    if skipped() {
        return;
    }
    fresh
});

// ---------------------------------------------------------------------------------------------
// Fixtures for the PostgreSQL-only tests.

fn h(n: u8) -> SecretHash {
    SecretHash([n; 32])
}

fn pair(f: &Family, access: SecretHash, refresh: SecretHash) -> [TokenRecord; 2] {
    let jti = Uuid::new_v4();
    let token = |kind, hash, expires_at| TokenRecord {
        hash,
        tenant: f.tenant,
        kind,
        family_id: f.id,
        client_id: f.client_id.clone(),
        user_id: f.user_id,
        business_id: f.business_id,
        scope: f.scope.clone(),
        jti,
        created_at: NOW,
        expires_at,
        revoked_at: None,
        rotated_at: None,
    };
    [token(TokenKind::Access, access, NOW + 3_600), token(TokenKind::Refresh, refresh, NOW + 86_400)]
}

/// A tenant, a user, a client, a grant and a redeemed code: the family, whose live refresh
/// token is `h(2)`.
async fn issue(store: &PgStore) -> (TenantId, Family) {
    let tenant = store.ensure_tenant("acme", NOW).await.unwrap().id;
    let user = User {
        developer: false,
        id: Uuid::new_v4(),
        tenant,
        email: "alice@acme.example".into(),
        name: "Alice".into(),
        password_hash: "$argon2id$x".into(),
        default_business_id: None,
        created_at: NOW,
    };
    store.insert_user(&user).await.unwrap();
    let scope = ScopeSet::parse("openid offline_access").unwrap();
    let client = Client {
        profile: Default::default(),
        secret_info: Default::default(),
        tenant,
        client_id: "app".into(),
        name: "App".into(),
        developer: "Acme".into(),
        secret_hash: Some(h(100)),
        redirect_uris: vec!["https://app.example/cb".into()],
        scopes: scope.clone(),
        grant_types: GrantType::DEFAULT.to_vec(),
        require_pkce: false,
        token_settings: ClientTokenSettings::default(),
        created_at: NOW,
    };
    store.insert_client(&client, &[]).await.unwrap();
    let grant = Grant {
        id: Uuid::new_v4(),
        tenant,
        user_id: user.id,
        client_id: "app".into(),
        business_id: None,
        scope: scope.clone(),
        created_at: NOW,
    };
    let grant = store.upsert_grant(&grant).await.unwrap();
    let code = AuthCode {
        hash: h(99),
        tenant,
        client_id: "app".into(),
        user_id: user.id,
        grant_id: grant.id,
        business_id: None,
        redirect_uri: "https://app.example/cb".into(),
        redirect_uri_explicit: true,
        scope: scope.clone(),
        nonce: None,
        code_challenge: None,
        auth_time: NOW,
        created_at: NOW,
        expires_at: NOW + 60,
        consumed_at: None,
        family_id: Uuid::new_v4(),
    };
    store.insert_code(&code).await.unwrap();
    let family = Family {
        id: code.family_id,
        tenant,
        grant_id: Some(grant.id),
        client_id: "app".into(),
        user_id: Some(user.id),
        business_id: None,
        scope,
        auth_time: NOW,
        created_at: NOW,
        expires_at: NOW + 30 * 86_400,
        revoked_at: None,
    };
    let outcome = store.redeem_code(tenant, code.hash, NOW, &family, &pair(&family, h(1), h(2))).await.unwrap();
    assert_eq!(outcome, RedeemOutcome::Redeemed);
    (tenant, family)
}

fn assert_unavailable<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{what}: expected Unavailable, got {r:?}");
}

// ---------------------------------------------------------------------------------------------
// What only PostgreSQL has.

#[test]
fn schema_urls_select_the_schema_in_libpq_form() {
    let cases = [
        ("postgres://postgres@127.0.0.1:5432/postgres", "postgres://postgres@127.0.0.1:5432/postgres?options=-c%20search_path%3Dlk_a"),
        ("postgres://h/db?sslmode=disable", "postgres://h/db?sslmode=disable&options=-c%20search_path%3Dlk_a"),
    ];
    for (url, want) in cases {
        assert_eq!(schema_url(url, "lk_a").unwrap(), want, "{url}");
    }
    for name in ["lk_test_0123abcd", "_x", "a", &"a".repeat(63)] {
        assert!(valid_schema_name(name), "{name:?} should be valid");
    }
    for name in ["", "1abc", "Upper", "a-b", "a;drop schema public", "a b", &"a".repeat(64)] {
        assert!(!valid_schema_name(name), "{name:?} should be invalid");
        assert!(schema_url("postgres://h/db", name).is_err(), "{name:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_forms_select_the_schema_and_a_missing_schema_is_refused() {
    if skipped() {
        return;
    }
    let schema = Schema::new().await;
    let store = PgStore::open(&schema.url).await.unwrap();
    assert_eq!(store.current_schema().await.unwrap(), schema.name);
    // The tables are in the schema, not in `public`.
    let mut conn = schema.connect().await;
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name IN ('tokens', 'latchkey_schema_version')",
    )
    .bind(&schema.name)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(tables, 2);

    // sqlx's own form and a literal space select it too.
    let separator = if schema.base.contains('?') { '&' } else { '?' };
    for url in [
        format!("{}{separator}options[search_path]={}", schema.base, schema.name),
        format!("{}{separator}options=-c search_path={}", schema.base, schema.name),
    ] {
        let again = PgStore::open(&url).await.unwrap();
        assert_eq!(again.current_schema().await.unwrap(), schema.name, "{url}");
    }

    // A schema that does not exist is named in a clear error, and nothing lands in `public`.
    let missing = schema_url(&schema.base, &format!("lk_missing_{}", Uuid::new_v4().simple())).unwrap();
    match PgStore::open(&missing).await {
        Err(StoreError::Database(e)) => assert!(e.to_string().contains("search_path"), "{e}"),
        other => panic!("opening a missing schema: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_opens_migrate_once_and_reopening_keeps_data() {
    if skipped() {
        return;
    }
    let schema = Schema::new().await;
    // Several nodes starting at once on an empty schema: one migrates, the others wait for its
    // advisory lock and find the schema current.
    let opens = futures::future::join_all((0..4).map(|_| PgStore::open(&schema.url))).await;
    let stores: Vec<PgStore> = opens.into_iter().map(|r| r.unwrap()).collect();
    let tenant = stores[0].ensure_tenant("default", NOW).await.unwrap();
    for store in &stores {
        assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION as i64);
        assert_eq!(store.find_tenant_by_name("default").await.unwrap(), Some(tenant.clone()));
    }
    for store in &stores {
        store.close().await;
    }
    for _ in 0..2 {
        let store = PgStore::open(&schema.url).await.unwrap();
        assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION as i64);
        assert_eq!(store.find_tenant_by_name("default").await.unwrap(), Some(tenant.clone()));
    }
    let mut conn = schema.connect().await;
    let versions: Vec<i32> =
        sqlx::query_scalar("SELECT version FROM latchkey_schema_version ORDER BY version").fetch_all(&mut conn).await.unwrap();
    assert_eq!(versions, (1..=SCHEMA_VERSION as i32).collect::<Vec<_>>(), "each migration is recorded once");
}

/// Version 2 stops storing a client's own JWT access tokens: the ones version 1 stored and
/// revoked (the token, or its family) stay revoked; live ones stay live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_tokens_revoked_in_version_1_stay_revoked() {
    if skipped() {
        return;
    }
    let schema = Schema::new().await;
    let tenant = Uuid::new_v4();
    let (revoked, in_revoked_family, live) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    {
        let mut conn = schema.connect().await;
        conn.execute(sqlx::raw_sql(include_str!("../../migrations/0001_init.sql"))).await.unwrap();
        conn.execute(sqlx::raw_sql(
            "CREATE TABLE latchkey_schema_version (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL);
             INSERT INTO latchkey_schema_version VALUES (1, 0);",
        ))
        .await
        .unwrap();
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, 'default', 1)").bind(tenant).execute(&mut conn).await.unwrap();
        sqlx::query(
            "INSERT INTO clients (tenant_id, client_id, name, developer, secret_hash, redirect_uris, scopes, grant_types, require_pkce, created_at)
             VALUES ($1, 'job', 'Job', 'dev', '\\x00', '[]', '[]', '[\"client_credentials\"]', true, 1)",
        )
        .bind(tenant)
        .execute(&mut conn)
        .await
        .unwrap();
        for (n, (jti, token_revoked, family_revoked)) in
            [(revoked, true, false), (in_revoked_family, false, true), (live, false, false)].into_iter().enumerate()
        {
            let family = Uuid::new_v4();
            sqlx::query(
                "INSERT INTO families (tenant_id, id, client_id, scope, auth_time, created_at, expires_at, revoked_at)
                 VALUES ($1, $2, 'job', 'reports:read', 1, 1, 9999999999, $3)",
            )
            .bind(tenant)
            .bind(family)
            .bind(family_revoked.then_some(5_i64))
            .execute(&mut conn)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO tokens (hash, tenant_id, kind, family_id, client_id, scope, jti, created_at, expires_at, revoked_at)
                 VALUES ($1, $2, 'access_token', $3, 'job', 'reports:read', $4, 1, 9999999999, $5)",
            )
            .bind(vec![u8::try_from(n).unwrap(); 32])
            .bind(tenant)
            .bind(family)
            .bind(jti)
            .bind(token_revoked.then_some(5_i64))
            .execute(&mut conn)
            .await
            .unwrap();
        }
    }
    let store = PgStore::open(&schema.url).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION as i64);
    let tenant = TenantId(tenant);
    assert!(!store.self_contained_token_live(tenant, "job", revoked).await.unwrap());
    assert!(!store.self_contained_token_live(tenant, "job", in_revoked_family).await.unwrap());
    assert!(store.self_contained_token_live(tenant, "job", live).await.unwrap());
}

/// Version 4 stores every secret hash rotated (`rows::key`): hashes that version 3 wrote as
/// they are still find their rows, and new writes go in rotated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_hashes_from_version_3_are_rotated_and_still_found() {
    if skipped() {
        return;
    }
    let schema = Schema::new().await;
    let tenant = Uuid::new_v4();
    let family = Uuid::new_v4();
    // Unlike the fixtures' `h(n)`, these change when rotated.
    let token: [u8; 32] = std::array::from_fn(|i| u8::try_from(i).unwrap());
    let successor: [u8; 32] = std::array::from_fn(|i| u8::try_from(100 + i).unwrap());
    let secret: [u8; 32] = std::array::from_fn(|i| u8::try_from(200 + i).unwrap());
    {
        let mut conn = schema.connect().await;
        for sql in [
            include_str!("../../migrations/0001_init.sql"),
            include_str!("../../migrations/0002_revoked_jtis.sql"),
            include_str!("../../migrations/0003_housekeeping_indexes.sql"),
            "CREATE TABLE latchkey_schema_version (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL);
             INSERT INTO latchkey_schema_version VALUES (1, 0), (2, 0), (3, 0);",
        ] {
            conn.execute(sqlx::raw_sql(sql)).await.unwrap();
        }
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, 'default', 1)").bind(tenant).execute(&mut conn).await.unwrap();
        sqlx::query(
            "INSERT INTO clients (tenant_id, client_id, name, developer, secret_hash, redirect_uris, scopes, grant_types, require_pkce, created_at)
             VALUES ($1, 'job', 'Job', 'dev', $2, '[]', '[]', '[\"client_credentials\"]', true, 1)",
        )
        .bind(tenant)
        .bind(secret)
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO families (tenant_id, id, client_id, scope, auth_time, created_at, expires_at)
             VALUES ($1, $2, 'job', 'reports:read', 1, 1, 9999999999)",
        )
        .bind(tenant)
        .bind(family)
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO tokens (hash, tenant_id, kind, family_id, client_id, scope, jti, created_at, expires_at, successor, replay, replay_until)
             VALUES ($1, $2, 'refresh_token', $3, 'job', 'reports:read', $4, 1, 9999999999, $5, '\\x00', 9999999999)",
        )
        .bind(token)
        .bind(tenant)
        .bind(family)
        .bind(Uuid::new_v4())
        .bind(successor)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let store = PgStore::open(&schema.url).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION as i64);
    let tenant = TenantId(tenant);
    let view = store.find_token(tenant, SecretHash(token)).await.unwrap().expect("the token is found by its hash");
    assert_eq!(view.token.hash, SecretHash(token));
    let client = store.find_client(tenant, "job").await.unwrap().unwrap();
    assert_eq!(client.secret_hash, Some(SecretHash(secret)));
    let mut conn = schema.connect().await;
    let rotated = |b: [u8; 32]| {
        let mut b = b.to_vec();
        b.rotate_left(8);
        b
    };
    // (The successor moved to `replays` with its answer in version 7.)
    let (stored, stored_successor): (Vec<u8>, Vec<u8>) =
        sqlx::query_as("SELECT t.hash, r.successor FROM tokens t JOIN replays r ON r.hash = t.hash").fetch_one(&mut conn).await.unwrap();
    assert_eq!((stored, stored_successor), (rotated(token), rotated(successor)));
    // A new write goes in rotated too.
    assert!(store.rotate_client_secret(tenant, "job", SecretHash(token), NOW, None).await.unwrap());
    let stored: Vec<u8> = sqlx::query_scalar("SELECT secret_hash FROM clients").fetch_one(&mut conn).await.unwrap();
    assert_eq!(stored, rotated(token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused() {
    if skipped() {
        return;
    }
    let schema = Schema::new().await;
    PgStore::open(&schema.url).await.unwrap().close().await;
    let mut conn = schema.connect().await;
    let newer = SCHEMA_VERSION + 1;
    conn.execute(format!("INSERT INTO latchkey_schema_version (version, applied_at) VALUES ({newer}, 0)").as_str()).await.unwrap();
    match PgStore::open(&schema.url).await {
        Err(StoreError::Corrupt(msg)) => {
            assert!(msg.contains(&format!("version {newer}, newer than this latchkey ({SCHEMA_VERSION})")), "{msg}");
            assert!(msg.contains(&schema.name), "the message names the schema: {msg}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// docs/security.md RT-08: a database failure in the middle of a rotation leaves the old refresh
/// token usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_during_rotation_is_unavailable_and_rolls_back() {
    if skipped() {
        return;
    }
    let schema = Schema::new().await;
    let store = PgStore::open(&schema.url).await.unwrap();
    let (tenant, family) = issue(&store).await;
    let mut conn = schema.connect().await;
    conn.execute(sqlx::raw_sql(
        "CREATE FUNCTION lk_lose_connection() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'simulated connection failure' USING ERRCODE = '08006'; END $$;
         CREATE TRIGGER lk_lose_connection BEFORE INSERT ON tokens FOR EACH ROW EXECUTE FUNCTION lk_lose_connection();",
    ))
    .await
    .unwrap();

    let next = pair(&family, h(3), h(4));
    assert_unavailable(store.rotate_refresh_token(tenant, h(2), NOW + 1, &next, None).await, "rotation with failing inserts");
    let old = store.find_token(tenant, h(2)).await.unwrap().unwrap();
    assert_eq!(old.token.rotated_at, None, "the rotation must roll back");
    assert!(old.is_active(NOW + 1));
    assert!(store.find_token(tenant, h(4)).await.unwrap().is_none());

    conn.execute("DROP TRIGGER lk_lose_connection ON tokens").await.unwrap();
    assert_eq!(store.rotate_refresh_token(tenant, h(2), NOW + 2, &next, None).await.unwrap(), RotateOutcome::Rotated);
    assert!(store.find_token(tenant, h(4)).await.unwrap().unwrap().is_active(NOW + 2));
}

/// A serialization failure rolls the statement back; the store runs it again and the caller
/// sees only the success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serialization_failure_is_retried() {
    if skipped() {
        return;
    }
    let schema = Schema::new().await;
    let store = PgStore::open(&schema.url).await.unwrap();
    let (tenant, family) = issue(&store).await;
    // A sequence counts the attempts: unlike a table, it is not rolled back with them.
    let mut conn = schema.connect().await;
    conn.execute(sqlx::raw_sql(
        "CREATE SEQUENCE lk_attempts;
         CREATE FUNCTION lk_fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF nextval('lk_attempts') = 1 THEN
             RAISE EXCEPTION 'simulated serialization failure' USING ERRCODE = '40001';
           END IF;
           RETURN NULL;
         END $$;
         CREATE TRIGGER lk_fail_once BEFORE INSERT ON tokens FOR EACH STATEMENT EXECUTE FUNCTION lk_fail_once();",
    ))
    .await
    .unwrap();

    let next = pair(&family, h(3), h(4));
    assert_eq!(store.rotate_refresh_token(tenant, h(2), NOW + 1, &next, None).await.unwrap(), RotateOutcome::Rotated);
    let attempts: i64 = sqlx::query_scalar("SELECT last_value FROM lk_attempts").fetch_one(&mut conn).await.unwrap();
    assert_eq!(attempts, 2, "one failed attempt, one retry");
    assert_eq!(store.find_token(tenant, h(2)).await.unwrap().unwrap().token.rotated_at, Some(NOW + 1));
    assert!(store.find_token(tenant, h(4)).await.unwrap().unwrap().is_active(NOW + 1));
}

/// Every SQLSTATE class maps to the error the server needs: a conflict is an answer, an
/// unreachable or busy database is `Unavailable` (retried first when a new attempt may pass),
/// anything else is a `Database` fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlstates_map_to_store_errors() {
    if skipped() {
        return;
    }
    let schema = Schema::new().await;
    let store = PgStore::open(&schema.url).await.unwrap();
    let mut conn = schema.connect().await;
    conn.execute(sqlx::raw_sql(
        "CREATE TABLE lk_fault (code TEXT NOT NULL);
         INSERT INTO lk_fault VALUES ('00000');
         CREATE SEQUENCE lk_calls;
         CREATE FUNCTION lk_raise() RETURNS trigger LANGUAGE plpgsql AS $$
         DECLARE c TEXT;
         BEGIN
           PERFORM nextval('lk_calls');
           SELECT code INTO c FROM lk_fault;
           RAISE EXCEPTION 'simulated fault %', c USING ERRCODE = c;
         END $$;
         CREATE TRIGGER lk_raise BEFORE INSERT ON settings FOR EACH STATEMENT EXECUTE FUNCTION lk_raise();",
    ))
    .await
    .unwrap();

    #[derive(Debug, PartialEq)]
    enum Kind {
        Conflict,
        Unavailable,
        Database,
    }
    // (SQLSTATE, the error, how many times the store ran the statement)
    let cases = [
        ("23505", Kind::Conflict, 1),    // unique_violation
        ("08006", Kind::Unavailable, 1), // connection_failure
        ("08001", Kind::Unavailable, 1), // sqlclient_unable_to_establish_sqlconnection
        ("53300", Kind::Unavailable, 1), // too_many_connections
        ("53100", Kind::Unavailable, 1), // disk_full
        ("57P01", Kind::Unavailable, 1), // admin_shutdown
        ("57P02", Kind::Unavailable, 1), // crash_shutdown
        ("57P03", Kind::Unavailable, 1), // cannot_connect_now
        ("57014", Kind::Unavailable, 1), // query_canceled (statement_timeout)
        ("55P03", Kind::Unavailable, 1), // lock_not_available
        ("40001", Kind::Unavailable, 5), // serialization_failure, every retry failing too
        ("40P01", Kind::Unavailable, 5), // deadlock_detected, every retry failing too
        ("22012", Kind::Database, 1),    // division_by_zero
        ("42501", Kind::Database, 1),    // insufficient_privilege
        ("P0001", Kind::Database, 1),    // raise_exception
    ];
    for (code, want, calls) in cases {
        sqlx::query("UPDATE lk_fault SET code = $1").bind(code).execute(&mut conn).await.unwrap();
        conn.execute("SELECT setval('lk_calls', 1, false)").await.unwrap();
        let got = match store.ensure_setting("name", "value").await {
            Err(StoreError::Conflict(_)) => Kind::Conflict,
            Err(StoreError::Unavailable(_)) => Kind::Unavailable,
            Err(StoreError::Database(_)) => Kind::Database,
            other => panic!("{code}: {other:?}"),
        };
        assert_eq!(got, want, "{code}");
        let ran: i64 = sqlx::query_scalar("SELECT last_value FROM lk_calls").fetch_one(&mut conn).await.unwrap();
        assert_eq!(ran, calls, "{code}: attempts");
    }
    conn.execute("DROP TRIGGER lk_raise ON settings").await.unwrap();
    assert_eq!(store.ensure_setting("name", "value").await.unwrap(), "value");
}

/// The store's pool never pings: a connection goes back only after its query ran to the end.
/// A query abandoned halfway (its future dropped, as when a client hangs up) must not leave
/// its connection, with the answer still on the wire, to the next query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_query_does_not_hand_its_connection_on() {
    if skipped() {
        return;
    }
    let schema = Schema::new().await;
    let options: sqlx::postgres::PgConnectOptions = schema.url.parse().unwrap();
    let store = PgStore::open_with(options, 1).await.unwrap();
    let (tenant, family) = issue(&store).await;
    let user = family.user_id.unwrap();

    // Another session locks the users table, so that the store's read of a user waits.
    let mut conn = schema.connect().await;
    conn.execute("BEGIN").await.unwrap();
    conn.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let abandoned = tokio::time::timeout(std::time::Duration::from_millis(300), store.find_user(tenant, user)).await;
    assert!(abandoned.is_err(), "the read should still be waiting for the lock");
    conn.execute("COMMIT").await.unwrap();

    // One connection at most: the next query gets a clean one and its own answer.
    let client = store.find_client(tenant, "app").await.unwrap().expect("the client");
    assert_eq!(client.client_id, "app");
    assert_eq!(store.find_user(tenant, user).await.unwrap().unwrap().id, user);
}

/// A connection the server closed while it was idle fails at most the query that takes it,
/// as unavailable (a 503), and the pool connects anew for the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_by_the_server_is_replaced() {
    if skipped() {
        return;
    }
    let schema = Schema::new().await;
    let name = format!("lk-test-{}", Uuid::new_v4().simple());
    let options = schema.url.parse::<sqlx::postgres::PgConnectOptions>().unwrap().application_name(&name);
    let store = PgStore::open_with(options, 1).await.unwrap();
    let (tenant, _) = issue(&store).await;
    let mut conn = schema.connect().await;
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE application_name = $1) AS t",
    )
    .bind(&name)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(killed, 1, "the store's one idle connection");
    // pg_terminate_backend only signals: wait until the backend has gone.
    for _ in 0..100 {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
            .bind(&name)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    match store.find_client(tenant, "app").await {
        Ok(found) => assert!(found.is_some()),
        Err(e) => assert!(matches!(e, StoreError::Unavailable(_)), "expected Unavailable, got {e:?}"),
    }
    assert!(store.find_client(tenant, "app").await.unwrap().is_some());
}

/// Every housekeeping statement can find its rows through an index on its cutoff, so a pass
/// costs what has expired, however much is live. (On empty tables PostgreSQL rightly prefers
/// any index on `tenant_id`: `housekeeping_plans_use_indexes` checks the plans on a filled
/// `tokens`; SQLite's test checks its plans.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn housekeeping_has_an_index_for_each_cutoff() {
    if skipped() {
        return;
    }
    let schema = Schema::new().await;
    PgStore::open(&schema.url).await.unwrap().close().await;
    let mut conn = schema.connect().await;
    let indexes: Vec<String> =
        sqlx::query_scalar("SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema()").fetch_all(&mut conn).await.unwrap();
    let statements = latchkey_store_postgres::testing::housekeeping_statements().join("\n");
    for (table, cutoff) in [
        ("codes", "expires_at"),
        ("replays", "until"),
        ("families", "expires_at"),
        ("tokens", "expires_at"),
        ("tokens", "family_id"),
        ("sessions", "expires_at"),
        ("interactions", "expires_at"),
        ("login_attempts", "window_start"),
        ("personal_tokens", "expires_at"),
        ("personal_tokens", "revoked_at"),
        ("revoked_jtis", "expires_at"),
    ] {
        assert!(statements.contains(&format!("{table} ")), "housekeeping no longer sweeps {table}: update this test");
        let wanted = format!("ON {}.{table} USING btree (tenant_id, {cutoff})", schema.name);
        assert!(indexes.iter().any(|i| i.contains(&wanted)), "no index {wanted} in {indexes:#?}");
    }
}

/// Each housekeeping statement reaches `tokens`, the table that grows with traffic (here
/// 20,000 live tokens in 10,000 families), through an index even in a generic plan: the plan PostgreSQL may settle on for a statement prepared
/// once and run many times, which guesses that a third of the rows pass the cutoff. Before the
/// batches were taken in the cutoff's order, that plan was a sequential scan of every live
/// token (the expired-token sweep) or a bitmap scan of the whole expired range of the replay
/// index (the replay sweep), each pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn housekeeping_plans_use_indexes() {
    if skipped() {
        return;
    }
    let schema = Schema::new().await;
    PgStore::open(&schema.url).await.unwrap().close().await;
    let mut conn = schema.connect().await;
    let tenant = Uuid::new_v4();
    conn.execute(sqlx::raw_sql(&format!(
        "INSERT INTO tenants (id, name, created_at) VALUES ('{tenant}', 'default', 1);
         INSERT INTO clients (tenant_id, client_id, name, developer, redirect_uris, scopes, grant_types, require_pkce, created_at)
             VALUES ('{tenant}', 'job', 'Job', 'dev', '[]', '[]', '[]', true, 1);
         INSERT INTO families (tenant_id, id, client_id, scope, auth_time, created_at, expires_at)
             SELECT '{tenant}', md5(i::text)::uuid, 'job', 's', 1, 1, 9999999999 FROM generate_series(1, 10000) i;
         INSERT INTO tokens (hash, tenant_id, kind, family_id, client_id, scope, jti, created_at, expires_at)
             SELECT sha256(i::text::bytea), '{tenant}', 'refresh_token', md5(((i - 1) / 2 + 1)::text)::uuid, 'job', 's', gen_random_uuid(), i,
                 9999999999
             FROM generate_series(1, 20000) i;
         INSERT INTO replays (hash, tenant_id, sealed, until)
             SELECT sha256(i::text::bytea), '{tenant}', '\\x00'::bytea, 5000000000 + i FROM generate_series(100, 20000, 100) i;
         ANALYZE;
         SET plan_cache_mode = force_generic_plan;"
    )))
    .await
    .unwrap();
    for (n, sql) in latchkey_store_postgres::testing::housekeeping_statements().iter().enumerate() {
        conn.execute(sqlx::raw_sql(&format!("PREPARE sweep_{n}(uuid, bigint, bigint) AS {sql}"))).await.unwrap();
        let plan: Vec<String> =
            sqlx::query_scalar(&format!("EXPLAIN EXECUTE sweep_{n}('{tenant}', 1000, 100)")).fetch_all(&mut conn).await.unwrap();
        let plan = plan.join("\n");
        assert!(
            !plan.contains("Seq Scan on tokens") && !plan.contains("Bitmap Heap Scan on tokens"),
            "{sql}\nwalks tokens in its generic plan:\n{plan}"
        );
    }
}
