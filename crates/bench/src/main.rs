//! `latchkey-bench`: builds the release server, starts it on a fresh database per backend,
//! seeds it through the CLI, drives each scenario with a Rust load driver pinned to its own
//! core, does the same with the peer (node-oidc-provider on SQLite), the targets taking turns
//! scenario by scenario, and writes `latest.json` and `latest.md` with the ratio table. A
//! benchmark, not a test: it asserts nothing about timings.

mod hiccup;
mod http;
mod latchkey;
mod peer;
mod pg;
mod process;
mod procfs;
mod report;
mod scenario;
mod sched;
mod stats;
mod target;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use latchkey::{Backend, LatchkeyTarget};
use latchkey_core::model::SigningAlg;
use peer::{Installed, PeerTarget};
use report::{Bare, Machine, Report, RoundTrips, ScenarioReport, TargetReport};
use scenario::{Cores, Fixtures, Load, Scenario};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use target::{Seed, Target};

/// Set in the re-executed, pinned process: `1` when pinned, `0` when pinning was not possible.
const PINNED_ENV: &str = "LATCHKEY_BENCH_PINNED";
/// The core of the load driver and the core of the server.
const DRIVER_CORE: usize = 1;
const SERVER_CORE: usize = 0;
/// The pause between signing the browsers in and the next scenario.
const AFTER_SIGN_IN: Duration = Duration::from_secs(6);
/// How long the database of a scenario that issues tokens settles before its size is read:
/// Latchkey's refresh replay window (5 s) and one of its housekeeping intervals (2 s), and a
/// second more. What is there then lasts as long as its tokens; what went was transient (the
/// replay answers, bounded by the window's worth of refreshes, not by the tokens issued), and
/// would not grow with a million tokens. Every target waits the same.
const SETTLE: Duration = Duration::from_secs(8);
/// The fraction of the saturation rate at which latency is measured again.
const PACED_FRACTION: f64 = 0.7;

#[derive(Parser)]
#[command(name = "latchkey-bench", about = "Benchmarks Latchkey on this machine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every scenario (or those of --only) on SQLite, on PostgreSQL with --postgres, then on
    /// the peer (oidc-provider) unless --no-peer, and print the ratio table.
    All(AllArgs),
}

#[derive(Args, Clone)]
struct AllArgs {
    /// Seconds each scenario is timed, after the warm-up.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of warm-up before each timed window.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Connections of the password_login scenario (each check holds 19 MiB for Argon2id).
    #[arg(long, default_value_t = 2)]
    password_connections: usize,
    /// Where latest.json and latest.md go (default: bench/results in the workspace).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run only these scenarios (comma-separated): jwks, discovery, cc_opaque, cc_jwt,
    /// introspect, refresh, code_flow, password_login.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Also run on PostgreSQL: a database URL; the run creates and drops a schema of its own.
    #[arg(long)]
    postgres: Option<String>,
    /// Skip the SQLite run (with --postgres).
    #[arg(long)]
    no_sqlite: bool,
    /// Run the server with housekeeping off (LATCHKEY_HOUSEKEEPING_INTERVAL=0): no periodic
    /// removal of expired rows during the run.
    #[arg(long)]
    no_housekeeping: bool,
    /// Keep a copy of each SQLite database, as the run left it, beside the results.
    #[arg(long)]
    keep_databases: bool,
    /// Do not run `scripts/release` (the deployment build) first.
    #[arg(long)]
    no_build: bool,
    /// Do not install and run the peer (node-oidc-provider), nor print the ratio table.
    #[arg(long)]
    no_peer: bool,
    /// Pace every paced run at this many operations per second, instead of 70% of the rate
    /// each target measured: to compare two builds, or Latchkey and the peer, at the same load.
    /// The p99 target (at 70%) is then not judged.
    #[arg(long)]
    paced_rate: Option<f64>,
    /// Signing algorithms (comma-separated). The first is the main configuration and runs every
    /// scenario; each other one runs the scenarios that sign (cc_jwt, refresh, code_flow) as
    /// extra rows, on SQLite and the peer. RS256 is the server's default.
    #[arg(long, value_delimiter = ',', default_value = "RS256,ES256,EdDSA")]
    algs: Vec<String>,
    /// The peer's SQLite durability; `full` is Latchkey's default.
    #[arg(long, value_enum, default_value_t = peer::Synchronous::Full)]
    peer_synchronous: peer::Synchronous,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if Path::new(&d).is_absolute() => PathBuf::from(d),
        Some(d) => root.join(d),
        None => root.join("target"),
    }
}

