//! Latchkey as a benchmark target: the release `latchkey` binary on a fresh SQLite file or
//! PostgreSQL schema, seeded through its own CLI, pinned to a core of its own.

use crate::http::{expect_status, html_field, Browser, Endpoint};
use crate::target::{sqlite_bytes_in_use, ClientCreds, CodeClient, Paths, RoundTripCounter, Seed, Started, Stopped, Target};
use crate::{pg, process, target};
use anyhow::{bail, Context, Result};
use async_trait::async_trait;
use latchkey_core::model::SigningAlg;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

/// Where Latchkey keeps its data in a run.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    Sqlite,
    /// The URL of a PostgreSQL database; the run works in a fresh schema of it.
    Postgres(String),
}

const EMAIL: &str = "bench@latchkey.test";
const PASSWORD: &str = "bench password 1";
const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";
/// Where "start to first answer" is measured: the first 200 of the health check.
const HEALTH: &str = "/healthz";
/// Seconds between housekeeping passes (60 by default). A scenario leaves work behind: each
/// rotated refresh token's sealed replay answer is cleared 5 s after the rotation. With a pass
/// a minute, that work landed in whichever scenario ran a minute later (140,000 clearings in
/// the password run); every 2 s, each scenario pays for its own, as a server under a steady
/// load would.
const HOUSEKEEPING_INTERVAL: &str = "2";
/// The password checks of the benchmark must not run into the online guessing limits (10 per
/// account per 15 minutes by default), so the budgets are raised for the whole run.
const CONFIG: &str = "# Written by latchkey-bench.\n[guessing]\naccount_budget = 1000000000\naccount_total_budget = 1000000000\nclient_budget = 1000000000\n";

pub(crate) struct LatchkeyTarget {
    binary: PathBuf,
    backend: Backend,
    backend_name: &'static str,
    /// Its signing algorithm: the server's default (RS256) is not set, the others are.
    alg: SigningAlg,
    /// Holds the SQLite file, the configuration and the log; removed on drop.
    dir: TempDir,
    port: u16,
    /// A `--database` value: the SQLite path or the URL selecting the schema.
    database: String,
    schema: Option<String>,
    master_key: Option<String>,
    /// `taskset -c CORES` for the server, when pinning works.
    pin: Option<String>,
    child: Option<Child>,
    /// Where to keep a copy of the server log when it stops.
    log_copy: Option<PathBuf>,
    /// Where to keep a copy of the SQLite database (and its WAL) when it stops.
    database_copy: Option<PathBuf>,
    proxied: bool,
    housekeeping: bool,
    /// PostgreSQL's processes on the server's core while the target runs, or why not.
    postgres_pinned: Option<std::result::Result<pg::PinnedPostgres, String>>,
}

impl LatchkeyTarget {
    /// Pins a local PostgreSQL's processes to the server's core, when the server is pinned.
    fn pin_postgres(&mut self) {
        if let (Backend::Postgres(url), Some(cores)) = (&self.backend, &self.pin) {
            self.postgres_pinned = Some(if pg::on_this_machine(url) {
                pg::PinnedPostgres::pin(cores).map_err(|e| format!("{e:#}"))
            } else {
                Err("the database is not on this machine".into())
            });
        }
    }

