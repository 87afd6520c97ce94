//! node-oidc-provider as the benchmark's peer: `bench/peer/server.js` (oidc-provider configured
//! like Latchkey, persisting to SQLite) installed with npm into a scratch directory beside the
//! build, and started on a fresh database under the same pinning as Latchkey.

use crate::http::{Browser, Endpoint};
use crate::process;
use crate::target::{sqlite_bytes_in_use, ClientCreds, CodeClient, Paths, Seed, Started, Stopped, Target};
use anyhow::{bail, Context, Result};
use async_trait::async_trait;
use latchkey_core::model::SigningAlg;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;
use tempfile::TempDir;
use tokio::process::{Child, Command};

pub(crate) const NAME: &str = "oidc-provider";
/// oidc-provider has no health check; its discovery document is what it always serves.
const DISCOVERY: &str = "/.well-known/openid-configuration";
/// The client of `server.js` with opaque access tokens; it also runs the code flow and
/// introspects (oidc-provider lets a client introspect its own tokens).
const CLIENT: (&str, &str) = ("bench", "bench-secret");
/// The client of `server.js` with ES256 JWT access tokens (through its resource indicator).
const JWT_CLIENT: (&str, &str) = ("bench-jwt", "bench-jwt-secret");
/// The redirect URI registered for both clients in `server.js`.
const REDIRECT_URI: &str = "http://127.0.0.1:9999/cb";
/// `api:read` is the scope of the opaque resource server, so the code flow's access token is
/// an opaque one that can be introspected, as Latchkey's is.
const SCOPE: &str = "openid offline_access api:read";
/// The account `server.js` signs in at every interaction.
const ACCOUNT: &str = "bench-user";
/// The redirects sign-in follows on the server: the interaction page, then back to the
/// authorization endpoint (two), with room to spare.
const MAX_SIGN_IN_REDIRECTS: usize = 8;
/// Written after a successful `npm install`: the `package.json` it installed.
const STAMP: &str = ".installed-package.json";
/// The native part of better-sqlite3, which its install script builds (or downloads).
const BETTER_SQLITE3: &str = "node_modules/better-sqlite3/build/Release/better_sqlite3.node";
/// The headers of Debian's Node.js: node-gyp builds against them instead of downloading
/// them from nodejs.org.
const NODE_HEADERS: &str = "/usr/include/node/node.h";
const MISSING_NODE: &str = "the peer (oidc-provider) needs Node.js and npm: install the Debian packages nodejs and npm \
     (apt-get install nodejs npm)";

/// How durable the peer's SQLite commits are (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Synchronous {
    /// Latchkey's default: an acknowledged write survives a power loss.
    Full,
    /// The last commits may be lost on power loss (what the first figures used).
    Normal,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// The peer as installed in its scratch directory.
#[derive(Debug, Clone)]
pub(crate) struct Installed {
    pub(crate) dir: PathBuf,
    pub(crate) node: PathBuf,
    pub(crate) node_version: String,
}

/// Copies `bench/peer` (`source`: its `*.js` and `package.json`) into `scratch` and runs
/// `npm install` there when `node_modules` is missing or `package.json` changed since the last
/// successful install. The scratch directory lives under the build's target directory, so
/// `node_modules` never lands in the repository, and the install (a few minutes: better-sqlite3
/// builds from source when no prebuilt binary can be downloaded) is paid once.
pub(crate) fn install(source: &Path, scratch: &Path) -> Result<Installed> {
    let node = process::which("node").context(MISSING_NODE)?;
    let npm = process::which("npm").context(MISSING_NODE)?;
    let version = std::process::Command::new(&node).arg("--version").output().context("cannot run node --version")?;
    let node_version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    std::fs::create_dir_all(scratch).with_context(|| format!("cannot create {}", scratch.display()))?;
    for entry in std::fs::read_dir(source).with_context(|| format!("cannot read {}", source.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "js") {
            if let Some(name) = path.file_name() {
                std::fs::copy(&path, scratch.join(name)).with_context(|| format!("cannot copy {}", path.display()))?;
            }
        }
    }
    let package = std::fs::read(source.join("package.json")).with_context(|| format!("cannot read {}/package.json", source.display()))?;
    let stamp = scratch.join(STAMP);
    let up_to_date = scratch.join("node_modules").is_dir() && std::fs::read(&stamp).is_ok_and(|s| s == package);
    std::fs::write(scratch.join("package.json"), &package)?;
    if !up_to_date {
        let _ = std::fs::remove_file(&stamp);
        let log_path = scratch.join("npm-install.log");
        eprintln!(
            "installing the peer: npm install in {} (log: {}; better-sqlite3 may build from source, a few minutes)",
            scratch.display(),
            log_path.display()
        );
        let log = std::fs::File::create(&log_path)?;
        let mut cmd = std::process::Command::new(&npm);
        cmd.args(["install", "--no-audit", "--no-fund", "--foreground-scripts"]).current_dir(scratch);
        if Path::new(NODE_HEADERS).exists() {
            cmd.env("npm_config_nodedir", "/usr");
        }
        let status = cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).status().context("cannot run npm")?;
        if !status.success() {
            bail!(
                "npm install failed in {} ({status}); the end of {}:\n{}",
                scratch.display(),
                log_path.display(),
                process::tail(&log_path)
            );
        }
        if !scratch.join(BETTER_SQLITE3).exists() {
            bail!(
                "npm install did not build better-sqlite3 ({BETTER_SQLITE3} is missing: its install script was skipped or failed); see {}",
                log_path.display()
            );
        }
        std::fs::write(&stamp, &package)?;
    }
    Ok(Installed { dir: scratch.to_owned(), node, node_version })
}

