//! The results: a JSON document for machines and a Markdown table for people.

use crate::hiccup::{CoreWatch, SLICE, SLOW_MEMORY};
use crate::scenario::{RunResult, Scenario};
use serde::Serialize;
use std::fmt::Write;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    pub(crate) nproc: usize,
    pub(crate) cpu_model: String,
    pub(crate) memory_total_kb: Option<u64>,
    pub(crate) kernel: String,
    pub(crate) rustc: String,
    pub(crate) git_commit: String,
    pub(crate) date: String,
    /// How the cores were shared out.
    pub(crate) pinning: String,
    /// The kernel's DAMON monitors (proactive reclaim on some virtual machines).
    pub(crate) damon: String,
    /// `/proc/loadavg` before and after the run: other work on the machine shows here.
    pub(crate) loadavg_start: String,
    pub(crate) loadavg_end: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Settings {
    pub(crate) duration_s: u64,
    pub(crate) warmup_s: u64,
    pub(crate) connections: usize,
    pub(crate) password_connections: usize,
    pub(crate) paced_fraction: f64,
    /// A fixed pace for every paced run (`--paced-rate`), instead of the fraction.
    pub(crate) paced_rate: Option<f64>,
    pub(crate) scenarios: Vec<String>,
}

/// A primitive run alone in a loop on the server's core: the ceiling of a scenario bound by it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Bare {
    /// What was run, with its parameters (`argon2id m=19456,t=2,p=1`, `RS256 sign_jwt`).
    pub(crate) parameters: String,
    /// The core it ran on (the server's), when pinned.
    pub(crate) core: Option<usize>,
    pub(crate) operations: u64,
    pub(crate) seconds: f64,
    pub(crate) per_second: f64,
    /// The rate of each measurement added up here (before and after the server's run).
    pub(crate) parts: Vec<f64>,
}

impl Bare {
    /// Both measurements as one.
    pub(crate) fn and(self, other: &Bare) -> Bare {
        let (operations, seconds) = (self.operations + other.operations, self.seconds + other.seconds);
        let parts = self.parts.iter().chain(&other.parts).copied().collect();
        Bare { operations, seconds, per_second: operations as f64 / seconds, parts, ..self }
    }

