//! The SQLite implementation of the Latchkey store.
//!
//! Durability: WAL with `synchronous=FULL` by default, so an acknowledged write survives a
//! process kill and a power loss. Writes: one thread owns the write connection and commits
//! waiting operations together (group commit, see [`writer`]); SQLite has one writer anyway,
//! and queueing in-process avoids `SQLITE_BUSY`. Each batch is one `BEGIN IMMEDIATE`
//! transaction, so an operation that reads before it writes cannot fail halfway on a lock
//! upgrade. Checkpoints run on a thread of their own, off the request path.
//!
//! Reads run on the caller's thread, on a small pool of read-only connections: they are
//! indexed lookups in pages that are almost always cached, shorter than a hand-off to another
//! thread would be. In WAL mode a reader never waits for the writer and sees every commit that
//! was acknowledged before it started.

mod clients;
mod rows;
mod writer;

use async_trait::async_trait;
use clients::ClientCache;
use latchkey_core::guessing::AttemptCount;
use latchkey_core::model::{
    AuthCode, Business, Client, ClientSummary, Family, FamilyView, Grant, GrantSummary, Interaction, OwnerInvitation, PersonalToken,
    PersonalTokenEvent, ScopeEntry, Session, SigningKeyRecord, Tenant, TenantId, TokenKind, TokenRecord, TokenView, User,
};
use latchkey_core::secret::SecretHash;
use latchkey_core::UnixTime;
use latchkey_store::{
    check_text, AttemptStore, BusinessStore, Cleanup, ClientStore, GrantStore, HousekeepingStore, PersonalTokenStore, RedeemOutcome,
    RotateOutcome, RowCounts, ScopeStore, SealedReplay, SessionStore, SigningKeyStore, StoreError, StoreResult, TenantStore, Texts,
    TokenStore, UserStore,
};
use rows::*;
use rusqlite::{params, Connection, OpenFlags, Params};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use uuid::Uuid;
use writer::Writer;

/// The schema, one entry per version; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_replay_and_settings.sql"),
    include_str!("../migrations/0003_revoked_jtis.sql"),
    include_str!("../migrations/0004_housekeeping_indexes.sql"),
    include_str!("../migrations/0005_client_generation.sql"),
    include_str!("../migrations/0006_account.sql"),
    include_str!("../migrations/0007_developer.sql"),
    include_str!("../migrations/0008_replays.sql"),
];

/// The schema version this build writes (the number of migrations).
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// How long a connection waits for a lock held by another process (another node on the same
/// file, or a CLI command) before the operation fails as unavailable.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle read connections kept open; more are opened when more readers run at once.
const IDLE_READERS: usize = 8;
/// Prepared statements kept per connection (every statement of this file fits).
const STATEMENT_CACHE: usize = 128;
/// Each connection's own page cache, in KiB (SQLite's default is 2,000). The operating
/// system's page cache holds the file's hot pages for every connection at once, so a large
/// private cache mostly holds a second copy: measured with the benchmark, 512 KiB instead of
/// 2,000 took 1 to 1.7 MB off the server's resident memory under token load (a third of what
/// it holds beyond its code) at the same throughput.
const PAGE_CACHE_KIB: i64 = 512;

/// How durable a commit is (SQLite's `synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Survives process crashes and power loss (`FULL`, the default).
    #[default]
    Full,
    /// Survives process crashes; the last commits may be lost on power loss (`NORMAL`).
    Normal,
}

impl Durability {
    fn pragma(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: Writer,
    readers: Arc<Readers>,
    clients: Arc<ClientCache>,
}

/// Maps a SQLite error to the store's: a unique key taken is a conflict; a lock held too long
/// or a failing disk makes the database unavailable (the request may be retried).
pub(crate) fn fault(e: rusqlite::Error) -> StoreError {
    use rusqlite::ffi;
    match &e {
        rusqlite::Error::SqliteFailure(f, msg)
            if matches!(f.extended_code, ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY) =>
        {
            StoreError::Conflict(msg.clone().unwrap_or_else(|| e.to_string()))
        }
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::CannotOpen
            ) =>
        {
            StoreError::Unavailable(Box::new(e))
        }
        _ => StoreError::Database(Box::new(e)),
    }
}

/// Why a whole batch of writes failed, told to each of its operations.
#[derive(Debug)]
pub(crate) struct BatchFailure {
    unavailable: bool,
    message: String,
}

impl From<StoreError> for BatchFailure {
    fn from(e: StoreError) -> Self {
        let message = match &e {
            StoreError::Unavailable(source) | StoreError::Database(source) => source.to_string(),
            other => other.to_string(),
        };
        Self { unavailable: matches!(e, StoreError::Unavailable(_)), message }
    }
}

impl BatchFailure {
    pub(crate) fn to_store_error(&self) -> StoreError {
        let source = format!("the transaction failed: {}", self.message).into();
        if self.unavailable {
            StoreError::Unavailable(source)
        } else {
            StoreError::Database(source)
        }
    }
}

/// The read-only connections.
#[derive(Debug)]
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    /// Runs `op` on an idle read connection, or on a new one.
    fn with<T>(&self, op: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let conn = match idle {
            Some(c) => c,
            None => open_reader(&self.path).map_err(fault)?,
        };
        let out = op(&conn);
        // A connection left inside a transaction would keep its snapshot: it is closed.
        if !conn.is_autocommit() {
            return out;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
        out
    }
}

fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    configure_caches(&conn)?;
    Ok(conn)
}

/// What every connection, read-only or not, is opened with: the lock wait and its caches.
fn configure_caches(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // A negative size is in KiB.
    conn.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)
}

/// Opens a read-write connection with the store's settings.
fn open_writer(path: &Path, durability: Durability) -> StoreResult<Connection> {
    let conn = Connection::open(path).map_err(fault)?;
    configure_caches(&conn).map_err(fault)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(fault)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Database(format!("the database stays in journal_mode {mode}, not wal").into()));
    }
    configure_writer(&conn, durability).map_err(fault)?;
    Ok(conn)
}

fn configure_writer(conn: &Connection, durability: Durability) -> rusqlite::Result<()> {
    conn.pragma_update(None, "synchronous", durability.pragma())?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Each operation of a batch runs in a savepoint, whose undo log (the statement journal)
    // then stays in memory instead of a temporary file.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Checkpoints run on their own thread (see `writer::checkpoints`), never inside a commit.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // Once a checkpoint lets the WAL start over, its file is cut back to this size.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub async fn open(path: &Path, durability: Durability) -> StoreResult<Self> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || -> StoreResult<Self> {
            let conn = open_writer(&path, durability)?;
            migrate(&conn)?;
            let checkpointer = open_writer(&path, durability)?;
            let writer = Writer::start(conn, checkpointer).map_err(|e| StoreError::Unavailable(Box::new(e)))?;
            let readers = Readers { idle: Mutex::new(vec![open_reader(&path).map_err(fault)?]), path };
            Ok(Self { writer, readers: Arc::new(readers), clients: Arc::default() })
        })
        .await
        .map_err(|e| StoreError::Database(Box::new(e)))?
    }

    /// Opens a database from a `sqlite:` URL or a plain path.
    pub async fn open_url(url: &str, durability: Durability) -> StoreResult<Self> {
        let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
        Self::open(Path::new(path), durability).await
    }

    /// Reads a pragma on the writer connection (the one whose settings make commits durable),
    /// as text: `pragma("journal_mode")` is `"wal"`, `pragma("synchronous")` is `"2"` for FULL.
    /// For tests and diagnostics; `name` must be a bare pragma name.
    pub async fn pragma(&self, name: &str) -> StoreResult<String> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(StoreError::NotFound(format!("pragma {name:?}")));
        }
        let sql = format!("PRAGMA {name}");
        self.write(move |c| {
            c.query_row(&sql, [], |r| match r.get_ref(0)? {
                rusqlite::types::ValueRef::Integer(n) => Ok(n.to_string()),
                v => v.as_str().map(str::to_owned).map_err(Into::into),
            })
            .map_err(fault)
        })
        .await
    }

    /// Runs `op` in the writer's next batch: it is durable (or failed) when this returns.
    async fn write<T: Send + 'static>(&self, op: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static) -> StoreResult<T> {
        self.writer.run(op).await
    }

    /// Runs `op` on a read connection, on this thread.
    fn read<T>(&self, op: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        self.readers.with(op)
    }
}

