//! The scenarios and the load driver: each connection is a loop of operations (one request,
//! or a whole authorization code flow), closed-loop to find the saturation rate, or paced
//! (open-loop, a fixed interval per connection) to measure latency at a given load.

use crate::hiccup::{self, CoreWatch, Timed};
use crate::http::{expect_status, form, pkce_pair, query_param, Answer, Browser, Conn, CookieJar, Endpoint};
use crate::stats::{micros, Latency};
use crate::target::{Seed, Target};
use crate::{procfs, sched};
use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scenario {
    Jwks,
    Discovery,
    CcOpaque,
    CcJwt,
    Introspect,
    Refresh,
    CodeFlow,
    PasswordLogin,
}

impl Scenario {
    /// In the order they run: the password checks (Argon2id, 19 MiB each) last, and the
    /// scenarios that need a signed-in browser after those that do not, so that the memory of
    /// the first ones is not that of a server that has hashed passwords.
    pub(crate) const ALL: [Scenario; 8] = [
        Scenario::Jwks,
        Scenario::Discovery,
        Scenario::CcOpaque,
        Scenario::CcJwt,
        Scenario::Introspect,
        Scenario::Refresh,
        Scenario::CodeFlow,
        Scenario::PasswordLogin,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::Jwks => "jwks",
            Scenario::Discovery => "discovery",
            Scenario::CcOpaque => "cc_opaque",
            Scenario::CcJwt => "cc_jwt",
            Scenario::Introspect => "introspect",
            Scenario::Refresh => "refresh",
            Scenario::CodeFlow => "code_flow",
            Scenario::PasswordLogin => "password_login",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether each successful operation stores tokens (and so grows the database).
    pub(crate) fn issues_tokens(self) -> bool {
        matches!(self, Scenario::CcOpaque | Scenario::CcJwt | Scenario::Refresh | Scenario::CodeFlow | Scenario::PasswordLogin)
    }

    /// Whether each operation signs a JWT (a JWT access token, or an id_token: the code
    /// client asks for `openid`): the scenarios run again with each extra algorithm.
    pub(crate) fn signs(self) -> bool {
        matches!(self, Scenario::CcJwt | Scenario::Refresh | Scenario::CodeFlow)
    }

    /// Whether its latency at 70% of saturation is measured (the latency target excludes
    /// password checks).
    pub(crate) fn paced(self) -> bool {
        self != Scenario::PasswordLogin
    }

    /// Whether it needs signed-in browsers and their token families.
    fn needs_fixtures(self) -> bool {
        matches!(self, Scenario::Introspect | Scenario::Refresh | Scenario::CodeFlow)
    }
}

/// Signed-in browsers (one per connection), each with a token family of its own.
pub(crate) struct Fixtures {
    /// The cookies of each browser.
    pub(crate) jars: Vec<CookieJar>,
    pub(crate) refresh_tokens: Vec<String>,
    /// An opaque access token of the user, for introspection.
    pub(crate) access_token: String,
    /// Whether the code and refresh answers carry an id_token.
    pub(crate) id_token: bool,
}

/// The authorization request of the code client, without PKCE parameters.
fn authorize_prefix(seed: &Seed) -> Result<String> {
    let c = seed.code.as_ref().context("the target has no code-flow client")?;
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", &c.creds.client_id)
        .append_pair("redirect_uri", &c.redirect_uri)
        .append_pair("scope", &c.scope)
        .append_pair("state", "bench")
        .extend_pairs(&c.authorize_params)
        .finish();
    Ok(format!("{}?{query}", seed.endpoint.path(&seed.paths.authorize)?))
}

fn with_pkce(prefix: &str, challenge: &str) -> String {
    format!("{prefix}&code_challenge={challenge}&code_challenge_method=S256")
}

fn code_redemption(seed: &Seed, code: &str, verifier: &str) -> Result<String> {
    let c = seed.code.as_ref().context("the target has no code-flow client")?;
    Ok(form(&[("grant_type", "authorization_code"), ("code", code), ("redirect_uri", &c.redirect_uri), ("code_verifier", verifier)]))
}

/// Signs in `n` browsers (each consents if asked) and redeems one code for each, plus one more
/// whose access token is introspected.
pub(crate) async fn prepare_fixtures(target: &dyn Target, seed: &Seed, n: usize) -> Result<Fixtures> {
    let c = seed.code.as_ref().context("the target has no code-flow client")?;
    let token_path = seed.endpoint.path(&seed.paths.token)?;
    let prefix = authorize_prefix(seed)?;
    let mut fx = Fixtures { jars: Vec::new(), refresh_tokens: Vec::new(), access_token: String::new(), id_token: true };
    for i in 0..=n {
        let mut browser = Browser::open(&seed.endpoint).await?;
        let (verifier, challenge) = pkce_pair();
        let loc = target.sign_in(&mut browser, &with_pkce(&prefix, &challenge), seed).await.with_context(|| format!("browser {i}"))?;
        let code = query_param(&loc, "code").with_context(|| format!("no code in {loc}"))?;
        let auth = [("Authorization", c.creds.basic.as_str())];
        let a = browser.post_back_channel(&token_path, &auth, &code_redemption(seed, &code, &verifier)?).await?;
        expect_status(&a, &[200], "code redemption")?;
        fx.id_token &= a.json_str("id_token").is_some();
        if i == n {
            fx.access_token = a.json_str("access_token").context("no access_token")?.to_owned();
        } else {
            let mut refresh_token = a.json_str("refresh_token").context("no refresh_token")?.to_owned();
            if i == 0 {
                // One refresh up front, to check that refresh answers carry an id_token too.
                let body = form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh_token)]);
                let r = browser.post_back_channel(&token_path, &auth, &body).await?;
                expect_status(&r, &[200], "refresh")?;
                fx.id_token &= r.json_str("id_token").is_some();
                refresh_token = r.json_str("refresh_token").context("no refresh_token after a refresh")?.to_owned();
            }
            fx.refresh_tokens.push(refresh_token);
            if browser.jar.header().is_none() {
                bail!("browser {i}: no cookie after sign-in");
            }
            fx.jars.push(browser.jar);
        }
    }
    Ok(fx)
}

