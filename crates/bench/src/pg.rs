//! PostgreSQL helpers: the size of a schema, the position of the write-ahead log, a TCP proxy
//! that counts the round trips a server makes (each `Sync` of the extended protocol and each
//! simple `Query` is one wait for the database's answer) and the statements it runs, and
//! PostgreSQL's processes moved to the server's core for a run.

use crate::target::RoundTripCounter;
use anyhow::{Context, Result};
use sqlx::{Connection, PgConnection};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bytes of every table of `schema`, with its indexes and TOAST (`pg_total_relation_size`).
pub(crate) async fn schema_bytes(server_url: &str, schema: &str) -> Result<u64> {
    let mut conn = PgConnection::connect(server_url).await.context("cannot connect to PostgreSQL")?;
    let bytes: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'm')",
    )
    .bind(schema)
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    Ok(u64::try_from(bytes).unwrap_or(0))
}

/// Bytes of write-ahead log the whole cluster has written so far (`pg_current_wal_lsn`).
pub(crate) async fn wal_position(server_url: &str) -> Result<u64> {
    let mut conn = PgConnection::connect(server_url).await.context("cannot connect to PostgreSQL")?;
    let bytes: i64 = sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint").fetch_one(&mut conn).await?;
    conn.close().await?;
    Ok(u64::try_from(bytes).unwrap_or(0))
}

/// PostgreSQL's processes on this machine, pinned to the server's core for a run so that one
/// core does all the server's work, as with SQLite: left alone they ran on the load driver's
/// core or took the server's when they liked, and neither throughput nor latency said what one
/// core serves. Backends started later are forked by the postmaster and inherit its CPUs.
/// Dropping it gives every process back the CPUs it had.
pub(crate) struct PinnedPostgres {
    was: Vec<(u32, String)>,
}

impl PinnedPostgres {
    pub(crate) fn pin(cores: &str) -> Result<Self> {
        let mut pinned = Self { was: Vec::new() };
        for pid in crate::procfs::pids_of_all("postgres") {
            // A backend that ended since the listing is skipped.
            let Ok(cpus) = crate::procfs::allowed_cpus(pid) else { continue };
            taskset(pid, cores)?;
            pinned.was.push((pid, cpus));
        }
        if pinned.was.is_empty() {
            anyhow::bail!("no process named postgres on this machine");
        }
        Ok(pinned)
    }

    /// How many processes were pinned.
    pub(crate) fn processes(&self) -> usize {
        self.was.len()
    }
}

impl Drop for PinnedPostgres {
    fn drop(&mut self) {
        for (pid, cpus) in &self.was {
            // One that has ended since needs nothing back.
            let _ = taskset(*pid, cpus);
        }
    }
}

/// Whether the database of `url` runs here: a loopback host or a Unix socket.
pub(crate) fn on_this_machine(url: &str) -> bool {
    let Ok(u) = url::Url::parse(url) else { return false };
    // `postgres:` is not a special scheme to the URL standard: its host is opaque text.
    match u.host_str() {
        None | Some("") => true,
        Some(host) => host == "localhost" || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()),
    }
}

