//! What the benchmark needs from a server under test: start it on a fresh database, seed a user
//! and clients, sign a browser in, measure its storage, stop it. Scenarios see only a [`Seed`]:
//! the server's address and paths, client credentials and the user's password, so another
//! server (a peer implementation, see `peer.rs`) is one more implementation of [`Target`].

use crate::http::{Browser, Endpoint};
use anyhow::{Context, Result};
use async_trait::async_trait;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A confidential client and its HTTP Basic header.
#[derive(Debug, Clone)]
pub(crate) struct ClientCreds {
    pub(crate) client_id: String,
    /// The `Authorization` header value.
    pub(crate) basic: String,
}

impl ClientCreds {
    pub(crate) fn new(client_id: &str, secret: &str) -> Self {
        Self { client_id: client_id.to_owned(), basic: crate::http::basic_auth(client_id, secret) }
    }
}

/// A client for the authorization code flow (and refresh), with what it asks for.
#[derive(Debug, Clone)]
pub(crate) struct CodeClient {
    pub(crate) creds: ClientCreds,
    pub(crate) redirect_uri: String,
    /// Includes `openid`, so every token answer carries a signed id_token.
    pub(crate) scope: String,
    /// More parameters of the authorization request, for a server that needs them to behave
    /// like the others (oidc-provider keeps `offline_access`, and so issues a refresh token,
    /// only with `prompt=consent`).
    pub(crate) authorize_params: Vec<(String, String)>,
}

/// The endpoints of a server, as paths under its issuer's origin.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    pub(crate) authorize: String,
    pub(crate) token: String,
    pub(crate) introspect: String,
    pub(crate) jwks: String,
    pub(crate) discovery: String,
}

/// Everything a scenario may use. A target that cannot offer something leaves it `None`, and
/// the scenarios that need it are skipped with a note.
#[derive(Debug, Clone)]
pub(crate) struct Seed {
    pub(crate) endpoint: Endpoint,
    pub(crate) paths: Paths,
    pub(crate) email: String,
    pub(crate) password: String,
    /// `client_credentials`, opaque access tokens.
    pub(crate) cc_opaque: Option<ClientCreds>,
    /// `client_credentials`, JWT access tokens.
    pub(crate) cc_jwt: Option<ClientCreds>,
    /// A client allowed to introspect (the resource server's credentials).
    pub(crate) introspector: Option<ClientCreds>,
    pub(crate) code: Option<CodeClient>,
    /// A client registered for the password grant, and the scope it asks for.
    pub(crate) password_client: Option<CodeClient>,
}

/// What was measured while a target started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Started {
    /// From spawning the process to the first 200 of `probe`.
    pub(crate) first_answer_ms: f64,
    /// The path asked for until it answered 200: a health check, or a document the server
    /// always serves when it has none.
    pub(crate) probe: &'static str,
}

/// What a target reports when it stops.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stopped {
    /// Log lines at level WARN or ERROR (or anything mentioning a panic).
    pub(crate) log_problems: Vec<String>,
    /// Where the whole log was kept, if it was.
    pub(crate) log_copy: Option<String>,
}

/// Counts of database round trips and statements (PostgreSQL protocol messages), shared with
/// the proxy that counts them.
#[derive(Debug, Clone, Default)]
pub(crate) struct RoundTripCounter {
    /// Waits for the database's answer: each `Sync` and each simple `Query`.
    pub(crate) round_trips: Arc<AtomicU64>,
    /// Statements run: each `Execute` and each simple `Query`.
    pub(crate) statements: Arc<AtomicU64>,
}

impl RoundTripCounter {
    /// Round trips and statements so far.
    pub(crate) fn get(&self) -> (u64, u64) {
        (self.round_trips.load(Ordering::Relaxed), self.statements.load(Ordering::Relaxed))
    }
}

