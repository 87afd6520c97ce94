//! Signing keys: generation, rotation, and the ring the server signs and publishes with.
//!
//! A key is published in the JWKS from the moment it is stored, but signs only from its
//! `activates_at`, so relying parties that cache the JWKS have it before they see a token it
//! signed. A superseded key stays published until every token it signed has expired
//! (OpenID Connect Core §10.1.1; docs/security.md OI-03). Every node reloads the ring from the
//! database every few seconds, so a rotation made anywhere (CLI, another node, the schedule)
//! reaches all of them before the new key activates.

use crate::runtime::{Runtime, StartupError};
use latchkey_core::jose::{self, KeyPair};
use latchkey_core::model::{SigningAlg, SigningKeyRecord};
use latchkey_core::UnixTime;
use latchkey_proto::Jwks;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// How often a node rereads the keys.
pub const RELOAD_INTERVAL: i64 = 15;
/// Clock skew allowed to relying parties when a key retires.
const SKEW: i64 = 300;
/// How long a request waits for a new tenant's first key before it goes on without one (and
/// fails as with no key); the key takes well under a second unless the database is down.
const FIRST_KEY_WAIT: Duration = Duration::from_secs(30);

/// The keys as loaded at one moment: parsed once, used for many signatures.
pub struct KeyRing {
    /// The configured algorithm, preferred for signing.
    alg: SigningAlg,
    /// Published keys, newest first, with their activation time.
    signers: Vec<(UnixTime, KeyPair)>,
    pub jwks_json: String,
    loaded_at: UnixTime,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").field("signers", &self.signers.len()).field("loaded_at", &self.loaded_at).finish()
    }
}

impl KeyRing {
    /// A ring with no key yet: a new tenant's, while its first key is being made.
    fn empty(alg: SigningAlg, now: UnixTime) -> Self {
        let jwks_json = serde_json::to_string(&Jwks::default()).unwrap_or_else(|_| r#"{"keys":[]}"#.into());
        Self { alg, signers: Vec::new(), jwks_json, loaded_at: now }
    }

    async fn load(rt: &Runtime, alg: SigningAlg) -> Result<Self, StartupError> {
        let now = rt.now();
        let sealing = rt.master.sealing_key();
        let records = rt.store.list_signing_keys(rt.tenant.id).await?;
        let mut jwks = Jwks::default();
        let mut signers = Vec::new();
        for r in records.iter().filter(|r| r.retires_at.is_none_or(|t| t > now)) {
            jwks.keys.push(serde_json::from_str(&r.public_jwk).map_err(jose::JoseError::from)?);
            // A superseded key still signs until its successor activates (the successor is
            // newer, so `signer` prefers it from then on).
            let private = jose::open(&sealing, r.kid.as_bytes(), &r.sealed_private_key)?;
            signers.push((r.activates_at, KeyPair::from_private_bytes(r.alg, &private, &jose::SystemRandom::new())?));
        }
        let jwks_json = serde_json::to_string(&jwks).map_err(jose::JoseError::from)?;
        Ok(Self { alg, signers, jwks_json, loaded_at: now })
    }

    /// The key that signs now: the newest active key of the configured algorithm or, while a
    /// new algorithm's first key waits out its publish delay, the newest active key of any.
    /// Never a key that is not yet active: relying parties may not have it.
    pub fn signer(&self, now: UnixTime) -> Option<&KeyPair> {
        let active = || self.signers.iter().filter(|(at, _)| *at <= now);
        active().find(|(_, k)| k.alg() == self.alg).or_else(|| active().next()).map(|(_, k)| k)
    }

    /// The claims of a JWT with `typ` that one of the published keys signed (see
    /// [`jose::verify_jwt`]); `None` for anything else.
    pub fn verify<T: serde::de::DeserializeOwned>(&self, token: &str, typ: &str) -> Option<T> {
        jose::verify_jwt(token, typ, self.signers.iter().map(|(_, k)| k))
    }

    /// The algorithms the current keys sign with, the configured one first.
    pub fn algs(&self) -> Vec<SigningAlg> {
        let mut algs = vec![self.alg];
        for (_, k) in &self.signers {
            if !algs.contains(&k.alg()) {
                algs.push(k.alg());
            }
        }
        algs
    }
}

/// The current ring, swapped atomically when reloaded.
pub struct Keys {
    alg: SigningAlg,
    ring: Arc<RwLock<Arc<KeyRing>>>,
    /// `false` while a new tenant's first key is being made (`Keys::open`); what needs the
    /// keys waits for `true`.
    ready: watch::Receiver<bool>,
}

impl Keys {
    /// Loads the keys, creating a key for `alg` if the tenant has no current one. The very first
    /// key signs at once (nobody can have cached an older JWKS); a key added to an existing set
    /// (a new algorithm) waits `publish_delay`, while the old keys go on signing.
    ///
    /// A new tenant's first key is made in the background: an RSA key takes 50 to 150 ms, and
    /// the server answers meanwhile (health, discovery, pages); whatever needs the keys (a
    /// token, the JWKS) waits for it in `current`.
    pub async fn open(rt: &Runtime, alg: SigningAlg, publish_delay: i64) -> Result<Self, StartupError> {
        let records = rt.store.list_signing_keys(rt.tenant.id).await?;
        if records.is_empty() {
            let ring = Arc::new(RwLock::new(Arc::new(KeyRing::empty(alg, rt.now()))));
            let (done, ready) = watch::channel(false);
            tokio::spawn(first_key(rt.clone(), alg, Arc::clone(&ring), done));
            return Ok(Self { alg, ring, ready });
        }
        if !records.iter().any(|r| r.alg == alg && r.retires_at.is_none()) {
            let now = rt.now();
            let record = generate(rt, alg, now + publish_delay, Some(bootstrap_period(now))).await?;
            if rt.store.rotate_signing_key(&record, now).await? {
                tracing::info!(kid = %record.kid, alg = alg.as_str(), "generated a signing key");
            }
        }
        let ring = KeyRing::load(rt, alg).await?;
        if ring.signer(rt.now()).is_none() {
            return Err(StartupError::MasterKey("no usable signing key for the configured algorithm".into()));
        }
        Ok(Self { alg, ring: Arc::new(RwLock::new(Arc::new(ring))), ready: watch::channel(true).1 })
    }

    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    /// The algorithms of the ring as it is now, without waiting for a first key (its
    /// algorithm is the configured one, which comes first in any case).
    pub fn algs_now(&self) -> Vec<SigningAlg> {
        self.ring.read().map(|r| r.algs()).unwrap_or_else(|p| p.into_inner().algs())
    }