fn migrate(conn: &Connection) -> StoreResult<()> {
    conn.execute_batch("BEGIN IMMEDIATE").map_err(fault)?;
    let applied = (|| {
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(fault)?;
        let version = usize::try_from(version).map_err(|_| StoreError::Corrupt("negative schema version".into()))?;
        if version > MIGRATIONS.len() {
            return Err(StoreError::Corrupt(format!(
                "the database has schema version {version}, newer than this latchkey ({}); upgrade latchkey",
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            conn.execute_batch(sql).map_err(fault)?;
            conn.execute_batch(&format!("PRAGMA user_version = {}", i + 1)).map_err(fault)?;
            tracing::info!(version = i + 1, "applied SQLite migration");
        }
        Ok(())
    })();
    match applied {
        Ok(()) => conn.execute_batch("COMMIT").map_err(fault),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Runs one statement (cached) and returns how many rows it changed.
fn exec(c: &Connection, sql: &str, params: impl Params) -> StoreResult<u64> {
    let mut stmt = c.prepare_cached(sql).map_err(fault)?;
    stmt.execute(params).map(|n| n as u64).map_err(fault)
}

/// The first row of a query, mapped.
fn query_opt<T>(
    c: &Connection,
    sql: &str,
    params: impl Params,
    map: impl FnOnce(&Cols<'_, '_>) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    let mut stmt = c.prepare_cached(sql).map_err(fault)?;
    let mut rows = stmt.query(params).map_err(fault)?;
    match rows.next().map_err(fault)? {
        Some(r) => map(&Cols::new(r)).map(Some),
        None => Ok(None),
    }
}

/// The lookup of `find_token`, also read together with a client by `find_client_and_token`.
fn token_by_hash(c: &Connection, tenant: TenantId, hash: SecretHash) -> StoreResult<Option<TokenView>> {
    query_opt(c, TOKEN_BY_HASH, params![tenant.0.to_string(), &hash.0[..]], token_view_from_row)
}

/// The one row a statement must return (`RETURNING`), mapped.
fn query_one<T>(c: &Connection, sql: &str, params: impl Params, map: impl FnOnce(&Cols<'_, '_>) -> StoreResult<T>) -> StoreResult<T> {
    query_opt(c, sql, params, map)?.ok_or_else(|| StoreError::Corrupt("the statement returned no row".into()))
}

/// Every row of a query, mapped.
fn query_all<T>(
    c: &Connection,
    sql: &str,
    params: impl Params,
    mut map: impl FnMut(&Cols<'_, '_>) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let mut stmt = c.prepare_cached(sql).map_err(fault)?;
    let mut rows = stmt.query(params).map_err(fault)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(fault)? {
        out.push(map(&Cols::new(r))?);
    }
    Ok(out)
}

/// Housekeeping's statements. Each finds its rows through an index (the tests check the
/// plans), so that a pass costs what has expired, not what is live; each is bounded: `?1` the
/// tenant, `?2` the cutoff, `?3` the batch size.
mod sweep {
    macro_rules! sweep {
        ($table:literal, $condition:literal) => {
            concat!(
                "DELETE FROM ",
                $table,
                " WHERE rowid IN (SELECT rowid FROM ",
                $table,
                " WHERE tenant_id = ?1 AND (",
                $condition,
                ") LIMIT ?3)"
            )
        };
    }
    pub(crate) const CODES: &str = sweep!("codes", "expires_at <= ?2");
    /// Replay answers past their window; the rotated tokens stay for reuse detection.
    pub(crate) const REPLAYS: &str = sweep!("replays", "until <= ?2");
    /// Families past their absolute lifetime; their tokens go with them (ON DELETE CASCADE).
    pub(crate) const FAMILIES: &str = sweep!("families", "expires_at <= ?2");
    /// Expired tokens, with the family of each, for [`IDLED_FAMILY`].
    pub(crate) const TOKENS: &str =
        "DELETE FROM tokens WHERE rowid IN (SELECT rowid FROM tokens WHERE tenant_id = ?1 AND expires_at <= ?2 LIMIT ?3) RETURNING family_id";
    /// One family (`?2`) if no token of it is unexpired at `?3`. `INDEXED BY tokens_family`:
    /// left to itself the planner may probe `tokens_expiry` for the NOT EXISTS, a walk over
    /// every unexpired token of the tenant; with the hint SQLite must use the family index or
    /// fail the statement, never silently scan.
    pub(crate) const IDLED_FAMILY: &str = "DELETE FROM families WHERE tenant_id = ?1 AND id = ?2
         AND NOT EXISTS (SELECT 1 FROM tokens t INDEXED BY tokens_family WHERE t.tenant_id = ?1 AND t.family_id = ?2 AND t.expires_at > ?3)";
    pub(crate) const SESSIONS: &str = sweep!("sessions", "expires_at <= ?2");
    pub(crate) const INTERACTIONS: &str = sweep!("interactions", "expires_at <= ?2");
    pub(crate) const ATTEMPTS: &str = sweep!("login_attempts", "window_start <= ?2");
    pub(crate) const PERSONAL_TOKENS: &str = sweep!("personal_tokens", "expires_at <= ?2 OR revoked_at <= ?2");
    pub(crate) const REVOKED_JTIS: &str = sweep!("revoked_jtis", "expires_at <= ?2");
    #[cfg(test)]
    pub(crate) const ALL: [&str; 10] =
        [CODES, REPLAYS, FAMILIES, TOKENS, IDLED_FAMILY, SESSIONS, INTERACTIONS, ATTEMPTS, PERSONAL_TOKENS, REVOKED_JTIS];
}

/// Deletes a batch of expired tokens, then those of their families that no unexpired token
/// is left in: such a family has idled out (its refresh token expired before the family's
/// absolute lifetime, or it never had one, as with client_credentials) and nothing can revive
/// it. Returns how many tokens and how many families went.
///
/// Driven by the expired tokens (`tokens_expiry`), so a pass costs what has expired, never a
/// walk over every live family: at 10⁵ client_credentials families such a walk held the single
/// writer, and every request's write behind it, for hundreds of milliseconds per pass.
fn expired_tokens(c: &Connection, tenant: TenantId, now: UnixTime, limit: u32) -> StoreResult<(u64, u64)> {
    let t = tenant.0.to_string();
    let gone: Vec<String> = query_all(c, sweep::TOKENS, params![t, now, i64::from(limit)], |r| r.at(0))?;
    let families: std::collections::BTreeSet<&String> = gone.iter().collect();
    let mut idled = 0;
    for family in families {
        idled += exec(c, sweep::IDLED_FAMILY, params![t, family, now])?;
    }
    Ok((gone.len() as u64, idled))
}

/// Inserts a code's row unless one with its hash exists; how many rows it inserted.
fn insert_code_row(c: &Connection, k: &AuthCode) -> StoreResult<u64> {
    exec(
        c,
        "INSERT INTO codes (hash, tenant_id, client_id, user_id, grant_id, business_id, redirect_uri, redirect_uri_explicit, scope, nonce,
         code_challenge, auth_time, created_at, expires_at, consumed_at, family_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT DO NOTHING",
        params![
            &k.hash.0[..],
            k.tenant.0.to_string(),
            k.client_id,
            k.user_id.to_string(),
            k.grant_id.to_string(),
            k.business_id.map(|b| b.to_string()),
            k.redirect_uri,
            k.redirect_uri_explicit,
            k.scope.to_string(),
            k.nonce,
            k.code_challenge,
            k.auth_time,
            k.created_at,
            k.expires_at,
            k.consumed_at,
            k.family_id.to_string(),
        ],
    )
}

fn insert_family_row(c: &Connection, f: &Family) -> StoreResult<()> {
    exec(
        c,
        "INSERT INTO families (tenant_id, id, grant_id, client_id, user_id, business_id, scope, auth_time, created_at, expires_at, revoked_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            f.tenant.0.to_string(),
            f.id.to_string(),
            f.grant_id.map(|g| g.to_string()),
            f.client_id,
            f.user_id.map(|u| u.to_string()),
            f.business_id.map(|b| b.to_string()),
            f.scope.to_string(),
            f.auth_time,
            f.created_at,
            f.expires_at,
            f.revoked_at,
        ],
    )
    .map(drop)
}

fn insert_key(c: &Connection, k: &SigningKeyRecord) -> StoreResult<()> {
    exec(
        c,
        "INSERT INTO signing_keys (tenant_id, kid, alg, sealed, public_jwk, created_at, activates_at, retires_at, period) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            k.tenant.0.to_string(),
            k.kid,
            k.alg.as_str(),
            k.sealed_private_key,
            k.public_jwk,
            k.created_at,
            k.activates_at,
            k.retires_at,
            k.period
        ],
    )
    .map(drop)
}

fn token_event(c: &Connection, tenant: TenantId, id: Uuid, event: &str, at: UnixTime) -> StoreResult<()> {
    exec(
        c,
        "INSERT INTO personal_token_events (tenant_id, token_id, event, at) VALUES (?, ?, ?, ?)",
        params![tenant.0.to_string(), id.to_string(), event, at],
    )
    .map(drop)
}

fn insert_tokens(c: &Connection, tokens: &[TokenRecord]) -> StoreResult<()> {
    for t in tokens {
        exec(
            c,
            "INSERT INTO tokens (hash, tenant_id, kind, family_id, client_id, user_id, business_id, scope, jti, created_at, expires_at, revoked_at, rotated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            params![
                &t.hash.0[..],
                t.tenant.0.to_string(),
                t.kind.as_str(),
                t.family_id.to_string(),
                t.client_id,
                t.user_id.map(|u| u.to_string()),
                t.business_id.map(|b| b.to_string()),
                t.scope.to_string(),
                t.jti.to_string(),
                t.created_at,
                t.expires_at,
                t.revoked_at,
                t.rotated_at,
            ],
        )?;
    }
    Ok(())
}

/// Updates a personal token with `sql` (its parameters: the value, tenant, id) and records
/// `event` if a live token was changed.
async fn personal_token_change(
    store: &SqliteStore,
    sql: &'static str,
    value: rusqlite::types::Value,
    tenant: TenantId,
    id: Uuid,
    event: &'static str,
    now: UnixTime,
) -> StoreResult<bool> {
    store
        .write(move |c| {
            if exec(c, sql, params![value, tenant.0.to_string(), id.to_string()])? == 0 {
                return Ok(false);
            }
            token_event(c, tenant, id, event, now)?;
            Ok(true)
        })
        .await
}

#[async_trait]
impl TenantStore for SqliteStore {
    async fn ensure_tenant(&self, name: &str, now: UnixTime) -> StoreResult<Tenant> {
        check_text([name])?;
        let name = name.to_owned();
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?) ON CONFLICT(name) DO NOTHING",
                params![Uuid::new_v4().to_string(), name, now],
            )?;
            query_one(c, "SELECT id, name, issuer, settings, created_at FROM tenants WHERE name = ?", [&name], tenant_from_row)
        })
        .await
    }

    async fn find_tenant_by_name(&self, name: &str) -> StoreResult<Option<Tenant>> {
        check_text([name])?;
        self.read(|c| query_opt(c, "SELECT id, name, issuer, settings, created_at FROM tenants WHERE name = ?", [name], tenant_from_row))
    }

    async fn insert_tenant(&self, t: &Tenant) -> StoreResult<()> {
        t.check_texts()?;
        let (id, name, issuer, settings, created_at) =
            (t.id.0.to_string(), t.name.clone(), t.issuer.clone(), json(&t.settings)?, t.created_at);
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO tenants (id, name, issuer, settings, created_at) VALUES (?, ?, ?, ?, ?)",
                params![id, name, issuer, settings, created_at],
            )
            .map(drop)
        })
        .await
    }

    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        self.read(|c| {
            query_all(c, "SELECT id, name, issuer, settings, created_at FROM tenants ORDER BY created_at, name", [], tenant_from_row)
        })
    }

    async fn update_tenant(&self, t: &Tenant) -> StoreResult<bool> {
        t.check_texts()?;
        let (issuer, settings, id) = (t.issuer.clone(), json(&t.settings)?, t.id.0.to_string());
        self.write(move |c| {
            exec(c, "UPDATE tenants SET issuer = ?, settings = ? WHERE id = ?", params![issuer, settings, id]).map(|n| n > 0)
        })
        .await
    }

    async fn ensure_setting(&self, name: &str, value: &str) -> StoreResult<String> {
        check_text([name, value])?;
        let (name, value) = (name.to_owned(), value.to_owned());
        // One statement, so two first writers cannot both win.
        self.write(move |c| {
            query_one(
                c,
                "INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = settings.value RETURNING value",
                params![name, value],
                |r| r.at(0),
            )
        })
        .await
    }
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn insert_user(&self, u: &User) -> StoreResult<()> {
        u.check_texts()?;
        let u = u.clone();
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO users (tenant_id, id, email, name, password_hash, default_business_id, developer, created_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                params![
                    u.tenant.0.to_string(),
                    u.id.to_string(),
                    u.email,
                    u.name,
                    u.password_hash,
                    u.default_business_id.map(|b| b.to_string()),
                    u.developer,
                    u.created_at
                ],
            )
            .map(drop)
        })
        .await
    }

    async fn find_user(&self, tenant: TenantId, id: Uuid) -> StoreResult<Option<User>> {
        self.read(|c| {
            query_opt(c, &format!("{USER_SELECT} WHERE tenant_id = ? AND id = ?"), [tenant.0.to_string(), id.to_string()], user_from_row)
        })
    }

    async fn find_user_with_businesses(&self, tenant: TenantId, id: Uuid) -> StoreResult<Option<(User, Vec<Uuid>)>> {
        self.read(|c| {
            let (tenant, id) = (tenant.0.to_string(), id.to_string());
            let Some(user) = query_opt(c, &format!("{USER_SELECT} WHERE tenant_id = ? AND id = ?"), [&tenant, &id], user_from_row)? else {
                return Ok(None);
            };
            let businesses = query_all(
                c,
                "SELECT m.business_id FROM memberships m
                 JOIN businesses b ON b.tenant_id = m.tenant_id AND b.id = m.business_id
                 WHERE m.tenant_id = ? AND m.user_id = ? ORDER BY m.created_at, m.rowid",
                [&tenant, &id],
                |r| r.uuid("business_id"),
            )?;
            Ok(Some((user, businesses)))
        })
    }

    async fn find_user_by_email(&self, tenant: TenantId, email: &str) -> StoreResult<Option<User>> {
        check_text([email])?;
        self.read(|c| {
            query_opt(
                c,
                &format!("{USER_SELECT} WHERE tenant_id = ? AND email = ?"),
                [tenant.0.to_string(), email.to_lowercase()],
                user_from_row,
            )
        })
    }

    async fn list_users(&self, tenant: TenantId) -> StoreResult<Vec<User>> {
        self.read(|c| {
            query_all(c, &format!("{USER_SELECT} WHERE tenant_id = ? ORDER BY created_at, email"), [tenant.0.to_string()], user_from_row)
        })
    }

    async fn delete_user(&self, tenant: TenantId, id: Uuid) -> StoreResult<bool> {
        self.write(move |c| {
            exec(c, "DELETE FROM users WHERE tenant_id = ? AND id = ?", [tenant.0.to_string(), id.to_string()]).map(|n| n > 0)
        })
        .await
    }

    async fn update_user_default_business(&self, tenant: TenantId, user: Uuid, business: Option<Uuid>) -> StoreResult<()> {
        self.write(move |c| {
            exec(
                c,
                "UPDATE users SET default_business_id = ? WHERE tenant_id = ? AND id = ?",
                params![business.map(|b| b.to_string()), tenant.0.to_string(), user.to_string()],
            )
            .map(drop)
        })
        .await
    }

    async fn update_user(&self, tenant: TenantId, user: Uuid, email: &str, name: &str) -> StoreResult<bool> {
        check_text([email, name])?;
        let (t, u, email, name) = (tenant.0.to_string(), user.to_string(), email.to_owned(), name.to_owned());
        self.write(move |c| {
            exec(c, "UPDATE users SET email = ?, name = ? WHERE tenant_id = ? AND id = ?", params![email, name, t, u]).map(|n| n > 0)
        })
        .await
    }

    async fn update_user_developer(&self, tenant: TenantId, user: Uuid, developer: bool) -> StoreResult<bool> {
        self.write(move |c| {
            exec(
                c,
                "UPDATE users SET developer = ? WHERE tenant_id = ? AND id = ?",
                params![developer, tenant.0.to_string(), user.to_string()],
            )
            .map(|n| n > 0)
        })
        .await
    }

    async fn update_user_password(&self, tenant: TenantId, user: Uuid, password_hash: &str, keep: Option<SecretHash>) -> StoreResult<bool> {
        check_text([password_hash])?;
        let (t, u, hash) = (tenant.0.to_string(), user.to_string(), password_hash.to_owned());
        self.write(move |c| {
            let found = exec(c, "UPDATE users SET password_hash = ? WHERE tenant_id = ? AND id = ?", params![hash, t, u])? > 0;
            if found {
                let keep = keep.map(|k| k.0.to_vec());
                exec(c, "DELETE FROM sessions WHERE tenant_id = ? AND user_id = ? AND hash IS NOT ?", params![t, u, keep])?;
            }
            Ok(found)
        })
        .await
    }
}