/// Why an operation failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// An HTTP answer other than the expected one.
    Status(u16, String),
    /// No answer (connection refused, reset, closed) or an answer without what was needed.
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

/// One connection's state: what it sends, and what it carries from one operation to the next.
pub(crate) enum Op {
    /// The same request every time (prepared bytes), answered with a 200; for introspection,
    /// one that says the token is active.
    Fixed { request: Vec<u8>, expect_active: bool },
    /// A refresh chain: every answer's refresh token is presented next.
    Refresh { endpoint: Endpoint, path: String, auth: String, refresh_token: String },
    /// An authorization request with PKCE by a signed-in browser, the redirects it follows on
    /// the server until one leads to the client, then the code redemption. The browser keeps
    /// its cookies from one flow to the next, as a real one does: a server may replace its
    /// session cookie on every flow (oidc-provider does, and forgets the old session).
    CodeFlow { endpoint: Endpoint, authorize_prefix: String, token_path: String, redirect_uri: String, auth: String, jar: CookieJar },
}

/// The redirects a code flow may follow on the server before the one to the client: Latchkey
/// needs none; oidc-provider two (its interaction page, then back to the authorization endpoint).
const MAX_SERVER_REDIRECTS: usize = 5;

fn expect_ok(a: &Answer) -> Result<(), Failure> {
    if a.status == 200 {
        Ok(())
    } else {
        Err(Failure::Status(a.status, a.text()))
    }
}