    /// The ring, reloaded from the database when it is older than `RELOAD_INTERVAL`. A failed
    /// reload keeps the old ring (and says so in the log). While a new tenant's first key is
    /// being made, waits for it (at most `FIRST_KEY_WAIT`).
    pub async fn current(&self, rt: &Runtime) -> Arc<KeyRing> {
        if !*self.ready.borrow() {
            let mut ready = self.ready.clone();
            let _ = tokio::time::timeout(FIRST_KEY_WAIT, ready.wait_for(|r| *r)).await;
        }
        let ring = self.ring.read().map(|r| Arc::clone(&r)).unwrap_or_else(|p| Arc::clone(&p.into_inner()));
        if rt.now() < ring.loaded_at + RELOAD_INTERVAL {
            return ring;
        }
        match KeyRing::load(rt, self.alg).await {
            Ok(fresh) if fresh.signer(rt.now()).is_some() => {
                let fresh = Arc::new(fresh);
                if let Ok(mut w) = self.ring.write() {
                    *w = Arc::clone(&fresh);
                }
                fresh
            }
            Ok(_) => ring,
            Err(e) => {
                tracing::warn!(error = %crate::error::error_chain(&e), "reloading the signing keys failed; keeping the loaded ones");
                ring
            }
        }
    }
}

/// Nodes starting together on a new database must not each make a key (each would sign with
/// one the others do not publish yet): a first key takes a negative "bootstrap" period, unique
/// per hour, so one node wins and the others load its key.
fn bootstrap_period(now: UnixTime) -> i64 {
    -1 - now / 3600
}

/// Makes a new tenant's first key, which signs at once (nobody can have cached an older JWKS),
/// and puts the ring in place; tries again every second while the database refuses.
async fn first_key(rt: Runtime, alg: SigningAlg, ring: Arc<RwLock<Arc<KeyRing>>>, done: watch::Sender<bool>) {
    loop {
        let made = async {
            let now = rt.now();
            let record = generate(&rt, alg, now, Some(bootstrap_period(now))).await?;
            if rt.store.rotate_signing_key(&record, now).await? {
                tracing::info!(kid = %record.kid, alg = alg.as_str(), "generated a signing key");
            }
            KeyRing::load(&rt, alg).await
        };
        match made.await {
            Ok(loaded) if loaded.signer(rt.now()).is_some() => {
                if let Ok(mut w) = ring.write() {
                    *w = Arc::new(loaded);
                }
                let _ = done.send(true);
                return;
            }
            Ok(_) => tracing::error!(tenant = %rt.tenant.name, "no usable signing key after making the first one; trying again"),
            Err(e) => {
                tracing::error!(tenant = %rt.tenant.name, error = %crate::error::error_chain(&e), "making the first signing key failed; trying again")
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Generates a key and seals it, on the blocking pool (an RSA key takes a while).
async fn generate(rt: &Runtime, alg: SigningAlg, activates_at: UnixTime, period: Option<i64>) -> Result<SigningKeyRecord, StartupError> {
    let (tenant, now, sealing) = (rt.tenant.id, rt.now(), rt.master.sealing_key());
    tokio::task::spawn_blocking(move || -> Result<_, StartupError> {
        let mut rng = rand::rngs::OsRng;
        let key = KeyPair::generate(alg, &mut rng, &jose::SystemRandom::new())?;
        let sealed = jose::seal(&sealing, key.kid().as_bytes(), &key.private_bytes()?, &mut rng)?;
        let public_jwk = serde_json::to_string(key.public_jwk()).map_err(jose::JoseError::from)?;
        Ok(SigningKeyRecord {
            kid: key.kid().to_owned(),
            tenant,
            alg,
            sealed_private_key: sealed,
            public_jwk,
            created_at: now,
            activates_at,
            retires_at: None,
            period,
        })
    })
    .await
    .map_err(|e| StartupError::MasterKey(format!("key generation task failed: {e}")))?
}

/// How rotations are timed.
#[derive(Debug, Clone, Copy)]
pub struct RotationPolicy {
    /// Seconds between creation and first signature.
    pub publish_delay: i64,
    /// The longest lifetime of anything signed (id_tokens, JWT access tokens).
    pub max_token_lifetime: i64,
}

/// Adds a new key for `alg`; the keys current until now retire once everything they can
/// still sign has expired. `None` when another node rotated for the same `period` first.
pub async fn rotate(
    rt: &Runtime,
    alg: SigningAlg,
    policy: RotationPolicy,
    period: Option<i64>,
) -> Result<Option<SigningKeyRecord>, StartupError> {
    let activates_at = rt.now() + policy.publish_delay;
    let record = generate(rt, alg, activates_at, period).await?;
    let retire_at = activates_at + policy.max_token_lifetime + SKEW;
    if rt.store.rotate_signing_key(&record, retire_at).await? {
        tracing::info!(kid = %record.kid, alg = alg.as_str(), activates_at, "rotated the signing key");
        Ok(Some(record))
    } else {
        Ok(None)
    }
}

/// Rotates when the newest current key of `alg` is older than `interval` seconds. The period
/// number makes the rotation happen once per period, whichever node gets there first.
pub async fn rotate_if_due(
    rt: &Runtime,
    alg: SigningAlg,
    interval: i64,
    policy: RotationPolicy,
) -> Result<Option<SigningKeyRecord>, StartupError> {
    if interval <= 0 {
        return Ok(None);
    }
    let now = rt.now();
    let newest = rt.store.list_signing_keys(rt.tenant.id).await?.into_iter().filter(|k| k.alg == alg).map(|k| k.created_at).max();
    match newest {
        Some(created) if created + interval > now => Ok(None),
        _ => rotate(rt, alg, policy, Some(now / interval)).await,
    }
}

/// The rotation timing for this server: its publish delay, and the longest lifetime of any
/// signed token, the clients' own overrides included.
pub async fn rotation_policy(rt: &Runtime, config: &crate::config::Config) -> Result<RotationPolicy, StartupError> {
    let base = config.lifetimes;
    let mut longest = base.id_token.max(base.access_token);
    for c in rt.store.list_clients(rt.tenant.id).await? {
        let l = c.token_settings.lifetimes(base);
        longest = longest.max(l.id_token).max(l.access_token);
    }
    Ok(RotationPolicy { publish_delay: config.signing_key_publish_delay, max_token_lifetime: longest })
}
