//! Configuration: a serde `Settings` read from an optional TOML file, overlaid by `LATCHKEY_*`
//! environment variables and command-line flags, then validated into a `Config` before
//! anything binds.

use crate::serve::ConnLimits;
use latchkey_core::address::IpRange;
use latchkey_core::grant::{AccessTokenFormat, Lifetimes, RefreshPolicy};
use latchkey_core::guessing::GuessingPolicy;
use latchkey_core::model::SigningAlg;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // A cause is the error's `source()`, never also part of its message: whoever prints the
    // chain (anyhow at the CLI's exit, `error_chain` in logs) prints each cause once.
    #[error("cannot read the configuration file {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the configuration file {path} is invalid")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("invalid setting {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

fn invalid(name: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { name, reason: reason.into() }
}

/// Token lifetimes in seconds, as written in the file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LifetimeSettings {
    pub access_token: Option<i64>,
    pub refresh_token: Option<i64>,
    pub refresh_token_idle: Option<i64>,
    pub code: Option<i64>,
    pub id_token: Option<i64>,
}

/// Online guessing limits, as written in the file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GuessingSettings {
    pub account_budget: Option<i64>,
    pub account_total_budget: Option<i64>,
    pub client_budget: Option<i64>,
    pub window: Option<i64>,
    pub client_secret_budget: Option<i64>,
    pub client_secret_window: Option<i64>,
}

/// Connection limits (`serve.rs`), as written in the file: seconds, and a count.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub header_timeout: Option<u64>,
    pub body_timeout: Option<u64>,
    pub idle_timeout: Option<u64>,
    pub max_connections: Option<usize>,
}

