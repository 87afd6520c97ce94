//! The state every handler receives: no globals, everything travels in here.

use crate::config::Config;
use crate::keys::Keys;
use crate::runtime::Runtime;
use latchkey_core::model::{Tenant, TenantId};
use latchkey_core::secret::SecretHasher;
use latchkey_core::UnixTime;
use latchkey_store::Store;
use std::sync::Arc;

/// What the demo mode shows on its callback page.
#[derive(Clone)]
pub struct DemoInfo {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
}

impl std::fmt::Debug for DemoInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoInfo").field("client_id", &self.client_id).field("redirect_uri", &self.redirect_uri).finish_non_exhaustive()
    }
}

pub struct Inner {
    pub rt: Runtime,
    pub config: Config,
    /// The issuer identifier, exactly as in the discovery document (RFC 8414 §2).
    pub issuer: String,
    pub keys: Keys,
    /// Pre-serialized discovery documents: no work per request.
    pub openid_configuration: String,
    pub oauth_metadata: String,
    /// Cookies get `Secure` when the issuer is https.
    pub secure_cookies: bool,
    /// The issuer's path ("" or "/sandbox"): the tenant's own URLs start with it.
    pub base_path: String,
    /// Appended to cookie names, so that tenants on one host never overwrite each other's.
    pub cookie_suffix: String,
    /// Where passwords are checked (threads with their own Argon2 memory).
    pub passwords: crate::passwords::PasswordChecker,
    /// Client secrets locked out on this node (docs/security.md TE-04).
    pub client_locks: crate::auth::ClientLocks,
    pub demo: Option<DemoInfo>,
}

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn store(&self) -> &dyn Store {
        self.rt.store.as_ref()
    }

    pub fn tenant(&self) -> &Tenant {
        &self.rt.tenant
    }

    pub fn tenant_id(&self) -> TenantId {
        self.rt.tenant.id
    }

    pub fn hasher(&self) -> &SecretHasher {
        &self.rt.hasher
    }

    pub fn now(&self) -> UnixTime {
        self.rt.now()
    }

    /// A new token family id. Families and their tokens are written at the highest rate of
    /// any row, and their ids key the families table and the tokens' family index: a
    /// time-ordered UUIDv7 (RFC 9562 §5.7) puts each new entry at the end of those B-trees,
    /// where a random v4 would dirty a random page of each for every token (a WAL frame and
    /// database growth per index). The id is never shown to anyone, so its timestamp leaks
    /// nothing; ids that act as capabilities stay random v4.
    pub fn new_family_id(&self) -> uuid::Uuid {
        uuid::Uuid::now_v7()
    }

    /// The lifetimes in force for a client: the server's, with the client's overrides.
    pub fn lifetimes_for(&self, client: &latchkey_core::model::Client) -> latchkey_core::grant::Lifetimes {
        client.token_settings.lifetimes(self.config.lifetimes)
    }

    pub fn refresh_policy_for(&self, client: &latchkey_core::model::Client) -> latchkey_core::grant::RefreshPolicy {
        client.token_settings.refresh_policy(self.config.refresh_policy)
    }

    /// The name of a cookie of this tenant.
    pub fn cookie_name(&self, base: &str) -> String {
        format!("{base}{}", self.cookie_suffix)
    }

    /// A path of this tenant (its issuer's path, then `path`).
    pub fn path(&self, path: &str) -> String {
        format!("{}{path}", self.base_path)
    }

    /// The tenant's name as its pages show it: the product's for the default tenant.
    pub fn site_name(&self) -> &str {
        match self.tenant().name.as_str() {
            latchkey_core::model::DEFAULT_TENANT => "Latchkey",
            name => name,
        }
    }

    /// The origin (scheme, host, port) of the issuer, for `Origin` checks.
    pub fn issuer_origin(&self) -> &str {
        let after_scheme = self.issuer.find("://").map(|i| i + 3).unwrap_or(0);
        match self.issuer[after_scheme..].find('/') {
            Some(i) => &self.issuer[..after_scheme + i],
            None => &self.issuer,
        }
    }
}