#[async_trait]
impl BusinessStore for SqliteStore {
    async fn insert_business(&self, b: &Business) -> StoreResult<()> {
        b.check_texts()?;
        let b = b.clone();
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO businesses (tenant_id, id, name, created_at) VALUES (?, ?, ?, ?)",
                params![b.tenant.0.to_string(), b.id.to_string(), b.name, b.created_at],
            )
            .map(drop)
        })
        .await
    }

    async fn find_business_by_name(&self, tenant: TenantId, name: &str) -> StoreResult<Option<Business>> {
        check_text([name])?;
        self.read(|c| {
            query_opt(
                c,
                "SELECT tenant_id, id, name, created_at FROM businesses WHERE tenant_id = ? AND name = ?",
                params![tenant.0.to_string(), name],
                business_from_row,
            )
        })
    }

    async fn insert_membership(&self, tenant: TenantId, business: Uuid, user: Uuid, now: UnixTime) -> StoreResult<()> {
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO memberships (tenant_id, business_id, user_id, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                params![tenant.0.to_string(), business.to_string(), user.to_string(), now],
            )
            .map(drop)
        })
        .await
    }

    async fn delete_membership(&self, tenant: TenantId, business: Uuid, user: Uuid) -> StoreResult<bool> {
        self.write(move |c| {
            exec(
                c,
                "DELETE FROM memberships WHERE tenant_id = ? AND business_id = ? AND user_id = ?",
                [tenant.0.to_string(), business.to_string(), user.to_string()],
            )
            .map(|n| n > 0)
        })
        .await
    }

    async fn revoke_user_business(&self, tenant: TenantId, user: Uuid, business: Uuid, now: UnixTime) -> StoreResult<u64> {
        let (t, u, b) = (tenant.0.to_string(), user.to_string(), business.to_string());
        self.write(move |c| {
            let revoked = exec(
                c,
                "UPDATE families SET revoked_at = ? WHERE tenant_id = ? AND user_id = ? AND business_id = ? AND revoked_at IS NULL",
                params![now, t, u, b],
            )?;
            exec(c, "DELETE FROM grants WHERE tenant_id = ? AND user_id = ? AND business_id = ?", [&t, &u, &b])?;
            // A code not yet redeemed would otherwise bring the access back.
            exec(c, "DELETE FROM codes WHERE tenant_id = ? AND user_id = ? AND business_id = ? AND consumed_at IS NULL", [&t, &u, &b])?;
            Ok(revoked)
        })
        .await
    }

    async fn list_businesses(&self, tenant: TenantId) -> StoreResult<Vec<Business>> {
        self.read(|c| {
            query_all(
                c,
                "SELECT tenant_id, id, name, created_at FROM businesses WHERE tenant_id = ? ORDER BY name",
                [tenant.0.to_string()],
                business_from_row,
            )
        })
    }

    async fn list_user_businesses(&self, tenant: TenantId, user: Uuid) -> StoreResult<Vec<Business>> {
        self.read(|c| {
            query_all(
                c,
                "SELECT b.tenant_id, b.id, b.name, b.created_at FROM memberships m
                 JOIN businesses b ON b.tenant_id = m.tenant_id AND b.id = m.business_id
                 WHERE m.tenant_id = ? AND m.user_id = ? ORDER BY m.created_at, m.rowid",
                [tenant.0.to_string(), user.to_string()],
                business_from_row,
            )
        })
    }
}

