//! The PostgreSQL implementation of the Latchkey store, for running several nodes on one
//! database.
//!
//! Atomicity: every operation the trait calls atomic is one SQL statement. Where it writes
//! several tables (redeeming a code, rotating a refresh token, a personal token and its audit
//! event), the writes are data-modifying `WITH` clauses of that statement: PostgreSQL commits
//! or rolls back a statement as a whole, so this is as atomic as an explicit transaction, and
//! costs one round trip instead of four (`BEGIN`, two statements, `COMMIT`).
//!
//! Concurrency: the default isolation, READ COMMITTED. A conditional `UPDATE ... WHERE
//! consumed_at IS NULL` (or `rotated_at IS NULL`) waits for the row lock of a concurrent writer
//! and then re-checks its condition on the committed row, so of several racers exactly one
//! matches; the others see zero rows and write nothing. Deadlocks (SQLSTATE 40P01) and
//! serialization failures (40001) roll the statement back whole; the store runs it again, up to
//! five times with a short jittered pause, before the caller hears of it (as `Unavailable`).
//!
//! Errors: a unique violation is `StoreError::Conflict`; text with a NUL byte (SQLSTATE
//! 22021) is `StoreError::Invalid`; a lost or refused connection, SQLSTATE
//! classes 08 and 53, 57P01-57P03, 57014, 55P03, and 40001/40P01 once the retries are spent are
//! `Unavailable`; anything else is `Database`.
//!
//! Schemas: the store uses the first schema of the connection's `search_path`. A URL selects
//! one with libpq's `options` parameter, which sqlx 0.8 passes to the server at startup:
//! `postgres://user@host/db?options=-c%20search_path%3Dtenant_a` (sqlx also accepts its own
//! `options[search_path]=tenant_a`). [`testing::create_schema`] makes such a URL.

mod conns;
mod rows;
pub mod testing;

use async_trait::async_trait;
use conns::{on_conn, Conns};
use latchkey_core::guessing::AttemptCount;
use latchkey_core::model::{
    AuthCode, Business, Client, ClientSummary, Family, FamilyView, Grant, GrantSummary, Interaction, OwnerInvitation, PersonalToken,
    PersonalTokenEvent, ScopeEntry, Session, SigningKeyRecord, Tenant, TenantId, TokenKind, TokenRecord, TokenView, User,
};
use latchkey_core::secret::SecretHash;
use latchkey_core::UnixTime;
use latchkey_store::{
    AttemptStore, BusinessStore, Cleanup, ClientStore, GrantStore, HousekeepingStore, PersonalTokenStore, RedeemOutcome, RotateOutcome,
    RowCounts, ScopeStore, SealedReplay, SessionStore, SigningKeyStore, StoreError, StoreResult, TenantStore, TokenStore, UserStore,
};
use rows::*;
use sqlx::postgres::{PgArguments, PgConnectOptions};
use sqlx::Connection;
use sqlx::{Executor, Postgres, Row};
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;
use uuid::Uuid;

/// The schema, one entry per version; `latchkey_schema_version` records the versions applied.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_revoked_jtis.sql"),
    include_str!("../migrations/0003_housekeeping_indexes.sql"),
    include_str!("../migrations/0004_rotated_secret_keys.sql"),
    include_str!("../migrations/0005_account.sql"),
    include_str!("../migrations/0006_developer.sql"),
    include_str!("../migrations/0007_replays.sql"),
];

/// The schema version this build writes (the number of migrations).
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// The first half of the advisory lock key that serializes migrations ("Lkey"); the second
/// half is a hash of the schema name, so that nodes migrating different schemas of one
/// database do not wait for each other.
const MIGRATION_LOCK: i32 = 0x4c6b_6579;

/// Connections per pool unless [`PgStore::open_with`] says otherwise: enough for a busy node,
/// few enough that several nodes fit under PostgreSQL's default `max_connections` (100).
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;

/// How long a request waits for a free connection before it fails as unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many times a statement runs when it keeps failing with a deadlock or a serialization
/// failure.
const ATTEMPTS: u32 = 5;

/// A Latchkey store on PostgreSQL: a connection pool on one schema.
#[derive(Debug, Clone)]
pub struct PgStore {
    conns: std::sync::Arc<Conns>,
}

type Query<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// Maps a database error to the store's: a unique violation is a `Conflict` (an answer);
/// anything that says "the database cannot serve you now, try again later" is `Unavailable`
/// (the server answers 503 with `Retry-After`); everything else is a `Database` fault (500).
pub(crate) fn fault(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(db.message().to_owned()),
        // character_not_in_repertoire: a NUL byte in text, which PostgreSQL cannot hold. The
        // SQLite store refuses the same values itself (`latchkey_store::check_text`).
        sqlx::Error::Database(db) if db.code().as_deref() == Some("22021") => StoreError::Invalid(db.message().to_owned()),
        sqlx::Error::Database(db) if db.code().is_some_and(|c| unavailable_code(&c)) => {
            StoreError::Unavailable(Box::new(sqlx::Error::Database(db)))
        }
        e @ (sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed) => StoreError::Unavailable(Box::new(e)),
        e => StoreError::Database(Box::new(e)),
    }
}

/// SQLSTATEs that mean the database is unreachable, overloaded or in the way for now
/// (PostgreSQL manual, appendix A).
fn unavailable_code(code: &str) -> bool {
    code.starts_with("08") // connection_exception and its subclasses
        || code.starts_with("53") // insufficient_resources: too many connections, disk full, out of memory
        || matches!(
            code,
            "57P01" // admin_shutdown
            | "57P02" // crash_shutdown
            | "57P03" // cannot_connect_now: starting up or in recovery
            | "57014" // query_canceled: statement_timeout, the database is busy beyond its timeout
            | "55P03" // lock_not_available: lock_timeout
            | "40001" // serialization_failure, after the retries
            | "40P01" // deadlock_detected, after the retries
        )
}

/// The SQLSTATE of an error that a new attempt of the same statement may not meet: the
/// statement was rolled back whole, so running it again is safe.
fn retryable_code(e: &StoreError) -> Option<String> {
    let StoreError::Unavailable(source) = e else { return None };
    match source.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Database(db)) => db.code().filter(|c| c == "40001" || c == "40P01").map(|c| c.into_owned()),
        _ => None,
    }
}

/// What a database call may fail with: sqlx's errors, or ours where a step decodes rows.
trait IntoStoreError {
    fn into_store_error(self) -> StoreError;
}

impl IntoStoreError for sqlx::Error {
    fn into_store_error(self) -> StoreError {
        fault(self)
    }
}

impl IntoStoreError for StoreError {
    fn into_store_error(self) -> StoreError {
        self
    }
}

