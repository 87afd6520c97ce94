//! Tenants at request time: which tenant a request reaches (by the host and path of its
//! issuer), and the per-tenant state its handlers get.
//!
//! Architecture invariant: a handler sees exactly one tenant, through the `AppState` this
//! module hands it; every store call it makes carries that tenant's id, so a token, code,
//! session or client of one tenant is unknown in another.

use crate::config::Config;
use crate::handlers::discovery;
use crate::keys::Keys;
use crate::runtime::{Runtime, StartupError};
use crate::state::{AppState, DemoInfo, Inner};
use latchkey_core::model::Tenant;
use latchkey_core::UnixTime;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// How often a node rereads the tenants (new ones, changed issuers and settings).
const RELOAD_INTERVAL: i64 = 15;

/// What every tenant's state shares.
pub(crate) struct Shared {
    pub config: Config,
    /// The runtime of the default tenant; other tenants' runtimes are copies with their tenant.
    pub rt: Runtime,
    /// The default tenant's issuer: configured, or derived from the bound address.
    pub default_issuer: String,
    pub passwords: crate::passwords::PasswordChecker,
    pub demo: Option<DemoInfo>,
}

struct Route {
    /// `host[:port]`, lowercase.
    host: String,
    /// The issuer's path, without a trailing slash ("" for none).
    prefix: String,
    state: AppState,
}

struct Table {
    default: AppState,
    routes: Vec<Route>,
    /// Each tenant's row as last loaded, to rebuild only what changed.
    rows: HashMap<String, Tenant>,
    loaded_at: UnixTime,
}

pub(crate) struct Registry {
    shared: Shared,
    table: RwLock<Arc<Table>>,
    /// When the tenants were last reread for a request that may be for a new one.
    rechecked_at: std::sync::atomic::AtomicI64,
}

/// Splits an issuer into its lowercase `host[:port]` and its path without a trailing slash.
fn host_and_prefix(issuer: &str) -> Option<(String, String)> {
    let url = url::Url::parse(issuer).ok()?;
    let host = url.host_str()?.to_ascii_lowercase();
    let host = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    };
    Some((host, url.path().trim_end_matches('/').to_owned()))
}

impl Registry {
    pub(crate) async fn build(shared: Shared) -> Result<Self, StartupError> {
        let table = Self::load(&shared, None).await?;
        let rechecked_at = std::sync::atomic::AtomicI64::new(table.loaded_at);
        Ok(Self { shared, table: RwLock::new(Arc::new(table)), rechecked_at })
    }

    pub(crate) fn default_state(&self) -> AppState {
        self.snapshot().default.clone()
    }

    fn snapshot(&self) -> Arc<Table> {
        self.table.read().map(|t| Arc::clone(&t)).unwrap_or_else(|p| Arc::clone(&p.into_inner()))
    }

    /// Reads every tenant and builds the state of each, reusing the states of tenants whose row
    /// has not changed since `previous`.
    async fn load(shared: &Shared, previous: Option<&Table>) -> Result<Table, StartupError> {
        let store = &shared.rt.store;
        let mut routes = Vec::new();
        let mut rows = HashMap::new();
        let mut default = None;
        for tenant in store.list_tenants().await? {
            let reuse = previous.and_then(|p| {
                (p.rows.get(&tenant.name) == Some(&tenant))
                    .then(|| p.routes.iter().map(|r| &r.state).chain([&p.default]).find(|s| s.tenant().name == tenant.name).cloned())
            });
            let state = match reuse.flatten() {
                Some(s) => s,
                None => build_state(shared, tenant.clone()).await?,
            };
            if tenant.id == shared.rt.tenant.id {
                default = Some(state.clone());
            }
            if let Some((host, prefix)) = host_and_prefix(&state.issuer) {
                routes.push(Route { host, prefix, state });
            }
            rows.insert(tenant.name.clone(), tenant);
        }
        let default = match default {
            Some(d) => d,
            None => build_state(shared, shared.rt.tenant.clone()).await?,
        };
        // Longest path first, so /live/x never lands on a tenant at /.
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Ok(Table { default, routes, rows, loaded_at: shared.rt.now() })
    }

    /// The tenant a request reaches, how much of its path is the tenant's prefix, and whether a
    /// tenant's host matched (a request on no tenant's host goes to the default tenant), from
    /// the loaded tenants; `None` when they are due for a reload (every [`RELOAD_INTERVAL`]
    /// seconds), which [`resolve`](Self::resolve) does.
    pub(crate) fn resolve_loaded(&self, host: Option<&str>, path: &str) -> Option<(AppState, usize, bool)> {
        let table = self.snapshot();
        (!self.due(&table)).then(|| Self::find(&table, host, path))
    }