    /// `housekeeping: false` turns the server's periodic removal of expired rows off.
    pub(crate) async fn new(
        binary: &Path,
        backend: Backend,
        alg: SigningAlg,
        pin: Option<String>,
        log_copy: Option<PathBuf>,
        database_copy: Option<PathBuf>,
        housekeeping: bool,
    ) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("latchkey-bench-").tempdir()?;
        std::fs::write(dir.path().join("bench.toml"), CONFIG)?;
        let port = process::free_port()?;
        let (backend_name, database, schema, master_key) = match &backend {
            Backend::Sqlite => ("sqlite", dir.path().join("latchkey.db").display().to_string(), None, None),
            Backend::Postgres(url) => {
                let name = format!("lk_bench_{}", uuid::Uuid::new_v4().simple());
                let schema_url = latchkey_store_postgres::testing::create_schema(url, &name)
                    .await
                    .with_context(|| format!("cannot create a schema on {}", redact(url)))?;
                let key = {
                    use base64::Engine;
                    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
                };
                ("postgres", schema_url, Some(name), Some(key))
            }
        };
        Ok(Self {
            binary: binary.to_owned(),
            backend,
            backend_name,
            alg,
            dir,
            port,
            database,
            schema,
            master_key,
            pin,
            child: None,
            log_copy,
            database_copy,
            proxied: false,
            housekeeping,
            postgres_pinned: None,
        })
    }

    fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The `latchkey` binary with the run's configuration, database and environment.
    fn latchkey(&self, database: &str) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--config").arg(self.dir.path().join("bench.toml")).arg("--database").arg(database);
        // The server's default is measured as an operator who changes nothing gets it.
        if self.alg != SigningAlg::default() {
            c.env("LATCHKEY_ID_TOKEN_SIGNING_ALG", self.alg.as_str());
        }
        c.env("NO_COLOR", "1");
        if let Some(key) = &self.master_key {
            c.env("LATCHKEY_MASTER_KEY", key);
        }
        c.env("LATCHKEY_HOUSEKEEPING_INTERVAL", if self.housekeeping { HOUSEKEEPING_INTERVAL } else { "0" });
        c.kill_on_drop(true);
        c
    }

    /// Runs one CLI command with `--json` and returns its answer.
    async fn cli(&self, args: &[&str], stdin: Option<&str>) -> Result<serde_json::Value> {
        let mut cmd = self.latchkey(&self.database);
        cmd.arg("--json").args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().context("cannot run latchkey")?;
        if let Some(mut pipe) = child.stdin.take() {
            if let Some(text) = stdin {
                pipe.write_all(text.as_bytes()).await?;
            }
        }
        let out = child.wait_with_output().await?;
        if !out.status.success() {
            bail!("latchkey {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
        }
        serde_json::from_slice(&out.stdout).with_context(|| format!("latchkey {}: not JSON", args.join(" ")))
    }

    async fn client(&self, name: &str, extra: &[&str]) -> Result<ClientCreds> {
        let mut args = vec!["client", "create", "--name", name, "--developer", "latchkey-bench", "--redirect-uri", REDIRECT_URI];
        args.extend_from_slice(extra);
        let v = self.cli(&args, None).await?;
        let id = v["client_id"].as_str().context("no client_id")?;
        let secret = v["client_secret"].as_str().context("no client_secret")?;
        Ok(ClientCreds::new(id, secret))
    }

    /// Spawns the server on `database` with `env`, and waits for its first 200 on `/healthz`.
    async fn spawn(&mut self, database: &str, env: &[(&str, &str)]) -> Result<Started> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path())?;
        let issuer = self.issuer();
        let listen = format!("127.0.0.1:{}", self.port);
        let mut cmd = process::server_command(self.latchkey(database), self.pin.as_deref());
        cmd.args(["serve", "--listen", &listen, "--issuer", &issuer]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let endpoint = Endpoint::new(self.addr(), &issuer);
        let spawned = Instant::now();
        let mut child = cmd.spawn().context("cannot start latchkey serve")?;
        let first_answer_ms =
            process::wait_for_first_answer(&mut child, &endpoint, HEALTH, spawned, &self.log_path()).await.context("latchkey serve")?;
        self.child = Some(child);
        Ok(Started { first_answer_ms, probe: HEALTH })
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Sends SIGTERM and waits for a graceful stop (SIGKILL after 15 s).
    async fn terminate(&mut self) -> Result<()> {
        process::terminate(self.child.take(), "latchkey serve").await
    }
}

#[async_trait]
impl Target for LatchkeyTarget {
    fn name(&self) -> &str {
        "latchkey"
    }

    fn backend(&self) -> &str {
        self.backend_name
    }

    fn signing_alg(&self) -> &str {
        self.alg.as_str()
    }

    async fn start(&mut self) -> Result<Started> {
        self.pin_postgres();
        let database = self.database.clone();
        self.spawn(&database, &[]).await
    }

    async fn pause(&mut self) -> Result<()> {
        target::signal(self.pid(), "STOP").await?;
        // PostgreSQL's processes leave the server's core, where another target is measured
        // next; they are idle but for their own background work.
        if matches!(self.postgres_pinned, Some(Ok(_))) {
            self.postgres_pinned = None;
        }
        Ok(())
    }

    async fn resume(&mut self) -> Result<()> {
        if self.postgres_pinned.is_none() {
            self.pin_postgres();
        }
        target::signal(self.pid(), "CONT").await
    }