#[async_trait]
impl ClientStore for SqliteStore {
    async fn insert_client(&self, cl: &Client, owners: &[Uuid]) -> StoreResult<()> {
        cl.check_texts()?;
        let (redirect_uris, grant_types, settings, profile) =
            (json(&cl.redirect_uris)?, json(&cl.grant_types)?, json(&cl.token_settings)?, json(&cl.profile)?);
        let (cl, owners) = (cl.clone(), owners.to_vec());
        self.write(move |c| {
            let tenant = cl.tenant.0.to_string();
            exec(
                c,
                "INSERT INTO clients (tenant_id, client_id, name, developer, secret_hash, redirect_uris, scopes, grant_types, require_pkce,
                    settings, profile, secret_created_at, created_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params![
                    tenant,
                    cl.client_id,
                    cl.name,
                    cl.developer,
                    cl.secret_hash.map(|h| h.0.to_vec()),
                    redirect_uris,
                    cl.scopes.to_string(),
                    grant_types,
                    cl.require_pkce,
                    settings,
                    profile,
                    cl.secret_info.created_at,
                    cl.created_at,
                ],
            )?;
            for owner in owners {
                exec(
                    c,
                    "INSERT INTO client_owners (tenant_id, client_id, user_id, created_at) VALUES (?, ?, ?, ?)",
                    params![tenant, cl.client_id, owner.to_string(), cl.created_at],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn update_client(&self, cl: &Client) -> StoreResult<bool> {
        cl.check_texts()?;
        let (redirect_uris, grant_types, settings, profile) =
            (json(&cl.redirect_uris)?, json(&cl.grant_types)?, json(&cl.token_settings)?, json(&cl.profile)?);
        let cl = cl.clone();
        self.write(move |c| {
            exec(
                c,
                "UPDATE clients SET name = ?, developer = ?, redirect_uris = ?, scopes = ?, grant_types = ?, require_pkce = ?, settings = ?,
                    profile = ?
                 WHERE tenant_id = ? AND client_id = ?",
                params![
                    cl.name,
                    cl.developer,
                    redirect_uris,
                    cl.scopes.to_string(),
                    grant_types,
                    cl.require_pkce,
                    settings,
                    profile,
                    cl.tenant.0.to_string(),
                    cl.client_id,
                ],
            )
            .map(|n| n > 0)
        })
        .await
    }

    async fn find_client(&self, tenant: TenantId, client_id: &str) -> StoreResult<Option<Client>> {
        check_text([client_id])?;
        self.read(|c| self.clients.find(c, tenant, client_id))
    }

    async fn list_clients(&self, tenant: TenantId) -> StoreResult<Vec<Client>> {
        self.read(|c| {
            query_all(c, &format!("{CLIENT_SELECT} WHERE tenant_id = ? ORDER BY created_at, name"), [tenant.0.to_string()], client_from_row)
        })
    }

    async fn list_owned_clients(&self, tenant: TenantId, owner: Uuid) -> StoreResult<Vec<ClientSummary>> {
        self.read(|c| {
            query_all(
                c,
                &format!(
                    "SELECT cl.*, (SELECT count(DISTINCT g.user_id) FROM grants g
                        WHERE g.tenant_id = cl.tenant_id AND g.client_id = cl.client_id) AS authorized_users
                     FROM ({CLIENT_SELECT} WHERE tenant_id = ?1
                        AND client_id IN (SELECT client_id FROM client_owners WHERE tenant_id = ?1 AND user_id = ?2)) cl
                     ORDER BY cl.name, cl.client_id"
                ),
                [tenant.0.to_string(), owner.to_string()],
                client_summary_from_row,
            )
        })
    }

    async fn list_client_owners(&self, tenant: TenantId, client_id: &str) -> StoreResult<Vec<Uuid>> {
        check_text([client_id])?;
        self.read(|c| {
            query_all(
                c,
                "SELECT user_id FROM client_owners WHERE tenant_id = ? AND client_id = ? ORDER BY created_at, user_id",
                [tenant.0.to_string(), client_id.to_owned()],
                |r| r.uuid("user_id"),
            )
        })
    }

    async fn upsert_owner_invitation(&self, i: &OwnerInvitation) -> StoreResult<()> {
        check_text([i.client_id.as_str()])?;
        let i = i.clone();
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO owner_invitations (tenant_id, client_id, user_id, invited_by, created_at) VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT (tenant_id, client_id, user_id) DO UPDATE SET invited_by = excluded.invited_by, created_at = excluded.created_at",
                params![i.tenant.0.to_string(), i.client_id, i.user_id.to_string(), i.invited_by.to_string(), i.created_at],
            )
            .map(drop)
        })
        .await
    }

    async fn list_owner_invitations(
        &self,
        tenant: TenantId,
        client_id: Option<&str>,
        user: Option<Uuid>,
    ) -> StoreResult<Vec<OwnerInvitation>> {
        check_text(client_id)?;
        self.read(|c| {
            query_all(
                c,
                "SELECT i.tenant_id, i.client_id, cl.name AS client_name, i.user_id, i.invited_by, i.created_at
                 FROM owner_invitations i JOIN clients cl ON cl.tenant_id = i.tenant_id AND cl.client_id = i.client_id
                 WHERE i.tenant_id = ?1 AND (?2 IS NULL OR i.client_id = ?2) AND (?3 IS NULL OR i.user_id = ?3)
                 ORDER BY i.created_at, i.client_id",
                params![tenant.0.to_string(), client_id, user.map(|u| u.to_string())],
                owner_invitation_from_row,
            )
        })
    }

    async fn close_owner_invitation(
        &self,
        tenant: TenantId,
        client_id: &str,
        user: Uuid,
        accept: bool,
        now: UnixTime,
    ) -> StoreResult<bool> {
        check_text([client_id])?;
        let client_id = client_id.to_owned();
        self.write(move |c| {
            let (tenant, user) = (tenant.0.to_string(), user.to_string());
            let closed = exec(
                c,
                "DELETE FROM owner_invitations WHERE tenant_id = ? AND client_id = ? AND user_id = ?",
                params![tenant, client_id, user],
            )?;
            if closed > 0 && accept {
                exec(
                    c,
                    "INSERT OR IGNORE INTO client_owners (tenant_id, client_id, user_id, created_at) VALUES (?, ?, ?, ?)",
                    params![tenant, client_id, user, now],
                )?;
            }
            Ok(closed > 0)
        })
        .await
    }

    async fn delete_client_owner(&self, tenant: TenantId, client_id: &str, user: Uuid) -> StoreResult<bool> {
        check_text([client_id])?;
        let client_id = client_id.to_owned();
        self.write(move |c| {
            exec(
                c,
                "DELETE FROM client_owners WHERE tenant_id = ?1 AND client_id = ?2 AND user_id = ?3
                   AND (SELECT count(*) FROM client_owners WHERE tenant_id = ?1 AND client_id = ?2) > 1",
                params![tenant.0.to_string(), client_id, user.to_string()],
            )
            .map(|n| n > 0)
        })
        .await
    }

    async fn delete_client(&self, tenant: TenantId, client_id: &str) -> StoreResult<bool> {
        check_text([client_id])?;
        let client_id = client_id.to_owned();
        self.write(move |c| {
            exec(c, "DELETE FROM clients WHERE tenant_id = ? AND client_id = ?", [tenant.0.to_string(), client_id]).map(|n| n > 0)
        })
        .await
    }

    async fn rotate_client_secret(
        &self,
        tenant: TenantId,
        client_id: &str,
        secret_hash: SecretHash,
        now: UnixTime,
        previous_until: Option<UnixTime>,
    ) -> StoreResult<bool> {
        check_text([client_id])?;
        let client_id = client_id.to_owned();
        self.write(move |c| {
            // The right-hand sides read the row as it was: the old current secret becomes the
            // previous one (or nothing, without a grace period).
            exec(
                c,
                "UPDATE clients SET secret_hash = ?1, secret_created_at = ?2, secret_last_used_at = NULL,
                    previous_secret_hash = CASE WHEN ?3 IS NULL THEN NULL ELSE secret_hash END,
                    previous_secret_created_at = CASE WHEN ?3 IS NULL THEN NULL ELSE secret_created_at END,
                    previous_secret_expires_at = ?3,
                    previous_secret_last_used_at = CASE WHEN ?3 IS NULL THEN NULL ELSE secret_last_used_at END
                 WHERE tenant_id = ?4 AND client_id = ?5 AND secret_hash IS NOT NULL",
                params![secret_hash.0.to_vec(), now, previous_until, tenant.0.to_string(), client_id],
            )
            .map(|n| n > 0)
        })
        .await
    }

    async fn record_client_secret_use(&self, tenant: TenantId, client_id: &str, previous: bool, now: UnixTime) -> StoreResult<()> {
        check_text([client_id])?;
        let client_id = client_id.to_owned();
        let sql = if previous {
            "UPDATE clients SET previous_secret_last_used_at = ? WHERE tenant_id = ? AND client_id = ? AND previous_secret_hash IS NOT NULL"
        } else {
            "UPDATE clients SET secret_last_used_at = ? WHERE tenant_id = ? AND client_id = ?"
        };
        self.write(move |c| exec(c, sql, params![now, tenant.0.to_string(), client_id]).map(drop)).await
    }
}

#[async_trait]
impl SigningKeyStore for SqliteStore {
    async fn insert_signing_key(&self, k: &SigningKeyRecord) -> StoreResult<()> {
        k.check_texts()?;
        let k = k.clone();
        self.write(move |c| insert_key(c, &k)).await
    }