impl Op {
    pub(crate) async fn once(&mut self, conn: &mut Conn) -> Result<(), Failure> {
        match self {
            Op::Fixed { request, expect_active } => {
                let a = conn.send(request).await?;
                expect_ok(&a)?;
                // RFC 7662 §2.2: an answer of 200 may still say the token is not active.
                if *expect_active && !a.text().contains("\"active\":true") {
                    return Err(Failure::Other(anyhow!("the token is not active: {:.200}", a.text())));
                }
                Ok(())
            }
            Op::Refresh { endpoint, path, auth, refresh_token } => {
                let body = form(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]);
                let a = conn.send(&endpoint.post_form(path, &[("Authorization", auth)], &body)).await?;
                expect_ok(&a)?;
                *refresh_token = a.json_str("refresh_token").context("no refresh_token in the answer")?.to_owned();
                Ok(())
            }
            Op::CodeFlow { endpoint, authorize_prefix, token_path, redirect_uri, auth, jar } => {
                let (verifier, challenge) = pkce_pair();
                let mut path = with_pkce(authorize_prefix, &challenge);
                let mut hops = 0;
                let loc = loop {
                    let cookie = jar.header();
                    let headers: Vec<(&str, &str)> = cookie.as_deref().map(|c| ("Cookie", c)).into_iter().collect();
                    let a = conn.send(&endpoint.request("GET", &path, &headers, b"")).await?;
                    jar.update(&a);
                    if !a.is_redirection() {
                        return Err(Failure::Status(a.status, a.text()));
                    }
                    let loc = a.location().context("no Location")?;
                    if loc.starts_with(redirect_uri.as_str()) {
                        break loc.to_owned();
                    }
                    hops += 1;
                    if hops > MAX_SERVER_REDIRECTS {
                        return Err(Failure::Other(anyhow!(
                            "more than {MAX_SERVER_REDIRECTS} redirects on the server, the last to {loc:.200}"
                        )));
                    }
                    path = endpoint.path_on_this_server(loc).map_err(|_| anyhow!("redirected elsewhere: {loc:.200}"))?;
                };
                let code = query_param(&loc, "code").with_context(|| format!("no code in {loc:.200}"))?;
                let body = form(&[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", redirect_uri),
                    ("code_verifier", &verifier),
                ]);
                let t = conn.send(&endpoint.post_form(token_path, &[("Authorization", auth)], &body)).await?;
                expect_ok(&t)
            }
        }
    }
}

/// One operation per connection for `scenario`; `None` when the target lacks what it needs.
pub(crate) fn ops(scenario: Scenario, seed: &Seed, fx: Option<&Fixtures>, n: usize) -> Result<Option<Vec<Op>>> {
    let e = &seed.endpoint;
    let token = e.path(&seed.paths.token)?;
    let fixed = |request: Vec<u8>, expect_active: bool| (0..n).map(|_| Op::Fixed { request: request.clone(), expect_active }).collect();
    let cc = form(&[("grant_type", "client_credentials")]);
    Ok(Some(match scenario {
        Scenario::Jwks => fixed(e.request("GET", &e.path(&seed.paths.jwks)?, &[], b""), false),
        Scenario::Discovery => fixed(e.request("GET", &e.path(&seed.paths.discovery)?, &[], b""), false),
        Scenario::CcOpaque | Scenario::CcJwt => {
            let client = if scenario == Scenario::CcOpaque { &seed.cc_opaque } else { &seed.cc_jwt };
            match client {
                Some(c) => fixed(e.post_form(&token, &[("Authorization", &c.basic)], &cc), false),
                None => return Ok(None),
            }
        }
        Scenario::Introspect => match (&seed.introspector, fx) {
            (Some(c), Some(fx)) => {
                let body = form(&[("token", &fx.access_token), ("token_type_hint", "access_token")]);
                fixed(e.post_form(&e.path(&seed.paths.introspect)?, &[("Authorization", &c.basic)], &body), true)
            }
            _ => return Ok(None),
        },
        Scenario::Refresh => match (&seed.code, fx) {
            (Some(c), Some(fx)) => fx
                .refresh_tokens
                .iter()
                .take(n)
                .map(|t| Op::Refresh { endpoint: e.clone(), path: token.clone(), auth: c.creds.basic.clone(), refresh_token: t.clone() })
                .collect(),
            _ => return Ok(None),
        },
        Scenario::CodeFlow => match (&seed.code, fx) {
            (Some(c), Some(fx)) => {
                let prefix = authorize_prefix(seed)?;
                fx.jars
                    .iter()
                    .take(n)
                    .map(|jar| Op::CodeFlow {
                        endpoint: e.clone(),
                        authorize_prefix: prefix.clone(),
                        token_path: token.clone(),
                        redirect_uri: c.redirect_uri.clone(),
                        auth: c.creds.basic.clone(),
                        jar: jar.clone(),
                    })
                    .collect()
            }
            _ => return Ok(None),
        },
        Scenario::PasswordLogin => match &seed.password_client {
            Some(c) => {
                let body =
                    form(&[("grant_type", "password"), ("username", &seed.email), ("password", &seed.password), ("scope", &c.scope)]);
                fixed(e.post_form(&token, &[("Authorization", &c.creds.basic)], &body), false)
            }
            None => return Ok(None),
        },
    }))
}

