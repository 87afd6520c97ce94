//! The SQLite implementation of the Latchkey store.
//!
//! Durability: WAL with `synchronous=FULL` by default, so an acknowledged write survives a
//! process kill and a power loss. Concurrency: one writer connection (SQLite has one writer
//! anyway; queueing in-process avoids `SQLITE_BUSY`) and a pool of readers. Write
//! transactions start with `BEGIN IMMEDIATE`, so a transaction that reads before it writes
//! cannot fail halfway on a lock upgrade.

mod rows;

use async_trait::async_trait;
use latchkey_core::guessing::AttemptCount;
use latchkey_core::model::{
    AuthCode, Business, Client, Family, Grant, Interaction, PersonalToken, PersonalTokenEvent, Session, SigningKeyRecord, Tenant, TenantId,
    TokenKind, TokenRecord, TokenView, User,
};
use latchkey_core::secret::SecretHash;
use latchkey_core::UnixTime;
use latchkey_store::{Cleanup, RedeemOutcome, RotateOutcome, RowCounts, SealedReplay, Store, StoreError, StoreResult};
use rows::*;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Executor, Row, Sqlite, Transaction};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;
use uuid::Uuid;

/// The schema, one entry per version; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[include_str!("../migrations/0001_init.sql"), include_str!("../migrations/0002_replay_and_settings.sql")];

/// How durable a commit is (SQLite's `synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Survives process crashes and power loss (`FULL`, the default).
    #[default]
    Full,
    /// Survives process crashes; the last commits may be lost on power loss (`NORMAL`).
    Normal,
}

#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
}

fn fault(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(db.message().to_owned()),
        sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("5" | "6" | "517" | "261")) => {
            StoreError::Unavailable(Box::new(sqlx::Error::Database(db)))
        }
        e @ (sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed) => {
            StoreError::Unavailable(Box::new(e))
        }
        e => StoreError::Database(Box::new(e)),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub async fn open(path: &Path, durability: Durability) -> StoreResult<Self> {
        let base = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Normal => SqliteSynchronous::Normal,
            })
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(base.clone())
            .await
            .map_err(fault)?;
        migrate(&writer).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(base.read_only(true))
            .await
            .map_err(fault)?;
        Ok(Self { writer, readers })
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
        let row = sqlx::query(&format!("PRAGMA {name}")).fetch_one(&self.writer).await.map_err(fault)?;
        match row.try_get::<String, _>(0) {
            Ok(s) => Ok(s),
            Err(_) => row.try_get::<i64, _>(0).map(|n| n.to_string()).map_err(fault),
        }
    }

    async fn begin(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(fault)
    }

    /// Runs one write statement outside an explicit transaction.
    async fn write<'q>(&self, q: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>) -> StoreResult<u64> {
        q.execute(&self.writer).await.map(|r| r.rows_affected()).map_err(fault)
    }
}

async fn migrate(pool: &SqlitePool) -> StoreResult<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(fault)?;
    let version: i64 = sqlx::query_scalar("PRAGMA user_version").fetch_one(&mut *tx).await.map_err(fault)?;
    let version = usize::try_from(version).map_err(|_| StoreError::Corrupt("negative schema version".into()))?;
    if version > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "the database has schema version {version}, newer than this latchkey ({}); upgrade latchkey",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.execute(sqlx::raw_sql(sql)).await.map_err(fault)?;
        tx.execute(sqlx::raw_sql(&format!("PRAGMA user_version = {}", i + 1))).await.map_err(fault)?;
        tracing::info!(version = i + 1, "applied SQLite migration");
    }
    tx.commit().await.map_err(fault)
}

async fn insert_family_row(tx: &mut Transaction<'static, Sqlite>, f: &Family) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO families (tenant_id, id, grant_id, client_id, user_id, business_id, scope, auth_time, created_at, expires_at, revoked_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(f.tenant.0.to_string())
    .bind(f.id.to_string())
    .bind(f.grant_id.map(|g| g.to_string()))
    .bind(&f.client_id)
    .bind(f.user_id.map(|u| u.to_string()))
    .bind(f.business_id.map(|b| b.to_string()))
    .bind(f.scope.to_string())
    .bind(f.auth_time)
    .bind(f.created_at)
    .bind(f.expires_at)
    .bind(f.revoked_at)
    .execute(&mut **tx)
    .await
    .map_err(fault)?;
    Ok(())
}

