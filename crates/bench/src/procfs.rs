//! What the kernel tells about a process through /proc: CPU time and resident memory.

use anyhow::{Context, Result};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// User plus system CPU time of a process, in clock ticks, from the text of `/proc/PID/stat`.
///
/// The command name (field 2) is in parentheses and may itself hold spaces and parentheses, so
/// the fields are counted from the last `)`: after it come state (field 3), ..., utime (14)
/// and stime (15).
pub(crate) fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Minor and major page faults of a process (fields 10 and 12 of `/proc/PID/stat`), counted
/// from the last `)` as in [`parse_stat_cpu_ticks`].
pub(crate) fn parse_stat_faults(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((fields.get(7)?.parse().ok()?, fields.get(9)?.parse().ok()?))
}

/// Minor and major page faults of `pid` so far.
pub(crate) fn faults(pid: u32) -> Option<(u64, u64)> {
    parse_stat_faults(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Whether the kernel's DAMON monitors run, and what they do: on some virtual machines the
/// host's tooling runs proactive reclaim (`pageout`) through them, which takes CPU and evicts
/// pages from under a running server.
pub(crate) fn damon() -> String {
    let root = std::path::Path::new("/sys/kernel/mm/damon/admin/kdamonds");
    let Ok(entries) = std::fs::read_dir(root) else { return "not present".into() };
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).map(|s| s.trim().to_owned()).unwrap_or_default();
    let mut monitors: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .map(|e| {
            let ctx = e.path().join("contexts").join("0");
            let actions: Vec<String> = std::fs::read_dir(ctx.join("schemes"))
                .into_iter()
                .flatten()
                .filter_map(|s| s.ok())
                .map(|s| read(s.path().join("action")))
                .filter(|a| !a.is_empty())
                .collect();
            format!(
                "kdamond {} {} (operations {}, schemes: {})",
                e.file_name().to_string_lossy(),
                read(e.path().join("state")),
                read(ctx.join("operations")),
                if actions.is_empty() { "none".into() } else { actions.join(", ") }
            )
        })
        .collect();
    monitors.sort();
    if monitors.is_empty() {
        "no monitor".into()
    } else {
        monitors.join("; ")
    }
}

/// The command name (field 2) of `/proc/PID/stat`.
pub(crate) fn parse_stat_comm(stat: &str) -> Option<&str> {
    Some(&stat[stat.find('(')? + 1..stat.rfind(')')?])
}

/// A `kB` line of `/proc/PID/status` (`VmRSS`, `VmHWM`, ...), in kilobytes.
pub(crate) fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        value.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// CPU ticks used so far by `pid`.
pub(crate) fn cpu_ticks(pid: u32) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    parse_stat_cpu_ticks(&text).with_context(|| format!("cannot parse /proc/{pid}/stat"))
}

/// A `kB` value of `/proc/PID/status`.
pub(crate) fn status_kb(pid: u32, key: &str) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("cannot read /proc/{pid}/status"))?;
    parse_status_kb(&text, key).with_context(|| format!("no {key} in /proc/{pid}/status"))
}

/// The `stat` line of every process named `comm` (all PostgreSQL processes, say), by pid.
/// Processes that end between the listing and the read are skipped.
fn stats_of_all(comm: &str) -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e)))
        .filter_map(|(pid, e)| Some((pid, std::fs::read_to_string(e.path().join("stat")).ok()?)))
        .filter(|(_, stat)| parse_stat_comm(stat) == Some(comm))
        .collect()
}

/// CPU ticks used so far by every process named `comm`.
pub(crate) fn cpu_ticks_of_all(comm: &str) -> u64 {
    stats_of_all(comm).iter().filter_map(|(_, stat)| parse_stat_cpu_ticks(stat)).sum()
}

/// The pids of every process named `comm`.
pub(crate) fn pids_of_all(comm: &str) -> Vec<u32> {
    stats_of_all(comm).into_iter().map(|(pid, _)| pid).collect()
}

/// The CPUs `pid` may run on, as `taskset -c` takes them (`Cpus_allowed_list`: "0-1").
pub(crate) fn allowed_cpus(pid: u32) -> Result<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("cannot read /proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_owned())
        .with_context(|| format!("no Cpus_allowed_list in /proc/{pid}/status"))
}

/// Clock ticks per second (`getconf CLK_TCK`), 100 on every Linux we know of when that fails.
pub(crate) fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// Samples `VmRSS` of a process every 50 ms until stopped, keeping the largest value.
pub(crate) struct RssSampler {
    max_kb: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    pub(crate) fn start(pid: u32) -> Self {
        let max_kb = Arc::new(AtomicU64::new(status_kb(pid, "VmRSS").unwrap_or(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (max_kb, stop) = (max_kb.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(kb) = status_kb(pid, "VmRSS") {
                        max_kb.fetch_max(kb, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        Self { max_kb, stop, task }
    }

    /// Stops sampling and returns the largest `VmRSS` seen, in kilobytes.
    pub(crate) async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.max_kb.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_counts_fields_after_the_command_name() {
        // A real line, with a command name holding a space and a parenthesis.
        let stat = "4242 (lat key) x) S 1 4242 4242 0 -1 4194560 1190 0 0 0 731 52 0 0 20 0 9 0 1234 123456789 2600 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(783));
        assert_eq!(parse_stat_faults(stat), Some((1190, 0)));
        assert_eq!(parse_stat_comm(stat), Some("lat key) x"));
        assert_eq!(parse_stat_cpu_ticks("4242 (short) S 1 2"), None);
    }

    #[test]
    fn status_kb_reads_the_named_line() {
        let status = "Name:\tlatchkey\nVmPeak:\t  120000 kB\nVmHWM:\t   15320 kB\nVmRSS:\t   12004 kB\nThreads:\t4\n";
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(12004));
        assert_eq!(parse_status_kb(status, "VmHWM"), Some(15320));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
        // A key that is a prefix of another key's name does not match it.
        assert_eq!(parse_status_kb(status, "Vm"), None);
    }

    #[test]
    fn this_process_can_be_measured() {
        let pid = std::process::id();
        assert!(cpu_ticks(pid).is_ok());
        assert!(status_kb(pid, "VmRSS").unwrap() > 0);
    }
}