pub(crate) struct PeerTarget {
    installed: Installed,
    synchronous: Synchronous,
    /// The algorithm of its id_tokens and JWT access tokens (server.js's SIGNING_ALG).
    alg: SigningAlg,
    /// Holds the database (`data/`) and the log; removed on drop.
    dir: TempDir,
    port: u16,
    /// `taskset -c CORES` for the server, when pinning works.
    pin: Option<String>,
    child: Option<Child>,
    /// Where to keep a copy of the server log when it stops.
    log_copy: Option<PathBuf>,
    /// What `server.js` printed when it listened: versions, SQLite driver and pragmas in effect.
    startup_line: Option<String>,
}

impl PeerTarget {
    pub(crate) fn new(
        installed: Installed,
        synchronous: Synchronous,
        alg: SigningAlg,
        pin: Option<String>,
        log_copy: Option<PathBuf>,
    ) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("latchkey-bench-peer-").tempdir()?;
        let port = process::free_port()?;
        Ok(Self { installed, synchronous, alg, dir, port, pin, child: None, log_copy, startup_line: None })
    }

    fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn database(&self) -> PathBuf {
        self.dir.path().join("data").join("oidc.sqlite")
    }

    /// Whether the Node.js major version is older than 22, which oidc-provider 9 asks for.
    fn old_node(&self) -> bool {
        let major = self.installed.node_version.trim_start_matches('v').split('.').next().and_then(|m| m.parse::<u32>().ok());
        major.is_some_and(|m| m < 22)
    }
}

#[async_trait]
impl Target for PeerTarget {
    fn name(&self) -> &str {
        NAME
    }

    fn backend(&self) -> &str {
        "sqlite"
    }

    fn signing_alg(&self) -> &str {
        self.alg.as_str()
    }

    async fn start(&mut self) -> Result<Started> {
        let log = std::fs::File::create(self.log_path())?;
        let mut node = Command::new(&self.installed.node);
        node.arg(self.installed.dir.join("server.js"))
            .current_dir(&self.installed.dir)
            .env("HOST", "127.0.0.1")
            .env("PORT", self.port.to_string())
            .env("DATA_DIR", self.dir.path().join("data"))
            .env("SQLITE_SYNCHRONOUS", self.synchronous.pragma())
            .env("SIGNING_ALG", self.alg.as_str())
            // No silent fallback to node:sqlite: the install checked that better-sqlite3 is built.
            .env("SQLITE_DRIVER", "better-sqlite3")
            .env("NODE_ENV", "production")
            .kill_on_drop(true);
        let mut cmd = process::server_command(node, self.pin.as_deref());
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let endpoint = Endpoint::new(self.addr(), &self.issuer());
        let spawned = Instant::now();
        let mut child = cmd.spawn().context("cannot start node server.js")?;
        let first_answer_ms =
            process::wait_for_first_answer(&mut child, &endpoint, DISCOVERY, spawned, &self.log_path()).await.context("node server.js")?;
        // CPU and memory are read from this pid: it must be node itself, which it is because
        // taskset execs the program it runs.
        let pid = child.id().context("the server exited")?;
        let exe = std::fs::canonicalize(format!("/proc/{pid}/exe")).with_context(|| format!("cannot read /proc/{pid}/exe"))?;
        let node = std::fs::canonicalize(&self.installed.node)?;
        if exe != node {
            bail!("the measured process {pid} is {}, not {}", exe.display(), node.display());
        }
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        self.startup_line = log.lines().find(|l| l.starts_with("oidc-provider ") && l.contains(" listening on ")).map(str::to_owned);
        self.child = Some(child);
        Ok(Started { first_answer_ms, probe: DISCOVERY })
    }