/// `scripts/release`: the server as it is built for deployment (statically linked on Linux).
/// With `build` it builds it first; either way it answers the binary's path.
fn release_binary(root: &Path, build: bool) -> Result<PathBuf> {
    if build {
        eprintln!("building the server: scripts/release");
    }
    let mut cmd = std::process::Command::new(root.join("scripts/release"));
    if !build {
        cmd.arg("--path");
    }
    let out = cmd.current_dir(root).stderr(std::process::Stdio::inherit()).output().context("cannot run scripts/release")?;
    if !out.status.success() {
        bail!("scripts/release failed");
    }
    let path = String::from_utf8(out.stdout).context("scripts/release printed no path")?;
    Ok(root.join(path.trim()))
}

fn processors() -> usize {
    std::fs::read_to_string("/proc/cpuinfo").map(|s| s.lines().filter(|l| l.starts_with("processor")).count()).unwrap_or(0).max(1)
}

/// In the re-executed process: whether it and the server are pinned.
fn pinned_env() -> Option<bool> {
    std::env::var(PINNED_ENV).ok().map(|v| v == "1")
}

/// Whether this process runs pinned to the driver's core (and the servers to theirs).
fn pinned() -> bool {
    pinned_env() == Some(true)
}

/// Runs the rest of the program on the driver's core: re-executes itself under `taskset`.
/// Returns whether the server should be pinned too; warns and goes on unpinned when that is
/// not possible (one core, or no taskset).
fn pin_self() -> Result<bool> {
    if let Some(p) = pinned_env() {
        return Ok(p);
    }
    let usable = processors() >= 2
        && std::process::Command::new("taskset")
            .args(["-c", &DRIVER_CORE.to_string(), "true"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !usable {
        eprintln!("warning: cannot pin (needs 2 cores and taskset); the server and the load driver share the CPUs");
        return Ok(false);
    }
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()?;
    let err = std::process::Command::new("taskset")
        .args(["-c", &DRIVER_CORE.to_string()])
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(PINNED_ENV, "1")
        .exec();
    Err(err).context("cannot re-execute under taskset")
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let Command::All(args) = cli.command;
    let root = workspace_root();
    // Build before pinning, so that cargo has every core.
    let binary = release_binary(&root, std::env::var_os(PINNED_ENV).is_none() && !args.no_build)?;
    if !binary.exists() {
        bail!("{} is missing: build it with scripts/release", binary.display());
    }
    // Also before pinning, for the same reason: npm may build better-sqlite3 from source. The
    // pinned process finds it installed and only copies the scripts again.
    let peer = if args.no_peer {
        None
    } else {
        let scratch = target_dir(&root).join("bench-peer");
        Some(
            peer::install(&root.join("bench").join("peer"), &scratch)
                .context("cannot install the peer (pass --no-peer to run Latchkey alone)")?,
        )
    };
    let pinned = pin_self()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        // The servers run in process groups of their own (`process::server_command`), so a
        // Ctrl-C reaches only this process: stopping here drops the targets, whose servers are
        // then killed (`kill_on_drop`), frozen or not.
        tokio::select! {
            done = bench(args, root, binary, pinned, peer) => done,
            _ = tokio::signal::ctrl_c() => bail!("interrupted: the servers were stopped"),
        }
    })
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

fn machine(root: &Path, pinned: bool) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_owned()))
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let root_s = root.display().to_string();
    let commit = command_output("git", &["-C", &root_s, "rev-parse", "--short", "HEAD"]);
    let dirty = !command_output("git", &["-C", &root_s, "status", "--porcelain", "--untracked-files=no"]).is_empty();
    Machine {
        nproc: processors(),
        cpu_model,
        memory_total_kb: procfs::parse_status_kb(&meminfo, "MemTotal"),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).unwrap_or_else(|_| "unknown".into()),
        rustc: command_output("rustc", &["--version"]),
        git_commit: if dirty { format!("{commit} (with uncommitted changes)") } else { commit },
        date: time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| "unknown".into()),
        damon: procfs::damon(),
        loadavg_start: loadavg(),
        loadavg_end: String::new(),
        pinning: if pinned {
            format!("server on core {SERVER_CORE}, load driver on core {DRIVER_CORE} (taskset)")
        } else {
            "not pinned".into()
        },
    }
}