fn insert_key_query(k: &SigningKeyRecord) -> sqlx::query::Query<'_, Sqlite, sqlx::sqlite::SqliteArguments<'_>> {
    sqlx::query(
        "INSERT INTO signing_keys (tenant_id, kid, alg, sealed, public_jwk, created_at, activates_at, retires_at, period) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(k.tenant.0.to_string())
    .bind(&k.kid)
    .bind(k.alg.as_str())
    .bind(&k.sealed_private_key)
    .bind(&k.public_jwk)
    .bind(k.created_at)
    .bind(k.activates_at)
    .bind(k.retires_at)
    .bind(k.period)
}

async fn token_event(tx: &mut Transaction<'static, Sqlite>, tenant: TenantId, id: Uuid, event: &str, at: UnixTime) -> StoreResult<()> {
    sqlx::query("INSERT INTO personal_token_events (tenant_id, token_id, event, at) VALUES (?, ?, ?, ?)")
        .bind(tenant.0.to_string())
        .bind(id.to_string())
        .bind(event)
        .bind(at)
        .execute(&mut **tx)
        .await
        .map_err(fault)?;
    Ok(())
}

async fn insert_tokens(tx: &mut Transaction<'static, Sqlite>, tokens: &[TokenRecord]) -> StoreResult<()> {
    for t in tokens {
        sqlx::query(
            "INSERT INTO tokens (hash, tenant_id, kind, family_id, client_id, user_id, business_id, scope, jti, created_at, expires_at, revoked_at, rotated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&t.hash.0[..])
        .bind(t.tenant.0.to_string())
        .bind(t.kind.as_str())
        .bind(t.family_id.to_string())
        .bind(&t.client_id)
        .bind(t.user_id.map(|u| u.to_string()))
        .bind(t.business_id.map(|b| b.to_string()))
        .bind(t.scope.to_string())
        .bind(t.jti.to_string())
        .bind(t.created_at)
        .bind(t.expires_at)
        .bind(t.revoked_at)
        .bind(t.rotated_at)
        .execute(&mut **tx)
        .await
        .map_err(fault)?;
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn ensure_tenant(&self, name: &str, now: UnixTime) -> StoreResult<Tenant> {
        self.write(
            sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?) ON CONFLICT(name) DO NOTHING")
                .bind(Uuid::new_v4().to_string())
                .bind(name)
                .bind(now),
        )
        .await?;
        self.find_tenant_by_name(name).await?.ok_or_else(|| StoreError::NotFound(format!("tenant {name}")))
    }

    async fn find_tenant_by_name(&self, name: &str) -> StoreResult<Option<Tenant>> {
        let row = sqlx::query("SELECT id, name, issuer, settings, created_at FROM tenants WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.writer)
            .await
            .map_err(fault)?;
        row.map(|r| tenant_from_row(&r)).transpose()
    }

    async fn insert_tenant(&self, t: &Tenant) -> StoreResult<()> {
        self.write(
            sqlx::query("INSERT INTO tenants (id, name, issuer, settings, created_at) VALUES (?, ?, ?, ?, ?)")
                .bind(t.id.0.to_string())
                .bind(&t.name)
                .bind(&t.issuer)
                .bind(json(&t.settings)?)
                .bind(t.created_at),
        )
        .await
        .map(drop)
    }

    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        let rows = sqlx::query("SELECT id, name, issuer, settings, created_at FROM tenants ORDER BY created_at, name")
            .fetch_all(&self.readers)
            .await
            .map_err(fault)?;
        rows.iter().map(tenant_from_row).collect()
    }

    async fn update_tenant(&self, t: &Tenant) -> StoreResult<bool> {
        let n = self
            .write(
                sqlx::query("UPDATE tenants SET issuer = ?, settings = ? WHERE id = ?")
                    .bind(&t.issuer)
                    .bind(json(&t.settings)?)
                    .bind(t.id.0.to_string()),
            )
            .await?;
        Ok(n > 0)
    }

    async fn ensure_setting(&self, name: &str, value: &str) -> StoreResult<String> {
        // One statement, so two first writers cannot both win.
        sqlx::query_scalar(
            "INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = settings.value RETURNING value",
        )
        .bind(name)
        .bind(value)
        .fetch_one(&self.writer)
        .await
        .map_err(fault)
    }

    async fn insert_user(&self, u: &User) -> StoreResult<()> {
        self.write(
            sqlx::query("INSERT INTO users (tenant_id, id, email, name, password_hash, default_business_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)")
                .bind(u.tenant.0.to_string())
                .bind(u.id.to_string())
                .bind(&u.email)
                .bind(&u.name)
                .bind(&u.password_hash)
                .bind(u.default_business_id.map(|b| b.to_string()))
                .bind(u.created_at),
        )
        .await
        .map(drop)
    }

    async fn find_user(&self, tenant: TenantId, id: Uuid) -> StoreResult<Option<User>> {
        let row = sqlx::query(&format!("{USER_SELECT} WHERE tenant_id = ? AND id = ?"))
            .bind(tenant.0.to_string())
            .bind(id.to_string())
            .fetch_optional(&self.readers)
            .await
            .map_err(fault)?;
        row.map(|r| user_from_row(&r)).transpose()
    }

    async fn find_user_by_email(&self, tenant: TenantId, email: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query(&format!("{USER_SELECT} WHERE tenant_id = ? AND email = ?"))
            .bind(tenant.0.to_string())
            .bind(email.to_lowercase())
            .fetch_optional(&self.readers)
            .await
            .map_err(fault)?;
        row.map(|r| user_from_row(&r)).transpose()
    }

    async fn list_users(&self, tenant: TenantId) -> StoreResult<Vec<User>> {
        let rows = sqlx::query(&format!("{USER_SELECT} WHERE tenant_id = ? ORDER BY created_at, email"))
            .bind(tenant.0.to_string())
            .fetch_all(&self.readers)
            .await
            .map_err(fault)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn delete_user(&self, tenant: TenantId, id: Uuid) -> StoreResult<bool> {
        let n = self
            .write(sqlx::query("DELETE FROM users WHERE tenant_id = ? AND id = ?").bind(tenant.0.to_string()).bind(id.to_string()))
            .await?;
        Ok(n > 0)
    }

    async fn update_user_default_business(&self, tenant: TenantId, user: Uuid, business: Option<Uuid>) -> StoreResult<()> {
        self.write(
            sqlx::query("UPDATE users SET default_business_id = ? WHERE tenant_id = ? AND id = ?")
                .bind(business.map(|b| b.to_string()))
                .bind(tenant.0.to_string())
                .bind(user.to_string()),
        )
        .await
        .map(drop)
    }

    async fn insert_business(&self, b: &Business) -> StoreResult<()> {
        self.write(
            sqlx::query("INSERT INTO businesses (tenant_id, id, name, created_at) VALUES (?, ?, ?, ?)")
                .bind(b.tenant.0.to_string())
                .bind(b.id.to_string())
                .bind(&b.name)
                .bind(b.created_at),
        )
        .await
        .map(drop)
    }

    async fn find_business_by_name(&self, tenant: TenantId, name: &str) -> StoreResult<Option<Business>> {
        let row = sqlx::query("SELECT tenant_id, id, name, created_at FROM businesses WHERE tenant_id = ? AND name = ?")
            .bind(tenant.0.to_string())
            .bind(name)
            .fetch_optional(&self.readers)
            .await
            .map_err(fault)?;
        row.map(|r| business_from_row(&r)).transpose()
    }

    async fn insert_membership(&self, tenant: TenantId, business: Uuid, user: Uuid, now: UnixTime) -> StoreResult<()> {
        self.write(
            sqlx::query("INSERT INTO memberships (tenant_id, business_id, user_id, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING")
                .bind(tenant.0.to_string())
                .bind(business.to_string())
                .bind(user.to_string())
                .bind(now),
        )
        .await
        .map(drop)
    }

    async fn delete_membership(&self, tenant: TenantId, business: Uuid, user: Uuid) -> StoreResult<bool> {
        let n = self
            .write(
                sqlx::query("DELETE FROM memberships WHERE tenant_id = ? AND business_id = ? AND user_id = ?")
                    .bind(tenant.0.to_string())
                    .bind(business.to_string())
                    .bind(user.to_string()),
            )
            .await?;
        Ok(n > 0)
    }

    async fn revoke_user_business(&self, tenant: TenantId, user: Uuid, business: Uuid, now: UnixTime) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let (t, u, b) = (tenant.0.to_string(), user.to_string(), business.to_string());
        let revoked = sqlx::query(
            "UPDATE families SET revoked_at = ? WHERE tenant_id = ? AND user_id = ? AND business_id = ? AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(&t)
        .bind(&u)
        .bind(&b)
        .execute(&mut *tx)
        .await
        .map_err(fault)?
        .rows_affected();
        sqlx::query("DELETE FROM grants WHERE tenant_id = ? AND user_id = ? AND business_id = ?")
            .bind(&t)
            .bind(&u)
            .bind(&b)
            .execute(&mut *tx)
            .await
            .map_err(fault)?;
        tx.commit().await.map_err(fault)?;
        Ok(revoked)
    }

    async fn list_businesses(&self, tenant: TenantId) -> StoreResult<Vec<Business>> {
        let rows = sqlx::query("SELECT tenant_id, id, name, created_at FROM businesses WHERE tenant_id = ? ORDER BY name")
            .bind(tenant.0.to_string())
            .fetch_all(&self.readers)
            .await
            .map_err(fault)?;
        rows.iter().map(business_from_row).collect()
    }

    async fn list_user_businesses(&self, tenant: TenantId, user: Uuid) -> StoreResult<Vec<Business>> {
        let rows = sqlx::query(
            "SELECT b.tenant_id, b.id, b.name, b.created_at FROM memberships m
             JOIN businesses b ON b.tenant_id = m.tenant_id AND b.id = m.business_id
             WHERE m.tenant_id = ? AND m.user_id = ? ORDER BY m.created_at, m.rowid",
        )
        .bind(tenant.0.to_string())
        .bind(user.to_string())
        .fetch_all(&self.readers)
        .await
        .map_err(fault)?;
        rows.iter().map(business_from_row).collect()
    }

    async fn insert_client(&self, c: &Client) -> StoreResult<()> {
        self.write(
            sqlx::query(
                "INSERT INTO clients (tenant_id, client_id, name, developer, secret_hash, redirect_uris, scopes, grant_types, require_pkce, settings, created_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(c.tenant.0.to_string())
            .bind(&c.client_id)
            .bind(&c.name)
            .bind(&c.developer)
            .bind(c.secret_hash.map(|h| h.0.to_vec()))
            .bind(json(&c.redirect_uris)?)
            .bind(c.scopes.to_string())
            .bind(json(&c.grant_types)?)
            .bind(c.require_pkce)
            .bind(json(&c.token_settings)?)
            .bind(c.created_at),
        )
        .await
        .map(drop)
    }

    async fn find_client(&self, tenant: TenantId, client_id: &str) -> StoreResult<Option<Client>> {
        let row = sqlx::query(&format!("{CLIENT_SELECT} WHERE tenant_id = ? AND client_id = ?"))
            .bind(tenant.0.to_string())
            .bind(client_id)
            .fetch_optional(&self.readers)
            .await
            .map_err(fault)?;
        row.map(|r| client_from_row(&r)).transpose()
    }

    async fn list_clients(&self, tenant: TenantId) -> StoreResult<Vec<Client>> {
        let rows = sqlx::query(&format!("{CLIENT_SELECT} WHERE tenant_id = ? ORDER BY created_at, name"))
            .bind(tenant.0.to_string())
            .fetch_all(&self.readers)
            .await
            .map_err(fault)?;
        rows.iter().map(client_from_row).collect()
    }

    async fn delete_client(&self, tenant: TenantId, client_id: &str) -> StoreResult<bool> {
        let n = self
            .write(sqlx::query("DELETE FROM clients WHERE tenant_id = ? AND client_id = ?").bind(tenant.0.to_string()).bind(client_id))
            .await?;
        Ok(n > 0)
    }

    async fn update_client_secret(&self, tenant: TenantId, client_id: &str, secret_hash: SecretHash) -> StoreResult<bool> {
        let n = self
            .write(
                sqlx::query("UPDATE clients SET secret_hash = ? WHERE tenant_id = ? AND client_id = ? AND secret_hash IS NOT NULL")
                    .bind(secret_hash.0.to_vec())
                    .bind(tenant.0.to_string())
                    .bind(client_id),
            )
            .await?;
        Ok(n > 0)
    }

    async fn insert_signing_key(&self, k: &SigningKeyRecord) -> StoreResult<()> {
        self.write(insert_key_query(k)).await.map(drop)
    }

    async fn rotate_signing_key(&self, k: &SigningKeyRecord, retire_others_at: UnixTime) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        match insert_key_query(k).execute(&mut *tx).await.map_err(fault) {
            Ok(_) => {}
            Err(StoreError::Conflict(_)) => {
                tx.rollback().await.map_err(fault)?;
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        sqlx::query("UPDATE signing_keys SET retires_at = ? WHERE tenant_id = ? AND kid != ? AND alg = ? AND retires_at IS NULL")
            .bind(retire_others_at)
            .bind(k.tenant.0.to_string())
            .bind(&k.kid)
            .bind(k.alg.as_str())
            .execute(&mut *tx)
            .await
            .map_err(fault)?;
        tx.commit().await.map_err(fault)?;
        Ok(true)
    }

    async fn list_signing_keys(&self, tenant: TenantId) -> StoreResult<Vec<SigningKeyRecord>> {
        let rows = sqlx::query(
            "SELECT tenant_id, kid, alg, sealed, public_jwk, created_at, activates_at, retires_at, period FROM signing_keys
             WHERE tenant_id = ? ORDER BY created_at DESC, rowid DESC",
        )
        .bind(tenant.0.to_string())
        .fetch_all(&self.writer)
        .await
        .map_err(fault)?;
        rows.iter().map(signing_key_from_row).collect()
    }

    async fn insert_session(&self, s: &Session) -> StoreResult<()> {
        self.write(
            sqlx::query("INSERT INTO sessions (hash, tenant_id, user_id, auth_time, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)")
                .bind(s.hash.0.to_vec())
                .bind(s.tenant.0.to_string())
                .bind(s.user_id.to_string())
                .bind(s.auth_time)
                .bind(s.created_at)
                .bind(s.expires_at),
        )
        .await
        .map(drop)
    }

    async fn find_session(&self, tenant: TenantId, hash: SecretHash) -> StoreResult<Option<Session>> {
        let row = sqlx::query(
            "SELECT hash, tenant_id, user_id, auth_time, created_at, expires_at FROM sessions WHERE tenant_id = ? AND hash = ?",
        )
        .bind(tenant.0.to_string())
        .bind(hash.0.to_vec())
        .fetch_optional(&self.readers)
        .await
        .map_err(fault)?;
        row.map(|r| session_from_row(&r)).transpose()
    }

    async fn delete_session(&self, tenant: TenantId, hash: SecretHash) -> StoreResult<()> {
        self.write(sqlx::query("DELETE FROM sessions WHERE tenant_id = ? AND hash = ?").bind(tenant.0.to_string()).bind(hash.0.to_vec()))
            .await
            .map(drop)
    }

    async fn insert_interaction(&self, i: &Interaction) -> StoreResult<()> {
        self.write(
            sqlx::query(
                "INSERT INTO interactions (id, tenant_id, browser_hash, request, login_user_id, login_at, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(i.id.to_string())
            .bind(i.tenant.0.to_string())
            .bind(i.browser_hash.0.to_vec())
            .bind(&i.request)
            .bind(i.login.map(|(u, _)| u.to_string()))
            .bind(i.login.map(|(_, t)| t))
            .bind(i.created_at)
            .bind(i.expires_at),
        )
        .await
        .map(drop)
    }

    async fn find_interaction(&self, tenant: TenantId, id: Uuid) -> StoreResult<Option<Interaction>> {
        let row = sqlx::query(
            "SELECT id, tenant_id, browser_hash, request, login_user_id, login_at, created_at, expires_at FROM interactions WHERE tenant_id = ? AND id = ?",
        )
        .bind(tenant.0.to_string())
        .bind(id.to_string())
        .fetch_optional(&self.readers)
        .await
        .map_err(fault)?;
        row.map(|r| interaction_from_row(&r)).transpose()
    }

    async fn update_interaction_login(&self, tenant: TenantId, id: Uuid, user: Uuid, at: UnixTime) -> StoreResult<()> {
        self.write(
            sqlx::query("UPDATE interactions SET login_user_id = ?, login_at = ? WHERE tenant_id = ? AND id = ?")
                .bind(user.to_string())
                .bind(at)
                .bind(tenant.0.to_string())
                .bind(id.to_string()),
        )
        .await
        .map(drop)
    }

    async fn delete_interaction(&self, tenant: TenantId, id: Uuid) -> StoreResult<()> {
        self.write(sqlx::query("DELETE FROM interactions WHERE tenant_id = ? AND id = ?").bind(tenant.0.to_string()).bind(id.to_string()))
            .await
            .map(drop)
    }

    async fn insert_personal_token(&self, t: &PersonalToken) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO personal_tokens (tenant_id, id, user_id, name, hash, scope, created_at, expires_at, last_used_at, revoked_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(t.tenant.0.to_string())
        .bind(t.id.to_string())
        .bind(t.user_id.to_string())
        .bind(&t.name)
        .bind(t.hash.0.to_vec())
        .bind(t.scope.to_string())
        .bind(t.created_at)
        .bind(t.expires_at)
        .bind(t.last_used_at)
        .bind(t.revoked_at)
        .execute(&mut *tx)
        .await
        .map_err(fault)?;
        token_event(&mut tx, t.tenant, t.id, "created", t.created_at).await?;
        tx.commit().await.map_err(fault)
    }

    async fn find_personal_token(&self, tenant: TenantId, id: Uuid) -> StoreResult<Option<PersonalToken>> {
        let row = sqlx::query(&format!("{PERSONAL_TOKEN_SELECT} WHERE tenant_id = ? AND id = ?"))
            .bind(tenant.0.to_string())
            .bind(id.to_string())
            .fetch_optional(&self.readers)
            .await
            .map_err(fault)?;
        row.map(|r| personal_token_from_row(&r)).transpose()
    }

    async fn find_personal_token_by_hash(&self, tenant: TenantId, hash: SecretHash) -> StoreResult<Option<PersonalToken>> {
        let row = sqlx::query(&format!("{PERSONAL_TOKEN_SELECT} WHERE tenant_id = ? AND hash = ?"))
            .bind(tenant.0.to_string())
            .bind(hash.0.to_vec())
            .fetch_optional(&self.readers)
            .await
            .map_err(fault)?;
        row.map(|r| personal_token_from_row(&r)).transpose()
    }

    async fn list_personal_tokens(&self, tenant: TenantId, user: Uuid) -> StoreResult<Vec<PersonalToken>> {
        let rows =
            sqlx::query(&format!("{PERSONAL_TOKEN_SELECT} WHERE tenant_id = ? AND user_id = ? ORDER BY created_at DESC, rowid DESC"))
                .bind(tenant.0.to_string())
                .bind(user.to_string())
                .fetch_all(&self.readers)
                .await
                .map_err(fault)?;
        rows.iter().map(personal_token_from_row).collect()
    }

    async fn update_personal_token_secret(&self, tenant: TenantId, id: Uuid, hash: SecretHash, now: UnixTime) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("UPDATE personal_tokens SET hash = ? WHERE tenant_id = ? AND id = ? AND revoked_at IS NULL")
            .bind(hash.0.to_vec())
            .bind(tenant.0.to_string())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(fault)?
            .rows_affected();
        if n == 0 {
            tx.rollback().await.map_err(fault)?;
            return Ok(false);
        }
        token_event(&mut tx, tenant, id, "regenerated", now).await?;
        tx.commit().await.map_err(fault)?;
        Ok(true)
    }

    async fn revoke_personal_token(&self, tenant: TenantId, id: Uuid, now: UnixTime) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("UPDATE personal_tokens SET revoked_at = ? WHERE tenant_id = ? AND id = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(tenant.0.to_string())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(fault)?
            .rows_affected();
        if n == 0 {
            tx.rollback().await.map_err(fault)?;
            return Ok(false);
        }
        token_event(&mut tx, tenant, id, "revoked", now).await?;
        tx.commit().await.map_err(fault)?;
        Ok(true)
    }

    async fn update_personal_token_last_used(&self, tenant: TenantId, id: Uuid, now: UnixTime) -> StoreResult<()> {
        self.write(
            sqlx::query("UPDATE personal_tokens SET last_used_at = ? WHERE tenant_id = ? AND id = ?")
                .bind(now)
                .bind(tenant.0.to_string())
                .bind(id.to_string()),
        )
        .await
        .map(drop)
    }

    async fn list_personal_token_events(&self, tenant: TenantId, id: Uuid) -> StoreResult<Vec<PersonalTokenEvent>> {
        let rows =
            sqlx::query("SELECT token_id, event, at FROM personal_token_events WHERE tenant_id = ? AND token_id = ? ORDER BY at, rowid")
                .bind(tenant.0.to_string())
                .bind(id.to_string())
                .fetch_all(&self.readers)
                .await
                .map_err(fault)?;
        rows.iter()
            .map(|r| {
                Ok(PersonalTokenEvent {
                    token_id: uuid_col(r, "token_id")?,
                    event: r.try_get("event").map_err(fault)?,
                    at: r.try_get("at").map_err(fault)?,
                })
            })
            .collect()
    }

    async fn record_attempt(&self, tenant: TenantId, key: &str, now: UnixTime, window: i64) -> StoreResult<AttemptCount> {
        // One statement: the count and the decision cannot be split by a parallel attempt.
        let row = sqlx::query(
            "INSERT INTO login_attempts (tenant_id, key, attempts, window_start) VALUES (?1, ?2, 1, ?3)
             ON CONFLICT (tenant_id, key) DO UPDATE SET
                attempts = CASE WHEN window_start + ?4 <= ?3 THEN 1 ELSE attempts + 1 END,
                window_start = CASE WHEN window_start + ?4 <= ?3 THEN ?3 ELSE window_start END
             RETURNING attempts, window_start",
        )
        .bind(tenant.0.to_string())
        .bind(key)
        .bind(now)
        .bind(window)
        .fetch_one(&self.writer)
        .await
        .map_err(fault)?;
        Ok(AttemptCount { attempts: row.try_get("attempts").map_err(fault)?, window_start: row.try_get("window_start").map_err(fault)? })
    }

    async fn release_attempt(&self, tenant: TenantId, key: &str) -> StoreResult<()> {
        self.write(
            sqlx::query("UPDATE login_attempts SET attempts = MAX(attempts - 1, 0) WHERE tenant_id = ? AND key = ?")
                .bind(tenant.0.to_string())
                .bind(key),
        )
        .await
        .map(drop)
    }

    async fn clear_attempts(&self, tenant: TenantId, key: &str) -> StoreResult<()> {
        self.write(sqlx::query("DELETE FROM login_attempts WHERE tenant_id = ? AND key = ?").bind(tenant.0.to_string()).bind(key))
            .await
            .map(drop)
    }

    async fn find_grant(&self, tenant: TenantId, user: Uuid, client_id: &str) -> StoreResult<Option<Grant>> {
        let row = sqlx::query(&format!("{GRANT_SELECT} WHERE tenant_id = ? AND user_id = ? AND client_id = ?"))
            .bind(tenant.0.to_string())
            .bind(user.to_string())
            .bind(client_id)
            .fetch_optional(&self.readers)
            .await
            .map_err(fault)?;
        row.map(|r| grant_from_row(&r)).transpose()
    }

    async fn upsert_grant(&self, g: &Grant) -> StoreResult<Grant> {
        let row = sqlx::query(&format!(
            "INSERT INTO grants (tenant_id, id, user_id, client_id, business_id, scope, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (tenant_id, user_id, client_id) DO UPDATE SET business_id = excluded.business_id, scope = excluded.scope
             RETURNING {GRANT_COLUMNS}"
        ))
        .bind(g.tenant.0.to_string())
        .bind(g.id.to_string())
        .bind(g.user_id.to_string())
        .bind(&g.client_id)
        .bind(g.business_id.map(|b| b.to_string()))
        .bind(g.scope.to_string())
        .bind(g.created_at)
        .fetch_one(&self.writer)
        .await
        .map_err(fault)?;
        grant_from_row(&row)
    }

    async fn insert_code(&self, c: &AuthCode) -> StoreResult<()> {
        self.write(
            sqlx::query(
                "INSERT INTO codes (hash, tenant_id, client_id, user_id, grant_id, business_id, redirect_uri, redirect_uri_explicit, scope, nonce,
                 code_challenge, auth_time, created_at, expires_at, consumed_at, family_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(c.hash.0.to_vec())
            .bind(c.tenant.0.to_string())
            .bind(&c.client_id)
            .bind(c.user_id.to_string())
            .bind(c.grant_id.to_string())
            .bind(c.business_id.map(|b| b.to_string()))
            .bind(&c.redirect_uri)
            .bind(c.redirect_uri_explicit)
            .bind(c.scope.to_string())
            .bind(&c.nonce)
            .bind(&c.code_challenge)
            .bind(c.auth_time)
            .bind(c.created_at)
            .bind(c.expires_at)
            .bind(c.consumed_at)
            .bind(c.family_id.to_string()),
        )
        .await
        .map(drop)
    }

    async fn find_code(&self, tenant: TenantId, hash: SecretHash) -> StoreResult<Option<AuthCode>> {
        let row = sqlx::query(
            "SELECT hash, tenant_id, client_id, user_id, grant_id, business_id, redirect_uri, redirect_uri_explicit, scope, nonce,
             code_challenge, auth_time, created_at, expires_at, consumed_at, family_id FROM codes WHERE tenant_id = ? AND hash = ?",
        )
        .bind(tenant.0.to_string())
        .bind(hash.0.to_vec())
        .fetch_optional(&self.readers)
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
        let mut tx = self.begin().await?;
        let consumed = sqlx::query("UPDATE codes SET consumed_at = ? WHERE tenant_id = ? AND hash = ? AND consumed_at IS NULL")
            .bind(now)
            .bind(tenant.0.to_string())
            .bind(hash.0.to_vec())
            .execute(&mut *tx)
            .await
            .map_err(fault)?
            .rows_affected();
        if consumed == 0 {
            tx.rollback().await.map_err(fault)?;
            return Ok(RedeemOutcome::AlreadyConsumed);
        }
        insert_family_row(&mut tx, f).await?;
        insert_tokens(&mut tx, tokens).await?;
        tx.commit().await.map_err(fault)?;
        Ok(RedeemOutcome::Redeemed)
    }

    async fn insert_family(&self, _tenant: TenantId, family: &Family, tokens: &[TokenRecord]) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        insert_family_row(&mut tx, family).await?;
        insert_tokens(&mut tx, tokens).await?;
        tx.commit().await.map_err(fault)
    }

    async fn find_token(&self, tenant: TenantId, hash: SecretHash) -> StoreResult<Option<TokenView>> {
        let row = sqlx::query(&format!("{TOKEN_VIEW_SELECT} WHERE t.tenant_id = ? AND t.hash = ?"))
            .bind(tenant.0.to_string())
            .bind(hash.0.to_vec())
            .fetch_optional(&self.readers)
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
        let mut tx = self.begin().await?;
        let successor = replay.and_then(|_| tokens.iter().find(|t| t.kind == TokenKind::Refresh)).map(|t| t.hash.0.to_vec());
        let rotated = sqlx::query(
            "UPDATE tokens SET rotated_at = ?, replay = ?, replay_until = ?, successor = ? WHERE tenant_id = ? AND hash = ? AND kind = 'refresh_token'
             AND rotated_at IS NULL AND revoked_at IS NULL
             AND EXISTS (SELECT 1 FROM families f WHERE f.tenant_id = tokens.tenant_id AND f.id = tokens.family_id AND f.revoked_at IS NULL)",
        )
        .bind(now)
        .bind(replay.map(|r| r.sealed.clone()))
        .bind(replay.map(|r| r.until))
        .bind(successor)
        .bind(tenant.0.to_string())
        .bind(old.0.to_vec())
        .execute(&mut *tx)
        .await
        .map_err(fault)?
        .rows_affected();
        if rotated == 0 {
            tx.rollback().await.map_err(fault)?;
            return Ok(RotateOutcome::NotCurrent);
        }
        insert_tokens(&mut tx, tokens).await?;
        tx.commit().await.map_err(fault)?;
        Ok(RotateOutcome::Rotated)
    }

    async fn find_replay(&self, tenant: TenantId, old: SecretHash, now: UnixTime) -> StoreResult<Option<Vec<u8>>> {
        // The successor, when there is one, must be current; a rotation that issued no new
        // refresh token leaves `successor` NULL and only the family's state matters.
        sqlx::query_scalar(
            "SELECT t.replay FROM tokens t JOIN families f ON f.tenant_id = t.tenant_id AND f.id = t.family_id
             WHERE t.tenant_id = ?1 AND t.hash = ?2 AND t.replay IS NOT NULL AND t.replay_until > ?3 AND f.revoked_at IS NULL
             AND (t.successor IS NULL OR EXISTS (SELECT 1 FROM tokens s WHERE s.hash = t.successor AND s.tenant_id = t.tenant_id
                  AND s.rotated_at IS NULL AND s.revoked_at IS NULL))",
        )
        .bind(tenant.0.to_string())
        .bind(old.0.to_vec())
        .bind(now)
        .fetch_optional(&self.writer)
        .await
        .map_err(fault)
    }

    async fn revoke_token(&self, tenant: TenantId, hash: SecretHash, now: UnixTime) -> StoreResult<()> {
        self.write(
            sqlx::query("UPDATE tokens SET revoked_at = ? WHERE tenant_id = ? AND hash = ? AND revoked_at IS NULL")
                .bind(now)
                .bind(tenant.0.to_string())
                .bind(hash.0.to_vec()),
        )
        .await
        .map(drop)
    }

    async fn revoke_family(&self, tenant: TenantId, family: Uuid, now: UnixTime) -> StoreResult<()> {
        self.write(
            sqlx::query("UPDATE families SET revoked_at = ? WHERE tenant_id = ? AND id = ? AND revoked_at IS NULL")
                .bind(now)
                .bind(tenant.0.to_string())
                .bind(family.to_string()),
        )
        .await
        .map(drop)
    }

    async fn delete_expired(
        &self,
        tenant: TenantId,
        now: UnixTime,
        attempts_before: UnixTime,
        pat_before: UnixTime,
        limit: u32,
    ) -> StoreResult<Cleanup> {
        let t = tenant.0.to_string();
        // Each kind in its own short statement, batched by `limit`, so housekeeping never holds
        // the write lock for long.
        let batch = |table: &str, condition: &str| {
            format!("DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE tenant_id = ?1 AND ({condition}) LIMIT ?3)")
        };
        let run = |sql: String, cutoff: UnixTime| {
            let t = t.clone();
            async move {
                sqlx::query(&sql)
                    .bind(t)
                    .bind(cutoff)
                    .bind(i64::from(limit))
                    .execute(&self.writer)
                    .await
                    .map(|r| r.rows_affected())
                    .map_err(fault)
            }
        };
        Ok(Cleanup {
            codes: run(batch("codes", "expires_at <= ?2"), now).await?,
            replays: run(
                "UPDATE tokens SET replay = NULL, replay_until = NULL WHERE rowid IN
                 (SELECT rowid FROM tokens WHERE tenant_id = ?1 AND replay_until <= ?2 LIMIT ?3)"
                    .to_owned(),
                now,
            )
            .await?,
            // Families first: their tokens go with them (ON DELETE CASCADE).
            // A family is over at its absolute expiry, or when no token of it is left unexpired
            // (its refresh token idled out): nothing can revive it.
            // `INDEXED BY tokens_family`: left to itself the planner may probe `tokens_expiry`
            // instead, which makes the pass quadratic (tens of thousands of client_credentials
            // families held the single writer for minutes); with the hint SQLite must use the
            // family index or fail the statement, never silently scan.
            families: run(
                batch(
                    "families",
                    "expires_at <= ?2 OR NOT EXISTS (SELECT 1 FROM tokens t INDEXED BY tokens_family WHERE t.tenant_id = families.tenant_id AND t.family_id = families.id AND t.expires_at > ?2)",
                ),
                now,
            )
            .await?,
            tokens: run(batch("tokens", "expires_at <= ?2"), now).await?,
            sessions: run(batch("sessions", "expires_at <= ?2"), now).await?,
            interactions: run(batch("interactions", "expires_at <= ?2"), now).await?,
            attempts: run(batch("login_attempts", "window_start <= ?2"), attempts_before).await?,
            personal_tokens: run(batch("personal_tokens", "expires_at <= ?2 OR revoked_at <= ?2"), pat_before).await?,
        })
    }

    async fn count_rows(&self, tenant: TenantId) -> StoreResult<RowCounts> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM codes WHERE tenant_id = ?1) AS codes,
                    (SELECT COUNT(*) FROM tokens WHERE tenant_id = ?1) AS tokens,
                    (SELECT COUNT(*) FROM families WHERE tenant_id = ?1) AS families,
                    (SELECT COUNT(*) FROM sessions WHERE tenant_id = ?1) AS sessions,
                    (SELECT COUNT(*) FROM interactions WHERE tenant_id = ?1) AS interactions",
        )
        .bind(tenant.0.to_string())
        .fetch_one(&self.readers)
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

/// Reads one column as a UUID stored as text.
fn uuid_col(row: &sqlx::sqlite::SqliteRow, col: &str) -> StoreResult<Uuid> {
    let s: String = row.try_get(col).map_err(fault)?;
    Uuid::from_str(&s).map_err(|_| StoreError::Corrupt(format!("{col} is not a UUID")))
}