    async fn rotate_signing_key(&self, k: &SigningKeyRecord, retire_others_at: UnixTime) -> StoreResult<bool> {
        k.check_texts()?;
        let k = k.clone();
        self.write(move |c| {
            match insert_key(c, &k) {
                Ok(()) => {}
                // Another node made this period's key first: nothing was written.
                Err(StoreError::Conflict(_)) => return Ok(false),
                Err(e) => return Err(e),
            }
            exec(
                c,
                "UPDATE signing_keys SET retires_at = ? WHERE tenant_id = ? AND kid != ? AND alg = ? AND retires_at IS NULL",
                params![retire_others_at, k.tenant.0.to_string(), k.kid, k.alg.as_str()],
            )?;
            Ok(true)
        })
        .await
    }

    async fn list_signing_keys(&self, tenant: TenantId) -> StoreResult<Vec<SigningKeyRecord>> {
        self.read(|c| {
            query_all(
                c,
                "SELECT tenant_id, kid, alg, sealed, public_jwk, created_at, activates_at, retires_at, period FROM signing_keys
                 WHERE tenant_id = ? ORDER BY created_at DESC, rowid DESC",
                [tenant.0.to_string()],
                signing_key_from_row,
            )
        })
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn insert_session(&self, s: &Session) -> StoreResult<()> {
        let s = s.clone();
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO sessions (hash, tenant_id, user_id, auth_time, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                params![s.hash.0.to_vec(), s.tenant.0.to_string(), s.user_id.to_string(), s.auth_time, s.created_at, s.expires_at],
            )
            .map(drop)
        })
        .await
    }

    async fn find_session(&self, tenant: TenantId, hash: SecretHash) -> StoreResult<Option<Session>> {
        self.read(|c| {
            query_opt(
                c,
                "SELECT hash, tenant_id, user_id, auth_time, created_at, expires_at FROM sessions WHERE tenant_id = ? AND hash = ?",
                params![tenant.0.to_string(), &hash.0[..]],
                session_from_row,
            )
        })
    }

    async fn find_session_with_user(&self, tenant: TenantId, hash: SecretHash) -> StoreResult<Option<(Session, User)>> {
        self.read(|c| {
            query_opt(
                c,
                &format!("{SESSION_USER_SELECT} WHERE s.tenant_id = ? AND s.hash = ?"),
                params![tenant.0.to_string(), &hash.0[..]],
                session_user_from_row,
            )
        })
    }

    async fn delete_session(&self, tenant: TenantId, hash: SecretHash) -> StoreResult<()> {
        self.write(move |c| {
            exec(c, "DELETE FROM sessions WHERE tenant_id = ? AND hash = ?", params![tenant.0.to_string(), &hash.0[..]]).map(drop)
        })
        .await
    }

    async fn insert_interaction(&self, i: &Interaction) -> StoreResult<()> {
        i.check_texts()?;
        let i = i.clone();
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO interactions (id, tenant_id, browser_hash, request, login_user_id, login_at, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                params![
                    i.id.to_string(),
                    i.tenant.0.to_string(),
                    &i.browser_hash.0[..],
                    i.request,
                    i.login.map(|(u, _)| u.to_string()),
                    i.login.map(|(_, t)| t),
                    i.created_at,
                    i.expires_at,
                ],
            )
            .map(drop)
        })
        .await
    }

    async fn find_interaction(&self, tenant: TenantId, id: Uuid) -> StoreResult<Option<Interaction>> {
        self.read(|c| {
            query_opt(
                c,
                "SELECT id, tenant_id, browser_hash, request, login_user_id, login_at, created_at, expires_at FROM interactions WHERE tenant_id = ? AND id = ?",
                [tenant.0.to_string(), id.to_string()],
                interaction_from_row,
            )
        })
    }

    async fn update_interaction_login(&self, tenant: TenantId, id: Uuid, user: Uuid, at: UnixTime) -> StoreResult<()> {
        self.write(move |c| {
            exec(
                c,
                "UPDATE interactions SET login_user_id = ?, login_at = ? WHERE tenant_id = ? AND id = ?",
                params![user.to_string(), at, tenant.0.to_string(), id.to_string()],
            )
            .map(drop)
        })
        .await
    }

    async fn delete_interaction(&self, tenant: TenantId, id: Uuid) -> StoreResult<()> {
        self.write(move |c| {
            exec(c, "DELETE FROM interactions WHERE tenant_id = ? AND id = ?", [tenant.0.to_string(), id.to_string()]).map(drop)
        })
        .await
    }
}