async fn bench(args: AllArgs, root: PathBuf, binary: PathBuf, pinned: bool, peer: Option<Installed>) -> Result<()> {
    let scenarios: Vec<Scenario> = if args.only.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        let mut chosen = Vec::new();
        for name in &args.only {
            chosen.push(Scenario::parse(name.trim()).with_context(|| format!("no scenario {name:?}"))?);
        }
        Scenario::ALL.into_iter().filter(|s| chosen.contains(s)).collect()
    };
    if args.connections == 0 || args.password_connections == 0 || args.duration == 0 {
        bail!("--connections, --password-connections and --duration must be at least 1");
    }
    if args.paced_rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        bail!("--paced-rate must be a positive number of operations per second");
    }
    let out = args.out.clone().unwrap_or_else(|| root.join("bench").join("results"));
    let mut machine = machine(&root, pinned);
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;

    let mut algs = Vec::new();
    for name in &args.algs {
        let alg = SigningAlg::parse(name.trim()).with_context(|| format!("no signing algorithm {name:?}: use RS256, ES256 or EdDSA"))?;
        if !algs.contains(&alg) {
            algs.push(alg);
        }
    }
    if algs.is_empty() {
        bail!("--algs needs at least one algorithm");
    }
    let mut backends = Vec::new();
    if !args.no_sqlite {
        backends.push(Backend::Sqlite);
    }
    if let Some(url) = &args.postgres {
        backends.push(Backend::Postgres(url.clone()));
    }
    // The first algorithm is the main configuration: every scenario, on every backend and the
    // peer. Each other one runs the scenarios that sign, on SQLite and the peer.
    let mut runs = Vec::new();
    let pin = pinned.then(|| SERVER_CORE.to_string());
    for (i, &alg) in algs.iter().enumerate() {
        let main = i == 0;
        let alg_name = alg.as_str();
        for backend in backends.iter().filter(|b| main || matches!(b, Backend::Sqlite)) {
            let name = match backend {
                Backend::Sqlite => "sqlite",
                Backend::Postgres(_) => "postgres",
            };
            let log_copy = Some(out.join(format!("server-latchkey-{name}-{alg_name}.log")));
            let database_copy = args.keep_databases.then(|| out.join(format!("latchkey-{name}-{alg_name}.db")));
            let target =
                LatchkeyTarget::new(&binary, backend.clone(), alg, pin.clone(), log_copy, database_copy, !args.no_housekeeping).await;
            runs.push(match target {
                Ok(t) => Run::new(Box::new(t), main),
                Err(e) => Run::failed(TargetReport::failed("latchkey", name, alg_name, &e)),
            });
        }
        // The peer gets the same scenarios, load and pinning.
        if let Some(installed) = &peer {
            let log_copy = Some(out.join(format!("server-{}-sqlite-{alg_name}.log", peer::NAME)));
            runs.push(match PeerTarget::new(installed.clone(), args.peer_synchronous, alg, pin.clone(), log_copy) {
                Ok(t) => Run::new(Box::new(t), main),
                Err(e) => Run::failed(TargetReport::failed(peer::NAME, "sqlite", alg_name, &e)),
            });
        }
    }
    // The targets take turns, scenario by scenario: the machine's speed drifts by a quarter
    // over minutes, and a ratio of two runs ten minutes apart measured the drift as much as
    // the servers. The targets not measured are frozen (SIGSTOP), so that no timer of theirs
    // runs on the core another one is measured on.
    for run in &mut runs {
        run.begin().await;
    }
    for &scenario in &scenarios {
        for run in &mut runs {
            run.scenario(&args, scenario).await;
        }
    }
    let mut targets = Vec::new();
    for mut run in runs {
        run.finish(&scenarios).await;
        targets.push(run.report);
    }

    machine.loadavg_end = loadavg();
    let report = Report {
        machine,
        settings: report::Settings {
            duration_s: args.duration,
            warmup_s: args.warmup,
            connections: args.connections,
            password_connections: args.password_connections,
            paced_fraction: PACED_FRACTION,
            paced_rate: args.paced_rate,
            scenarios: scenarios.iter().map(|s| s.name().to_owned()).collect(),
        },
        comparisons: report::compare(&targets, args.paced_rate.is_none()),
        targets,
    };
    let md = report::markdown(&report);
    std::fs::write(out.join("latest.json"), serde_json::to_string_pretty(&report)? + "\n")?;
    std::fs::write(out.join("latest.md"), &md)?;
    println!("{md}");
    eprintln!("wrote {} and {}", out.join("latest.json").display(), out.join("latest.md").display());
    Ok(())
}