/// Runs `op` until it succeeds or fails with something other than a deadlock or a
/// serialization failure, at most [`ATTEMPTS`] times, waiting a short jittered while between
/// attempts so that the racers that deadlocked do not meet again. Every write goes through
/// here, so these transient failures never reach the caller unless they persist.
async fn retry<T, E, F, Fut>(mut op: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: IntoStoreError,
{
    let mut attempt = 1;
    loop {
        let e = match op().await {
            Ok(v) => return Ok(v),
            Err(e) => e.into_store_error(),
        };
        match retryable_code(&e) {
            Some(code) if attempt < ATTEMPTS => {
                let delay = backoff(attempt);
                tracing::debug!(code, attempt, ?delay, "retrying a statement after a transient conflict");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            _ => return Err(e),
        }
    }
}

/// 5 ms, 10 ms, 20 ms, 40 ms, each give or take half.
fn backoff(attempt: u32) -> Duration {
    let base = 5_000u64 << attempt.saturating_sub(1).min(8);
    let micros = rand::Rng::gen_range(&mut rand::thread_rng(), base / 2..=base + base / 2);
    Duration::from_micros(micros)
}

impl PgStore {
    /// Connects to the database at `url` (a `postgres://` URL; see the crate documentation for
    /// selecting a schema) with [`DEFAULT_MAX_CONNECTIONS`], and brings its schema up to date.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url).map_err(fault)?;
        Self::open_with(options, DEFAULT_MAX_CONNECTIONS).await
    }

    /// Connects a pool of at most `max_connections` (at least one) and brings the schema up to
    /// date. Several nodes may start at once: migrations are serialized by an advisory lock.
    pub async fn open_with(options: PgConnectOptions, max_connections: u32) -> StoreResult<Self> {
        let conns = Conns::new(options, max_connections, ACQUIRE_TIMEOUT);
        retry(|| migrate(&conns)).await?;
        Ok(Self { conns: std::sync::Arc::new(conns) })
    }

    /// The schema version of the database (the number of migrations applied), for tests and
    /// diagnostics.
    pub async fn schema_version(&self) -> StoreResult<i64> {
        on_conn!(self.conns, |c| sqlx::query_scalar("SELECT COALESCE(MAX(version), 0)::int8 FROM latchkey_schema_version").fetch_one(c))
            .await
            .map_err(fault)
    }

    /// The schema the store works in (the first existing schema of its `search_path`).
    pub async fn current_schema(&self) -> StoreResult<String> {
        let schema: Option<String> =
            on_conn!(self.conns, |c| sqlx::query_scalar("SELECT current_schema()").fetch_one(c)).await.map_err(fault)?;
        schema.ok_or_else(no_schema_error)
    }

    /// Closes the idle connections of the pool and refuses new queries; those in use are
    /// closed as they come back.
    pub async fn close(&self) {
        self.conns.close().await;
    }

    /// Runs one write statement (built anew for each attempt), returning how many rows it
    /// changed.
    async fn write<'q, F>(&self, make: F) -> StoreResult<u64>
    where
        F: Fn() -> Query<'q>,
    {
        retry(|| on_conn!(self.conns, |c| make().execute(c))).await.map(|r| r.rows_affected())
    }

    /// Runs one write statement that returns a row.
    async fn write_returning<'q, F>(&self, make: F) -> StoreResult<sqlx::postgres::PgRow>
    where
        F: Fn() -> Query<'q>,
    {
        retry(|| on_conn!(self.conns, |c| make().fetch_one(c))).await
    }

    /// Runs one write statement whose single row holds a count (`SELECT count(*) FROM ...` at
    /// the end of a `WITH`).
    async fn write_count<'q, F>(&self, make: F) -> StoreResult<u64>
    where
        F: Fn() -> Query<'q>,
    {
        let row = self.write_returning(make).await?;
        let n: i64 = row.try_get(0).map_err(fault)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

fn no_schema_error() -> StoreError {
    StoreError::Database(
        "no schema to work in: the search_path names no existing schema (create it, or select another with options=-c search_path=NAME)"
            .into(),
    )
}

/// Applies the migrations this binary knows and the database lacks, in one transaction that
/// holds an advisory lock, so that nodes starting together apply each migration once.
async fn migrate(conns: &Conns) -> StoreResult<()> {
    let mut lease = conns.lease().await.map_err(fault)?;
    let outcome = migrate_on(lease.conn()).await;
    // A failed migration rolled back; a connection that failed below SQL is closed.
    lease.end(!matches!(outcome, Err(StoreError::Unavailable(_))));
    outcome
}

async fn migrate_on(conn: &mut sqlx::PgConnection) -> StoreResult<()> {
    let mut tx = conn.begin().await.map_err(fault)?;
    let schema: Option<String> = sqlx::query_scalar("SELECT current_schema()").fetch_one(&mut *tx).await.map_err(fault)?;
    let schema = schema.ok_or_else(no_schema_error)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(MIGRATION_LOCK)
        .bind(&schema)
        .execute(&mut *tx)
        .await
        .map_err(fault)?;
    // After the lock, so that these statements see what a node that held it before committed
    // (READ COMMITTED takes a snapshot per statement). Checked rather than `IF NOT EXISTS`,
    // which would log a notice at every start.
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('latchkey_schema_version') IS NOT NULL").fetch_one(&mut *tx).await.map_err(fault)?;
    if !exists {
        tx.execute(sqlx::raw_sql("CREATE TABLE latchkey_schema_version (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"))
            .await
            .map_err(fault)?;
    }
    let version: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0)::int8 FROM latchkey_schema_version")
        .fetch_one(&mut *tx)
        .await
        .map_err(fault)?;
    let known = MIGRATIONS.len();
    let version = usize::try_from(version).map_err(|_| StoreError::Corrupt(format!("negative schema version {version}")))?;
    if version > known {
        return Err(StoreError::Corrupt(format!(
            "the database schema {schema:?} has version {version}, newer than this latchkey ({known}); upgrade latchkey"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let v = i32::try_from(i + 1).map_err(|_| StoreError::Corrupt("too many migrations".into()))?;
        tx.execute(sqlx::raw_sql(sql)).await.map_err(fault)?;
        sqlx::query("INSERT INTO latchkey_schema_version (version, applied_at) VALUES ($1, EXTRACT(EPOCH FROM now())::int8)")
            .bind(v)
            .execute(&mut *tx)
            .await
            .map_err(fault)?;
        tracing::info!(version = v, schema, "applied PostgreSQL migration");
    }
    tx.commit().await.map_err(fault)
}

/// Binds a signing key as `$1` to `$9`, in the column order of [`INSERT_KEY`].
fn bind_key<'q>(q: Query<'q>, k: &'q SigningKeyRecord) -> Query<'q> {
    q.bind(k.tenant.0)
        .bind(&k.kid)
        .bind(k.alg.as_str())
        .bind(&k.sealed_private_key)
        .bind(&k.public_jwk)
        .bind(k.created_at)
        .bind(k.activates_at)
        .bind(k.retires_at)
        .bind(k.period)
}

/// Inserts a signing key, `$1` to `$9` bound by [`bind_key`].
const INSERT_KEY: &str = "INSERT INTO signing_keys (tenant_id, kid, alg, sealed, public_jwk, created_at, activates_at, retires_at, period) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// Binds a family as `$14` to `$24` (after the thirteen token arrays), in the column order of
/// [`FAMILY_COLUMNS`].
fn bind_family<'q>(q: Query<'q>, f: &'q Family) -> Query<'q> {
    q.bind(f.tenant.0)
        .bind(f.id)
        .bind(f.grant_id)
        .bind(&f.client_id)
        .bind(f.user_id)
        .bind(f.business_id)
        .bind(f.scope.to_string())
        .bind(f.auth_time)
        .bind(f.created_at)
        .bind(f.expires_at)
        .bind(f.revoked_at)
}

/// Binds a code's sixteen columns, in the order of the `codes` inserts, with `consumed_at`.
fn bind_code<'q>(q: Query<'q>, c: &'q AuthCode, consumed_at: Option<UnixTime>) -> Query<'q> {
    q.bind(key(&c.hash))
        .bind(c.tenant.0)
        .bind(&c.client_id)
        .bind(c.user_id)
        .bind(c.grant_id)
        .bind(c.business_id)
        .bind(&c.redirect_uri)
        .bind(c.redirect_uri_explicit)
        .bind(c.scope.to_string())
        .bind(&c.nonce)
        .bind(&c.code_challenge)
        .bind(c.auth_time)
        .bind(c.created_at)
        .bind(c.expires_at)
        .bind(consumed_at)
        .bind(c.family_id)
}

/// The columns of `families`, and their parameters as [`bind_family`] binds them.
const FAMILY_COLUMNS: &str =
    "tenant_id, id, grant_id, client_id, user_id, business_id, scope, auth_time, created_at, expires_at, revoked_at";
const FAMILY_PARAMS: &str = "$14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24";

impl PgStore {
    /// One bounded housekeeping statement: `$1` the tenant, `$2` the cutoff, `$3` the limit.
    async fn housekeep(&self, sql: &str, tenant: TenantId, cutoff: UnixTime, limit: u32) -> StoreResult<u64> {
        self.write(|| sqlx::query(sql).bind(tenant.0).bind(cutoff).bind(i64::from(limit))).await
    }
}

/// Housekeeping's statements. Each finds its rows through an index on its cutoff (a test
/// checks that the indexes exist), so that a pass costs what has expired, not what is live;
/// each is bounded: `$1` the tenant, `$2` the cutoff, `$3` the batch size.
///
/// Each takes its batch in the order of its cutoff. Without the order, the plan depended on
/// how PostgreSQL guessed at the cutoff: a statement prepared once and run many times may get
/// a generic plan, which assumes a third of the rows match, and then a LIMIT over a sequential
/// scan of `tokens` (a walk over every live token, each pass) or a bitmap scan that reads the
/// whole range of `replays_until` before the LIMIT looks cheapest. Ordered by the cutoff, the
/// index gives the batch's first rows at once, in any plan (`housekeeping_plans_use_indexes`).
///
/// Rows are picked by `ctid` (their physical address, which any table has): a row that a
/// concurrent transaction updates meanwhile gets a new `ctid` and is left for the next pass
/// instead of being deleted on stale grounds.
pub(crate) mod sweep {
    macro_rules! sweep {
        ($table:literal, $cutoff:literal) => {
            concat!(
                "DELETE FROM ",
                $table,
                " WHERE ctid = ANY(ARRAY(SELECT ctid FROM ",
                $table,
                " WHERE tenant_id = $1 AND ",
                $cutoff,
                " <= $2 ORDER BY ",
                $cutoff,
                " LIMIT $3))"
            )
        };
    }
    pub(crate) const CODES: &str = sweep!("codes", "expires_at");
    /// Replay answers past their window; the rotated tokens stay for reuse detection.
    pub(crate) const REPLAYS: &str = sweep!("replays", "until");
    /// Families past their absolute lifetime; their tokens go with them (ON DELETE CASCADE).
    pub(crate) const FAMILIES: &str = sweep!("families", "expires_at");
    /// A batch of expired tokens, then those of their families that no unexpired token is left
    /// in: such a family has idled out (its refresh token expired before the family's absolute
    /// lifetime, or it never had one, as with client_credentials) and nothing can revive it.
    /// Returns how many tokens and how many families went.
    ///
    /// Driven by the expired tokens (`tokens_expiry`), never a scan of every live family. Both
    /// deletes see the same snapshot: the NOT EXISTS still sees the tokens of the first, which
    /// are expired and so do not keep a family.
    pub(crate) const TOKENS: &str = "WITH gone AS (
            DELETE FROM tokens WHERE ctid = ANY(ARRAY(
                SELECT ctid FROM tokens WHERE tenant_id = $1 AND expires_at <= $2 ORDER BY expires_at LIMIT $3))
            RETURNING family_id
        ), idled AS (
            DELETE FROM families f WHERE f.tenant_id = $1 AND f.id IN (SELECT family_id FROM gone)
            AND NOT EXISTS (SELECT 1 FROM tokens t WHERE t.tenant_id = $1 AND t.family_id = f.id AND t.expires_at > $2)
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM idled)";
    pub(crate) const SESSIONS: &str = sweep!("sessions", "expires_at");
    pub(crate) const INTERACTIONS: &str = sweep!("interactions", "expires_at");
    pub(crate) const ATTEMPTS: &str = sweep!("login_attempts", "window_start");
    /// Two cutoffs, so no one order: a user's personal tokens are few, and each cutoff has an
    /// index of its own.
    pub(crate) const PERSONAL_TOKENS: &str = "DELETE FROM personal_tokens WHERE ctid = ANY(ARRAY(SELECT ctid FROM personal_tokens
         WHERE tenant_id = $1 AND (expires_at <= $2 OR revoked_at <= $2) LIMIT $3))";
    pub(crate) const REVOKED_JTIS: &str = sweep!("revoked_jtis", "expires_at");
    pub(crate) const ALL: [&str; 9] = [CODES, REPLAYS, FAMILIES, TOKENS, SESSIONS, INTERACTIONS, ATTEMPTS, PERSONAL_TOKENS, REVOKED_JTIS];
}

#[async_trait]
impl TenantStore for PgStore {
    async fn ensure_tenant(&self, name: &str, now: UnixTime) -> StoreResult<Tenant> {
        let id = Uuid::new_v4();
        self.write(|| {
            sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
                .bind(id)
                .bind(name)
                .bind(now)
        })
        .await?;
        self.find_tenant_by_name(name).await?.ok_or_else(|| StoreError::NotFound(format!("tenant {name}")))
    }

    async fn find_tenant_by_name(&self, name: &str) -> StoreResult<Option<Tenant>> {
        let row = on_conn!(self.conns, |c| sqlx::query(&format!("{TENANT_SELECT} WHERE name = $1")).bind(name).fetch_optional(c))
            .await
            .map_err(fault)?;
        row.map(|r| tenant_from_row(&r)).transpose()
    }

    async fn insert_tenant(&self, t: &Tenant) -> StoreResult<()> {
        let settings = json(&t.settings)?;
        self.write(|| {
            sqlx::query("INSERT INTO tenants (id, name, issuer, settings, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(t.id.0)
                .bind(&t.name)
                .bind(&t.issuer)
                .bind(&settings)
                .bind(t.created_at)
        })
        .await
        .map(drop)
    }

    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        // COLLATE "C": byte order, as SQLite sorts, whatever the database's locale.
        let rows = on_conn!(self.conns, |c| sqlx::query(&format!(r#"{TENANT_SELECT} ORDER BY created_at, name COLLATE "C""#)).fetch_all(c))
            .await
            .map_err(fault)?;
        rows.iter().map(tenant_from_row).collect()
    }

    async fn update_tenant(&self, t: &Tenant) -> StoreResult<bool> {
        let settings = json(&t.settings)?;
        let n = self
            .write(|| {
                sqlx::query("UPDATE tenants SET issuer = $1, settings = $2 WHERE id = $3").bind(&t.issuer).bind(&settings).bind(t.id.0)
            })
            .await?;
        Ok(n > 0)
    }

    async fn ensure_setting(&self, name: &str, value: &str) -> StoreResult<String> {
        // One statement, so two first writers cannot both win: the second waits for the
        // first's row and then returns it.
        let row = self
            .write_returning(|| {
                sqlx::query(
                    "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = settings.value RETURNING value",
                )
                .bind(name)
                .bind(value)
            })
            .await?;
        row.try_get("value").map_err(fault)
    }
}

#[async_trait]
impl UserStore for PgStore {
    async fn insert_user(&self, u: &User) -> StoreResult<()> {
        self.write(|| {
            sqlx::query(
                "INSERT INTO users (tenant_id, id, email, name, password_hash, default_business_id, developer, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(u.tenant.0)
            .bind(u.id)
            .bind(&u.email)
            .bind(&u.name)
            .bind(&u.password_hash)
            .bind(u.default_business_id)
            .bind(u.developer)
            .bind(u.created_at)
        })
        .await
        .map(drop)
    }

    async fn find_user(&self, tenant: TenantId, id: Uuid) -> StoreResult<Option<User>> {
        let row = on_conn!(self.conns, |c| sqlx::query(&format!("{USER_SELECT} WHERE tenant_id = $1 AND id = $2"))
            .bind(tenant.0)
            .bind(id)
            .fetch_optional(c))
        .await
        .map_err(fault)?;
        row.map(|r| user_from_row(&r)).transpose()
    }

    async fn find_user_with_businesses(&self, tenant: TenantId, id: Uuid) -> StoreResult<Option<(User, Vec<Uuid>)>> {
        let sql = format!(
            "SELECT u.*, ARRAY(SELECT m.business_id FROM memberships m
                JOIN businesses b ON b.tenant_id = m.tenant_id AND b.id = m.business_id
                WHERE m.tenant_id = u.tenant_id AND m.user_id = u.id ORDER BY m.created_at, m.seq) AS business_ids
             FROM ({USER_SELECT} WHERE tenant_id = $1 AND id = $2) u"
        );
        let row = on_conn!(self.conns, |c| sqlx::query(&sql).bind(tenant.0).bind(id).fetch_optional(c)).await.map_err(fault)?;
        row.map(|r| Ok((user_from_row(&r)?, r.try_get("business_ids").map_err(fault)?))).transpose()
    }

    async fn find_user_by_email(&self, tenant: TenantId, email: &str) -> StoreResult<Option<User>> {
        let row = on_conn!(self.conns, |c| sqlx::query(&format!("{USER_SELECT} WHERE tenant_id = $1 AND email = $2"))
            .bind(tenant.0)
            .bind(email.to_lowercase())
            .fetch_optional(c))
        .await
        .map_err(fault)?;
        row.map(|r| user_from_row(&r)).transpose()
    }

    async fn list_users(&self, tenant: TenantId) -> StoreResult<Vec<User>> {
        let rows =
            on_conn!(self.conns, |c| sqlx::query(&format!(r#"{USER_SELECT} WHERE tenant_id = $1 ORDER BY created_at, email COLLATE "C""#))
                .bind(tenant.0)
                .fetch_all(c))
            .await
            .map_err(fault)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn delete_user(&self, tenant: TenantId, id: Uuid) -> StoreResult<bool> {
        // ON DELETE CASCADE takes grants, codes, sessions, families (and their tokens),
        // personal tokens and memberships with the user.
        let n = self.write(|| sqlx::query("DELETE FROM users WHERE tenant_id = $1 AND id = $2").bind(tenant.0).bind(id)).await?;
        Ok(n > 0)
    }

    async fn update_user_default_business(&self, tenant: TenantId, user: Uuid, business: Option<Uuid>) -> StoreResult<()> {
        self.write(|| {
            sqlx::query("UPDATE users SET default_business_id = $1 WHERE tenant_id = $2 AND id = $3")
                .bind(business)
                .bind(tenant.0)
                .bind(user)
        })
        .await
        .map(drop)
    }

    async fn update_user(&self, tenant: TenantId, user: Uuid, email: &str, name: &str) -> StoreResult<bool> {
        let n = self
            .write(|| {
                sqlx::query("UPDATE users SET email = $1, name = $2 WHERE tenant_id = $3 AND id = $4")
                    .bind(email)
                    .bind(name)
                    .bind(tenant.0)
                    .bind(user)
            })
            .await?;
        Ok(n > 0)
    }

    async fn update_user_developer(&self, tenant: TenantId, user: Uuid, developer: bool) -> StoreResult<bool> {
        let n = self
            .write(|| {
                sqlx::query("UPDATE users SET developer = $1 WHERE tenant_id = $2 AND id = $3").bind(developer).bind(tenant.0).bind(user)
            })
            .await?;
        Ok(n > 0)
    }

    async fn update_user_password(&self, tenant: TenantId, user: Uuid, password_hash: &str, keep: Option<SecretHash>) -> StoreResult<bool> {
        let keep = keep.as_ref().map(key);
        let n = self
            .write_count(|| {
                sqlx::query(
                    "WITH changed AS (UPDATE users SET password_hash = $1 WHERE tenant_id = $2 AND id = $3 RETURNING id),
                     ended AS (DELETE FROM sessions WHERE tenant_id = $2 AND user_id IN (SELECT id FROM changed)
                               AND hash IS DISTINCT FROM $4)
                     SELECT count(*) FROM changed",
                )
                .bind(password_hash)
                .bind(tenant.0)
                .bind(user)
                .bind(keep)
            })
            .await?;
        Ok(n > 0)
    }
}

#[async_trait]
impl BusinessStore for PgStore {
    async fn insert_business(&self, b: &Business) -> StoreResult<()> {
        self.write(|| {
            sqlx::query("INSERT INTO businesses (tenant_id, id, name, created_at) VALUES ($1, $2, $3, $4)")
                .bind(b.tenant.0)
                .bind(b.id)
                .bind(&b.name)
                .bind(b.created_at)
        })
        .await
        .map(drop)
    }

    async fn find_business_by_name(&self, tenant: TenantId, name: &str) -> StoreResult<Option<Business>> {
        let row = on_conn!(self.conns, |c| sqlx::query(&format!("{BUSINESS_SELECT} WHERE tenant_id = $1 AND name = $2"))
            .bind(tenant.0)
            .bind(name)
            .fetch_optional(c))
        .await
        .map_err(fault)?;
        row.map(|r| business_from_row(&r)).transpose()
    }

    async fn insert_membership(&self, tenant: TenantId, business: Uuid, user: Uuid, now: UnixTime) -> StoreResult<()> {
        self.write(|| {
            sqlx::query(
                "INSERT INTO memberships (tenant_id, business_id, user_id, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(tenant.0)
            .bind(business)
            .bind(user)
            .bind(now)
        })
        .await
        .map(drop)
    }

    async fn delete_membership(&self, tenant: TenantId, business: Uuid, user: Uuid) -> StoreResult<bool> {
        let n = self
            .write(|| {
                sqlx::query("DELETE FROM memberships WHERE tenant_id = $1 AND business_id = $2 AND user_id = $3")
                    .bind(tenant.0)
                    .bind(business)
                    .bind(user)
            })
            .await?;
        Ok(n > 0)
    }

    async fn revoke_user_business(&self, tenant: TenantId, user: Uuid, business: Uuid, now: UnixTime) -> StoreResult<u64> {
        self.write_count(|| {
            sqlx::query(
                "WITH revoked AS (UPDATE families SET revoked_at = $1 WHERE tenant_id = $2 AND user_id = $3 AND business_id = $4 AND revoked_at IS NULL RETURNING 1),
                 dropped AS (DELETE FROM grants WHERE tenant_id = $2 AND user_id = $3 AND business_id = $4),
                 unredeemed AS (DELETE FROM codes WHERE tenant_id = $2 AND user_id = $3 AND business_id = $4 AND consumed_at IS NULL)
                 SELECT count(*) FROM revoked",
            )
            .bind(now)
            .bind(tenant.0)
            .bind(user)
            .bind(business)
        })
        .await
    }

    async fn list_businesses(&self, tenant: TenantId) -> StoreResult<Vec<Business>> {
        let rows = on_conn!(self.conns, |c| sqlx::query(&format!(r#"{BUSINESS_SELECT} WHERE tenant_id = $1 ORDER BY name COLLATE "C""#))
            .bind(tenant.0)
            .fetch_all(c))
        .await
        .map_err(fault)?;
        rows.iter().map(business_from_row).collect()
    }

    async fn list_user_businesses(&self, tenant: TenantId, user: Uuid) -> StoreResult<Vec<Business>> {
        let rows = on_conn!(self.conns, |c| sqlx::query(
            "SELECT b.tenant_id, b.id, b.name, b.created_at FROM memberships m
             JOIN businesses b ON b.tenant_id = m.tenant_id AND b.id = m.business_id
             WHERE m.tenant_id = $1 AND m.user_id = $2 ORDER BY m.created_at, m.seq",
        )
        .bind(tenant.0)
        .bind(user)
        .fetch_all(c))
        .await
        .map_err(fault)?;
        rows.iter().map(business_from_row).collect()
    }
}

#[async_trait]
impl ClientStore for PgStore {
    async fn insert_client(&self, c: &Client, owners: &[Uuid]) -> StoreResult<()> {
        let (redirect_uris, grant_types, settings, profile) =
            (json(&c.redirect_uris)?, json(&c.grant_types)?, json(&c.token_settings)?, json(&c.profile)?);
        // One statement: the client and its owners.
        self.write(|| {
            sqlx::query(
                "WITH added AS (
                    INSERT INTO clients (tenant_id, client_id, name, developer, secret_hash, redirect_uris, scopes, grant_types, require_pkce,
                        settings, profile, secret_created_at, created_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING tenant_id, client_id)
                 INSERT INTO client_owners (tenant_id, client_id, user_id, created_at)
                 SELECT added.tenant_id, added.client_id, owner, $13 FROM added, UNNEST($14::uuid[]) AS owner",
            )
            .bind(c.tenant.0)
            .bind(&c.client_id)
            .bind(&c.name)
            .bind(&c.developer)
            .bind(c.secret_hash.as_ref().map(key))
            .bind(&redirect_uris)
            .bind(c.scopes.to_string())
            .bind(&grant_types)
            .bind(c.require_pkce)
            .bind(&settings)
            .bind(&profile)
            .bind(c.secret_info.created_at)
            .bind(c.created_at)
            .bind(owners)
        })
        .await
        .map(drop)
    }

    async fn update_client(&self, c: &Client) -> StoreResult<bool> {
        let (redirect_uris, grant_types, settings, profile) =
            (json(&c.redirect_uris)?, json(&c.grant_types)?, json(&c.token_settings)?, json(&c.profile)?);
        let n = self
            .write(|| {
                sqlx::query(
                    "UPDATE clients SET name = $1, developer = $2, redirect_uris = $3, scopes = $4, grant_types = $5, require_pkce = $6,
                     settings = $7, profile = $8 WHERE tenant_id = $9 AND client_id = $10",
                )
                .bind(&c.name)
                .bind(&c.developer)
                .bind(&redirect_uris)
                .bind(c.scopes.to_string())
                .bind(&grant_types)
                .bind(c.require_pkce)
                .bind(&settings)
                .bind(&profile)
                .bind(c.tenant.0)
                .bind(&c.client_id)
            })
            .await?;
        Ok(n > 0)
    }

    async fn find_client(&self, tenant: TenantId, client_id: &str) -> StoreResult<Option<Client>> {
        let row = on_conn!(self.conns, |c| sqlx::query(&format!("{CLIENT_SELECT} WHERE tenant_id = $1 AND client_id = $2"))
            .bind(tenant.0)
            .bind(client_id)
            .fetch_optional(c))
        .await
        .map_err(fault)?;
        row.map(|r| client_from_row(&r)).transpose()
    }

    async fn list_clients(&self, tenant: TenantId) -> StoreResult<Vec<Client>> {
        let rows = on_conn!(self.conns, |c| sqlx::query(&format!(
            r#"{CLIENT_SELECT} WHERE tenant_id = $1 ORDER BY created_at, name COLLATE "C""#
        ))
        .bind(tenant.0)
        .fetch_all(c))
        .await
        .map_err(fault)?;
        rows.iter().map(client_from_row).collect()
    }

    async fn list_owned_clients(&self, tenant: TenantId, owner: Uuid) -> StoreResult<Vec<ClientSummary>> {
        let sql = format!(
            r#"SELECT cl.*, (SELECT count(DISTINCT g.user_id) FROM grants g
                  WHERE g.tenant_id = cl.tenant_id AND g.client_id = cl.client_id) AS authorized_users
               FROM ({CLIENT_SELECT} WHERE tenant_id = $1
                  AND client_id IN (SELECT client_id FROM client_owners WHERE tenant_id = $1 AND user_id = $2)) cl
               ORDER BY cl.name COLLATE "C", cl.client_id COLLATE "C""#
        );
        let rows = on_conn!(self.conns, |c| sqlx::query(&sql).bind(tenant.0).bind(owner).fetch_all(c)).await.map_err(fault)?;
        rows.iter().map(client_summary_from_row).collect()
    }

    async fn list_client_owners(&self, tenant: TenantId, client_id: &str) -> StoreResult<Vec<Uuid>> {
        let rows = on_conn!(self.conns, |c| sqlx::query(
            "SELECT user_id FROM client_owners WHERE tenant_id = $1 AND client_id = $2 ORDER BY created_at, user_id"
        )
        .bind(tenant.0)
        .bind(client_id)
        .fetch_all(c))
        .await
        .map_err(fault)?;
        rows.iter().map(|r| r.try_get("user_id").map_err(fault)).collect()
    }

    async fn upsert_owner_invitation(&self, i: &OwnerInvitation) -> StoreResult<()> {
        self.write(|| {
            sqlx::query(
                "INSERT INTO owner_invitations (tenant_id, client_id, user_id, invited_by, created_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (tenant_id, client_id, user_id) DO UPDATE SET invited_by = excluded.invited_by, created_at = excluded.created_at",
            )
            .bind(i.tenant.0)
            .bind(&i.client_id)
            .bind(i.user_id)
            .bind(i.invited_by)
            .bind(i.created_at)
        })
        .await
        .map(drop)
    }

    async fn list_owner_invitations(
        &self,
        tenant: TenantId,
        client_id: Option<&str>,
        user: Option<Uuid>,
    ) -> StoreResult<Vec<OwnerInvitation>> {
        let rows = on_conn!(self.conns, |c| sqlx::query(
            r#"SELECT i.tenant_id, i.client_id, cl.name AS client_name, i.user_id, i.invited_by, i.created_at
               FROM owner_invitations i JOIN clients cl ON cl.tenant_id = i.tenant_id AND cl.client_id = i.client_id
               WHERE i.tenant_id = $1 AND ($2::text IS NULL OR i.client_id = $2) AND ($3::uuid IS NULL OR i.user_id = $3)
               ORDER BY i.created_at, i.client_id COLLATE "C""#
        )
        .bind(tenant.0)
        .bind(client_id)
        .bind(user)
        .fetch_all(c))
        .await
        .map_err(fault)?;
        rows.iter().map(owner_invitation_from_row).collect()
    }

    async fn close_owner_invitation(
        &self,
        tenant: TenantId,
        client_id: &str,
        user: Uuid,
        accept: bool,
        now: UnixTime,
    ) -> StoreResult<bool> {
        // One statement: the invitation ends, and with `accept` its user becomes an owner.
        let closed = self
            .write_count(|| {
                sqlx::query(
                    "WITH closed AS (DELETE FROM owner_invitations WHERE tenant_id = $1 AND client_id = $2 AND user_id = $3
                        RETURNING tenant_id, client_id, user_id),
                     added AS (INSERT INTO client_owners (tenant_id, client_id, user_id, created_at)
                        SELECT tenant_id, client_id, user_id, $5 FROM closed WHERE $4 ON CONFLICT DO NOTHING)
                     SELECT count(*) FROM closed",
                )
                .bind(tenant.0)
                .bind(client_id)
                .bind(user)
                .bind(accept)
                .bind(now)
            })
            .await?;
        Ok(closed > 0)
    }

    async fn delete_client_owner(&self, tenant: TenantId, client_id: &str, user: Uuid) -> StoreResult<bool> {
        let n = self
            .write(|| {
                sqlx::query(
                    "DELETE FROM client_owners WHERE tenant_id = $1 AND client_id = $2 AND user_id = $3
                       AND (SELECT count(*) FROM client_owners WHERE tenant_id = $1 AND client_id = $2) > 1",
                )
                .bind(tenant.0)
                .bind(client_id)
                .bind(user)
            })
            .await?;
        Ok(n > 0)
    }

    async fn delete_client(&self, tenant: TenantId, client_id: &str) -> StoreResult<bool> {
        // ON DELETE CASCADE takes the grants, codes and families (with their tokens).
        let n = self
            .write(|| sqlx::query("DELETE FROM clients WHERE tenant_id = $1 AND client_id = $2").bind(tenant.0).bind(client_id))
            .await?;
        Ok(n > 0)
    }

    async fn rotate_client_secret(
        &self,
        tenant: TenantId,
        client_id: &str,
        secret_hash: SecretHash,
        now: UnixTime,
        previous_until: Option<UnixTime>,
    ) -> StoreResult<bool> {
        // The right-hand sides read the row as it was: the old current secret becomes the
        // previous one (or nothing, without a grace period).
        let n = self
            .write(|| {
                sqlx::query(
                    "UPDATE clients SET secret_hash = $1, secret_created_at = $2, secret_last_used_at = NULL,
                        previous_secret_hash = CASE WHEN $3::int8 IS NULL THEN NULL ELSE secret_hash END,
                        previous_secret_created_at = CASE WHEN $3::int8 IS NULL THEN NULL ELSE secret_created_at END,
                        previous_secret_expires_at = $3,
                        previous_secret_last_used_at = CASE WHEN $3::int8 IS NULL THEN NULL ELSE secret_last_used_at END
                     WHERE tenant_id = $4 AND client_id = $5 AND secret_hash IS NOT NULL",
                )
                .bind(key(&secret_hash))
                .bind(now)
                .bind(previous_until)
                .bind(tenant.0)
                .bind(client_id)
            })
            .await?;
        Ok(n > 0)
    }

    async fn record_client_secret_use(&self, tenant: TenantId, client_id: &str, previous: bool, now: UnixTime) -> StoreResult<()> {
        let sql = if previous {
            "UPDATE clients SET previous_secret_last_used_at = $1 WHERE tenant_id = $2 AND client_id = $3 AND previous_secret_hash IS NOT NULL"
        } else {
            "UPDATE clients SET secret_last_used_at = $1 WHERE tenant_id = $2 AND client_id = $3"
        };
        self.write(|| sqlx::query(sql).bind(now).bind(tenant.0).bind(client_id)).await.map(drop)
    }
}

#[async_trait]
impl SigningKeyStore for PgStore {
    async fn insert_signing_key(&self, k: &SigningKeyRecord) -> StoreResult<()> {
        self.write(|| bind_key(sqlx::query(INSERT_KEY), k)).await.map(drop)
    }

    async fn rotate_signing_key(&self, k: &SigningKeyRecord, retire_others_at: UnixTime) -> StoreResult<bool> {
        // A unique conflict (the same algorithm and period, or the same kid: another node
        // rotated first) inserts nothing, and then nothing is retired either.
        let sql = format!(
            "WITH added AS ({INSERT_KEY} ON CONFLICT DO NOTHING RETURNING kid),
             retired AS (UPDATE signing_keys SET retires_at = $10 WHERE tenant_id = $1 AND alg = $3 AND kid <> $2 AND retires_at IS NULL
                         AND EXISTS (SELECT 1 FROM added))
             SELECT count(*) FROM added"
        );
        let added = self.write_count(|| bind_key(sqlx::query(&sql), k).bind(retire_others_at)).await?;
        Ok(added > 0)
    }

    async fn list_signing_keys(&self, tenant: TenantId) -> StoreResult<Vec<SigningKeyRecord>> {
        let rows =
            on_conn!(self.conns, |c| sqlx::query(&format!("{SIGNING_KEY_SELECT} WHERE tenant_id = $1 ORDER BY created_at DESC, seq DESC"))
                .bind(tenant.0)
                .fetch_all(c))
            .await
            .map_err(fault)?;
        rows.iter().map(signing_key_from_row).collect()
    }
}

#[async_trait]
impl SessionStore for PgStore {
    async fn insert_session(&self, s: &Session) -> StoreResult<()> {
        self.write(|| {
            sqlx::query(
                "INSERT INTO sessions (hash, tenant_id, user_id, auth_time, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(key(&s.hash))
            .bind(s.tenant.0)
            .bind(s.user_id)
            .bind(s.auth_time)
            .bind(s.created_at)
            .bind(s.expires_at)
        })
        .await
        .map(drop)
    }

    async fn find_session(&self, tenant: TenantId, hash: SecretHash) -> StoreResult<Option<Session>> {
        let row = on_conn!(self.conns, |c| sqlx::query(&format!("{SESSION_SELECT} WHERE tenant_id = $1 AND hash = $2"))
            .bind(tenant.0)
            .bind(key(&hash))
            .fetch_optional(c))
        .await
        .map_err(fault)?;
        row.map(|r| session_from_row(&r)).transpose()
    }

    async fn find_session_with_user(&self, tenant: TenantId, hash: SecretHash) -> StoreResult<Option<(Session, User)>> {
        let row = on_conn!(self.conns, |c| sqlx::query(&format!("{SESSION_USER_SELECT} WHERE s.tenant_id = $1 AND s.hash = $2"))
            .bind(tenant.0)
            .bind(key(&hash))
            .fetch_optional(c))
        .await
        .map_err(fault)?;
        row.map(|r| session_user_from_row(&r)).transpose()
    }

    async fn delete_session(&self, tenant: TenantId, hash: SecretHash) -> StoreResult<()> {
        self.write(|| sqlx::query("DELETE FROM sessions WHERE tenant_id = $1 AND hash = $2").bind(tenant.0).bind(key(&hash)))
            .await
            .map(drop)
    }

    async fn insert_interaction(&self, i: &Interaction) -> StoreResult<()> {
        self.write(|| {
            sqlx::query(
                "INSERT INTO interactions (id, tenant_id, browser_hash, request, login_user_id, login_at, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(i.id)
            .bind(i.tenant.0)
            .bind(key(&i.browser_hash))
            .bind(&i.request)
            .bind(i.login.map(|(u, _)| u))
            .bind(i.login.map(|(_, t)| t))
            .bind(i.created_at)
            .bind(i.expires_at)
        })
        .await
        .map(drop)
    }

    async fn find_interaction(&self, tenant: TenantId, id: Uuid) -> StoreResult<Option<Interaction>> {
        let row = on_conn!(self.conns, |c| sqlx::query(&format!("{INTERACTION_SELECT} WHERE tenant_id = $1 AND id = $2"))
            .bind(tenant.0)
            .bind(id)
            .fetch_optional(c))
        .await
        .map_err(fault)?;
        row.map(|r| interaction_from_row(&r)).transpose()
    }

    async fn update_interaction_login(&self, tenant: TenantId, id: Uuid, user: Uuid, at: UnixTime) -> StoreResult<()> {
        self.write(|| {
            sqlx::query("UPDATE interactions SET login_user_id = $1, login_at = $2 WHERE tenant_id = $3 AND id = $4")
                .bind(user)
                .bind(at)
                .bind(tenant.0)
                .bind(id)
        })
        .await
        .map(drop)
    }

    async fn delete_interaction(&self, tenant: TenantId, id: Uuid) -> StoreResult<()> {
        self.write(|| sqlx::query("DELETE FROM interactions WHERE tenant_id = $1 AND id = $2").bind(tenant.0).bind(id)).await.map(drop)
    }
}

#[async_trait]
impl PersonalTokenStore for PgStore {
    async fn insert_personal_token(&self, t: &PersonalToken) -> StoreResult<()> {
        self.write(|| {
            sqlx::query(
                "WITH token AS (
                    INSERT INTO personal_tokens (tenant_id, id, user_id, name, hash, scope, created_at, expires_at, last_used_at, revoked_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING tenant_id, id, created_at)
                 INSERT INTO personal_token_events (tenant_id, token_id, event, at) SELECT tenant_id, id, 'created', created_at FROM token",
            )
            .bind(t.tenant.0)
            .bind(t.id)
            .bind(t.user_id)
            .bind(&t.name)
            .bind(key(&t.hash))
            .bind(t.scope.to_string())
            .bind(t.created_at)
            .bind(t.expires_at)
            .bind(t.last_used_at)
            .bind(t.revoked_at)
        })
        .await
        .map(drop)
    }

    async fn find_personal_token(&self, tenant: TenantId, id: Uuid) -> StoreResult<Option<PersonalToken>> {
        let row = on_conn!(self.conns, |c| sqlx::query(&format!("{PERSONAL_TOKEN_SELECT} WHERE tenant_id = $1 AND id = $2"))
            .bind(tenant.0)
            .bind(id)
            .fetch_optional(c))
        .await
        .map_err(fault)?;
        row.map(|r| personal_token_from_row(&r)).transpose()
    }

    async fn find_personal_token_by_hash(&self, tenant: TenantId, hash: SecretHash) -> StoreResult<Option<PersonalToken>> {
        let row = on_conn!(self.conns, |c| sqlx::query(&format!("{PERSONAL_TOKEN_SELECT} WHERE tenant_id = $1 AND hash = $2"))
            .bind(tenant.0)
            .bind(key(&hash))
            .fetch_optional(c))
        .await
        .map_err(fault)?;
        row.map(|r| personal_token_from_row(&r)).transpose()
    }

    async fn list_personal_tokens(&self, tenant: TenantId, user: Uuid) -> StoreResult<Vec<PersonalToken>> {
        let rows = on_conn!(self.conns, |c| sqlx::query(&format!(
            "{PERSONAL_TOKEN_SELECT} WHERE tenant_id = $1 AND user_id = $2 ORDER BY created_at DESC, seq DESC"
        ))
        .bind(tenant.0)
        .bind(user)
        .fetch_all(c))
        .await
        .map_err(fault)?;
        rows.iter().map(personal_token_from_row).collect()
    }

    async fn update_personal_token_secret(&self, tenant: TenantId, id: Uuid, hash: SecretHash, now: UnixTime) -> StoreResult<bool> {
        // The event is inserted only for the row the update changed: none if the token is
        // unknown or revoked.
        let n = self
            .write(|| {
                sqlx::query(
                    "WITH changed AS (UPDATE personal_tokens SET hash = $1 WHERE tenant_id = $2 AND id = $3 AND revoked_at IS NULL RETURNING tenant_id, id)
                     INSERT INTO personal_token_events (tenant_id, token_id, event, at) SELECT tenant_id, id, 'regenerated', $4 FROM changed",
                )
                .bind(key(&hash))
                .bind(tenant.0)
                .bind(id)
                .bind(now)
            })
            .await?;
        Ok(n > 0)
    }

    async fn revoke_personal_token(&self, tenant: TenantId, id: Uuid, now: UnixTime) -> StoreResult<bool> {
        let n = self
            .write(|| {
                sqlx::query(
                    "WITH changed AS (UPDATE personal_tokens SET revoked_at = $1 WHERE tenant_id = $2 AND id = $3 AND revoked_at IS NULL RETURNING tenant_id, id)
                     INSERT INTO personal_token_events (tenant_id, token_id, event, at) SELECT tenant_id, id, 'revoked', $1 FROM changed",
                )
                .bind(now)
                .bind(tenant.0)
                .bind(id)
            })
            .await?;
        Ok(n > 0)
    }

    async fn update_personal_token_last_used(&self, tenant: TenantId, id: Uuid, now: UnixTime) -> StoreResult<()> {
        self.write(|| {
            sqlx::query("UPDATE personal_tokens SET last_used_at = $1 WHERE tenant_id = $2 AND id = $3").bind(now).bind(tenant.0).bind(id)
        })
        .await
        .map(drop)
    }

    async fn list_personal_token_events(&self, tenant: TenantId, id: Uuid) -> StoreResult<Vec<PersonalTokenEvent>> {
        let rows = on_conn!(self.conns, |c| sqlx::query(
            "SELECT token_id, event, at FROM personal_token_events WHERE tenant_id = $1 AND token_id = $2 ORDER BY at, seq"
        )
        .bind(tenant.0)
        .bind(id)
        .fetch_all(c))
        .await
        .map_err(fault)?;
        rows.iter().map(personal_token_event_from_row).collect()
    }
}

#[async_trait]
impl AttemptStore for PgStore {
    async fn record_attempt(&self, tenant: TenantId, key: &str, now: UnixTime, window: i64) -> StoreResult<AttemptCount> {
        // One statement: the count and the decision cannot be split by a parallel attempt
        // (a conflicting insert waits for the other's row lock, then updates the committed row).
        let row = self
            .write_returning(|| {
                sqlx::query(
                    "INSERT INTO login_attempts AS a (tenant_id, key, attempts, window_start) VALUES ($1, $2, 1, $3)
                     ON CONFLICT (tenant_id, key) DO UPDATE SET
                        attempts = CASE WHEN a.window_start + $4 <= $3 THEN 1 ELSE a.attempts + 1 END,
                        window_start = CASE WHEN a.window_start + $4 <= $3 THEN $3 ELSE a.window_start END
                     RETURNING attempts, window_start",
                )
                .bind(tenant.0)
                .bind(key)
                .bind(now)
                .bind(window)
            })
            .await?;
        Ok(AttemptCount { attempts: row.try_get("attempts").map_err(fault)?, window_start: row.try_get("window_start").map_err(fault)? })
    }

    async fn release_attempt(&self, tenant: TenantId, key: &str) -> StoreResult<()> {
        self.write(|| {
            sqlx::query("UPDATE login_attempts SET attempts = GREATEST(attempts - 1, 0) WHERE tenant_id = $1 AND key = $2")
                .bind(tenant.0)
                .bind(key)
        })
        .await
        .map(drop)
    }

    async fn clear_attempts(&self, tenant: TenantId, key: &str) -> StoreResult<()> {
        self.write(|| sqlx::query("DELETE FROM login_attempts WHERE tenant_id = $1 AND key = $2").bind(tenant.0).bind(key)).await.map(drop)
    }
}

#[async_trait]
impl GrantStore for PgStore {
    async fn find_grant(&self, tenant: TenantId, user: Uuid, client_id: &str) -> StoreResult<Option<Grant>> {
        let row =
            on_conn!(self.conns, |c| sqlx::query(&format!("{GRANT_SELECT} WHERE tenant_id = $1 AND user_id = $2 AND client_id = $3"))
                .bind(tenant.0)
                .bind(user)
                .bind(client_id)
                .fetch_optional(c))
            .await
            .map_err(fault)?;
        row.map(|r| grant_from_row(&r)).transpose()
    }

    async fn upsert_grant(&self, g: &Grant) -> StoreResult<Grant> {
        let sql = format!(
            "INSERT INTO grants (tenant_id, id, user_id, client_id, business_id, scope, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (tenant_id, user_id, client_id) DO UPDATE SET business_id = EXCLUDED.business_id, scope = EXCLUDED.scope
             RETURNING {GRANT_COLUMNS}"
        );
        let row = self
            .write_returning(|| {
                sqlx::query(&sql)
                    .bind(g.tenant.0)
                    .bind(g.id)
                    .bind(g.user_id)
                    .bind(&g.client_id)
                    .bind(g.business_id)
                    .bind(g.scope.to_string())
                    .bind(g.created_at)
            })
            .await?;
        grant_from_row(&row)
    }

    async fn list_user_grants(&self, tenant: TenantId, user: Uuid) -> StoreResult<Vec<GrantSummary>> {
        let rows = on_conn!(self.conns, |c| sqlx::query(
            r#"SELECT g.tenant_id, g.id, g.user_id, g.client_id, g.business_id, g.scope, g.created_at,
                      c.name AS client_name, c.developer, b.name AS business_name,
                      (SELECT MAX(COALESCE(t.created_at, f.created_at)) FROM families f LEFT JOIN tokens t ON t.tenant_id = f.tenant_id AND t.family_id = f.id
                        WHERE f.tenant_id = g.tenant_id AND f.grant_id = g.id) AS last_used_at
               FROM grants g
               JOIN clients c ON c.tenant_id = g.tenant_id AND c.client_id = g.client_id
               LEFT JOIN businesses b ON b.tenant_id = g.tenant_id AND b.id = g.business_id
               WHERE g.tenant_id = $1 AND g.user_id = $2 ORDER BY c.name COLLATE "C", g.created_at"#,
        )
        .bind(tenant.0)
        .bind(user)
        .fetch_all(c))
        .await
        .map_err(fault)?;
        rows.iter().map(grant_summary_from_row).collect()
    }

    async fn revoke_grant(&self, tenant: TenantId, user: Uuid, grant: Uuid, now: UnixTime) -> StoreResult<bool> {
        let n = self
            .write_count(|| {
                sqlx::query(
                    "WITH dropped AS (DELETE FROM grants WHERE tenant_id = $1 AND id = $2 AND user_id = $3 RETURNING id),
                     revoked AS (UPDATE families SET revoked_at = $4 WHERE tenant_id = $1 AND grant_id IN (SELECT id FROM dropped)
                                 AND revoked_at IS NULL),
                     unredeemed AS (DELETE FROM codes WHERE tenant_id = $1 AND grant_id IN (SELECT id FROM dropped))
                     SELECT count(*) FROM dropped",
                )
                .bind(tenant.0)
                .bind(grant)
                .bind(user)
                .bind(now)
            })
            .await?;
        Ok(n > 0)
    }
}

#[async_trait]
impl ScopeStore for PgStore {
    async fn list_scopes(&self, tenant: TenantId) -> StoreResult<Vec<ScopeEntry>> {
        let rows = on_conn!(self.conns, |c| sqlx::query(
            r#"SELECT tenant_id, name, description, personal, created_at FROM scopes WHERE tenant_id = $1 ORDER BY name COLLATE "C""#
        )
        .bind(tenant.0)
        .fetch_all(c))
        .await
        .map_err(fault)?;
        rows.iter().map(scope_entry_from_row).collect()
    }

    async fn upsert_scope(&self, e: &ScopeEntry) -> StoreResult<()> {
        self.write(|| {
            sqlx::query(
                "INSERT INTO scopes (tenant_id, name, description, personal, created_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (tenant_id, name) DO UPDATE SET description = excluded.description, personal = excluded.personal",
            )
            .bind(e.tenant.0)
            .bind(&e.name)
            .bind(&e.description)
            .bind(e.personal)
            .bind(e.created_at)
        })
        .await
        .map(drop)
    }

    async fn delete_scope(&self, tenant: TenantId, name: &str) -> StoreResult<bool> {
        let n = self.write(|| sqlx::query("DELETE FROM scopes WHERE tenant_id = $1 AND name = $2").bind(tenant.0).bind(name)).await?;
        Ok(n > 0)
    }
}

#[async_trait]
impl TokenStore for PgStore {
    async fn insert_code(&self, c: &AuthCode) -> StoreResult<()> {
        self.write(|| {
            bind_code(
                sqlx::query(
                    "INSERT INTO codes (hash, tenant_id, client_id, user_id, grant_id, business_id, redirect_uri, redirect_uri_explicit, scope, nonce,
                     code_challenge, auth_time, created_at, expires_at, consumed_at, family_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
                ),
                c,
                c.consumed_at,
            )
        })
        .await
        .map(drop)
    }

    async fn find_code(&self, tenant: TenantId, hash: SecretHash) -> StoreResult<Option<AuthCode>> {
        let row = on_conn!(self.conns, |c| sqlx::query(&format!("{CODE_SELECT} WHERE tenant_id = $1 AND hash = $2"))
            .bind(tenant.0)
            .bind(key(&hash))
            .fetch_optional(c))
        .await
        .map_err(fault)?;
        row.map(|r| code_from_row(&r)).transpose()
    }

    async fn redeem_code(
        &self,
        tenant: TenantId,
        hash: SecretHash,
        now: UnixTime,
        f: &Family,
        tokens: &[TokenRecord],
    ) -> StoreResult<RedeemOutcome> {
        // docs/security.md AC-06: the family and tokens are inserted only if the conditional
        // update consumed the code, all in one statement. A concurrent redemption waits for
        // the code's row lock, re-checks `consumed_at IS NULL` on the committed row, and
        // writes nothing.
        let sql = format!(
            "WITH consumed AS (UPDATE codes SET consumed_at = $25 WHERE tenant_id = $26 AND hash = $27 AND consumed_at IS NULL RETURNING 1),
             family AS (INSERT INTO families ({FAMILY_COLUMNS}) SELECT {FAMILY_PARAMS} FROM consumed),
             issued AS ({TOKEN_UNNEST} WHERE EXISTS (SELECT 1 FROM consumed))
             SELECT count(*) FROM consumed"
        );
        let columns = TokenColumns::new(tokens);
        let consumed =
            self.write_count(|| bind_family(columns.bind(sqlx::query(&sql)), f).bind(now).bind(tenant.0).bind(key(&hash))).await?;
        Ok(if consumed == 0 { RedeemOutcome::AlreadyConsumed } else { RedeemOutcome::Redeemed })
    }

    async fn redeem_sealed_code(&self, k: &AuthCode, now: UnixTime, f: &Family, tokens: &[TokenRecord]) -> StoreResult<RedeemOutcome> {
        // One statement, as `redeem_code`: the code's row is stored consumed only if its grant
        // exists, and the family and tokens only if it was stored. A concurrent redemption waits
        // on the new row's key, then conflicts and writes nothing.
        let sql = format!(
            "WITH granted AS (SELECT 1 FROM grants WHERE tenant_id = $26 AND id = $29 AND user_id = $28 AND client_id = $27),
             consumed AS (INSERT INTO codes (hash, tenant_id, client_id, user_id, grant_id, business_id, redirect_uri,
                 redirect_uri_explicit, scope, nonce, code_challenge, auth_time, created_at, expires_at, consumed_at, family_id)
                 SELECT $25, $26, $27, $28, $29, $30, $31, $32, $33, $34, $35, $36, $37, $38, $39, $40 FROM granted
                 ON CONFLICT DO NOTHING RETURNING 1),
             family AS (INSERT INTO families ({FAMILY_COLUMNS}) SELECT {FAMILY_PARAMS} FROM consumed),
             issued AS ({TOKEN_UNNEST} WHERE EXISTS (SELECT 1 FROM consumed))
             SELECT (SELECT count(*) FROM granted) AS granted, (SELECT count(*) FROM consumed) AS consumed"
        );
        let columns = TokenColumns::new(tokens);
        let row = self.write_returning(|| bind_code(bind_family(columns.bind(sqlx::query(&sql)), f), k, Some(now))).await?;
        let (granted, consumed): (i64, i64) = (row.try_get("granted").map_err(fault)?, row.try_get("consumed").map_err(fault)?);
        Ok(match (granted, consumed) {
            (0, _) => RedeemOutcome::GrantGone,
            (_, 0) => RedeemOutcome::AlreadyConsumed,
            _ => RedeemOutcome::Redeemed,
        })
    }

    async fn insert_family(&self, _tenant: TenantId, family: &Family, tokens: &[TokenRecord]) -> StoreResult<()> {
        // One statement: a conflict on the family or a token writes nothing.
        let sql = format!("WITH family AS (INSERT INTO families ({FAMILY_COLUMNS}) VALUES ({FAMILY_PARAMS})) {TOKEN_UNNEST}");
        let columns = TokenColumns::new(tokens);
        self.write(|| bind_family(columns.bind(sqlx::query(&sql)), family)).await.map(drop)
    }

    async fn find_token(&self, tenant: TenantId, hash: SecretHash) -> StoreResult<Option<TokenView>> {
        let row = on_conn!(self.conns, |c| sqlx::query(&format!("{TOKEN_VIEW_SELECT} WHERE t.tenant_id = $1 AND t.hash = $2"))
            .bind(tenant.0)
            .bind(key(&hash))
            .fetch_optional(c))
        .await
        .map_err(fault)?;
        row.map(|r| token_view_from_row(&r)).transpose()
    }

    async fn rotate_refresh_token(
        &self,
        tenant: TenantId,
        old: SecretHash,
        now: UnixTime,
        tokens: &[TokenRecord],
        replay: Option<&SealedReplay>,
    ) -> StoreResult<RotateOutcome> {
        // docs/security.md RT-08: one statement, so a failure anywhere (a conflict, a lost
        // connection) rolls back the rotation too and the old token stays usable. Of
        // concurrent rotations, the first takes the row lock; the others re-check
        // `rotated_at IS NULL` on the committed row, match nothing and insert nothing.
        let sql = format!(
            "WITH rotated AS (
                UPDATE tokens SET rotated_at = $14
                WHERE tenant_id = $18 AND hash = $19 AND kind = 'refresh_token' AND rotated_at IS NULL AND revoked_at IS NULL
                AND EXISTS (SELECT 1 FROM families f WHERE f.tenant_id = tokens.tenant_id AND f.id = tokens.family_id AND f.revoked_at IS NULL)
                RETURNING hash, tenant_id),
             issued AS ({TOKEN_UNNEST} WHERE EXISTS (SELECT 1 FROM rotated)),
             kept AS (INSERT INTO replays (hash, tenant_id, sealed, until, successor)
                SELECT hash, tenant_id, $15, $16, $17 FROM rotated WHERE $15::bytea IS NOT NULL)
             SELECT count(*) FROM rotated"
        );
        let successor = replay.and_then(|_| tokens.iter().find(|t| t.kind == TokenKind::Refresh)).map(|t| key(&t.hash));
        let columns = TokenColumns::new(tokens);
        let rotated = self
            .write_count(|| {
                columns
                    .bind(sqlx::query(&sql))
                    .bind(now)
                    .bind(replay.map(|r| &r.sealed[..]))
                    .bind(replay.map(|r| r.until))
                    .bind(successor)
                    .bind(tenant.0)
                    .bind(key(&old))
            })
            .await?;
        Ok(if rotated == 0 { RotateOutcome::NotCurrent } else { RotateOutcome::Rotated })
    }

    async fn find_replay(&self, tenant: TenantId, old: SecretHash, now: UnixTime) -> StoreResult<Option<Vec<u8>>> {
        // The successor, when there is one, must be current; a rotation that issued no new
        // refresh token leaves `successor` NULL and only the family's state matters.
        on_conn!(self.conns, |c| sqlx::query_scalar(
            "SELECT r.sealed FROM replays r JOIN tokens t ON t.hash = r.hash AND t.tenant_id = r.tenant_id
             JOIN families f ON f.tenant_id = t.tenant_id AND f.id = t.family_id
             WHERE r.tenant_id = $1 AND r.hash = $2 AND r.until > $3 AND f.revoked_at IS NULL
             AND (r.successor IS NULL OR EXISTS (SELECT 1 FROM tokens s WHERE s.hash = r.successor AND s.tenant_id = r.tenant_id
                  AND s.rotated_at IS NULL AND s.revoked_at IS NULL))",
        )
        .bind(tenant.0)
        .bind(key(&old))
        .bind(now)
        .fetch_optional(c))
        .await
        .map_err(fault)
    }

    async fn revoke_token(&self, tenant: TenantId, hash: SecretHash, now: UnixTime) -> StoreResult<()> {
        self.write(|| {
            sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE tenant_id = $2 AND hash = $3 AND revoked_at IS NULL")
                .bind(now)
                .bind(tenant.0)
                .bind(key(&hash))
        })
        .await
        .map(drop)
    }

    async fn revoke_family(&self, tenant: TenantId, family: Uuid, now: UnixTime) -> StoreResult<()> {
        self.write(|| {
            sqlx::query("UPDATE families SET revoked_at = $1 WHERE tenant_id = $2 AND id = $3 AND revoked_at IS NULL")
                .bind(now)
                .bind(tenant.0)
                .bind(family)
        })
        .await
        .map(drop)
    }

    async fn revoke_jti(&self, tenant: TenantId, client_id: &str, jti: Uuid, expires_at: UnixTime, now: UnixTime) -> StoreResult<()> {
        self.write(|| {
            sqlx::query(
                "INSERT INTO revoked_jtis (tenant_id, jti, client_id, expires_at, revoked_at)
                 SELECT tenant_id, $1, client_id, $2, $3 FROM clients WHERE tenant_id = $4 AND client_id = $5
                 ON CONFLICT DO NOTHING",
            )
            .bind(jti)
            .bind(expires_at)
            .bind(now)
            .bind(tenant.0)
            .bind(client_id)
        })
        .await
        .map(drop)
    }

    async fn self_contained_token_live(&self, tenant: TenantId, client_id: &str, jti: Uuid) -> StoreResult<bool> {
        on_conn!(self.conns, |c| sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM clients WHERE tenant_id = $1 AND client_id = $2)
                AND NOT EXISTS (SELECT 1 FROM revoked_jtis WHERE tenant_id = $1 AND jti = $3)"
        )
        .bind(tenant.0)
        .bind(client_id)
        .bind(jti)
        .fetch_one(c))
        .await
        .map_err(fault)
    }

    async fn find_family_of_token(&self, tenant: TenantId, family: Uuid, jti: Uuid) -> StoreResult<Option<FamilyView>> {
        let row = on_conn!(self.conns, |c| sqlx::query(FAMILY_OF_TOKEN).bind(tenant.0).bind(family).bind(jti).fetch_optional(c))
            .await
            .map_err(fault)?;
        row.map(|r| family_view_from_row(&r)).transpose()
    }

    async fn find_client_and_family(
        &self,
        tenant: TenantId,
        client_id: &str,
        family: Uuid,
        jti: Uuid,
    ) -> StoreResult<(Option<Client>, Option<FamilyView>)> {
        // One statement, one round trip: the client's row with the family's columns beside it
        // (NULL when there is no such family, or its jti is revoked).
        let sql = format!(
            "WITH fam AS ({FAMILY_OF_TOKEN})
             SELECT * FROM ({CLIENT_SELECT} WHERE tenant_id = $1 AND client_id = $4) c LEFT JOIN fam ON true"
        );
        let row = on_conn!(self.conns, |c| sqlx::query(&sql).bind(tenant.0).bind(family).bind(jti).bind(client_id).fetch_optional(c))
            .await
            .map_err(fault)?;
        match row {
            Some(r) => {
                let family =
                    if r.try_get::<Option<Uuid>, _>("f_id").map_err(fault)?.is_some() { Some(family_view_from_row(&r)?) } else { None };
                Ok((Some(client_from_row(&r)?), family))
            }
            // No client: nothing more is needed, the caller cannot be authenticated.
            None => Ok((None, None)),
        }
    }
}

#[async_trait]
impl HousekeepingStore for PgStore {
    async fn delete_expired(
        &self,
        tenant: TenantId,
        now: UnixTime,
        attempts_before: UnixTime,
        pat_before: UnixTime,
        limit: u32,
    ) -> StoreResult<Cleanup> {
        // Each kind in its own short statement, batched by `limit`, so housekeeping never
        // holds many row locks for long.
        let run = |sql: &'static str, cutoff: UnixTime| async move { self.housekeep(sql, tenant, cutoff, limit).await };
        let row = self.write_returning(|| sqlx::query(sweep::TOKENS).bind(tenant.0).bind(now).bind(i64::from(limit))).await?;
        let count = |i: usize| row.try_get::<i64, _>(i).map(|n| u64::try_from(n).unwrap_or(0)).map_err(fault);
        let (tokens, idled) = (count(0)?, count(1)?);
        Ok(Cleanup {
            codes: run(sweep::CODES, now).await?,
            replays: run(sweep::REPLAYS, now).await?,
            families: run(sweep::FAMILIES, now).await? + idled,
            tokens,
            sessions: run(sweep::SESSIONS, now).await?,
            interactions: run(sweep::INTERACTIONS, now).await?,
            attempts: run(sweep::ATTEMPTS, attempts_before).await?,
            personal_tokens: run(sweep::PERSONAL_TOKENS, pat_before).await?,
            revoked_jtis: run(sweep::REVOKED_JTIS, now).await?,
        })
    }

    async fn count_rows(&self, tenant: TenantId) -> StoreResult<RowCounts> {
        let row = on_conn!(self.conns, |c| sqlx::query(
            "SELECT (SELECT COUNT(*) FROM codes WHERE tenant_id = $1) AS codes,
                    (SELECT COUNT(*) FROM tokens WHERE tenant_id = $1) AS tokens,
                    (SELECT COUNT(*) FROM families WHERE tenant_id = $1) AS families,
                    (SELECT COUNT(*) FROM sessions WHERE tenant_id = $1) AS sessions,
                    (SELECT COUNT(*) FROM interactions WHERE tenant_id = $1) AS interactions",
        )
        .bind(tenant.0)
        .fetch_one(c))
        .await
        .map_err(fault)?;
        let n = |c: &str| -> StoreResult<u64> { row.try_get::<i64, _>(c).map(|v| u64::try_from(v).unwrap_or(0)).map_err(fault) };
        Ok(RowCounts {
            codes: n("codes")?,
            tokens: n("tokens")?,
            families: n("families")?,
            sessions: n("sessions")?,
            interactions: n("interactions")?,
        })
    }
}