    async fn seed(&mut self) -> Result<Seed> {
        // The clients and the account are fixed in server.js.
        let opaque = ClientCreds::new(CLIENT.0, CLIENT.1);
        Ok(Seed {
            endpoint: Endpoint::new(self.addr(), &self.issuer()),
            paths: Paths {
                authorize: "/auth".into(),
                token: "/token".into(),
                introspect: "/token/introspection".into(),
                jwks: "/jwks".into(),
                discovery: DISCOVERY.into(),
            },
            email: ACCOUNT.into(),
            password: String::new(),
            cc_opaque: Some(opaque.clone()),
            cc_jwt: Some(ClientCreds::new(JWT_CLIENT.0, JWT_CLIENT.1)),
            introspector: Some(opaque.clone()),
            code: Some(CodeClient {
                creds: opaque,
                redirect_uri: REDIRECT_URI.into(),
                scope: SCOPE.into(),
                // oidc-provider keeps offline_access (and so issues a refresh token, as Latchkey
                // does) only when the request asks for consent.
                authorize_params: vec![("prompt".into(), "consent".into())],
            }),
            // oidc-provider has no password grant.
            password_client: None,
        })
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    async fn storage_bytes(&self) -> Result<Option<u64>> {
        Ok(Some(sqlite_bytes_in_use(&self.database()).await?))
    }

    async fn sign_in(&self, browser: &mut Browser, authorize_path: &str, seed: &Seed) -> Result<String> {
        // GET /auth -> 303 /interaction/:uid (server.js signs the account in and grants what
        // was asked) -> 303 /auth/:uid -> 303 to the client with the code.
        let redirect_uri = seed.code.as_ref().map(|c| c.redirect_uri.as_str()).unwrap_or(REDIRECT_URI);
        let mut a = browser.get(authorize_path).await?;
        for _ in 0..MAX_SIGN_IN_REDIRECTS {
            if !a.is_redirection() {
                bail!("sign-in: HTTP {} {:.300}", a.status, a.text());
            }
            let loc = a.location().context("a redirect without Location")?.to_owned();
            if loc.starts_with(redirect_uri) {
                return Ok(loc);
            }
            a = browser.get(&loc).await?;
        }
        bail!("sign-in did not end in a redirect to the client within {MAX_SIGN_IN_REDIRECTS} redirects")
    }

    async fn stop(&mut self) -> Result<Stopped> {
        process::terminate(self.child.take(), "node server.js").await?;
        let (log_problems, log_copy) = process::read_log(&self.log_path(), self.log_copy.as_ref(), |l| {
            let l = l.to_ascii_lowercase();
            l.contains("error") || l.contains("warn")
        });
        Ok(Stopped { log_problems, log_copy })
    }

    fn durability(&self) -> String {
        let s = self.synchronous.pragma();
        match self.synchronous {
            Synchronous::Full => {
                format!("SQLite WAL, synchronous={s} (--peer-synchronous full: an acknowledged write survives a power loss)")
            }
            Synchronous::Normal => {
                format!("SQLite WAL, synchronous={s} (--peer-synchronous normal: the last commits may be lost on power loss)")
            }
        }
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = vec![
            format!(
                "server: node {} server.js from bench/peer, installed with npm in {}; it said: {}",
                self.installed.node_version,
                self.installed.dir.display(),
                self.startup_line.as_deref().unwrap_or("(no startup line)")
            ),
            format!("configured like Latchkey: client `bench` (opaque access tokens) and `bench-jwt` ({alg} JWT access tokens, through a resource indicator), client_secret_basic, PKCE S256 required, refresh token rotation, {alg} id_tokens (SIGNING_ALG), login and consent done by server.js at GET /interaction/:uid", alg = self.alg.as_str()),
            format!("code_flow and the browsers' sign-in ask with prompt=consent and scope `{SCOPE}` (oidc-provider issues a refresh token for offline_access only after a consent prompt); one flow = GET /auth, 303 to /interaction/:uid, 303 to /auth/:uid, 303 to the client, then POST /token; each browser keeps its cookies from flow to flow (oidc-provider replaces the session at every flow)"),
            "introspect: the opaque access token of a code redemption, introspected by its own client `bench` (oidc-provider cannot introspect its JWT access tokens)".into(),
            "password_login: not supported (oidc-provider has no password grant)".into(),
            "database: a fresh SQLite file (better-sqlite3, one table for every model, bench/peer/sqlite-adapter.js); DB size = pages in use of oidc.sqlite, the same measure as Latchkey's".into(),
            format!("start to first answer: from spawning node to the first 200 of {DISCOVERY} (oidc-provider has no health check)"),
        ];
        if self.synchronous == Synchronous::Normal {
            notes.push("warning: --peer-synchronous normal: the peer's commits are less durable than Latchkey's (full), so the ratios of the scenarios that write compare unlike things".into());
        }
        if self.old_node() {
            notes.push(format!(
                "Node {}: oidc-provider warns \"Unsupported runtime\" (it asks for Node 22 LTS or later) but works; a newer Node may be faster",
                self.installed.node_version
            ));
        }
        if let Some(line) = &self.startup_line {
            let expected = format!("\"synchronous\":\"{}\"", self.synchronous.pragma());
            if !line.contains(&expected) {
                notes.push(format!("warning: the server did not report {expected} in effect"));
            }
        }
        if self.pin.is_none() {
            notes.push("the server was not pinned to a core".into());
        }
        notes
    }
}