/// `taskset -a -p -c CPUS PID`: every thread of `pid` on `cpus`.
fn taskset(pid: u32, cpus: &str) -> Result<()> {
    let out =
        std::process::Command::new("taskset").args(["-a", "-p", "-c", cpus, &pid.to_string()]).output().context("cannot run taskset")?;
    if !out.status.success() {
        anyhow::bail!("taskset -p -c {cpus} {pid}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Counts round-trip messages in the frontend half of a PostgreSQL connection (protocol 3:
/// a startup packet without a type byte, then messages of a type byte and a length that
/// counts itself).
#[derive(Debug, Default)]
pub(crate) struct FrontendCounter {
    buf: Vec<u8>,
    started: bool,
    /// The stream asked for TLS or GSS encryption, or made no sense: nothing more is counted.
    pub(crate) opaque: bool,
}

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

impl FrontendCounter {
    /// Takes the next bytes the client sent; returns the round trips (`Sync` and `Query`
    /// messages) and the statements (`Execute` and `Query`) they completed. A simple `Query`
    /// may hold several statements; the server sends one only outside requests (migrations).
    pub(crate) fn feed(&mut self, data: &[u8]) -> (u64, u64) {
        if self.opaque {
            return (0, 0);
        }
        self.buf.extend_from_slice(data);
        let (mut pos, mut count, mut statements) = (0usize, 0u64, 0u64);
        let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        loop {
            let rest = &self.buf[pos..];
            if !self.started {
                if rest.len() < 8 {
                    break;
                }
                let (len, code) = (be32(rest) as usize, be32(&rest[4..]));
                if code == SSL_REQUEST || code == GSSENC_REQUEST || len < 8 {
                    self.opaque = true;
                    self.buf.clear();
                    return (count, statements);
                }
                if rest.len() < len {
                    break;
                }
                pos += len;
                self.started = true;
            } else {
                if rest.len() < 5 {
                    break;
                }
                let len = be32(&rest[1..]) as usize;
                if len < 4 {
                    self.opaque = true;
                    self.buf.clear();
                    return (count, statements);
                }
                if rest.len() < 1 + len {
                    break;
                }
                if rest[0] == b'S' || rest[0] == b'Q' {
                    count += 1;
                }
                if rest[0] == b'E' || rest[0] == b'Q' {
                    statements += 1;
                }
                pos += 1 + len;
            }
        }
        self.buf.drain(..pos);
        (count, statements)
    }
}

/// A proxy in front of PostgreSQL at `upstream`, counting round trips into `counter`. Returns
/// the address it listens on; it runs until the process ends.
pub(crate) async fn start_counting_proxy(upstream: SocketAddr, counter: RoundTripCounter) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let _ = relay(client, upstream, counter).await;
            });
        }
    });
    Ok(addr)
}

async fn relay(client: TcpStream, upstream: SocketAddr, counter: RoundTripCounter) -> Result<()> {
    let server = TcpStream::connect(upstream).await?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = async move {
        let mut parser = FrontendCounter::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = client_read.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            let (round_trips, statements) = parser.feed(&buf[..n]);
            counter.round_trips.fetch_add(round_trips, Ordering::Relaxed);
            counter.statements.fetch_add(statements, Ordering::Relaxed);
            server_write.write_all(&buf[..n]).await?;
        }
        server_write.shutdown().await
    };
    let down = async move {
        tokio::io::copy(&mut server_read, &mut client_write).await?;
        client_write.shutdown().await
    };
    let (a, b) = tokio::join!(up, down);
    a?;
    b?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_local_database_is_pinned() {
        for url in [
            "postgres://postgres@127.0.0.1:5432/postgres",
            "postgres://u:p@localhost/db",
            "postgres://[::1]/db",
            "postgres:///db?host=/run/postgresql",
        ] {
            assert!(on_this_machine(url), "{url}");
        }
        for url in ["postgres://db.example.com/db", "postgres://10.0.0.5/db", "not a url"] {
            assert!(!on_this_machine(url), "{url}");
        }
    }

    fn startup() -> Vec<u8> {
        let params = b"user\0postgres\0database\0postgres\0\0";
        let mut m = ((8 + params.len()) as u32).to_be_bytes().to_vec();
        m.extend(196_608u32.to_be_bytes());
        m.extend(params);
        m
    }

    fn message(ty: u8, payload: &[u8]) -> Vec<u8> {
        let mut m = vec![ty];
        m.extend(((4 + payload.len()) as u32).to_be_bytes());
        m.extend(payload);
        m
    }

    #[test]
    fn counts_syncs_and_queries_across_split_reads() {
        let mut stream = startup();
        stream.extend(message(b'p', b"secret\0"));
        stream.extend(message(b'Q', b"SELECT 1\0"));
        for _ in 0..3 {
            stream.extend(message(b'B', &[0; 20]));
            stream.extend(message(b'E', &[0; 5]));
            stream.extend(message(b'S', b""));
        }
        // Every way of cutting the stream in two gives the same count.
        for cut in 0..stream.len() {
            let mut c = FrontendCounter::default();
            let (a, b) = (c.feed(&stream[..cut]), c.feed(&stream[cut..]));
            assert_eq!((a.0 + b.0, a.1 + b.1), (4, 4), "cut at {cut}: 4 round trips, 4 statements");
            assert!(!c.opaque);
        }
    }

    #[test]
    fn an_encrypted_stream_is_not_counted() {
        let mut c = FrontendCounter::default();
        let mut ssl = 8u32.to_be_bytes().to_vec();
        ssl.extend(SSL_REQUEST.to_be_bytes());
        assert_eq!(c.feed(&ssl), (0, 0));
        assert!(c.opaque);
        assert_eq!(c.feed(&message(b'S', b"")), (0, 0));
    }
}