#[async_trait]
impl PersonalTokenStore for SqliteStore {
    async fn insert_personal_token(&self, t: &PersonalToken) -> StoreResult<()> {
        t.check_texts()?;
        let t = t.clone();
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO personal_tokens (tenant_id, id, user_id, name, hash, scope, created_at, expires_at, last_used_at, revoked_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params![
                    t.tenant.0.to_string(),
                    t.id.to_string(),
                    t.user_id.to_string(),
                    t.name,
                    &t.hash.0[..],
                    t.scope.to_string(),
                    t.created_at,
                    t.expires_at,
                    t.last_used_at,
                    t.revoked_at,
                ],
            )?;
            token_event(c, t.tenant, t.id, "created", t.created_at)
        })
        .await
    }

    async fn find_personal_token(&self, tenant: TenantId, id: Uuid) -> StoreResult<Option<PersonalToken>> {
        self.read(|c| {
            query_opt(
                c,
                &format!("{PERSONAL_TOKEN_SELECT} WHERE tenant_id = ? AND id = ?"),
                [tenant.0.to_string(), id.to_string()],
                personal_token_from_row,
            )
        })
    }

    async fn find_personal_token_by_hash(&self, tenant: TenantId, hash: SecretHash) -> StoreResult<Option<PersonalToken>> {
        self.read(|c| {
            query_opt(
                c,
                &format!("{PERSONAL_TOKEN_SELECT} WHERE tenant_id = ? AND hash = ?"),
                params![tenant.0.to_string(), &hash.0[..]],
                personal_token_from_row,
            )
        })
    }

    async fn list_personal_tokens(&self, tenant: TenantId, user: Uuid) -> StoreResult<Vec<PersonalToken>> {
        self.read(|c| {
            query_all(
                c,
                &format!("{PERSONAL_TOKEN_SELECT} WHERE tenant_id = ? AND user_id = ? ORDER BY created_at DESC, rowid DESC"),
                [tenant.0.to_string(), user.to_string()],
                personal_token_from_row,
            )
        })
    }

    async fn update_personal_token_secret(&self, tenant: TenantId, id: Uuid, hash: SecretHash, now: UnixTime) -> StoreResult<bool> {
        let sql = "UPDATE personal_tokens SET hash = ? WHERE tenant_id = ? AND id = ? AND revoked_at IS NULL";
        personal_token_change(self, sql, hash.0.to_vec().into(), tenant, id, "regenerated", now).await
    }

    async fn revoke_personal_token(&self, tenant: TenantId, id: Uuid, now: UnixTime) -> StoreResult<bool> {
        let sql = "UPDATE personal_tokens SET revoked_at = ? WHERE tenant_id = ? AND id = ? AND revoked_at IS NULL";
        personal_token_change(self, sql, now.into(), tenant, id, "revoked", now).await
    }

    async fn update_personal_token_last_used(&self, tenant: TenantId, id: Uuid, now: UnixTime) -> StoreResult<()> {
        self.write(move |c| {
            exec(
                c,
                "UPDATE personal_tokens SET last_used_at = ? WHERE tenant_id = ? AND id = ?",
                params![now, tenant.0.to_string(), id.to_string()],
            )
            .map(drop)
        })
        .await
    }

    async fn list_personal_token_events(&self, tenant: TenantId, id: Uuid) -> StoreResult<Vec<PersonalTokenEvent>> {
        self.read(|c| {
            query_all(
                c,
                "SELECT token_id, event, at FROM personal_token_events WHERE tenant_id = ? AND token_id = ? ORDER BY at, rowid",
                [tenant.0.to_string(), id.to_string()],
                personal_token_event_from_row,
            )
        })
    }
}

#[async_trait]
impl AttemptStore for SqliteStore {
    async fn record_attempt(&self, tenant: TenantId, key: &str, now: UnixTime, window: i64) -> StoreResult<AttemptCount> {
        check_text([key])?;
        let key = key.to_owned();
        // One statement: the count and the decision cannot be split by a parallel attempt.
        self.write(move |c| {
            query_one(
                c,
                "INSERT INTO login_attempts (tenant_id, key, attempts, window_start) VALUES (?1, ?2, 1, ?3)
                 ON CONFLICT (tenant_id, key) DO UPDATE SET
                    attempts = CASE WHEN window_start + ?4 <= ?3 THEN 1 ELSE attempts + 1 END,
                    window_start = CASE WHEN window_start + ?4 <= ?3 THEN ?3 ELSE window_start END
                 RETURNING attempts, window_start",
                params![tenant.0.to_string(), key, now, window],
                |r| Ok(AttemptCount { attempts: r.get("attempts")?, window_start: r.get("window_start")? }),
            )
        })
        .await
    }

    async fn release_attempt(&self, tenant: TenantId, key: &str) -> StoreResult<()> {
        check_text([key])?;
        let key = key.to_owned();
        self.write(move |c| {
            exec(
                c,
                "UPDATE login_attempts SET attempts = MAX(attempts - 1, 0) WHERE tenant_id = ? AND key = ?",
                [tenant.0.to_string(), key],
            )
            .map(drop)
        })
        .await
    }

    async fn clear_attempts(&self, tenant: TenantId, key: &str) -> StoreResult<()> {
        check_text([key])?;
        let key = key.to_owned();
        self.write(move |c| exec(c, "DELETE FROM login_attempts WHERE tenant_id = ? AND key = ?", [tenant.0.to_string(), key]).map(drop))
            .await
    }
}

#[async_trait]
impl GrantStore for SqliteStore {
    async fn find_grant(&self, tenant: TenantId, user: Uuid, client_id: &str) -> StoreResult<Option<Grant>> {
        check_text([client_id])?;
        self.read(|c| {
            query_opt(
                c,
                &format!("{GRANT_SELECT} WHERE tenant_id = ? AND user_id = ? AND client_id = ?"),
                params![tenant.0.to_string(), user.to_string(), client_id],
                grant_from_row,
            )
        })
    }

    async fn upsert_grant(&self, g: &Grant) -> StoreResult<Grant> {
        g.check_texts()?;
        let g = g.clone();
        self.write(move |c| {
            query_one(
                c,
                &format!(
                    "INSERT INTO grants (tenant_id, id, user_id, client_id, business_id, scope, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
                     ON CONFLICT (tenant_id, user_id, client_id) DO UPDATE SET business_id = excluded.business_id, scope = excluded.scope
                     RETURNING {GRANT_COLUMNS}"
                ),
                params![
                    g.tenant.0.to_string(),
                    g.id.to_string(),
                    g.user_id.to_string(),
                    g.client_id,
                    g.business_id.map(|b| b.to_string()),
                    g.scope.to_string(),
                    g.created_at
                ],
                grant_from_row,
            )
        })
        .await
    }

    async fn list_user_grants(&self, tenant: TenantId, user: Uuid) -> StoreResult<Vec<GrantSummary>> {
        self.read(|c| {
            query_all(
                c,
                "SELECT g.tenant_id, g.id, g.user_id, g.client_id, g.business_id, g.scope, g.created_at,
                        c.name AS client_name, c.developer, b.name AS business_name,
                        (SELECT MAX(COALESCE(t.created_at, f.created_at)) FROM families f LEFT JOIN tokens t ON t.tenant_id = f.tenant_id AND t.family_id = f.id
                          WHERE f.tenant_id = g.tenant_id AND f.grant_id = g.id) AS last_used_at
                 FROM grants g
                 JOIN clients c ON c.tenant_id = g.tenant_id AND c.client_id = g.client_id
                 LEFT JOIN businesses b ON b.tenant_id = g.tenant_id AND b.id = g.business_id
                 WHERE g.tenant_id = ? AND g.user_id = ? ORDER BY c.name, g.created_at",
                [tenant.0.to_string(), user.to_string()],
                grant_summary_from_row,
            )
        })
    }