    /// A line of the Markdown summary: `scenario` ran at `ratio` of this rate.
    fn line(&self, scenario: &str, ratio: f64) -> String {
        format!(
            "- {scenario}: {:.0}% of the bare rate ({}: {:.1}/s on {}, measured just before and after: {})",
            ratio * 100.0,
            self.parameters,
            self.per_second,
            self.core.map_or("the driver's thread".to_owned(), |c| format!("the server's core {c}")),
            self.parts.iter().map(|r| format!("{r:.1}/s")).collect::<Vec<_>>().join(" and "),
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ScenarioReport {
    pub(crate) scenario: String,
    /// What one operation is: a request, or a whole flow (authorize + token).
    pub(crate) unit: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) skipped: Option<String>,
    pub(crate) saturation: Option<RunResult>,
    /// The same operations paced at a fraction of the saturation rate.
    pub(crate) paced: Option<RunResult>,
    pub(crate) db_bytes_before: Option<u64>,
    pub(crate) db_bytes_after: Option<u64>,
    /// Successful token-issuing operations of the saturation run, warm-up included.
    pub(crate) tokens_issued: Option<u64>,
    pub(crate) db_bytes_per_million_tokens: Option<f64>,
    /// The server's `VmHWM` (peak resident set since it started) after this scenario, in kB.
    pub(crate) server_vm_hwm_kb: Option<u64>,
    /// The scenario's rate over the bare rate of what bounds it on one core: Argon2id
    /// verifications for password_login, JWT signatures for cc_jwt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ratio_to_bare: Option<f64>,
    /// The bare rate that ratio is taken against, measured on the server's core half just
    /// before the scenario and half just after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) bare: Option<Bare>,
}

impl ScenarioReport {
    /// A scenario with nothing measured yet.
    pub(crate) fn new(scenario: &str, unit: &'static str) -> Self {
        Self {
            scenario: scenario.to_owned(),
            unit,
            skipped: None,
            saturation: None,
            paced: None,
            db_bytes_before: None,
            db_bytes_after: None,
            tokens_issued: None,
            db_bytes_per_million_tokens: None,
            server_vm_hwm_kb: None,
            ratio_to_bare: None,
            bare: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RoundTrips {
    pub(crate) scenario: String,
    /// Round trips (waits for the database's answer) per operation.
    pub(crate) per_operation: f64,
    pub(crate) statements_per_operation: f64,
    /// Write-ahead log the cluster wrote per operation, while nothing else ran on the server.
    pub(crate) wal_bytes_per_operation: Option<f64>,
    pub(crate) operations: usize,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct TargetReport {
    pub(crate) target: String,
    pub(crate) backend: String,
    /// The algorithm of its id_tokens and JWT access tokens (`RS256`, Latchkey's default).
    pub(crate) signing_alg: String,
    /// How durable an acknowledged write is.
    pub(crate) durability: Option<String>,
    pub(crate) start_to_first_answer_ms: Option<f64>,
    /// The path whose first 200 ended "start to first answer".
    pub(crate) first_answer_probe: Option<String>,
    pub(crate) scenarios: Vec<ScenarioReport>,
    pub(crate) round_trips: Vec<RoundTrips>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) round_trips_error: Option<String>,
    /// WARN and ERROR lines of the server's log.
    pub(crate) log_problems: Vec<String>,
    pub(crate) log_copy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    pub(crate) notes: Vec<String>,
}

impl TargetReport {
    pub(crate) fn new(target: &str, backend: &str, signing_alg: &str) -> Self {
        Self {
            target: target.to_owned(),
            backend: backend.to_owned(),
            signing_alg: signing_alg.to_owned(),
            durability: None,
            start_to_first_answer_ms: None,
            first_answer_probe: None,
            scenarios: Vec::new(),
            round_trips: Vec::new(),
            round_trips_error: None,
            log_problems: Vec::new(),
            log_copy: None,
            error: None,
            notes: Vec::new(),
        }
    }

    /// A target that could not even be set up.
    pub(crate) fn failed(target: &str, backend: &str, signing_alg: &str, error: &anyhow::Error) -> Self {
        Self { error: Some(format!("{error:#}")), ..Self::new(target, backend, signing_alg) }
    }

    pub(crate) fn label(&self) -> String {
        format!("{}/{}/{}", self.target, self.backend, self.signing_alg)
    }

    fn scenario(&self, name: &str) -> Option<&ScenarioReport> {
        self.scenarios.iter().find(|sc| sc.scenario == name)
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) machine: Machine,
    pub(crate) settings: Settings,
    pub(crate) targets: Vec<TargetReport>,
    /// Latchkey on SQLite against each peer, measure by measure, with issue 6's targets.
    pub(crate) comparisons: Vec<Comparison>,
}

/// One measure of Latchkey against a peer.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ComparisonRow {
    /// A scenario's name, or `peak_rss`, `start_to_first_answer`, `p99_at_70_percent`.
    pub(crate) measure: String,
    /// The unit of both values: `requests/s`, `flows/s`, `MB`, `ms`.
    pub(crate) unit: String,
    pub(crate) latchkey: Option<f64>,
    pub(crate) peer: Option<f64>,
    /// For rates, Latchkey's over the peer's; for memory, the peer's over Latchkey's (how many
    /// times less Latchkey uses). None for absolute targets.
    pub(crate) ratio: Option<f64>,
    /// Issue 6's target, in words.
    pub(crate) target: String,
    /// Whether the target holds in this run; None when there is no target or nothing to compare.
    pub(crate) holds: Option<bool>,
    /// What qualifies the row: errors, a driver-bound rate, an unsupported scenario, which
    /// scenario was the worst.
    pub(crate) notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Comparison {
    /// `latchkey/sqlite/RS256`.
    pub(crate) latchkey: String,
    /// The peer's target, backend and algorithm (`oidc-provider/sqlite/RS256`).
    pub(crate) peer: String,
    /// The main configuration (the server's defaults), or an extra algorithm's scenarios.
    pub(crate) main: bool,
    /// Each side's durability, in words: the comparison is only fair at the same durability.
    pub(crate) latchkey_durability: Option<String>,
    pub(crate) peer_durability: Option<String>,
    pub(crate) rows: Vec<ComparisonRow>,
}

/// Issue 6: Latchkey's rate on SQLite over the peer's, per scenario.
const RATE_TARGETS: [(&str, f64); 7] =
    [("cc_opaque", 5.0), ("cc_jwt", 5.0), ("introspect", 8.0), ("refresh", 5.0), ("code_flow", 5.0), ("jwks", 5.0), ("discovery", 5.0)];
/// Server CPU (percent of its core) under which the ratio table notes it: the server waits
/// rather than computes.
const IDLE_CPU: f64 = 60.0;
/// Issue 6: Latchkey's peak RSS at most a tenth of the peer's.
const MEMORY_FACTOR: f64 = 10.0;
/// Issue 6: start to first answer under 50 ms (Latchkey, absolute).
const FIRST_ANSWER_MS: f64 = 50.0;
/// Issue 6: p99 at 70% of the saturation rate under 10 ms (Latchkey, absolute).
const P99_PACED_MS: f64 = 10.0;

/// Latchkey on SQLite against every other target of the run (the peers) that signs with the
/// same algorithm. `paced_at_70` says whether the paced runs went at 70% of each target's rate,
/// the load of the p99 target. The first Latchkey on SQLite is the main configuration (the
/// server's defaults): its comparisons have every row; those of the other algorithms, which
/// run only the scenarios that sign, compare those scenarios' rates.
pub(crate) fn compare(targets: &[TargetReport], paced_at_70: bool) -> Vec<Comparison> {
    let mut out = Vec::new();
    for (i, lk) in targets.iter().filter(|t| t.target == "latchkey" && t.backend == "sqlite").enumerate() {
        for peer in targets.iter().filter(|t| t.target != "latchkey" && t.signing_alg == lk.signing_alg) {
            out.push(compare_one(lk, peer, paced_at_70, i == 0));
        }
    }
    out
}

fn compare_one(lk: &TargetReport, peer: &TargetReport, paced_at_70: bool, main: bool) -> Comparison {
    let (mut rows, both) = rate_rows(lk, peer);
    if main {
        rows.extend(whole_run_rows(lk, peer, &both, paced_at_70));
    }
    Comparison {
        latchkey: lk.label(),
        peer: peer.label(),
        main,
        latchkey_durability: lk.durability.clone(),
        peer_durability: peer.durability.clone(),
        rows,
    }
}

/// A row per scenario: the two rates and their ratio; and the scenarios both measured.
fn rate_rows<'a>(lk: &'a TargetReport, peer: &'a TargetReport) -> (Vec<ComparisonRow>, Vec<&'a str>) {
    let mut rows = Vec::new();
    let mut names: Vec<&str> = lk.scenarios.iter().map(|sc| sc.scenario.as_str()).collect();
    names.extend(peer.scenarios.iter().map(|sc| sc.scenario.as_str()).filter(|n| lk.scenario(n).is_none()));
    // Scenarios both measured: memory is compared over these only (the peer cannot run
    // password_login, whose Argon2id checks take 19 MiB each).
    let mut both = Vec::new();
    for name in names {
        let (l, p) = (lk.scenario(name), peer.scenario(name));
        let (ls, ps) = (l.and_then(|s| s.saturation.as_ref()), p.and_then(|s| s.saturation.as_ref()));
        let target = RATE_TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f);
        let unit = l.or(p).map_or("requests", |s| s.unit);
        let mut notes = Vec::new();
        for (side, label, sc, run) in [(lk, "Latchkey", l, ls), (peer, peer.target.as_str(), p, ps)] {
            match (sc, run) {
                (Some(sc), None) => notes.push(format!("{label}: {}", sc.skipped.as_deref().unwrap_or("not measured"))),
                (None, _) => notes.push(format!("{label}: not run{}", if side.error.is_some() { " (the target failed)" } else { "" })),
                (Some(sc), Some(r)) => {
                    if r.errors > 0 {
                        notes.push(format!("{label}: {} errors", r.errors));
                    }
                    if r.driver_cpu_percent.is_some_and(|c| c >= DRIVER_BOUND) {
                        notes.push(format!("{label}: the load driver was at its limit, the rate is a lower bound"));
                    }
                    // A server that does not use its core is waiting: on the disk, at full durability.
                    if let Some(c) = r.server_cpu_percent.filter(|c| *c < IDLE_CPU) {
                        notes.push(format!("{label}: server CPU {c:.0}%"));
                    }
                    // A rate bound by a primitive: how near its ceiling it runs.
                    if let (Some(ratio), Some(bare)) = (sc.ratio_to_bare, &sc.bare) {
                        notes.push(format!("{label}: {:.0}% of the bare {}", ratio * 100.0, bare.parameters));
                    }
                    // Over enough tokens that free pages cannot hide the growth.
                    if sc.db_bytes_per_million_tokens == Some(0.0) && sc.tokens_issued.is_some_and(|n| n >= 1000) {
                        notes.push(format!("{label}: stores nothing per token"));
                    }
                }
            }
        }
        let (lv, pv) = (ls.map(|r| r.throughput), ps.map(|r| r.throughput));
        let ratio = match (lv, pv) {
            (Some(l), Some(p)) if p > 0.0 => Some(l / p),
            _ => None,
        };
        if ls.is_some() && ps.is_some() {
            both.push(name);
        }
        rows.push(ComparisonRow {
            measure: name.to_owned(),
            unit: format!("{unit}/s"),
            latchkey: lv,
            peer: pv,
            ratio,
            target: target.map_or_else(|| "–".to_owned(), |f| format!("≥ {f:.0}×")),
            holds: target.zip(ratio).map(|(f, r)| r >= f),
            notes,
        });
    }

    (rows, both)
}

/// The rows of the main configuration that are about the whole run: memory, start, p99.
fn whole_run_rows(lk: &TargetReport, peer: &TargetReport, both: &[&str], paced_at_70: bool) -> Vec<ComparisonRow> {
    let mut rows = Vec::new();
    // Peak RSS: the largest VmRSS sampled during the scenarios both ran; and apart, during those
    // before any browser signs in, since Latchkey checks passwords with Argon2id (19 MiB each)
    // there while the peer's programmatic login checks none.
    let without_sign_in: Vec<&str> =
        both.iter().copied().filter(|n| !Scenario::parse(n).is_some_and(crate::scenario::needs_fixtures)).collect();
    for (measure, names, note) in [
        ("peak_rss_before_sign_in", &without_sign_in[..], "largest VmRSS sampled during the scenarios both ran before any browser signs in"),
        (
            "peak_rss",
            both,
            "largest VmRSS sampled during the scenarios both ran, those after the browsers signed in included: Latchkey's browsers sign in with a password (Argon2id, 19 MiB per check), the peer's with none; the scenarios start 6 s after the sign-ins, and Latchkey frees its Argon2 memory 5 s after the last check",
        ),
    ] {
        if names.is_empty() {
            continue;
        }
        let peak = |t: &TargetReport| {
            names
                .iter()
                .filter_map(|n| t.scenario(n))
                .flat_map(|sc| sc.saturation.iter().chain(sc.paced.iter()))
                .filter_map(|r| r.server_rss_max_kb)
                .max()
                .map(|kb| kb as f64 / 1024.0)
        };
        let (lm, pm) = (peak(lk), peak(peer));
        let ratio = match (lm, pm) {
            (Some(l), Some(p)) if l > 0.0 => Some(p / l),
            _ => None,
        };
        rows.push(ComparisonRow {
            measure: measure.into(),
            unit: "MB".into(),
            latchkey: lm,
            peer: pm,
            ratio,
            target: format!("Latchkey ≤ 1/{MEMORY_FACTOR:.0} of the peer's"),
            holds: ratio.map(|r| r >= MEMORY_FACTOR),
            notes: vec![note.into()],
        });
    }

    let (ls, ps) = (lk.start_to_first_answer_ms, peer.start_to_first_answer_ms);
    let probe = |t: &TargetReport| t.first_answer_probe.clone().unwrap_or_else(|| "?".into());
    rows.push(ComparisonRow {
        measure: "start_to_first_answer".into(),
        unit: "ms".into(),
        latchkey: ls,
        peer: ps,
        ratio: None,
        target: format!("Latchkey < {FIRST_ANSWER_MS:.0} ms"),
        holds: ls.map(|ms| ms < FIRST_ANSWER_MS),
        notes: vec![format!("first 200 of {} (Latchkey), of {} ({})", probe(lk), probe(peer), peer.target)],
    });

    // p99 at 70% load: the worst scenario of each (the target is Latchkey's, absolute).
    let worst = |t: &TargetReport| {
        t.scenarios
            .iter()
            .filter_map(|sc| sc.paced.as_ref().map(|p| (sc.scenario.as_str(), p.latency.p99_us)))
            .max_by_key(|(_, us)| *us)
            .map(|(name, us)| (name.to_owned(), us as f64 / 1000.0))
    };
    let (lw, pw) = (worst(lk), worst(peer));
    let mut notes = Vec::new();
    if !paced_at_70 {
        notes.push("paced at a fixed rate (--paced-rate), not at 70%: the target is not judged".to_owned());
    }
    for (label, w) in [("Latchkey", &lw), (peer.target.as_str(), &pw)] {
        if let Some((name, _)) = w {
            notes.push(format!("{label}: worst in {name}"));
        }
    }
    rows.push(ComparisonRow {
        measure: "p99_at_70_percent".into(),
        unit: "ms".into(),
        latchkey: lw.as_ref().map(|(_, ms)| *ms),
        peer: pw.as_ref().map(|(_, ms)| *ms),
        ratio: None,
        target: format!("Latchkey < {P99_PACED_MS:.0} ms (every scenario)"),
        holds: lw.as_ref().filter(|_| paced_at_70).map(|(_, ms)| *ms < P99_PACED_MS),
        notes,
    });
    rows
}

/// The ratio table of one comparison, in Markdown.
fn comparison_markdown(s: &mut String, c: &Comparison) {
    let what = if c.main { "" } else { " (the scenarios that sign, with another algorithm)" };
    let _ = writeln!(s, "\n## {} against {}{what}\n", c.latchkey, c.peer);
    let _ = writeln!(
        s,
        "Same machine, pinning, load and scenarios, the targets taking turns scenario by scenario. Durability: {}: {}; {}: {}.\n",
        c.latchkey,
        c.latchkey_durability.as_deref().unwrap_or("unknown"),
        c.peer,
        c.peer_durability.as_deref().unwrap_or("unknown")
    );
    let _ = writeln!(s, "| measure | {} | {} | ratio | target (issue 6) | holds | notes |", c.latchkey, c.peer);
    let _ = writeln!(s, "|---|---:|---:|---:|---|---|---|");
    for r in &c.rows {
        let value = |v: Option<f64>| match (v, r.unit.as_str()) {
            (None, _) => "–".to_owned(),
            (Some(v), "MB" | "ms") => format!("{v:.1}"),
            (Some(v), _) => rate(v),
        };
        let peer =
            if r.peer.is_none() && r.notes.iter().any(|n| n.contains("not supported")) { "not supported".into() } else { value(r.peer) };
        let ratio = match (r.ratio, r.measure.as_str()) {
            (None, _) => "–".to_owned(),
            (Some(x), m) if m.starts_with("peak_rss") && x >= 1.0 => format!("{x:.1}× less"),
            (Some(x), m) if m.starts_with("peak_rss") && x > 0.0 => format!("{:.1}× more", 1.0 / x),
            (Some(x), _) => format!("{x:.1}×"),
        };
        let holds = match r.holds {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        let _ = writeln!(
            s,
            "| {} ({}) | {} | {peer} | {ratio} | {} | {holds} | {} |",
            r.measure,
            r.unit,
            value(r.latchkey),
            r.target,
            r.notes.join("; ")
        );
    }
}

/// Driver CPU (percent of its core) from which a saturation rate may be the driver's limit.
const DRIVER_BOUND: f64 = 90.0;

fn rate(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

/// A byte count in decimal units.
pub(crate) fn bytes(b: f64) -> String {
    match b {
        b if b >= 1e9 => format!("{:.2} GB", b / 1e9),
        b if b >= 1e6 => format!("{:.0} MB", b / 1e6),
        b if b >= 1e3 => format!("{:.0} kB", b / 1e3),
        b => format!("{b:.0} B"),
    }
}

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "–".into())
}

/// The Markdown summary.
pub(crate) fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let m = &r.machine;
    let _ = writeln!(s, "# Latchkey benchmark\n");
    let _ = writeln!(
        s,
        "{} · {} cores ({}) · kernel {} · {} · commit {} · {} · load average before {} / after {} · DAMON: {}\n",
        m.date, m.nproc, m.cpu_model, m.kernel, m.rustc, m.git_commit, m.pinning, m.loadavg_start, m.loadavg_end, m.damon
    );
    let st = &r.settings;
    let _ = writeln!(
        s,
        "Targets take turns: each scenario runs on every target before the next scenario, and the targets not measured are frozen (SIGSTOP). \
         Each scenario: {} s warm-up, then {} s timed; HTTP/1.1 keep-alive, {} connections ({} for password_login), each a loop of operations. \
         p99@70%: the same operations paced (open loop, fixed interval per connection; behind schedule, latency counts from the scheduled start) at {}. \
         Latencies in µs; code_flow counts whole flows (authorize + token). errors: operations that did not get the expected answer (5xx counted apart). \
         server CPU: utime+stime of the server process over the timed window, % of one core. peak RSS: largest VmRSS sampled every 50 ms during the scenario \
         (the browsers of introspect, refresh and code_flow sign in, with Argon2id, just before introspect). \
         DB bytes per 1M tokens: growth of the database over the saturation run (warm-up included) per successful token answer (per flow for code_flow), read 8 s after the run, once what is transient (Latchkey's refresh replay answers, kept 5 s) is gone: the bytes that stay with the tokens.\n",
        st.warmup_s,
        st.duration_s,
        st.connections,
        st.password_connections,
        match st.paced_rate {
            Some(rate) => format!("a fixed {rate:.0} operations/s (--paced-rate), in every scenario, instead of 70% of the measured rate"),
            None => format!("{:.0}% of the measured rate", st.paced_fraction * 100.0),
        }
    );
    let paced = st.paced_rate.map_or_else(|| "p99@70%".to_owned(), |rate| format!("p99@{rate:.0}/s"));
    let _ = writeln!(
        s,
        "| scenario | backend | req/s | p50 | p90 | p99 | {paced} | max | errors | server CPU % | peak RSS MB | DB bytes per 1M tokens |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for t in &r.targets {
        let backend = t.label();
        for sc in &t.scenarios {
            let Some(sat) = &sc.saturation else {
                let _ =
                    writeln!(s, "| {} | {backend} | skipped: {} | | | | | | | | | |", sc.scenario, sc.skipped.as_deref().unwrap_or("?"));
                continue;
            };
            let l = &sat.latency;
            let errors = if sat.server_errors > 0 { format!("{} ({} 5xx)", sat.errors, sat.server_errors) } else { sat.errors.to_string() };
            let _ = writeln!(
                s,
                "| {} | {backend} | {}{} | {} | {} | {} | {} | {} | {errors} | {} | {} | {} |",
                sc.scenario,
                rate(sat.throughput),
                if sat.driver_cpu_percent.is_some_and(|c| c >= DRIVER_BOUND) { "*" } else { "" },
                l.p50_us,
                l.p90_us,
                l.p99_us,
                opt(sc.paced.as_ref(), |p| format!(
                    "{}{}",
                    p.latency.p99_us,
                    if p.errors > 0 { format!(" ({} err)", p.errors) } else { String::new() }
                )),
                l.max_us,
                opt(sat.server_cpu_percent, |c| format!("{c:.0}")),
                opt(sat.server_rss_max_kb, |k| format!("{:.1}", k as f64 / 1024.0)),
                opt(sc.db_bytes_per_million_tokens, bytes),
            );
        }
    }
    let _ = writeln!(s);
    if r.targets
        .iter()
        .flat_map(|t| &t.scenarios)
        .filter_map(|sc| sc.saturation.as_ref())
        .any(|r| r.driver_cpu_percent.is_some_and(|c| c >= DRIVER_BOUND))
    {
        let _ = writeln!(s, "\\* the load driver used {DRIVER_BOUND:.0}% or more of its core: the server may be able to do more.\n");
    }
    for c in &r.comparisons {
        comparison_markdown(&mut s, c);
    }
    if r.comparisons.is_empty() && r.targets.iter().any(|t| t.target != "latchkey") {
        let _ = writeln!(s, "\nNo ratio table: the run had no latchkey/sqlite to compare the peer with.");
    }
    for t in &r.targets {
        let _ = writeln!(s, "\n## {}\n", t.label());
        if let Some(e) = &t.error {
            let _ = writeln!(s, "- **failed**: {e}");
        }
        if let Some(d) = &t.durability {
            let _ = writeln!(s, "- durability: {d}");
        }
        if let Some(ms) = t.start_to_first_answer_ms {
            let probe = t.first_answer_probe.as_deref().unwrap_or("?");
            let _ = writeln!(s, "- start to first answer (spawn to first 200 from {probe}, fresh database): {ms:.1} ms");
        }
        for sc in &t.scenarios {
            if let (Some(ratio), Some(bare)) = (sc.ratio_to_bare, &sc.bare) {
                let _ = writeln!(s, "{}", bare.line(&sc.scenario, ratio));
            }
        }
        if let Some(hwm) = t.scenarios.iter().filter_map(|sc| sc.server_vm_hwm_kb).max() {
            let _ = writeln!(s, "- server VmHWM (peak resident set) at the end: {:.1} MB", hwm as f64 / 1024.0);
        }
        for sc in &t.scenarios {
            let Some(run) = sc.saturation.as_ref() else { continue };
            if let Some(db) = run.database_cpu_percent {
                // CPU per operation: a percent of one core over operations per second.
                let per_op = |percent: f64| percent * 10_000.0 / run.throughput;
                let _ = writeln!(
                    s,
                    "- {}: postgres processes' CPU {db:.0}% of one core, {:.0} µs per operation (the server's: {})",
                    sc.scenario,
                    per_op(db),
                    opt(run.server_cpu_percent, |c| format!("{:.0} µs", per_op(c)))
                );
            }
        }
        if !t.round_trips.is_empty() {
            let list: Vec<String> = t
                .round_trips
                .iter()
                .map(|rt| {
                    format!(
                        "{} {:.2} / {:.2} / {}",
                        rt.scenario,
                        rt.per_operation,
                        rt.statements_per_operation,
                        opt(rt.wal_bytes_per_operation, bytes)
                    )
                })
                .collect();
            let _ = writeln!(
                s,
                "- database work per operation (round trips / statements / WAL bytes, sequential operations on one connection): {}",
                list.join(", ")
            );
        }
        if let Some(e) = &t.round_trips_error {
            let _ = writeln!(s, "- round trips not measured: {e}");
        }
        for sc in &t.scenarios {
            if let Some(line) = sc.paced.as_ref().and_then(|p| pauses_line(&sc.scenario, p)) {
                let _ = writeln!(s, "{line}");
            }
        }
        for sc in &t.scenarios {
            for f in sc.saturation.iter().chain(sc.paced.iter()).flat_map(|r| r.failures.iter()) {
                let _ = writeln!(s, "- {} failure: {}", sc.scenario, f.replace('\n', " "));
            }
        }
        if t.log_problems.is_empty() {
            let _ = writeln!(s, "- server log: no WARN or ERROR line");
        } else {
            let _ = writeln!(
                s,
                "- server log: {} WARN/ERROR lines, the first: `{}`",
                t.log_problems.len(),
                t.log_problems[0].replace('`', "'")
            );
        }
        for n in &t.notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    s
}

/// One line on what the cores saw during a paced run, and the slowest stretch beside it.
fn pauses_line(scenario: &str, run: &RunResult) -> Option<String> {
    let c: &CoreWatch = run.cores.as_ref()?;
    let pct = |p: Option<f64>| opt(p, |p| format!("{p:.1}%"));
    let mut line = format!(
        "- {scenario} paced: longest pause of a sleeping thread {} ms on the server's core, {} ms on the driver's; steal {} / {}; \
         memory {}× slower than usual (the median walk of {} µs) in {} of the run's slices",
        opt(c.server_core_max_pause_ms, |m| format!("{m:.1}")),
        opt(c.driver_core_max_pause_ms, |m| format!("{m:.1}")),
        pct(c.server_core_steal_percent),
        pct(c.driver_core_steal_percent),
        SLOW_MEMORY,
        opt(c.memory_walk_median_us, |m| format!("{m:.0}")),
        pct(c.slow_memory_slices_percent),
    );
    match c.slow_stretches.first() {
        Some(w) => {
            let _ = write!(
                line,
                " and in {} of the slices with operations over 10 ms; slowest stretch at {:.1} s: {} operations over 10 ms, up to {} ms, \
                 beside pauses of {} ms (server's core) and {} ms (driver's) and memory {}× slower",
                pct(c.slow_slices_with_slow_memory_percent),
                w.at_s,
                w.slow_operations,
                w.max_latency_ms,
                w.server_core_pause_ms,
                w.driver_core_pause_ms,
                opt(w.memory_slowdown, |f| format!("{f:.1}")),
            );
            if let (Some(cpu), Some(wait)) = (w.server_cpu_ms, w.server_wait_ms) {
                let threads: Vec<String> = w.busiest_threads.iter().map(|(name, ms)| format!("{name} {ms:.0}")).collect();
                let _ = write!(
                    line,
                    "; there (with the slice before) the server's threads ran {cpu:.0} ms of {} ({}) and waited {wait:.0} ms for a CPU, \
                     at {}× their usual CPU per operation ({} µs)",
                    2 * SLICE.as_millis(),
                    threads.join(", "),
                    opt(w.cpu_per_operation, |f| format!("{f:.2}")),
                    opt(c.server_cpu_per_operation_us, |us| format!("{us:.1}")),
                );
            }
        }
        None => line.push_str("; no operation over 10 ms"),
    }
    if let (Some(minor), Some(major)) = (run.server_minor_faults, run.server_major_faults) {
        let _ = write!(line, "; server page faults {major} major, {minor} minor");
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(name: &str, rate: Option<f64>, rss_kb: u64, p99_us: u32) -> ScenarioReport {
        let run = |throughput| RunResult { throughput, server_rss_max_kb: Some(rss_kb), ..RunResult::default() };
        let mut paced = run(0.0);
        paced.latency.p99_us = p99_us;
        ScenarioReport {
            skipped: rate.is_none().then(|| "not supported by this target".into()),
            saturation: rate.map(run),
            paced: rate.map(|_| paced),
            ..ScenarioReport::new(name, "requests")
        }
    }

    #[test]
    fn bare_measurements_add_up() {
        let m = |operations, seconds: f64| Bare {
            parameters: "argon2id m=19456,t=2,p=1".into(),
            core: Some(0),
            operations,
            seconds,
            per_second: operations as f64 / seconds,
            parts: vec![operations as f64 / seconds],
        };
        let both = m(400, 5.0).and(&m(500, 5.0));
        assert_eq!((both.operations, both.seconds, both.per_second), (900, 10.0, 90.0));
        assert_eq!(both.parts, vec![80.0, 100.0]);
        assert_eq!(both.core, Some(0));
        assert_eq!(
            both.line("password_login", 0.9),
            "- password_login: 90% of the bare rate (argon2id m=19456,t=2,p=1: 90.0/s on the server's core 0, measured just before and after: 80.0/s and 100.0/s)"
        );
    }

    #[test]
    fn the_ratio_table_compares_latchkey_on_sqlite_with_the_peer() {
        let mut lk = TargetReport::new("latchkey", "sqlite", "RS256");
        lk.start_to_first_answer_ms = Some(12.0);
        lk.scenarios = vec![
            scenario("cc_opaque", Some(6000.0), 10 * 1024, 2000),
            scenario("introspect", Some(7000.0), 100 * 1024, 12_000),
            scenario("password_login", Some(8.0), 300 * 1024, 0),
        ];
        let mut peer = TargetReport::new("oidc-provider", "sqlite", "RS256");
        peer.start_to_first_answer_ms = Some(400.0);
        peer.scenarios = vec![
            scenario("cc_opaque", Some(1000.0), 150 * 1024, 30_000),
            scenario("introspect", Some(1000.0), 150 * 1024, 5000),
            scenario("password_login", None, 0, 0),
        ];
        let mut postgres = TargetReport::new("latchkey", "postgres", "RS256");
        postgres.scenarios = vec![scenario("cc_opaque", Some(1.0), 1, 1)];
        let comparisons = compare(&[lk.clone(), postgres.clone(), peer.clone()], true);
        assert_eq!(comparisons.len(), 1, "one peer, compared with latchkey/sqlite only");
        let c = &comparisons[0];
        let row = |m: &str| c.rows.iter().find(|r| r.measure == m).unwrap_or_else(|| panic!("no row {m}"));
        assert_eq!((row("cc_opaque").ratio, row("cc_opaque").holds), (Some(6.0), Some(true)));
        assert_eq!((row("introspect").ratio, row("introspect").holds), (Some(7.0), Some(false)), "introspect needs 8x");
        assert_eq!((row("password_login").peer, row("password_login").holds), (None, None));
        // Memory over the scenarios both ran: password_login's Argon2id does not count.
        assert_eq!((row("peak_rss_before_sign_in").latchkey, row("peak_rss_before_sign_in").holds), (Some(10.0), Some(true)));
        assert_eq!((row("peak_rss").latchkey, row("peak_rss").holds), (Some(100.0), Some(false)));
        assert_eq!(row("start_to_first_answer").holds, Some(true));
        assert_eq!((row("p99_at_70_percent").latchkey, row("p99_at_70_percent").holds), (Some(12.0), Some(false)));
        // Paced at a fixed rate (--paced-rate), the p99 is reported but not judged.
        let fixed = compare(&[lk, postgres, peer], false);
        let p99 = fixed[0].rows.iter().find(|r| r.measure == "p99_at_70_percent").unwrap();
        assert_eq!((p99.latchkey, p99.holds), (Some(12.0), None));
        let mut md = String::new();
        comparison_markdown(&mut md, c);
        assert!(md.contains("| password_login (requests/s) | 8.0 | not supported |"), "{md}");
        assert!(md.contains("| cc_opaque (requests/s) | 6000 | 1000 | 6.0× | ≥ 5× | yes |"), "{md}");
    }

    #[test]
    fn each_algorithm_is_compared_with_the_peer_signing_with_it() {
        let target = |name: &str, alg: &str, rate: f64| {
            let mut t = TargetReport::new(name, "sqlite", alg);
            t.scenarios = vec![scenario("cc_jwt", Some(rate), 10 * 1024, 1000)];
            t
        };
        let targets = [
            target("latchkey", "RS256", 2400.0),
            target("oidc-provider", "RS256", 800.0),
            target("latchkey", "ES256", 9000.0),
            target("oidc-provider", "ES256", 1000.0),
            target("latchkey", "EdDSA", 12000.0),
        ];
        let c = compare(&targets, true);
        let pairs: Vec<(&str, &str, bool)> = c.iter().map(|c| (c.latchkey.as_str(), c.peer.as_str(), c.main)).collect();
        assert_eq!(
            pairs,
            [("latchkey/sqlite/RS256", "oidc-provider/sqlite/RS256", true), ("latchkey/sqlite/ES256", "oidc-provider/sqlite/ES256", false)],
            "no peer signs with EdDSA here"
        );
        assert_eq!(c[0].rows.iter().find(|r| r.measure == "cc_jwt").and_then(|r| r.ratio), Some(3.0));
        // Another algorithm's comparison has its rates only: memory, start and p99 are the main configuration's.
        assert_eq!(c[1].rows.iter().map(|r| r.measure.as_str()).collect::<Vec<_>>(), ["cc_jwt"]);
        assert_eq!(c[1].rows[0].ratio, Some(9.0));
    }

    #[test]
    fn byte_counts_read_well() {
        for (b, want) in [(999.0, "999 B"), (1500.0, "2 kB"), (2.5e6, "2 MB"), (1.234e9, "1.23 GB")] {
            assert_eq!(bytes(b), want, "{b}");
        }
    }
}