/// Every setting, all optional; `None` means "the default".
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on, `127.0.0.1:8080` by default.
    pub listen: Option<String>,
    /// The issuer URL; derived from the listen address when absent.
    pub issuer: Option<String>,
    /// A SQLite file path or `sqlite:` URL (`latchkey.db` by default), or a `postgres://` URL
    /// that several nodes share.
    pub database: Option<String>,
    /// File holding the 32-byte master key (base64); `<database>.key` by default for SQLite.
    /// With PostgreSQL every node needs the same key, so it must be given.
    pub master_key_file: Option<PathBuf>,
    /// The master key itself (base64), for deployments that inject secrets by environment.
    pub master_key: Option<Redacted>,
    /// `RS256` (default), `ES256` or `EdDSA`.
    pub id_token_signing_alg: Option<String>,
    /// `full` (default: no acknowledged write is lost, even on power loss) or `normal`.
    pub durability: Option<String>,
    /// Refuse authorization requests without `state` (UltraCart's rule).
    pub require_state: Option<bool>,
    /// Accept revocation by `client_id` and `token` without the client's secret (UltraCart's
    /// SDKs send no secret). Off by default.
    pub revocation_without_client_auth: Option<bool>,
    /// `always` (default) or `offline_access`: issue refresh tokens only when that scope was
    /// granted (Yoco's rule).
    pub refresh_token_policy: Option<String>,
    /// Seconds during which an exact duplicate of a refresh request gets the first answer again
    /// (default 5; 0: every duplicate is reuse and revokes the session).
    pub refresh_token_replay_window: Option<i64>,
    /// Seconds between housekeeping passes (expired rows removed); 0 turns it off.
    pub housekeeping_interval: Option<u64>,
    /// Seconds a new signing key is published before it signs (default 120).
    pub signing_key_publish_delay: Option<i64>,
    /// Seconds between automatic signing key rotations (default 90 days); 0: only by hand.
    pub signing_key_rotation_interval: Option<i64>,
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For` names the client's
    /// address; without them the connection's peer is the client.
    pub trusted_proxies: Option<Vec<String>>,
    #[serde(default)]
    pub lifetimes: LifetimeSettings,
    #[serde(default)]
    pub guessing: GuessingSettings,
    #[serde(default)]
    pub http: HttpSettings,
}

macro_rules! overlay_fields {
    ($dst:expr, $src:expr, $($f:ident),*) => { $( if $src.$f.is_some() { $dst.$f = $src.$f; } )* };
}

impl Settings {
    /// Reads a TOML file; unknown keys are errors, so a typo never passes silently.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.into(), source })
    }

    /// Settings taken from `LATCHKEY_*` variables.
    pub fn from_env(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let mut s = Settings::default();
        for (k, v) in vars {
            let int = |name: &'static str| v.parse::<i64>().map_err(|_| invalid(name, format!("{v:?} is not a whole number of seconds")));
            match k.as_str() {
                "LATCHKEY_LISTEN" => s.listen = Some(v),
                "LATCHKEY_ISSUER" => s.issuer = Some(v),
                "LATCHKEY_DATABASE_URL" | "LATCHKEY_DATABASE" => s.database = Some(v),
                "LATCHKEY_MASTER_KEY_FILE" => s.master_key_file = Some(v.into()),
                "LATCHKEY_MASTER_KEY" => s.master_key = Some(Redacted(v)),
                "LATCHKEY_ID_TOKEN_SIGNING_ALG" => s.id_token_signing_alg = Some(v),
                "LATCHKEY_DURABILITY" => s.durability = Some(v),
                "LATCHKEY_REFRESH_TOKEN_POLICY" => s.refresh_token_policy = Some(v),
                "LATCHKEY_REFRESH_TOKEN_REPLAY_WINDOW" => {
                    s.refresh_token_replay_window = Some(int("LATCHKEY_REFRESH_TOKEN_REPLAY_WINDOW")?)
                }
                "LATCHKEY_HOUSEKEEPING_INTERVAL" => {
                    s.housekeeping_interval = Some(
                        v.parse().map_err(|_| invalid("LATCHKEY_HOUSEKEEPING_INTERVAL", format!("{v:?} is not a number of seconds")))?,
                    )
                }
                "LATCHKEY_SIGNING_KEY_PUBLISH_DELAY" => s.signing_key_publish_delay = Some(int("LATCHKEY_SIGNING_KEY_PUBLISH_DELAY")?),
                "LATCHKEY_SIGNING_KEY_ROTATION_INTERVAL" => {
                    s.signing_key_rotation_interval = Some(int("LATCHKEY_SIGNING_KEY_ROTATION_INTERVAL")?)
                }
                "LATCHKEY_TRUSTED_PROXIES" => {
                    s.trusted_proxies = Some(v.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect())
                }
                "LATCHKEY_REQUIRE_STATE" => s.require_state = Some(matches!(v.as_str(), "1" | "true" | "yes" | "on")),
                "LATCHKEY_REVOCATION_WITHOUT_CLIENT_AUTH" => {
                    s.revocation_without_client_auth = Some(matches!(v.as_str(), "1" | "true" | "yes" | "on"))
                }
                "LATCHKEY_ACCESS_TOKEN_LIFETIME" => s.lifetimes.access_token = Some(int("LATCHKEY_ACCESS_TOKEN_LIFETIME")?),
                "LATCHKEY_REFRESH_TOKEN_LIFETIME" => s.lifetimes.refresh_token = Some(int("LATCHKEY_REFRESH_TOKEN_LIFETIME")?),
                "LATCHKEY_REFRESH_TOKEN_IDLE_LIFETIME" => {
                    s.lifetimes.refresh_token_idle = Some(int("LATCHKEY_REFRESH_TOKEN_IDLE_LIFETIME")?)
                }
                "LATCHKEY_CODE_LIFETIME" => s.lifetimes.code = Some(int("LATCHKEY_CODE_LIFETIME")?),
                "LATCHKEY_ID_TOKEN_LIFETIME" => s.lifetimes.id_token = Some(int("LATCHKEY_ID_TOKEN_LIFETIME")?),
                _ => {}
            }
        }
        Ok(s)
    }

    /// Lays `top` over `self`: every setting `top` has wins.
    pub fn overlay(mut self, top: Settings) -> Settings {
        overlay_fields!(
            self,
            top,
            listen,
            issuer,
            database,
            master_key_file,
            master_key,
            id_token_signing_alg,
            durability,
            require_state,
            revocation_without_client_auth,
            refresh_token_policy,
            refresh_token_replay_window,
            housekeeping_interval,
            signing_key_publish_delay,
            signing_key_rotation_interval,
            trusted_proxies
        );
        overlay_fields!(self.lifetimes, top.lifetimes, access_token, refresh_token, refresh_token_idle, code, id_token);
        overlay_fields!(self.http, top.http, header_timeout, body_timeout, idle_timeout, max_connections);
        overlay_fields!(
            self.guessing,
            top.guessing,
            account_budget,
            account_total_budget,
            client_budget,
            window,
            client_secret_budget,
            client_secret_window
        );
        self
    }

    /// Validates the settings into a `Config`.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let listen = self.listen.unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        let issuer = match self.issuer {
            None => None,
            Some(i) => {
                let url = url::Url::parse(&i).map_err(|e| invalid("issuer", format!("{i:?} is not a URL: {e}")))?;
                // RFC 8414 §2: an https URL with no query or fragment (http is allowed for
                // loopback development).
                if !matches!(url.scheme(), "https" | "http") || url.query().is_some() || url.fragment().is_some() {
                    return Err(invalid("issuer", "must be an http(s) URL without query or fragment"));
                }
                Some(i.trim_end_matches('/').to_owned())
            }
        };
        let database = Database::parse(&self.database.unwrap_or_else(|| "latchkey.db".to_owned()))?;
        let master_key = match (self.master_key, self.master_key_file, &database) {
            (Some(k), _, _) => MasterKeySource::Inline(k),
            (None, Some(f), _) => MasterKeySource::File(f),
            (None, None, Database::Sqlite(path)) => {
                let mut f = path.clone().into_os_string();
                f.push(".key");
                MasterKeySource::File(f.into())
            }
            (None, None, Database::Postgres(_)) => {
                return Err(invalid(
                    "master_key",
                    "with PostgreSQL every node needs the same master key: set master_key_file or LATCHKEY_MASTER_KEY \
                     (32 random bytes, base64: `openssl rand -base64 32`)",
                ))
            }
        };
        let id_token_alg = match self.id_token_signing_alg {
            None => SigningAlg::default(),
            Some(alg) => {
                SigningAlg::parse(&alg).ok_or_else(|| invalid("id_token_signing_alg", format!("{alg:?}: use RS256, ES256 or EdDSA")))?
            }
        };
        let durability = match self.durability.as_deref() {
            None | Some("full") => latchkey_store_sqlite::Durability::Full,
            Some("normal") => latchkey_store_sqlite::Durability::Normal,
            Some(other) => return Err(invalid("durability", format!("{other:?}: use full or normal"))),
        };
        let d = Lifetimes::default();
        let lifetimes = Lifetimes {
            access_token: self.lifetimes.access_token.unwrap_or(d.access_token),
            refresh_token: self.lifetimes.refresh_token.unwrap_or(d.refresh_token),
            refresh_token_idle: self.lifetimes.refresh_token_idle.unwrap_or(d.refresh_token_idle),
            code: self.lifetimes.code.unwrap_or(d.code),
            id_token: self.lifetimes.id_token.unwrap_or(d.id_token),
        };
        lifetimes.validate().map_err(|r| invalid("lifetimes", r))?;
        // The delay must outlast a node's key reload and a relying party's JWKS cache.
        let signing_key_publish_delay = self.signing_key_publish_delay.unwrap_or(120);
        if !(0..=7 * 86_400).contains(&signing_key_publish_delay) {
            return Err(invalid("signing_key_publish_delay", "must be between 0 and 604800 seconds"));
        }
        let signing_key_rotation_interval = self.signing_key_rotation_interval.unwrap_or(90 * 86_400);
        if signing_key_rotation_interval != 0 && !(3_600..=3_650 * 86_400).contains(&signing_key_rotation_interval) {
            return Err(invalid("signing_key_rotation_interval", "must be 0 (by hand only) or between 3600 seconds and 10 years"));
        }
        let g = GuessingPolicy::default();
        let guessing = GuessingPolicy {
            account_budget: self.guessing.account_budget.unwrap_or(g.account_budget),
            account_total_budget: self.guessing.account_total_budget.unwrap_or(g.account_total_budget),
            client_budget: self.guessing.client_budget.unwrap_or(g.client_budget),
            window: self.guessing.window.unwrap_or(g.window),
            client_secret_budget: self.guessing.client_secret_budget.unwrap_or(g.client_secret_budget),
            client_secret_window: self.guessing.client_secret_window.unwrap_or(g.client_secret_window),
        };
        let budgets = [guessing.account_budget, guessing.account_total_budget, guessing.client_budget, guessing.client_secret_budget];
        if budgets.iter().any(|b| *b < 1) || ![guessing.window, guessing.client_secret_window].iter().all(|w| (1..=86_400).contains(w)) {
            return Err(invalid("guessing", "budgets must be at least 1 and the windows between 1 and 86400 seconds"));
        }
        let trusted_proxies = self
            .trusted_proxies
            .unwrap_or_default()
            .iter()
            .map(|p| p.parse::<IpRange>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|r| invalid("trusted_proxies", r))?;
        let refresh_policy = match self.refresh_token_policy.as_deref() {
            None => RefreshPolicy::default(),
            Some(p) => {
                RefreshPolicy::parse(p).ok_or_else(|| invalid("refresh_token_policy", format!("{p:?}: use always or offline_access")))?
            }
        };
        let d = ConnLimits::default();
        let secs = |v: Option<u64>, default: std::time::Duration| v.map_or(default, std::time::Duration::from_secs);
        let http = ConnLimits {
            header_timeout: secs(self.http.header_timeout, d.header_timeout),
            body_timeout: secs(self.http.body_timeout, d.body_timeout),
            idle_timeout: secs(self.http.idle_timeout, d.idle_timeout),
            max_connections: self.http.max_connections.unwrap_or(d.max_connections),
        };
        let timeouts = [http.header_timeout, http.body_timeout, http.idle_timeout];
        if timeouts.iter().any(|t| !(1..=3_600).contains(&t.as_secs())) || http.max_connections < 16 {
            return Err(invalid("http", "timeouts must be between 1 and 3600 seconds, and max_connections at least 16"));
        }
        let refresh_token_replay_window = self.refresh_token_replay_window.unwrap_or(DEFAULT_REPLAY_WINDOW);
        check_replay_window(refresh_token_replay_window).map_err(|r| invalid("refresh_token_replay_window", r))?;
        Ok(Config {
            listen,
            issuer,
            database,
            refresh_token_replay_window,
            master_key,
            id_token_alg,
            durability,
            lifetimes,
            refresh_policy,
            guessing,
            trusted_proxies,
            housekeeping_interval: self.housekeeping_interval.unwrap_or(60),
            signing_key_publish_delay,
            signing_key_rotation_interval,
            require_state: self.require_state.unwrap_or(false),
            revocation_without_client_auth: self.revocation_without_client_auth.unwrap_or(false),
            access_token_format: AccessTokenFormat::default(),
            http,
        })
    }
}

/// A secret setting: `Debug` never prints it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Redacted(pub String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where the master key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKeySource {
    /// A file, created with a fresh key on first use.
    File(PathBuf),
    /// Base64 of 32 bytes.
    Inline(Redacted),
}

/// The replay window a server has unless told otherwise: long enough for a client to retry a
/// request whose answer was lost, short enough that a stolen old token is soon worthless.
pub const DEFAULT_REPLAY_WINDOW: i64 = 5;

/// A replay window is 0 (off) to 5 minutes; a longer one would keep old refresh tokens alive.
pub fn check_replay_window(seconds: i64) -> Result<(), String> {
    if (0..=300).contains(&seconds) {
        Ok(())
    } else {
        Err(format!("must be between 0 (off) and 300 seconds, not {seconds}"))
    }
}

/// Where the data lives.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file, created on first use: one node.
    Sqlite(PathBuf),
    /// A PostgreSQL URL: any number of nodes.
    Postgres(String),
}

impl Database {
    /// A `postgres://` or `postgresql://` URL, or else a SQLite path (with or without `sqlite:`).
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            url::Url::parse(s).map_err(|e| invalid("database", format!("not a PostgreSQL URL: {e}")))?;
            return Ok(Self::Postgres(s.to_owned()));
        }
        let path = s.strip_prefix("sqlite://").or_else(|| s.strip_prefix("sqlite:")).unwrap_or(s);
        if path.is_empty() {
            return Err(invalid("database", "empty path"));
        }
        Ok(Self::Sqlite(PathBuf::from(path)))
    }
}

