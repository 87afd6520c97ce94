//! What the server and the admin commands share: the opened store, the master key and the
//! keys derived from it, the clock, and the tenant's signing keys.

use crate::config::{Config, MasterKeySource};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use latchkey_core::jose::{self, KeyPair};
use latchkey_core::model::{SigningAlg, SigningKeyRecord, Tenant, DEFAULT_TENANT};
use latchkey_core::secret::SecretHasher;
use latchkey_core::UnixTime;
use latchkey_proto::Jwks;
use latchkey_store::{SharedStore, StoreError};
use latchkey_store_sqlite::SqliteStore;
use rand::RngCore;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("master key: {0}")]
    MasterKey(String),
    #[error("signing keys: {0}")]
    Keys(#[from] jose::JoseError),
    #[error("cannot listen on {addr}: {source}")]
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
    pub clock: Arc<dyn Clock>,
}

impl Runtime {
    /// Opens (creating and migrating) the database and loads the master key.
    pub async fn open(config: &Config, clock: Arc<dyn Clock>) -> Result<Self, StartupError> {
        let master = MasterKey::load(&config.master_key)?;
        let store: SharedStore = Arc::new(SqliteStore::open(&config.database, config.durability).await?);
        let tenant = store.ensure_tenant(DEFAULT_TENANT, clock.now()).await?;
        Ok(Self { hasher: master.secret_hasher(), store, tenant, master, clock })
    }

    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }
}

/// The tenant's signing keys, parsed once: the key that signs, and the published set.
#[derive(Debug)]
pub struct KeyRing {
    pub active: KeyPair,
    pub jwks: Jwks,
}

impl KeyRing {
    /// Loads the tenant's keys, generating and storing one for `alg` if none exists yet.
    pub async fn load_or_create(rt: &Runtime, alg: SigningAlg) -> Result<Self, StartupError> {
        let sealing = rt.master.sealing_key();
        let mut records = rt.store.list_signing_keys(rt.tenant.id).await?;
        if !records.iter().any(|r| r.alg == alg) {
            let (tenant, now) = (rt.tenant.id, rt.now());
            let record = tokio::task::spawn_blocking(move || -> Result<_, StartupError> {
                let mut rng = rand::rngs::OsRng;
                let key = KeyPair::generate(alg, &mut rng)?;
                let sealed = jose::seal(&sealing, key.kid().as_bytes(), &key.private_bytes()?, &mut rng)?;
                let public_jwk = serde_json::to_string(key.public_jwk()).map_err(jose::JoseError::from)?;
                Ok(SigningKeyRecord { kid: key.kid().to_owned(), tenant, alg, sealed_private_key: sealed, public_jwk, created_at: now })
            })
            .await
            .map_err(|e| StartupError::MasterKey(format!("key generation task failed: {e}")))??;
            rt.store.insert_signing_key(&record).await?;
            tracing::info!(kid = %record.kid, alg = alg.as_str(), "generated a signing key");
            records = rt.store.list_signing_keys(rt.tenant.id).await?;
        }
        let mut jwks = Jwks::default();
        let mut active = None;
        for r in &records {
            let jwk = serde_json::from_str(&r.public_jwk).map_err(jose::JoseError::from)?;
            jwks.keys.push(jwk);
            if active.is_none() && r.alg == alg {
                let private = jose::open(&sealing, r.kid.as_bytes(), &r.sealed_private_key)?;
                active = Some(KeyPair::from_private_bytes(r.alg, &private)?);
            }
        }
        let active = active.ok_or_else(|| StartupError::MasterKey("no signing key for the configured algorithm".into()))?;
        Ok(Self { active, jwks })
    }
}