    async fn seed(&mut self) -> Result<Seed> {
        self.cli(
            &["user", "create", "--email", EMAIL, "--name", "Bench User", "--password-stdin", "--business", "Bench Shop"],
            Some(PASSWORD),
        )
        .await?;
        let cc = ["--grant-type", "client_credentials", "--scope", "orders:read"];
        let cc_opaque = self.client("bench cc opaque", &cc).await?;
        let cc_jwt = self.client("bench cc jwt", &[&cc[..], &["--access-token-format", "jwt"]].concat()).await?;
        let user_scopes = ["--scope", "openid", "--scope", "profile", "--scope", "email", "--scope", "offline_access"];
        let code = self
            .client("bench code", &[&user_scopes[..], &["--grant-type", "authorization_code", "--grant-type", "refresh_token"]].concat())
            .await?;
        let password = self
            .client("bench password", &[&user_scopes[..], &["--grant-type", "password", "--grant-type", "refresh_token"]].concat())
            .await?;
        Ok(Seed {
            endpoint: Endpoint::new(self.addr(), &self.issuer()),
            paths: Paths {
                authorize: "/oauth/authorize".into(),
                token: "/oauth/token".into(),
                introspect: "/oauth/introspect".into(),
                jwks: "/.well-known/jwks.json".into(),
                discovery: "/.well-known/openid-configuration".into(),
            },
            email: EMAIL.into(),
            password: PASSWORD.into(),
            introspector: Some(cc_opaque.clone()),
            cc_opaque: Some(cc_opaque),
            cc_jwt: Some(cc_jwt),
            // A signed-in browser that consented once gets a code (and a refresh token) at once.
            code: Some(CodeClient {
                creds: code,
                redirect_uri: REDIRECT_URI.into(),
                scope: "openid offline_access".into(),
                authorize_params: Vec::new(),
            }),
            password_client: Some(CodeClient {
                creds: password,
                redirect_uri: REDIRECT_URI.into(),
                scope: "openid offline_access".into(),
                authorize_params: Vec::new(),
            }),
        })
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    async fn storage_bytes(&self) -> Result<Option<u64>> {
        match (&self.backend, &self.schema) {
            (Backend::Postgres(url), Some(schema)) => Ok(Some(pg::schema_bytes(url, schema).await?)),
            _ => Ok(Some(sqlite_bytes_in_use(Path::new(&self.database)).await?)),
        }
    }

    async fn sign_in(&self, browser: &mut Browser, authorize_path: &str, seed: &Seed) -> Result<String> {
        let redirect_uri = seed.code.as_ref().map(|c| c.redirect_uri.as_str()).unwrap_or(REDIRECT_URI);
        let mut a = browser.get(authorize_path).await?;
        for _ in 0..8 {
            if a.is_redirection() {
                let loc = a.location().context("a redirect without Location")?.to_owned();
                if loc.starts_with(redirect_uri) {
                    return Ok(loc);
                }
                a = browser.get(&loc).await?;
                continue;
            }
            expect_status(&a, &[200], "sign-in page")?;
            let html = a.text();
            let interaction = html_field(&html, "interaction").context("no interaction field on the page")?;
            let csrf = html_field(&html, "csrf").context("no csrf field on the page")?;
            a = if html.contains("name=\"password\"") {
                let path = seed.endpoint.path("/login")?;
                browser
                    .post_form(
                        &path,
                        &[("interaction", &interaction), ("csrf", &csrf), ("email", &seed.email), ("password", &seed.password)],
                    )
                    .await?
            } else if html.contains("name=\"decision\"") {
                let path = seed.endpoint.path("/consent")?;
                let mut form = vec![("interaction", interaction.as_str()), ("csrf", csrf.as_str()), ("decision", "allow")];
                let business = html_field(&html, "business_id");
                if let Some(b) = &business {
                    form.push(("business_id", b));
                }
                browser.post_form(&path, &form).await?
            } else {
                bail!("an unexpected page during sign-in: {:.300}", html);
            };
        }
        bail!("sign-in did not end in a redirect to the client")
    }

    async fn restart_counting_round_trips(&mut self) -> Result<Option<RoundTripCounter>> {
        if self.schema.is_none() {
            return Ok(None);
        }
        let mut url = url::Url::parse(&self.database).context("the database URL")?;
        let host = url.host_str().context("no host in the database URL")?.to_owned();
        let port = url.port().unwrap_or(5432);
        let upstream = tokio::net::lookup_host((host.as_str(), port)).await?.next().context("cannot resolve the database host")?;
        let counter = RoundTripCounter::default();
        let proxy = pg::start_counting_proxy(upstream, counter.clone()).await?;
        url.set_host(Some("127.0.0.1"))?;
        url.set_port(Some(proxy.port())).map_err(|()| anyhow::anyhow!("cannot set the port of the database URL"))?;
        // The proxy must see the protocol in clear.
        url.query_pairs_mut().append_pair("sslmode", "disable");
        self.terminate().await?;
        // No housekeeping pass may land among the counted requests.
        self.spawn(url.as_str(), &[("LATCHKEY_HOUSEKEEPING_INTERVAL", "0")]).await?;
        self.proxied = true;
        Ok(Some(counter))
    }

    async fn wal_position(&mut self) -> Result<Option<u64>> {
        match &self.backend {
            Backend::Postgres(url) => Ok(Some(pg::wal_position(url).await?)),
            Backend::Sqlite => Ok(None),
        }
    }

    fn database_cpu_ticks(&self) -> Option<u64> {
        matches!(self.backend, Backend::Postgres(_)).then(|| crate::procfs::cpu_ticks_of_all("postgres"))
    }

    async fn stop(&mut self) -> Result<Stopped> {
        self.terminate().await?;
        if let (Backend::Sqlite, Some(copy)) = (&self.backend, &self.database_copy) {
            // As the run left it, free pages and all (sqlite3_analyzer or the dbstat table
            // show what each table and index holds).
            for suffix in ["", "-wal"] {
                let from = PathBuf::from(format!("{}{suffix}", self.database));
                if from.exists() {
                    std::fs::copy(&from, format!("{}{suffix}", copy.display()))
                        .with_context(|| format!("cannot copy {}", from.display()))?;
                }
            }
        }
        let (log_problems, log_copy) = process::read_log(&self.log_path(), self.log_copy.as_ref(), |l| {
            l.contains("ERROR") || l.contains("WARN") || l.contains("panicked")
        });
        if let (Backend::Postgres(url), Some(schema)) = (&self.backend, self.schema.take()) {
            latchkey_store_postgres::testing::drop_schema(url, &schema).await.context("cannot drop the benchmark schema")?;
        }
        // PostgreSQL's processes get their CPUs back.
        self.postgres_pinned = None;
        Ok(Stopped { log_problems, log_copy })
    }

    fn durability(&self) -> String {
        match self.backend {
            Backend::Sqlite => {
                "SQLite WAL, synchronous=FULL (Latchkey's default durability `full`: an acknowledged write survives a power loss)".into()
            }
            Backend::Postgres(_) => "PostgreSQL with the database's own settings (synchronous_commit as configured there)".into(),
        }
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = vec![
            format!(
                "server: release `latchkey serve`, {}, default durability (full), guessing budgets raised to 1e9 (config [guessing]) so that password checks are never refused",
                if self.alg == SigningAlg::default() {
                    format!("signing with its default {}", self.alg.as_str())
                } else {
                    format!("LATCHKEY_ID_TOKEN_SIGNING_ALG={}", self.alg.as_str())
                }
            ),
        ];
        match &self.backend {
            Backend::Sqlite => notes.push(
                "database: a fresh SQLite file; DB size = pages in use ((page_count - freelist_count) * page_size, WAL included) through a read-only connection, since the WAL file is reused rather than shrunk".into(),
            ),
            Backend::Postgres(url) => notes.push(format!(
                "database: a fresh schema on {}; DB size = pg_total_relation_size of the schema's tables; server CPU excludes PostgreSQL's own processes (reported apart as postgres CPU, all postgres processes of the machine)",
                redact(url)
            )),
        }
        match &self.postgres_pinned {
            Some(Ok(p)) => notes.push(format!(
                "PostgreSQL: its {} processes (and the backends forked during the run) pinned to the server's core, so that one core does all the server's work as with SQLite; given back their CPUs at the end",
                p.processes()
            )),
            Some(Err(why)) => notes.push(format!("PostgreSQL's processes were not pinned ({why}): they shared the load driver's core too")),
            None => {}
        }
        notes.push(if self.housekeeping {
            format!("housekeeping every {HOUSEKEEPING_INTERVAL} s (LATCHKEY_HOUSEKEEPING_INTERVAL; the default is 60), so that the clearing of refresh replay answers falls in the refresh scenario")
        } else {
            "housekeeping off (LATCHKEY_HOUSEKEEPING_INTERVAL=0, --no-housekeeping)".into()
        });
        if self.pin.is_none() {
            notes.push("the server was not pinned to a core".into());
        }
        if self.proxied {
            notes.push("round trips: counted by a TCP proxy between the server and PostgreSQL (one per Sync or simple Query message), on a restarted server with housekeeping off, sequential requests on one connection".into());
        }
        notes
    }
}

/// A database URL without its password.
pub(crate) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}
