//! The store's own connection pool.
//!
//! sqlx's `Pool` pings every connection as it goes back to the pool (sqlx-core 0.8
//! `pool/connection.rs`, `return_to_pool`), unconditionally: one more round trip for every
//! query, which doubled the round trips of every operation (client_credentials measured 4
//! where its two statements need 2). Its reason is cancellation: a query whose future was
//! dropped halfway leaves its connection in an unknown state. This pool keeps that safety
//! without the ping: a connection goes back only when its operation ran to the end and the
//! connection still speaks the protocol; any other (a dropped future, an I/O or protocol
//! error) is closed.

use sqlx::postgres::{PgConnectOptions, PgConnection, PgDatabaseError, PgSeverity};
use sqlx::Connection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, SemaphorePermit};

/// Idle connections older than this are closed rather than used: servers and middleboxes drop
/// idle connections, and a stale one would fail the query that takes it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub(crate) struct Conns {
    options: PgConnectOptions,
    /// One permit per connection that may exist.
    permits: Semaphore,
    /// Idle connections and when each was last used; the most recently used on top.
    idle: Mutex<Vec<(PgConnection, Instant)>>,
    acquire_timeout: Duration,
    closed: AtomicBool,
}

/// A connection on loan. Dropped without [`Lease::finish`] (its operation's future was
/// dropped, or failed), the connection is closed, not returned.
pub(crate) struct Lease<'a> {
    conns: &'a Conns,
    conn: PgConnection,
    _permit: SemaphorePermit<'a>,
}

impl Conns {
    pub(crate) fn new(options: PgConnectOptions, max_connections: u32, acquire_timeout: Duration) -> Self {
        let max = usize::try_from(max_connections.max(1)).unwrap_or(1);
        Self { options, permits: Semaphore::new(max), idle: Mutex::new(Vec::new()), acquire_timeout, closed: AtomicBool::new(false) }
    }

    /// A connection: an idle one, or a new one while fewer than the maximum exist. Waits at
    /// most the acquire timeout for one to be returned.
    pub(crate) async fn lease(&self) -> Result<Lease<'_>, sqlx::Error> {
        if self.closed.load(Ordering::Acquire) {
            return Err(sqlx::Error::PoolClosed);
        }
        let permit = match tokio::time::timeout(self.acquire_timeout, self.permits.acquire()).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return Err(sqlx::Error::PoolClosed),
            Err(_) => return Err(sqlx::Error::PoolTimedOut),
        };
        let fresh = |(_, used): &(PgConnection, Instant)| used.elapsed() < IDLE_TIMEOUT;
        let idle = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            // The oldest are at the bottom: drop the stale ones (their sockets close on drop).
            let stale = idle.iter().take_while(|c| !fresh(c)).count();
            idle.drain(..stale);
            idle.pop()
        };
        let conn = match idle {
            Some((conn, _)) => conn,
            None => PgConnection::connect_with(&self.options).await?,
        };
        Ok(Lease { conns: self, conn, _permit: permit })
    }

    /// Closes the idle connections and refuses new leases; connections on loan are closed as
    /// they come back.
    pub(crate) async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|p| p.into_inner()));
        for (conn, _) in idle {
            let _ = conn.close().await;
        }
    }
}

impl Lease<'_> {
    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        &mut self.conn
    }

    /// Ends the loan with the operation's outcome. The connection goes back to the pool if the
    /// operation succeeded or the database answered it with an error that leaves the session
    /// open (the connection then waits for the next query, as after a success); after
    /// anything else it is closed.
    pub(crate) fn finish<T>(self, outcome: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        let reusable = match &outcome {
            Ok(_) | Err(sqlx::Error::RowNotFound) => true,
            // A FATAL or PANIC error ends the session (the server closes the connection
            // after it, as when it is shut down or the backend is terminated).
            Err(sqlx::Error::Database(e)) => {
                e.try_downcast_ref::<PgDatabaseError>().is_some_and(|pg| !matches!(pg.severity(), PgSeverity::Fatal | PgSeverity::Panic))
            }
            Err(_) => false,
        };
        self.end(reusable);
        outcome
    }

    /// Ends the loan: the connection goes back to the pool if `reusable`, else it is closed.
    pub(crate) fn end(self, reusable: bool) {
        // The permit is released after the connection is back, so whoever takes it finds one.
        let Lease { conns, conn, _permit } = self;
        if reusable && !conns.closed.load(Ordering::Acquire) {
            conns.idle.lock().unwrap_or_else(|p| p.into_inner()).push((conn, Instant::now()));
        }
    }
}

/// Runs `$body` (an expression of the connection `$c` that gives a future of a sqlx result)
/// on a leased connection and ends the lease with its outcome: an `async` block of
/// `Result<_, sqlx::Error>`.
macro_rules! on_conn {
    ($conns:expr, |$c:ident| $body:expr) => {
        async {
            let mut lease = $conns.lease().await?;
            let outcome = {
                let $c = lease.conn();
                $body.await
            };
            lease.finish(outcome)
        }
    };
}
pub(crate) use on_conn;