    async fn revoke_grant(&self, tenant: TenantId, user: Uuid, grant: Uuid, now: UnixTime) -> StoreResult<bool> {
        let (t, u, g) = (tenant.0.to_string(), user.to_string(), grant.to_string());
        self.write(move |c| {
            if exec(c, "DELETE FROM grants WHERE tenant_id = ? AND id = ? AND user_id = ?", [&t, &g, &u])? == 0 {
                return Ok(false);
            }
            exec(c, "UPDATE families SET revoked_at = ? WHERE tenant_id = ? AND grant_id = ? AND revoked_at IS NULL", params![now, t, g])?;
            exec(c, "DELETE FROM codes WHERE tenant_id = ? AND grant_id = ?", [&t, &g])?;
            Ok(true)
        })
        .await
    }
}

#[async_trait]
impl ScopeStore for SqliteStore {
    async fn list_scopes(&self, tenant: TenantId) -> StoreResult<Vec<ScopeEntry>> {
        self.read(|c| {
            query_all(
                c,
                "SELECT tenant_id, name, description, personal, created_at FROM scopes WHERE tenant_id = ? ORDER BY name",
                [tenant.0.to_string()],
                scope_entry_from_row,
            )
        })
    }

    async fn upsert_scope(&self, e: &ScopeEntry) -> StoreResult<()> {
        e.check_texts()?;
        let e = e.clone();
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO scopes (tenant_id, name, description, personal, created_at) VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT (tenant_id, name) DO UPDATE SET description = excluded.description, personal = excluded.personal",
                params![e.tenant.0.to_string(), e.name, e.description, e.personal, e.created_at],
            )
            .map(drop)
        })
        .await
    }

    async fn delete_scope(&self, tenant: TenantId, name: &str) -> StoreResult<bool> {
        check_text([name])?;
        let name = name.to_owned();
        self.write(move |c| exec(c, "DELETE FROM scopes WHERE tenant_id = ? AND name = ?", [tenant.0.to_string(), name]).map(|n| n > 0))
            .await
    }
}

#[async_trait]
impl TokenStore for SqliteStore {
    async fn insert_code(&self, code: &AuthCode) -> StoreResult<()> {
        code.check_texts()?;
        let k = code.clone();
        self.write(move |c| match insert_code_row(c, &k)? {
            0 => Err(StoreError::Conflict("the code exists".into())),
            _ => Ok(()),
        })
        .await
    }

    async fn find_code(&self, tenant: TenantId, hash: SecretHash) -> StoreResult<Option<AuthCode>> {
        self.read(|c| {
            query_opt(
                c,
                "SELECT hash, tenant_id, client_id, user_id, grant_id, business_id, redirect_uri, redirect_uri_explicit, scope, nonce,
                 code_challenge, auth_time, created_at, expires_at, consumed_at, family_id FROM codes WHERE tenant_id = ? AND hash = ?",
                params![tenant.0.to_string(), &hash.0[..]],
                code_from_row,
            )
        })
    }

    async fn redeem_code(
        &self,
        tenant: TenantId,
        hash: SecretHash,
        now: UnixTime,
        f: &Family,
        tokens: &[TokenRecord],
    ) -> StoreResult<RedeemOutcome> {
        f.check_texts()?;
        tokens.check_texts()?;
        let (f, tokens) = (f.clone(), tokens.to_vec());
        self.write(move |c| {
            let consumed = exec(
                c,
                "UPDATE codes SET consumed_at = ? WHERE tenant_id = ? AND hash = ? AND consumed_at IS NULL",
                params![now, tenant.0.to_string(), &hash.0[..]],
            )?;
            if consumed == 0 {
                return Ok(RedeemOutcome::AlreadyConsumed);
            }
            insert_family_row(c, &f)?;
            insert_tokens(c, &tokens)?;
            Ok(RedeemOutcome::Redeemed)
        })
        .await
    }

    async fn redeem_sealed_code(&self, code: &AuthCode, now: UnixTime, f: &Family, tokens: &[TokenRecord]) -> StoreResult<RedeemOutcome> {
        code.check_texts()?;
        f.check_texts()?;
        tokens.check_texts()?;
        let (k, f, tokens) = (AuthCode { consumed_at: Some(now), ..code.clone() }, f.clone(), tokens.to_vec());
        self.write(move |c| {
            let granted = query_one(
                c,
                "SELECT EXISTS (SELECT 1 FROM grants WHERE tenant_id = ? AND id = ? AND user_id = ? AND client_id = ?)",
                params![k.tenant.0.to_string(), k.grant_id.to_string(), k.user_id.to_string(), k.client_id],
                |r| r.at::<bool>(0),
            )?;
            if !granted {
                return Ok(RedeemOutcome::GrantGone);
            }
            if insert_code_row(c, &k)? == 0 {
                return Ok(RedeemOutcome::AlreadyConsumed);
            }
            insert_family_row(c, &f)?;
            insert_tokens(c, &tokens)?;
            Ok(RedeemOutcome::Redeemed)
        })
        .await
    }

    async fn insert_family(&self, _tenant: TenantId, family: &Family, tokens: &[TokenRecord]) -> StoreResult<()> {
        family.check_texts()?;
        tokens.check_texts()?;
        let (f, tokens) = (family.clone(), tokens.to_vec());
        self.write(move |c| {
            insert_family_row(c, &f)?;
            insert_tokens(c, &tokens)
        })
        .await
    }

    async fn find_token(&self, tenant: TenantId, hash: SecretHash) -> StoreResult<Option<TokenView>> {
        self.read(|c| token_by_hash(c, tenant, hash))
    }

    async fn find_client_and_token(
        &self,
        tenant: TenantId,
        client_id: &str,
        hash: SecretHash,
    ) -> StoreResult<(Option<Client>, Option<TokenView>)> {
        check_text([client_id])?;
        // One statement reads the token and the clients' generation in one snapshot, with no
        // transaction around it: when the caller's client is cached at that generation (nearly
        // always), that is the whole read. Without a token there is no row to carry the
        // generation, and the client is looked up on its own. A client read from its row here
        // comes from a snapshot as new as the token's or newer, as two separate reads would.
        self.read(|c| {
            let found = query_opt(c, GENERATION_AND_TOKEN_BY_HASH, params![tenant.0.to_string(), &hash.0[..]], |r| {
                Ok((r.get::<i64>("generation")?, token_view_from_row(r)?))
            })?;
            match found {
                Some((generation, token)) => Ok((self.clients.find_at(c, generation, tenant, client_id)?, Some(token))),
                None => Ok((self.clients.find(c, tenant, client_id)?, None)),
            }
        })
    }

    async fn rotate_refresh_token(
        &self,
        tenant: TenantId,
        old: SecretHash,
        now: UnixTime,
        tokens: &[TokenRecord],
        replay: Option<&SealedReplay>,
    ) -> StoreResult<RotateOutcome> {
        tokens.check_texts()?;
        let successor = replay.and_then(|_| tokens.iter().find(|t| t.kind == TokenKind::Refresh)).map(|t| t.hash.0.to_vec());
        let (sealed, until) = (replay.map(|r| r.sealed.clone()), replay.map(|r| r.until));
        let tokens = tokens.to_vec();
        self.write(move |c| {
            let tenant = tenant.0.to_string();
            let rotated = exec(
                c,
                "UPDATE tokens SET rotated_at = ? WHERE tenant_id = ? AND hash = ? AND kind = 'refresh_token'
                 AND rotated_at IS NULL AND revoked_at IS NULL
                 AND EXISTS (SELECT 1 FROM families f WHERE f.tenant_id = tokens.tenant_id AND f.id = tokens.family_id AND f.revoked_at IS NULL)",
                params![now, tenant, &old.0[..]],
            )?;
            if rotated == 0 {
                return Ok(RotateOutcome::NotCurrent);
            }
            insert_tokens(c, &tokens)?;
            if let (Some(sealed), Some(until)) = (sealed, until) {
                exec(
                    c,
                    "INSERT INTO replays (hash, tenant_id, sealed, until, successor) VALUES (?, ?, ?, ?, ?)",
                    params![&old.0[..], tenant, sealed, until, successor],
                )?;
            }
            Ok(RotateOutcome::Rotated)
        })
        .await
    }

