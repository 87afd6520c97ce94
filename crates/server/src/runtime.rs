//! What the server and the admin commands share: the opened store, the master key and the
//! keys derived from it, the clock, and the tenant's signing keys.

use crate::config::{Config, Database, MasterKeySource};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use latchkey_core::jose;
use latchkey_core::model::{Tenant, DEFAULT_TENANT};
use latchkey_core::secret::{Secret, SecretHasher, SecretKind, ORDER_LEN};
use latchkey_core::UnixTime;
use latchkey_store::{SharedStore, StoreError};
use latchkey_store_postgres::PgStore;
use latchkey_store_sqlite::SqliteStore;
use rand::{CryptoRng, RngCore};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    // A cause is the `source()`, never also in the message (see `ConfigError`).
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("master key: {0}")]
    MasterKey(String),
    #[error("signing keys")]
    Keys(#[from] jose::JoseError),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot listen on {addr}")]
    Bind { addr: String, source: std::io::Error },
}

/// The source of "now". Production reads the system clock; tests turn a manual one.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> UnixTime;
}

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    // The one place that reads the system clock (clippy.toml bans it elsewhere).
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> UnixTime {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// A new secret of `kind`, its random part from `rng`. It starts with the first bytes of a
/// UUIDv7 (RFC 9562 §5.7: the Unix time in milliseconds, then a counter that keeps the ids of
/// one process increasing within a millisecond), so it is stored next to the secrets made just
/// before it (see `latchkey_core::secret`). These bytes only place the row: nothing reads them
/// as a time, so the test clock need not drive them.
pub fn new_secret(kind: SecretKind, rng: &mut (impl RngCore + CryptoRng)) -> Secret {
    let mut order = [0u8; ORDER_LEN];
    order.copy_from_slice(&uuid::Uuid::now_v7().as_bytes()[..ORDER_LEN]);
    Secret::generate(kind, order, rng)
}

/// The master key and what is derived from it. Never logged.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// Loads the key, creating the key file (mode 0600) with a fresh key on first use.
    pub fn load(source: &MasterKeySource) -> Result<Self, StartupError> {
        let decode = |text: &str| -> Result<Self, StartupError> {
            let bytes = STANDARD.decode(text.trim()).map_err(|_| StartupError::MasterKey("the master key is not base64".into()))?;
            let key: [u8; 32] = bytes.try_into().map_err(|_| StartupError::MasterKey("the master key must be 32 bytes".into()))?;
            Ok(Self(key))
        };
        match source {
            MasterKeySource::Inline(k) => decode(&k.0),
            MasterKeySource::File(path) => match std::fs::read_to_string(path) {
                Ok(text) => decode(&text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let mut key = [0u8; 32];
                    rand::rngs::OsRng.fill_bytes(&mut key);
                    write_private_file(path, &STANDARD.encode(key))
                        .map_err(|e| StartupError::MasterKey(format!("cannot create {}: {e}", path.display())))?;
                    tracing::info!(path = %path.display(), "created a new master key file; back it up with the database");
                    Ok(Self(key))
                }
                Err(e) => Err(StartupError::MasterKey(format!("cannot read {}: {e}", path.display()))),
            },
        }
    }

    fn derive(&self, purpose: &str) -> [u8; 32] {
        SecretHasher::new(self.0).derive_key(purpose.as_bytes())
    }

    /// The key under which secrets are hashed for storage.
    pub fn secret_hasher(&self) -> SecretHasher {
        SecretHasher::new(self.derive("latchkey secret hashing v1"))
    }

    /// The key that seals opaque access tokens (`core::sealed_token`).
    pub fn sealed_token_key(&self) -> [u8; 32] {
        self.derive("latchkey sealed access tokens v1")
    }

    /// A value that tells this key from another without revealing it: every node on one
    /// database must show the same.
    pub fn check_value(&self) -> String {
        STANDARD.encode(&self.derive("latchkey master key check v1")[..16])
    }

    /// The key that seals signing keys at rest.
    pub fn sealing_key(&self) -> [u8; 32] {
        self.derive("latchkey signing key sealing v1")
    }
}

#[cfg(unix)]
fn write_private_file(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private_file(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

/// The opened store, the default tenant and the keys every command needs.
#[derive(Clone)]
pub struct Runtime {
    pub store: SharedStore,
    pub tenant: Tenant,
    pub master: MasterKey,
    pub hasher: SecretHasher,
    /// `master.sealed_token_key()`, derived once.
    pub sealed_token_key: [u8; 32],
    pub clock: Arc<dyn Clock>,
}

impl Runtime {
    /// Opens (creating and migrating) the database and loads the master key.
    pub async fn open(config: &Config, clock: Arc<dyn Clock>) -> Result<Self, StartupError> {
        let master = MasterKey::load(&config.master_key)?;
        let store: SharedStore = match &config.database {
            Database::Sqlite(path) => Arc::new(SqliteStore::open(path, config.durability).await?),
            Database::Postgres(url) => Arc::new(PgStore::open(url).await?),
        };
        // A node with another master key would hash every secret differently and could not
        // open the signing keys: refuse to start rather than answer `invalid_grant` to all.
        let check = master.check_value();
        if store.ensure_setting("master_key_check", &check).await? != check {
            return Err(StartupError::MasterKey(format!(
                "this master key is not the one the database {} was set up with; every node must use the same key",
                config.database
            )));
        }
        let tenant = store.ensure_tenant(DEFAULT_TENANT, clock.now()).await?;
        Ok(Self { hasher: master.secret_hasher(), sealed_token_key: master.sealed_token_key(), store, tenant, master, clock })
    }

    /// [`Runtime::open`] for a database that must exist already: the admin commands work on a
    /// server's database, and a mistyped `--database` must say so, not make an empty one with a
    /// new master key. (`serve` and `migrate` create it.)
    pub async fn open_existing(config: &Config, clock: Arc<dyn Clock>) -> Result<Self, StartupError> {
        if let Database::Sqlite(path) = &config.database {
            if !path.exists() {
                return Err(StartupError::Invalid(format!(
                    "there is no database at {}: check --database, or create it with `latchkey serve` or `latchkey migrate`",
                    path.display()
                )));
            }
        }
        Self::open(config, clock).await
    }

    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// The same runtime for the tenant `name` (`None` or `default`: the default tenant).
    pub async fn for_tenant(self, name: Option<&str>) -> Result<Self, StartupError> {
        match name {
            None => Ok(self),
            Some(n) if n == DEFAULT_TENANT => Ok(self),
            Some(n) => {
                let tenant = self
                    .store
                    .find_tenant_by_name(n)
                    .await?
                    .ok_or_else(|| StartupError::Invalid(format!("there is no tenant named {n:?}")))?;
                Ok(Self { tenant, ..self })
            }
        }
    }
}