#[async_trait]
pub(crate) trait Target: Send {
    /// The implementation under test (`latchkey`, `oidc-provider`).
    fn name(&self) -> &str;
    /// Its storage (`sqlite`, `postgres`).
    fn backend(&self) -> &str;
    /// The algorithm of its id_tokens and JWT access tokens (`RS256`, `ES256`, `EdDSA`).
    fn signing_alg(&self) -> &str;
    /// Starts the server on its fresh database and waits for its first answer.
    async fn start(&mut self) -> Result<Started>;
    /// Creates the user and clients (the server may already run).
    async fn seed(&mut self) -> Result<Seed>;
    /// The process whose CPU time and memory are measured.
    fn pid(&self) -> Option<u32>;
    /// Bytes the database takes now, if the target can tell.
    async fn storage_bytes(&self) -> Result<Option<u64>>;
    /// Drives `browser` from the authorization request `authorize_path` through sign-in and
    /// consent (whatever pages this server shows) and returns the redirect to the client.
    async fn sign_in(&self, browser: &mut Browser, authorize_path: &str, seed: &Seed) -> Result<String>;
    /// Restarts the server so that its database round trips are counted, if the target can.
    async fn restart_counting_round_trips(&mut self) -> Result<Option<RoundTripCounter>> {
        Ok(None)
    }
    /// The database's write-ahead log position in bytes, for a database that has one
    /// (PostgreSQL's `pg_current_wal_lsn`): the WAL written between two readings.
    async fn wal_position(&mut self) -> Result<Option<u64>> {
        Ok(None)
    }
    /// CPU ticks used so far by the database server's processes, when it runs apart.
    fn database_cpu_ticks(&self) -> Option<u64> {
        None
    }
    /// Freezes the server (SIGSTOP) while another target is measured: no timer of its own
    /// (housekeeping, checkpoints) runs on the core the other one is measured on.
    async fn pause(&mut self) -> Result<()> {
        signal(self.pid(), "STOP").await
    }
    /// Lets a paused server run again (SIGCONT); nothing happens to one that runs.
    async fn resume(&mut self) -> Result<()> {
        signal(self.pid(), "CONT").await
    }
    /// Stops the server and removes the database (a schema is dropped, a directory deleted).
    async fn stop(&mut self) -> Result<Stopped>;
    /// How durable an acknowledged write is, in words: comparisons are only fair between
    /// servers that wait for the same thing.
    fn durability(&self) -> String;
    /// What a reader of the results should know about this target's setup.
    fn notes(&self) -> Vec<String>;
}

/// Bytes of the pages a SQLite database uses, `(page_count - freelist_count) * page_size`, as
/// a read-only connection sees them (with what is still in the WAL). The sizes of the files say
/// less: the WAL file is reused, not shrunk, so short runs would count its growth as data.
pub(crate) async fn sqlite_bytes_in_use(path: &Path) -> Result<u64> {
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions, Connection};
    let mut conn = SqliteConnectOptions::new().filename(path).read_only(true).connect().await.context("cannot open the SQLite file")?;
    let mut pragma = async |name: &str| -> Result<i64> { Ok(sqlx::query_scalar(&format!("PRAGMA {name}")).fetch_one(&mut conn).await?) };
    let pages = pragma("page_count").await? - pragma("freelist_count").await?;
    let size = pragma("page_size").await?;
    conn.close().await?;
    Ok(u64::try_from(pages * size).unwrap_or(0))
}

/// `kill -SIGNAL pid`, for a server that runs (without a pid there is nothing to signal).
pub(crate) async fn signal(pid: Option<u32>, signal: &str) -> Result<()> {
    let Some(pid) = pid else { return Ok(()) };
    let out = tokio::process::Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).output().await?;
    if !out.status.success() {
        anyhow::bail!("kill -{signal} {pid}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The state letter of `/proc/PID/status` (`S` sleeping, `T` stopped), once it is `want`.
    async fn state_becomes(pid: u32, want: char) -> bool {
        for _ in 0..1000 {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let state = status.lines().find_map(|l| l.strip_prefix("State:")).and_then(|s| s.trim().chars().next());
            if state == Some(want) {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_paused_process_is_stopped_until_resumed() {
        let mut child = tokio::process::Command::new("sleep").arg("600").kill_on_drop(true).spawn().unwrap();
        let pid = child.id();
        signal(pid, "STOP").await.unwrap();
        assert!(state_becomes(pid.unwrap(), 'T').await, "not stopped after SIGSTOP");
        signal(pid, "CONT").await.unwrap();
        assert!(state_becomes(pid.unwrap(), 'S').await, "still stopped after SIGCONT");
        // No process, nothing to signal; a process that is gone is an error.
        signal(None, "STOP").await.unwrap();
        child.kill().await.unwrap();
        child.wait().await.unwrap();
        assert!(signal(pid, "STOP").await.is_err());
    }
}