/// Whether `scenario` needs [`Fixtures`].
pub(crate) fn needs_fixtures(scenario: Scenario) -> bool {
    scenario.needs_fixtures()
}

/// How to drive a run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
    /// `None`: closed loop (each connection sends the next operation as soon as the last one
    /// is answered). `Some(interval)`: each connection starts one operation every `interval`,
    /// and latency counts from the scheduled start when behind schedule, so time spent waiting
    /// behind a slow server counts too.
    pub(crate) interval: Option<Duration>,
    /// The cores of the server and of the driver, when pinned: each gets a pause meter.
    pub(crate) cores: Option<Cores>,
}

/// Which core runs what.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cores {
    pub(crate) server: usize,
    pub(crate) driver: usize,
}

/// What a run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct RunResult {
    pub(crate) connections: usize,
    /// Operations started in the timed window and answered as expected.
    pub(crate) ok: u64,
    /// Operations started in the timed window that failed.
    pub(crate) errors: u64,
    /// Of those, answers with a 5xx status.
    pub(crate) server_errors: u64,
    /// Successful operations of the whole run, warm-up included (tokens issued).
    pub(crate) ok_with_warmup: u64,
    /// Successful operations per second of the timed window.
    pub(crate) throughput: f64,
    pub(crate) latency: Latency,
    /// Server CPU time over the timed window, in percent of one core.
    pub(crate) server_cpu_percent: Option<f64>,
    /// CPU of the database's own processes over the timed window (PostgreSQL), percent of one core.
    pub(crate) database_cpu_percent: Option<f64>,
    /// CPU of the load driver (this process) over the timed window, percent of one core: near
    /// 100, the driver rather than the server may be the limit.
    pub(crate) driver_cpu_percent: Option<f64>,
    /// Page faults of the server over the timed window: minor, and major (read from disk).
    pub(crate) server_minor_faults: Option<u64>,
    pub(crate) server_major_faults: Option<u64>,
    /// The largest resident set of the server sampled during the run, in kB.
    pub(crate) server_rss_max_kb: Option<u64>,
    /// The first few failures, for the report.
    pub(crate) failures: Vec<String>,
    /// For a paced run: the rate asked for, in operations per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) target_rate: Option<f64>,
    /// What the cores saw (pauses, steal) and when the slow operations started, when pinned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cores: Option<CoreWatch>,
}

struct ConnTally {
    ok: u64,
    errors: u64,
    server_errors: u64,
    ok_with_warmup: u64,
    samples: Vec<u32>,
    /// The timed operations over [`hiccup::SLOW`], with their start.
    slow: Vec<Timed>,
    /// How many timed operations were answered in each slice of the window.
    answered: BTreeMap<u64, u64>,
    failures: Vec<String>,
}