    async fn find_replay(&self, tenant: TenantId, old: SecretHash, now: UnixTime) -> StoreResult<Option<Vec<u8>>> {
        // The successor, when there is one, must be current; a rotation that issued no new
        // refresh token leaves `successor` NULL and only the family's state matters.
        self.read(|c| {
            query_opt(
                c,
                "SELECT r.sealed FROM replays r JOIN tokens t ON t.hash = r.hash AND t.tenant_id = r.tenant_id
                 JOIN families f ON f.tenant_id = t.tenant_id AND f.id = t.family_id
                 WHERE r.tenant_id = ?1 AND r.hash = ?2 AND r.until > ?3 AND f.revoked_at IS NULL
                 AND (r.successor IS NULL OR EXISTS (SELECT 1 FROM tokens s WHERE s.hash = r.successor AND s.tenant_id = r.tenant_id
                      AND s.rotated_at IS NULL AND s.revoked_at IS NULL))",
                params![tenant.0.to_string(), &old.0[..], now],
                |r| r.at(0),
            )
        })
    }

    async fn revoke_token(&self, tenant: TenantId, hash: SecretHash, now: UnixTime) -> StoreResult<()> {
        self.write(move |c| {
            exec(
                c,
                "UPDATE tokens SET revoked_at = ? WHERE tenant_id = ? AND hash = ? AND revoked_at IS NULL",
                params![now, tenant.0.to_string(), &hash.0[..]],
            )
            .map(drop)
        })
        .await
    }

    async fn revoke_family(&self, tenant: TenantId, family: Uuid, now: UnixTime) -> StoreResult<()> {
        self.write(move |c| {
            exec(
                c,
                "UPDATE families SET revoked_at = ? WHERE tenant_id = ? AND id = ? AND revoked_at IS NULL",
                params![now, tenant.0.to_string(), family.to_string()],
            )
            .map(drop)
        })
        .await
    }

    async fn revoke_jti(&self, tenant: TenantId, client_id: &str, jti: Uuid, expires_at: UnixTime, now: UnixTime) -> StoreResult<()> {
        check_text([client_id])?;
        let client_id = client_id.to_owned();
        self.write(move |c| {
            exec(
                c,
                "INSERT OR IGNORE INTO revoked_jtis (tenant_id, jti, client_id, expires_at, revoked_at)
                 SELECT tenant_id, ?, client_id, ?, ? FROM clients WHERE tenant_id = ? AND client_id = ?",
                params![jti.to_string(), expires_at, now, tenant.0.to_string(), client_id],
            )
            .map(drop)
        })
        .await
    }

    async fn self_contained_token_live(&self, tenant: TenantId, client_id: &str, jti: Uuid) -> StoreResult<bool> {
        check_text([client_id])?;
        self.read(|c| {
            query_one(
                c,
                "SELECT EXISTS (SELECT 1 FROM clients WHERE tenant_id = ?1 AND client_id = ?2)
                    AND NOT EXISTS (SELECT 1 FROM revoked_jtis WHERE tenant_id = ?1 AND jti = ?3)",
                params![tenant.0.to_string(), client_id, jti.to_string()],
                |row| row.at::<bool>(0),
            )
        })
    }

    async fn find_family_of_token(&self, tenant: TenantId, family: Uuid, jti: Uuid) -> StoreResult<Option<FamilyView>> {
        self.read(|c| {
            query_opt(c, FAMILY_OF_TOKEN, params![tenant.0.to_string(), family.to_string(), jti.to_string()], family_view_from_row)
        })
    }

    async fn find_client_and_family(
        &self,
        tenant: TenantId,
        client_id: &str,
        family: Uuid,
        jti: Uuid,
    ) -> StoreResult<(Option<Client>, Option<FamilyView>)> {
        check_text([client_id])?;
        // As `find_client_and_token`: one statement, when the caller's client is cached.
        self.read(|c| {
            let found =
                query_opt(c, GENERATION_AND_FAMILY_OF_TOKEN, params![tenant.0.to_string(), family.to_string(), jti.to_string()], |r| {
                    Ok((r.get::<i64>("generation")?, family_view_from_row(r)?))
                })?;
            match found {
                Some((generation, family)) => Ok((self.clients.find_at(c, generation, tenant, client_id)?, Some(family))),
                None => Ok((self.clients.find(c, tenant, client_id)?, None)),
            }
        })
    }
}

#[async_trait]
impl HousekeepingStore for SqliteStore {
    async fn delete_expired(
        &self,
        tenant: TenantId,
        now: UnixTime,
        attempts_before: UnixTime,
        pat_before: UnixTime,
        limit: u32,
    ) -> StoreResult<Cleanup> {
        // Each kind in its own short statement and its own batch, limited to `limit` rows, so
        // housekeeping never holds up the writer for long.
        let run = |sql: &'static str, cutoff: UnixTime| {
            let t = tenant.0.to_string();
            self.write(move |c| exec(c, sql, params![t, cutoff, i64::from(limit)]))
        };
        let (tokens, idled) = self.write(move |c| expired_tokens(c, tenant, now, limit)).await?;
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
        self.read(|c| {
            query_one(
                c,
                "SELECT (SELECT COUNT(*) FROM codes WHERE tenant_id = ?1) AS codes,
                        (SELECT COUNT(*) FROM tokens WHERE tenant_id = ?1) AS tokens,
                        (SELECT COUNT(*) FROM families WHERE tenant_id = ?1) AS families,
                        (SELECT COUNT(*) FROM sessions WHERE tenant_id = ?1) AS sessions,
                        (SELECT COUNT(*) FROM interactions WHERE tenant_id = ?1) AS interactions",
                [tenant.0.to_string()],
                |row| {
                    let n = |c: &str| -> StoreResult<u64> { row.get::<i64>(c).map(|v| u64::try_from(v).unwrap_or(0)) };
                    Ok(RowCounts {
                        codes: n("codes")?,
                        tokens: n("tokens")?,
                        families: n("families")?,
                        sessions: n("sessions")?,
                        interactions: n("interactions")?,
                    })
                },
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_found_by_name_in_any_order() {
        let conn = Connection::open_in_memory().unwrap();
        let got = query_one(&conn, "SELECT 1 AS a, 'two' AS b, 3 AS c", [], |r| {
            Ok((r.get::<i64>("c")?, r.get::<i64>("a")?, r.get::<String>("b")?, r.get::<i64>("c")?, r.at::<i64>(0)?))
        })
        .unwrap();
        assert_eq!(got, (3, 1, "two".to_owned(), 3, 1));
        let missing = query_one(&conn, "SELECT 1 AS a", [], |r| r.get::<i64>("z"));
        assert!(matches!(missing, Err(StoreError::Corrupt(ref m)) if m.contains("no column z")), "{missing:?}");
    }

    /// The lookups of a token by its hash descend indexes and never walk a table: the token by
    /// its hash, its family and its user by their keys, and, for introspection, the one row of
    /// the clients' generation by its key.
    #[test]
    fn token_lookups_only_search() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_writer(&dir.path().join("plan.db"), Durability::Full).unwrap();
        migrate(&conn).unwrap();
        for (sql, searches) in [(TOKEN_BY_HASH, 3), (GENERATION_AND_TOKEN_BY_HASH, 4)] {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let plan: Vec<String> =
                stmt.query_map(params!["t", &[0u8; 32][..]], |r| r.get::<_, String>(3)).unwrap().map(Result::unwrap).collect();
            assert!(!plan.iter().any(|s| s.starts_with("SCAN")), "{sql}\n{plan:#?}");
            assert_eq!(plan.iter().filter(|s| s.starts_with("SEARCH")).count(), searches, "{sql}\n{plan:#?}");
        }
    }

    /// Every housekeeping statement finds its rows through an index on its cutoff: none walks
    /// a table (`SCAN`), nor all of a tenant's rows (a search on `tenant_id` alone), so a pass
    /// costs what has expired, however much is live.
    #[test]
    fn housekeeping_finds_its_rows_through_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_writer(&dir.path().join("plan.db"), Durability::Full).unwrap();
        migrate(&conn).unwrap();
        for sql in sweep::ALL {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let plan: Vec<String> = stmt.query_map(params!["t", 0, 10], |r| r.get::<_, String>(3)).unwrap().map(Result::unwrap).collect();
            let walks = |step: &&String| step.starts_with("SCAN") || step.ends_with("(tenant_id=?)");
            assert!(!plan.iter().any(|s| walks(&s)), "{sql}\n{plan:#?}");
            assert!(plan.iter().any(|s| s.contains("SEARCH")), "{sql}\n{plan:#?}");
        }
    }
}