    /// [`resolve_loaded`](Self::resolve_loaded), reloading the tenants first if they are due,
    /// or, with `recheck`, if they were not reread within this second: a request that finds no
    /// tenant of its own may be for one created since the last load, on this node or another,
    /// and should find it at once rather than 15 s later. At most one reread a second.
    pub(crate) async fn resolve(&self, host: Option<&str>, path: &str, recheck: bool) -> (AppState, usize) {
        let mut table = self.snapshot();
        let now = self.shared.rt.now();
        let recheck = recheck && self.rechecked_at.fetch_max(now, std::sync::atomic::Ordering::Relaxed) < now;
        if recheck || self.due(&table) {
            match Self::load(&self.shared, Some(&table)).await {
                Ok(fresh) => {
                    let fresh = Arc::new(fresh);
                    if let Ok(mut w) = self.table.write() {
                        *w = Arc::clone(&fresh);
                    }
                    table = fresh;
                }
                Err(e) => tracing::warn!(error = %crate::error::error_chain(&e), "reloading the tenants failed; keeping the loaded ones"),
            }
        }
        let (state, prefix, _) = Self::find(&table, host, path);
        (state, prefix)
    }

    /// Whether `table` is due for a reload.
    fn due(&self, table: &Table) -> bool {
        self.shared.rt.now() >= table.loaded_at + RELOAD_INTERVAL
    }

    fn find(table: &Table, host: Option<&str>, path: &str) -> (AppState, usize, bool) {
        // Routes keep their hosts in lower case (`host_and_prefix`); a Host header may not.
        let host = host.unwrap_or_default();
        let hit = table.routes.iter().find(|r| {
            r.host.eq_ignore_ascii_case(host)
                && (r.prefix.is_empty() || path == r.prefix || path.strip_prefix(&r.prefix).is_some_and(|rest| rest.starts_with('/')))
        });
        match hit {
            Some(r) => (r.state.clone(), r.prefix.len(), true),
            None => (table.default.clone(), 0, false),
        }
    }

    /// Every tenant's state, for housekeeping.
    pub(crate) fn all(&self) -> Vec<AppState> {
        let table = self.snapshot();
        let mut all: Vec<AppState> = table.routes.iter().map(|r| r.state.clone()).collect();
        if !all.iter().any(|s| s.tenant_id() == table.default.tenant_id()) {
            all.push(table.default.clone());
        }
        all
    }
}

/// One tenant's state: its runtime, effective settings, keys and documents.
async fn build_state(shared: &Shared, tenant: Tenant) -> Result<AppState, StartupError> {
    let is_default = tenant.id == shared.rt.tenant.id;
    let issuer = match (&tenant.issuer, is_default) {
        (Some(i), _) => i.trim_end_matches('/').to_owned(),
        (None, true) => shared.default_issuer.clone(),
        (None, false) => return Err(StartupError::MasterKey(format!("tenant {} has no issuer", tenant.name))),
    };
    let base_path = host_and_prefix(&issuer).map(|(_, p)| p).unwrap_or_default();
    let config = shared.config.for_tenant(&tenant.settings);
    let rt = Runtime { tenant, ..shared.rt.clone() };
    let keys = Keys::open(&rt, config.id_token_alg, config.signing_key_publish_delay).await?;
    let meta = discovery::metadata(&issuer, &keys.algs_now());
    let meta = serde_json::to_string(&meta).map_err(latchkey_core::jose::JoseError::from)?;
    let cookie_suffix = if is_default { String::new() } else { format!("_{}", rt.tenant.name.replace('-', "_")) };
    Ok(AppState(Arc::new(Inner {
        openid_configuration: meta.clone(),
        oauth_metadata: meta,
        secure_cookies: issuer.starts_with("https://"),
        base_path,
        cookie_suffix,
        issuer,
        keys,
        rt,
        config,
        passwords: shared.passwords.clone(),
        client_locks: Default::default(),
        demo: if is_default { shared.demo.clone() } else { None },
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers_split_into_host_and_prefix() {
        assert_eq!(host_and_prefix("http://127.0.0.1:8080/sandbox/"), Some(("127.0.0.1:8080".into(), "/sandbox".into())));
        assert_eq!(host_and_prefix("https://Live.Example.com"), Some(("live.example.com".into(), String::new())));
        assert_eq!(host_and_prefix("not a url"), None);
    }
}
