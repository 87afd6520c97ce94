//! A server under test as a child process, whatever its implementation: a free port, pinning
//! with `taskset`, the wait for its first answer, a graceful stop, and its log.

use crate::http::{Conn, Endpoint};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// A port free now on 127.0.0.1 (the server binds it a moment later).
pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `cmd` as a server under test runs: in a process group of its own, and under
/// `taskset -c CORES` when `cores` is set, with the same arguments, environment and working
/// directory. `taskset` execs the program, so the child's pid is the server's own: the CPU
/// time and memory read from `/proc` are the server's, not a wrapper's.
///
/// A group of its own, because the servers spend most of a run frozen (SIGSTOP) while another
/// one is measured, and the kernel hangs up (SIGHUP, then SIGCONT) every process of a group
/// with a stopped member once that group is orphaned: started in the background from a shell
/// that then exited, the benchmark saw every frozen server end at once, mid-run. The
/// benchmark ends its servers itself (`terminate`, or SIGKILL when it drops them, also on
/// Ctrl-C), so they need nothing from its group.
pub(crate) fn server_command(cmd: Command, cores: Option<&str>) -> Command {
    let mut c = match cores {
        None => cmd,
        Some(cores) => {
            let inner = cmd.as_std();
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cores).arg(inner.get_program()).args(inner.get_args());
            for (k, v) in inner.get_envs() {
                match v {
                    Some(v) => c.env(k, v),
                    None => c.env_remove(k),
                };
            }
            if let Some(dir) = inner.get_current_dir() {
                c.current_dir(dir);
            }
            c
        }
    };
    c.process_group(0).kill_on_drop(true);
    c
}

/// Waits for the first 200 answer to `GET path` from a server spawned at `spawned`, and returns
/// the milliseconds since then. Fails when the process exits or 60 s pass, with the end of
/// its log.
pub(crate) async fn wait_for_first_answer(child: &mut Child, endpoint: &Endpoint, path: &str, spawned: Instant, log: &Path) -> Result<f64> {
    let request = endpoint.request("GET", path, &[], b"");
    loop {
        if let Ok(mut conn) = Conn::open(endpoint).await {
            if let Ok(a) = conn.send(&request).await {
                if a.status == 200 {
                    return Ok(spawned.elapsed().as_secs_f64() * 1000.0);
                }
            }
        }
        if let Some(status) = child.try_wait()? {
            bail!("the server exited with {status}: {}", tail(log));
        }
        if spawned.elapsed() > Duration::from_secs(60) {
            bail!("the server did not answer GET {path} within 60 s: {}", tail(log));
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

/// Sends SIGTERM and waits for a graceful stop (SIGKILL after 15 s).
pub(crate) async fn terminate(child: Option<Child>, what: &str) -> Result<()> {
    let Some(mut child) = child else { return Ok(()) };
    if let Some(pid) = child.id() {
        let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
    }
    match tokio::time::timeout(Duration::from_secs(15), child.wait()).await {
        Ok(status) => {
            status?;
        }
        Err(_) => {
            eprintln!("{what} did not stop within 15 s of SIGTERM; killing it");
            child.kill().await?;
        }
    }
    Ok(())
}

/// The lines of the log at `path` for which `is_problem` holds (without colors, 400 characters
/// at most), and a copy of the whole log at `copy_to` when asked (its path, if the copy worked).
pub(crate) fn read_log(path: &Path, copy_to: Option<&PathBuf>, is_problem: impl Fn(&str) -> bool) -> (Vec<String>, Option<String>) {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let problems = log.lines().map(strip_ansi).filter(|l| is_problem(l)).map(|l| l.chars().take(400).collect()).collect();
    let copy = copy_to.filter(|dest| std::fs::copy(path, dest).is_ok()).map(|dest| dest.display().to_string());
    (problems, copy)
}

/// `line` without ANSI escape sequences (colored log output).
pub(crate) fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters, then one final byte in @..~.
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The last lines of a log, for an error message.
pub(crate) fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// The first file named `program` in a directory of `PATH`.
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(program)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_lose_their_colors() {
        let line = "\u{1b}[2m2026-11-23T13:42:05Z\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m \u{1b}[2msqlx::query\u{1b}[0m: slow statement";
        assert_eq!(strip_ansi(line), "2026-11-23T13:42:05Z  WARN sqlx::query: slow statement");
        assert_eq!(strip_ansi("plain"), "plain");
    }

    #[tokio::test]
    async fn a_server_runs_in_a_process_group_of_its_own() {
        for cores in [None, Some("0")] {
            let mut sleep = Command::new("sleep");
            sleep.arg("5");
            let mut child = server_command(sleep, cores).spawn().unwrap();
            let pid = child.id().unwrap();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            // pid (comm) state ppid pgrp ...
            let pgrp: u32 = stat.rsplit(") ").next().unwrap().split(' ').nth(2).unwrap().parse().unwrap();
            assert_eq!(pgrp, pid, "{cores:?}: {stat}");
            child.kill().await.unwrap();
        }
    }

    #[test]
    fn pinning_wraps_the_program_and_keeps_its_setup() {
        let mut cmd = Command::new("node");
        cmd.arg("server.js").env("PORT", "3000").current_dir("/tmp");
        let c = server_command(cmd, Some("0"));
        let c = c.as_std();
        assert_eq!(c.get_program(), "taskset");
        assert_eq!(c.get_args().collect::<Vec<_>>(), ["-c", "0", "node", "server.js"]);
        assert_eq!(c.get_envs().collect::<Vec<_>>(), [(std::ffi::OsStr::new("PORT"), Some(std::ffi::OsStr::new("3000")))]);
        assert_eq!(c.get_current_dir(), Some(Path::new("/tmp")));
        let plain = server_command(Command::new("node"), None);
        assert_eq!(plain.as_std().get_program(), "node");
    }
}