/// Runs an operation in a loop on a thread of its own on `core` (the server's, while the server
/// is frozen or waits) for `duration`: the ceiling of a scenario bound by that operation. The
/// cores of a virtual machine need not be equally fast, so it runs where the server does.
/// `setup` runs on that thread and answers what the operation is, and the operation.
async fn bare<F>(duration: Duration, core: Option<usize>, setup: impl FnOnce() -> Result<(String, F)> + Send + 'static) -> Result<Bare>
where
    F: FnMut() -> Result<()>,
{
    let thread = std::thread::spawn(move || {
        let pinned = core.map(|id| core_affinity::set_for_current(core_affinity::CoreId { id }));
        if pinned == Some(false) {
            bail!("cannot run on core {core:?}");
        }
        let (parameters, mut operation) = setup()?;
        let start = Instant::now();
        let mut operations = 0u64;
        while start.elapsed() < duration {
            operation()?;
            operations += 1;
        }
        let seconds = start.elapsed().as_secs_f64();
        let rate = operations as f64 / seconds;
        Ok(Bare { parameters, core, operations, seconds, per_second: rate, parts: vec![rate] })
    });
    tokio::task::spawn_blocking(move || thread.join().map_err(|_| anyhow::anyhow!("the bare measurement's thread panicked"))?).await?
}

/// Verifies a password against its Argon2id hash, with the parameters and the function the
/// server's password threads use (a buffer reused the same way).
async fn bare_argon2(duration: Duration, core: Option<usize>) -> Result<Bare> {
    bare(duration, core, || {
        let password = "bench password 1";
        let hash = latchkey_core::password::hash(password, &mut rand::thread_rng())?;
        let params = hash.split('$').nth(3).unwrap_or("?").to_owned();
        let mut memory = Vec::new();
        Ok((format!("argon2id {params}"), move || {
            if !latchkey_core::password::verify_with_memory(password, &hash, &mut memory) {
                bail!("the password did not verify against its own hash");
            }
            Ok(())
        }))
    })
    .await
}

/// Signs a client's JWT access token with a fresh key of `alg`, through the function the
/// server signs with (`KeyPair::sign_jwt`: the signature, plus the JSON and base64 around it).
async fn bare_signing(alg: SigningAlg, duration: Duration, core: Option<usize>) -> Result<Bare> {
    bare(duration, core, move || {
        use latchkey_core::jose::{KeyPair, SystemRandom};
        let nonces = SystemRandom::new();
        let key = KeyPair::generate(alg, &mut rand::thread_rng(), &nonces)?;
        let claims = serde_json::json!({
            "iss": "http://127.0.0.1:8080", "sub": "bench-jwt", "aud": "http://127.0.0.1:8080", "client_id": "bench-jwt",
            "scope": "api:read", "jti": uuid::Uuid::new_v4().to_string(), "iat": 1_800_000_000, "exp": 1_800_003_600,
        });
        let library = if alg == SigningAlg::RS256 { "AWS-LC, RSA 2048" } else { "ring" };
        Ok((format!("{} sign_jwt ({library})", alg.as_str()), move || {
            key.sign_jwt("at+jwt", &claims, &nonces)?;
            Ok(())
        }))
    })
    .await
}

/// One target of the run: its server, what was set up on it, and its report.
struct Run {
    /// `None` once stopped (or never made).
    target: Option<Box<dyn Target>>,
    /// The main configuration runs every scenario; another algorithm's, those that sign.
    main: bool,
    seed: Option<Seed>,
    fixtures: Option<Fixtures>,
    report: TargetReport,
}

impl Run {
    fn new(target: Box<dyn Target>, main: bool) -> Self {
        let mut report = TargetReport::new(target.name(), target.backend(), target.signing_alg());
        report.durability = Some(target.durability());
        Self { target: Some(target), main, seed: None, fixtures: None, report }
    }

    fn failed(report: TargetReport) -> Self {
        Self { target: None, main: false, seed: None, fixtures: None, report }
    }

    fn label(&self) -> String {
        self.report.label()
    }

    /// Whether it runs `scenario`: the main configuration every one, another algorithm's those
    /// that sign.
    fn runs(&self, scenario: Scenario) -> bool {
        self.main || scenario.signs()
    }

    /// Starts the server on its fresh database, seeds it and freezes it until its turn.
    async fn begin(&mut self) {
        let label = self.label();
        let Some(target) = self.target.as_mut() else { return };
        eprintln!("{label}: starting on a fresh database");
        let begun = async {
            let started = target.start().await?;
            self.report.start_to_first_answer_ms = Some(started.first_answer_ms);
            self.report.first_answer_probe = Some(started.probe.to_owned());
            let seed = target.seed().await.context("seeding")?;
            target.pause().await.context("pausing")?;
            anyhow::Ok(seed)
        }
        .await;
        match begun {
            Ok(seed) => self.seed = Some(seed),
            Err(e) => self.fail(e).await,
        }
    }

    /// Runs `scenario` on the target, if it is still up.
    async fn scenario(&mut self, args: &AllArgs, scenario: Scenario) {
        if !self.runs(scenario) {
            return;
        }
        let Some(target) = self.target.as_mut() else { return };
        let Some(seed) = self.seed.as_ref() else { return };
        let done = async {
            target.resume().await.context("resuming")?;
            measure(&mut **target, args, seed, &mut self.fixtures, scenario, &mut self.report).await?;
            target.pause().await.context("pausing")
        }
        .await;
        if let Err(e) = done {
            self.fail(e).await;
        }
    }

    /// Counts round trips where the target can, and stops it.
    async fn finish(&mut self, scenarios: &[Scenario]) {
        let scenarios: Vec<Scenario> = scenarios.iter().copied().filter(|s| self.runs(*s)).collect();
        let Some(target) = self.target.as_mut() else { return };
        let scenarios = &scenarios[..];
        let Some(seed) = self.seed.as_ref() else { return };
        if let Err(e) = target.resume().await {
            return self.fail(e.context("resuming")).await;
        }
        match round_trips(&mut **target, seed, scenarios).await {
            Ok(rts) => self.report.round_trips = rts,
            Err(e) => self.report.round_trips_error = Some(format!("{e:#}")),
        }
        self.stop().await;
    }

    /// Records `error`; the target runs no more scenarios.
    async fn fail(&mut self, error: anyhow::Error) {
        eprintln!("{}: {error:#}", self.label());
        self.report.error = Some(format!("{error:#}"));
        if let Some(target) = self.target.as_mut() {
            // A frozen server would not see the SIGTERM that stops it.
            let _ = target.resume().await;
        }
        self.stop().await;
    }

    async fn stop(&mut self) {
        let Some(mut target) = self.target.take() else { return };
        self.report.notes.extend(target.notes());
        match target.stop().await {
            Ok(stopped) => {
                self.report.log_problems = stopped.log_problems;
                self.report.log_copy = stopped.log_copy;
            }
            Err(e) => {
                let before = self.report.error.take().map(|e| e + "; ").unwrap_or_default();
                self.report.error = Some(format!("{before}stopping: {e:#}"));
            }
        }
    }
}

/// Measures one scenario on a running target (signing its browsers in first if the scenario
/// needs them and no earlier one did).
async fn measure(
    target: &mut dyn Target,
    args: &AllArgs,
    seed: &Seed,
    fixtures: &mut Option<Fixtures>,
    scenario: Scenario,
    report: &mut TargetReport,
) -> Result<()> {
    let label = format!("{}/{}", target.name(), target.backend());
    let warmup = Duration::from_secs(args.warmup);
    let duration = Duration::from_secs(args.duration);
    let cores = pinned().then_some(Cores { server: SERVER_CORE, driver: DRIVER_CORE });
    let connections = if scenario == Scenario::PasswordLogin { args.password_connections } else { args.connections };
    if scenario::needs_fixtures(scenario) && fixtures.is_none() {
        eprintln!("{label}: signing in {connections} browsers");
        let fx = scenario::prepare_fixtures(&*target, seed, args.connections).await.context("signing in")?;
        // The scenarios measure a server serving tokens, not one still holding what the
        // sign-ins needed: Latchkey gives its Argon2 memory back once no check has needed
        // it for 5 s (`server::passwords::IDLE`). Every target gets the same pause.
        tokio::time::sleep(AFTER_SIGN_IN).await;
        if !fx.id_token {
            report.notes.push("warning: code or refresh answers carried no id_token".into());
        }
        *fixtures = Some(fx);
    }
    let mut sr = ScenarioReport::new(scenario.name(), if scenario == Scenario::CodeFlow { "flows" } else { "requests" });
    let Some(ops) = scenario::ops(scenario, seed, fixtures.as_ref(), connections)? else {
        sr.skipped = Some("not supported by this target (it offers no client for it)".into());
        report.scenarios.push(sr);
        return Ok(());
    };
    // What bounds the scenario, alone on the server's core: Argon2id for password_login, the
    // signature for cc_jwt (Latchkey's own signing function, so only for Latchkey). The
    // machine's speed drifts over minutes, so half is measured just before the run and half
    // just after.
    let server_core = cores.map(|c| c.server);
    let own_signer = SigningAlg::parse(target.signing_alg()).filter(|_| target.name() == "latchkey");
    let bare_half = || async move {
        match (scenario, own_signer) {
            (Scenario::PasswordLogin, _) => bare_argon2(duration / 2, server_core).await.map(Some),
            (Scenario::CcJwt, Some(alg)) => bare_signing(alg, duration / 2, server_core).await.map(Some),
            _ => Ok(None),
        }
    };
    let bare_before = bare_half().await?;
    if let Some(b) = &bare_before {
        eprintln!("{label}: bare {} on the server's core for {} s, before and after", b.parameters, duration.as_secs_f64() / 2.0);
    }
    eprintln!("{label}: {} ({connections} connections, {} s)", scenario.name(), args.duration);
    let before = if scenario.issues_tokens() { target.storage_bytes().await? } else { None };
    let (ops, sat) = scenario::run(&seed.endpoint, ops, Load { warmup, duration, interval: None, cores }, &*target).await?;
    if scenario.issues_tokens() {
        tokio::time::sleep(SETTLE).await;
        let after = target.storage_bytes().await?;
        sr.db_bytes_before = before;
        sr.db_bytes_after = after;
        sr.tokens_issued = Some(sat.ok_with_warmup);
        if let (Some(b), Some(a)) = (before, after) {
            if sat.ok_with_warmup > 0 {
                sr.db_bytes_per_million_tokens = Some(a.saturating_sub(b) as f64 / sat.ok_with_warmup as f64 * 1e6);
            }
        }
    }
    if let Some(before) = bare_before {
        if let Some(after) = bare_half().await? {
            let bare = before.and(&after);
            sr.ratio_to_bare = (bare.per_second > 0.0).then(|| sat.throughput / bare.per_second);
            sr.bare = Some(bare);
        }
    }
    eprintln!(
        "{label}: {}: {:.1}/s, p50 {} µs, p99 {} µs, {} errors",
        scenario.name(),
        sat.throughput,
        sat.latency.p50_us,
        sat.latency.p99_us,
        sat.errors
    );
    if scenario.paced() && sat.throughput > 0.0 {
        let rate = args.paced_rate.unwrap_or(sat.throughput * PACED_FRACTION);
        let interval = Duration::from_secs_f64(connections as f64 / rate);
        let (_, mut paced) =
            scenario::run(&seed.endpoint, ops, Load { warmup, duration, interval: Some(interval), cores }, &*target).await?;
        paced.target_rate = Some(rate);
        eprintln!("{label}: {} at {rate:.0}/s: p99 {} µs, {} errors", scenario.name(), paced.latency.p99_us, paced.errors);
        sr.paced = Some(paced);
    }
    sr.saturation = Some(sat);
    sr.server_vm_hwm_kb = target.pid().and_then(|p| procfs::status_kb(p, "VmHWM").ok());
    report.scenarios.push(sr);
    Ok(())
}

/// Database round trips, statements and WAL bytes per operation, for targets that can count
/// them (Latchkey on PostgreSQL): the server is restarted behind a counting proxy, and each
/// scenario's operation runs sequentially on one connection.
async fn round_trips(target: &mut dyn Target, seed: &Seed, scenarios: &[Scenario]) -> Result<Vec<RoundTrips>> {
    let Some(counter) = target.restart_counting_round_trips().await? else { return Ok(Vec::new()) };
    eprintln!("{}/{}: counting database round trips", target.name(), target.backend());
    let fixtures = if scenarios.iter().any(|s| scenario::needs_fixtures(*s)) {
        Some(scenario::prepare_fixtures(&*target, seed, 1).await.context("signing in for the round-trip count")?)
    } else {
        None
    };
    let mut out = Vec::new();
    for &s in scenarios {
        let Some(mut ops) = scenario::ops(s, seed, fixtures.as_ref(), 1)? else { continue };
        let Some(op) = ops.first_mut() else { continue };
        let count = if s == Scenario::PasswordLogin { 10 } else { 50 };
        // Warmed up first, so that the WAL read around the counted operations is theirs.
        scenario::round_trips_per_op(&seed.endpoint, op, 5, 0, &counter).await.with_context(|| s.name())?;
        let wal_before = target.wal_position().await?;
        let (per_operation, statements_per_operation) =
            scenario::round_trips_per_op(&seed.endpoint, op, 0, count, &counter).await.with_context(|| s.name())?;
        let wal_after = target.wal_position().await?;
        let wal_bytes_per_operation = wal_before.zip(wal_after).map(|(b, a)| a.saturating_sub(b) as f64 / count as f64);
        out.push(RoundTrips {
            scenario: s.name().into(),
            per_operation,
            statements_per_operation,
            wal_bytes_per_operation,
            operations: count,
        });
    }
    Ok(out)
}