/// Runs `ops` (one per connection) under `load` and returns them (with the state they carry)
/// and what was measured. CPU and memory are read from `target`'s process.
pub(crate) async fn run(endpoint: &Endpoint, ops: Vec<Op>, load: Load, target: &dyn Target) -> Result<(Vec<Op>, RunResult)> {
    let n = ops.len();
    if n == 0 {
        bail!("no connections");
    }
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(Conn::open(endpoint).await?);
    }
    let start = Instant::now() + Duration::from_millis(20);
    let timed_from = start + load.warmup;
    let end = timed_from + load.duration;
    let tasks: Vec<_> = ops
        .into_iter()
        .zip(conns)
        .enumerate()
        .map(|(i, (mut op, mut conn))| {
            let endpoint = endpoint.clone();
            tokio::spawn(async move {
                let mut t = ConnTally {
                    ok: 0,
                    errors: 0,
                    server_errors: 0,
                    ok_with_warmup: 0,
                    samples: Vec::new(),
                    slow: Vec::new(),
                    answered: BTreeMap::new(),
                    failures: Vec::new(),
                };
                // Paced connections start spread over one interval, not all at once.
                let mut next = match load.interval {
                    Some(iv) => start + iv.mul_f64(i as f64 / n as f64),
                    None => start,
                };
                tokio::time::sleep_until(start).await;
                loop {
                    // `scheduled` decides the window the operation belongs to; latency counts
                    // from `origin`. Behind schedule, the origin is the scheduled start, so the
                    // time spent waiting behind a slow server counts (no coordinated omission).
                    // On schedule, it is the moment the timer woke us: the timer's granularity
                    // (1 ms) is the driver's, not the server's.
                    let (scheduled, origin) = match load.interval {
                        Some(_) if next > Instant::now() => {
                            tokio::time::sleep_until(next).await;
                            (next, Instant::now())
                        }
                        Some(_) => (next, next),
                        None => {
                            let now = Instant::now();
                            (now, now)
                        }
                    };
                    if scheduled >= end {
                        break;
                    }
                    let outcome = op.once(&mut conn).await;
                    let elapsed = Instant::now() - origin;
                    let timed = scheduled >= timed_from;
                    match outcome {
                        Ok(()) => {
                            t.ok_with_warmup += 1;
                            if timed {
                                t.ok += 1;
                                t.samples.push(micros(elapsed));
                                let at = origin.saturating_duration_since(timed_from);
                                if elapsed > hiccup::SLOW {
                                    t.slow.push(Timed { at, took: elapsed });
                                }
                                *t.answered.entry(hiccup::slice_of(at + elapsed)).or_default() += 1;
                            }
                        }
                        Err(f) => {
                            if timed {
                                t.errors += 1;
                            }
                            let text = match &f {
                                Failure::Status(s, body) => {
                                    if *s >= 500 && timed {
                                        t.server_errors += 1;
                                    }
                                    format!("HTTP {s}: {body:.200}")
                                }
                                Failure::Other(e) => format!("{e:#}"),
                            };
                            if t.failures.len() < 3 {
                                t.failures.push(text);
                            }
                        }
                    }
                    if conn.is_closed() {
                        match Conn::open(&endpoint).await {
                            Ok(c) => conn = c,
                            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                        }
                    }
                    if let Some(iv) = load.interval {
                        next += iv;
                    }
                }
                (op, t)
            })
        })
        .collect();

    // CPU over the timed window, memory sampled throughout.
    let pid = target.pid();
    let rss = pid.map(procfs::RssSampler::start);
    let meters = load.cores.map(|c| (hiccup::Meter::start(c.server, false), hiccup::Meter::start(c.driver, true)));
    let threads = load.cores.zip(pid).map(|(c, pid)| sched::ThreadSampler::start(pid, c.driver));
    tokio::time::sleep_until(timed_from).await;
    let steal0 = hiccup::core_ticks();
    let cpu0 = pid.and_then(|p| procfs::cpu_ticks(p).ok());
    let faults0 = pid.and_then(procfs::faults);
    let db0 = target.database_cpu_ticks();
    let me0 = procfs::cpu_ticks(std::process::id()).ok();
    let window_start = Instant::now();
    tokio::time::sleep_until(end).await;
    let cpu1 = pid.and_then(|p| procfs::cpu_ticks(p).ok());
    let faults1 = pid.and_then(procfs::faults);
    let db1 = target.database_cpu_ticks();
    let me1 = procfs::cpu_ticks(std::process::id()).ok();
    let steal1 = hiccup::core_ticks();
    let window = (Instant::now() - window_start).as_secs_f64();

    let mut ops = Vec::with_capacity(n);
    let mut result = RunResult { connections: n, ..RunResult::default() };
    let mut samples = Vec::new();
    let mut slow = Vec::new();
    let mut answered: BTreeMap<u64, u64> = BTreeMap::new();
    for task in tasks {
        let (op, t) = task.await.map_err(|e| anyhow!("a connection task failed: {e}"))?;
        ops.push(op);
        result.ok += t.ok;
        result.errors += t.errors;
        result.server_errors += t.server_errors;
        result.ok_with_warmup += t.ok_with_warmup;
        samples.extend(t.samples);
        slow.extend(t.slow);
        for (slice, n) in t.answered {
            *answered.entry(slice).or_default() += n;
        }
        for f in t.failures {
            if result.failures.len() < 5 && !result.failures.contains(&f) {
                result.failures.push(f);
            }
        }
    }
    result.server_rss_max_kb = match rss {
        Some(s) => Some(s.finish().await),
        None => None,
    };
    let ticks = procfs::clock_ticks_per_second() as f64;
    let percent = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) if window > 0.0 => Some(b.saturating_sub(a) as f64 / ticks / window * 100.0),
        _ => None,
    };
    result.server_cpu_percent = percent(cpu0, cpu1);
    if let (Some((min0, maj0)), Some((min1, maj1))) = (faults0, faults1) {
        result.server_minor_faults = Some(min1.saturating_sub(min0));
        result.server_major_faults = Some(maj1.saturating_sub(maj0));
    }
    result.database_cpu_percent = percent(db0, db1);
    result.driver_cpu_percent = percent(me0, me1);
    result.throughput = result.ok as f64 / load.duration.as_secs_f64();
    result.latency = Latency::of(&mut samples);
    if let (Some(c), Some((server, driver))) = (load.cores, meters) {
        let from = timed_from.into_std();
        let (server, driver) = (server.finish().unwrap_or_default(), driver.finish().unwrap_or_default());
        let walks: Vec<(Duration, Duration)> =
            driver.walks.iter().filter_map(|(at, took)| at.checked_duration_since(from).map(|at| (at, *took))).collect();
        let memory = hiccup::MemorySpeed::of(&walks);
        let threads = threads.and_then(sched::ThreadSampler::finish).map(|t| t.per_slice(from, hiccup::SLICE));
        result.cores = Some(hiccup::watch(&hiccup::Observed {
            slow: &slow,
            server_pauses: &hiccup::offsets(&server.pauses, from),
            driver_pauses: &hiccup::offsets(&driver.pauses, from),
            memory: memory.as_ref(),
            steal: (hiccup::steal_percent(&steal0, &steal1, c.server), hiccup::steal_percent(&steal0, &steal1, c.driver)),
            threads: threads.as_ref(),
            answered: &answered,
        }));
    }
    Ok((ops, result))
}

/// Runs `op` one operation after another on one connection, `count` times (after `warm`
/// uncounted runs), and returns the database round trips and statements each took on average.
pub(crate) async fn round_trips_per_op(
    endpoint: &Endpoint,
    op: &mut Op,
    warm: usize,
    count: usize,
    counter: &crate::target::RoundTripCounter,
) -> Result<(f64, f64)> {
    let mut conn = Conn::open(endpoint).await?;
    let (mut round_trips, mut statements) = (0, 0);
    for i in 0..warm + count {
        if i == warm {
            // Let the server's pool settle after the warm-up (statements prepared, connections open).
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let before = counter.get();
        op.once(&mut conn).await.map_err(|f| match f {
            Failure::Status(s, body) => anyhow!("HTTP {s}: {body:.200}"),
            Failure::Other(e) => e,
        })?;
        if i >= warm {
            // Counted per operation, so background work between operations is not.
            let after = counter.get();
            round_trips += after.0 - before.0;
            statements += after.1 - before.1;
        }
    }
    let count = count.max(1) as f64;
    Ok((round_trips as f64 / count, statements as f64 / count))
}