/// For logs and messages: the password of a URL is never shown.
impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "{}", p.display()),
            Self::Postgres(u) => match url::Url::parse(u) {
                Ok(mut url) => {
                    if url.password().is_some() {
                        let _ = url.set_password(Some("redacted"));
                    }
                    write!(f, "{url}")
                }
                Err(_) => f.write_str("postgres://<invalid>"),
            },
        }
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Database({self})")
    }
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    /// `None`: derived from the bound address (`http://ADDR`).
    pub issuer: Option<String>,
    pub database: Database,
    /// Seconds during which an exact duplicate refresh gets the same answer; 0: off.
    pub refresh_token_replay_window: i64,
    pub master_key: MasterKeySource,
    pub id_token_alg: SigningAlg,
    pub durability: latchkey_store_sqlite::Durability,
    pub lifetimes: Lifetimes,
    pub refresh_policy: RefreshPolicy,
    pub guessing: GuessingPolicy,
    /// Proxies whose `X-Forwarded-For` is believed (docs/security.md TE-04 counts per address).
    pub trusted_proxies: Vec<IpRange>,
    /// Seconds between housekeeping passes; 0: never.
    pub housekeeping_interval: u64,
    pub signing_key_publish_delay: i64,
    /// 0: rotate only by hand.
    pub signing_key_rotation_interval: i64,
    pub require_state: bool,
    pub revocation_without_client_auth: bool,
    /// The access token format of clients that name none.
    pub access_token_format: AccessTokenFormat,
    /// Timeouts and the connection bound (`serve.rs`).
    pub http: ConnLimits,
}

