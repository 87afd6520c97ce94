//! The results: a JSON document for machines and a Markdown table for people.

use crate::scenario::RunResult;
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
    pub(crate) scenarios: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Argon2Bare {
    /// Parameters of `latchkey_core::password` (the argon2 crate's defaults).
    pub(crate) parameters: String,
    pub(crate) verifies: u64,
    pub(crate) seconds: f64,
    pub(crate) verifies_per_second: f64,
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
    /// Password grants per second over bare Argon2id verifications per second on one core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ratio_to_bare_argon2: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RoundTrips {
    pub(crate) scenario: String,
    pub(crate) per_operation: f64,
    pub(crate) operations: usize,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct TargetReport {
    pub(crate) target: String,
    pub(crate) backend: String,
    pub(crate) start_to_first_answer_ms: Option<f64>,
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

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) machine: Machine,
    pub(crate) settings: Settings,
    pub(crate) argon2_bare: Option<Argon2Bare>,
    pub(crate) targets: Vec<TargetReport>,
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
        "{} · {} cores ({}) · kernel {} · {} · commit {} · {} · load average before {} / after {}\n",
        m.date, m.nproc, m.cpu_model, m.kernel, m.rustc, m.git_commit, m.pinning, m.loadavg_start, m.loadavg_end
    );
    let st = &r.settings;
    let _ = writeln!(
        s,
        "Each scenario: {} s warm-up, then {} s timed; HTTP/1.1 keep-alive, {} connections ({} for password_login), each a loop of operations. \
         p99@70%: the same operations paced (open loop, fixed interval per connection; behind schedule, latency counts from the scheduled start) at {:.0}% of the measured rate. \
         Latencies in µs; code_flow counts whole flows (authorize + token). errors: operations that did not get the expected answer (5xx counted apart). \
         server CPU: utime+stime of the server process over the timed window, % of one core. peak RSS: largest VmRSS sampled every 50 ms during the scenario \
         (the browsers of introspect, refresh and code_flow sign in, with Argon2id, just before introspect). \
         DB bytes per 1M tokens: growth of the database over the saturation run (warm-up included) per successful token answer (per flow for code_flow).\n",
        st.warmup_s,
        st.duration_s,
        st.connections,
        st.password_connections,
        st.paced_fraction * 100.0
    );
    let _ = writeln!(
        s,
        "| scenario | backend | req/s | p50 | p90 | p99 | p99@70% | max | errors | server CPU % | peak RSS MB | DB bytes per 1M tokens |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for t in &r.targets {
        let backend = format!("{}/{}", t.target, t.backend);
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
    if let Some(a) = &r.argon2_bare {
        let _ = writeln!(s, "Bare Argon2id on one core ({}): {:.1} verifications/s.", a.parameters, a.verifies_per_second);
    }
    for t in &r.targets {
        let _ = writeln!(s, "\n## {}/{}\n", t.target, t.backend);
        if let Some(e) = &t.error {
            let _ = writeln!(s, "- **failed**: {e}");
        }
        if let Some(ms) = t.start_to_first_answer_ms {
            let _ = writeln!(s, "- start to first answer (spawn to first 200 from /healthz, fresh database): {ms:.1} ms");
        }
        for sc in &t.scenarios {
            if let Some(ratio) = sc.ratio_to_bare_argon2 {
                let _ = writeln!(s, "- password_login: {:.0}% of the bare Argon2id rate", ratio * 100.0);
            }
        }
        if let Some(hwm) = t.scenarios.iter().filter_map(|sc| sc.server_vm_hwm_kb).max() {
            let _ = writeln!(s, "- server VmHWM (peak resident set) at the end: {:.1} MB", hwm as f64 / 1024.0);
        }
        for sc in &t.scenarios {
            if let Some(db) = sc.saturation.as_ref().and_then(|r| r.database_cpu_percent) {
                let _ = writeln!(s, "- {}: postgres processes' CPU {db:.0}% of one core", sc.scenario);
            }
        }
        if !t.round_trips.is_empty() {
            let list: Vec<String> = t.round_trips.iter().map(|rt| format!("{} {:.2}", rt.scenario, rt.per_operation)).collect();
            let _ = writeln!(s, "- database round trips per operation: {}", list.join(", "));
        }
        if let Some(e) = &t.round_trips_error {
            let _ = writeln!(s, "- round trips not measured: {e}");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_read_well() {
        for (b, want) in [(999.0, "999 B"), (1500.0, "2 kB"), (2.5e6, "2 MB"), (1.234e9, "1.23 GB")] {
            assert_eq!(bytes(b), want, "{b}");
        }
    }
}