impl Config {
    /// This configuration with a tenant's settings laid over it.
    pub fn for_tenant(&self, t: &latchkey_core::model::TenantSettings) -> Config {
        Config {
            lifetimes: t.tokens.lifetimes(self.lifetimes),
            refresh_policy: t.tokens.refresh_policy(self.refresh_policy),
            access_token_format: t.tokens.access_token_format.unwrap_or(self.access_token_format),
            require_state: t.require_state.unwrap_or(self.require_state),
            revocation_without_client_auth: t.revocation_without_client_auth.unwrap_or(self.revocation_without_client_auth),
            refresh_token_replay_window: t.refresh_token_replay_window.unwrap_or(self.refresh_token_replay_window),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_nothing() {
        let c = Settings::default().into_config().unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert_eq!(c.database, Database::Sqlite("latchkey.db".into()));
        assert_eq!(c.refresh_token_replay_window, DEFAULT_REPLAY_WINDOW);
        assert_eq!(c.master_key, MasterKeySource::File("latchkey.db.key".into()));
        assert_eq!(c.id_token_alg, SigningAlg::RS256);
        assert_eq!(c.issuer, None);
    }

    #[test]
    fn layers_override_in_order() {
        let file: Settings = toml::from_str("listen = \"0.0.0.0:9000\"\ndatabase = \"a.db\"\n[lifetimes]\naccess_token = 1295999").unwrap();
        let env = Settings::from_env([("LATCHKEY_DATABASE_URL".to_owned(), "sqlite:b.db".to_owned())]).unwrap();
        let flags = Settings { listen: Some("127.0.0.1:1".into()), ..Default::default() };
        let c = file.overlay(env).overlay(flags).into_config().unwrap();
        assert_eq!(c.listen, "127.0.0.1:1");
        assert_eq!(c.database, Database::Sqlite("b.db".into()));
        assert_eq!(c.lifetimes.access_token, 1_295_999);
    }

    #[test]
    fn postgres_urls_select_postgres_and_hide_their_password() {
        let s = Settings {
            database: Some("postgres://lk:s3cret@db.example:5432/latchkey".into()),
            master_key: Some(Redacted("c2VjcmV0LWtleQ==".into())),
            ..Default::default()
        };
        let c = s.into_config().unwrap();
        assert!(matches!(c.database, Database::Postgres(_)));
        assert!(!c.database.to_string().contains("s3cret"), "{}", c.database);
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(Database::parse("sqlite:x.db").unwrap(), Database::Sqlite("x.db".into()));
    }

    #[test]
    fn the_master_key_never_reaches_debug_output() {
        let s = Settings::from_env([("LATCHKEY_MASTER_KEY".to_owned(), "c2VjcmV0LWtleQ==".to_owned())]).unwrap();
        assert!(!format!("{s:?}").contains("c2VjcmV0"));
        assert!(!format!("{:?}", s.into_config().unwrap()).contains("c2VjcmV0"));
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(toml::from_str::<Settings>("lisen = \"x\"").is_err());
        for s in [
            Settings { issuer: Some("not a url".into()), ..Default::default() },
            Settings { issuer: Some("https://a.example/?q".into()), ..Default::default() },
            Settings { id_token_signing_alg: Some("HS256".into()), ..Default::default() },
            Settings { lifetimes: LifetimeSettings { access_token: Some(3_600_000_000), ..Default::default() }, ..Default::default() },
            Settings { refresh_token_replay_window: Some(-1), ..Default::default() },
            Settings { refresh_token_replay_window: Some(3_600), ..Default::default() },
            // Nodes on one PostgreSQL database must share a master key, so none is made up.
            Settings { database: Some("postgres://db.example/latchkey".into()), ..Default::default() },
        ] {
            assert!(s.into_config().is_err());
        }
        assert!(Settings::from_env([("LATCHKEY_CODE_LIFETIME".to_owned(), "ten".to_owned())]).is_err());
    }
}
