//! Serving connections (HTTP/1.1, hyper) under limits that keep slow and idle clients from
//! holding the server, after Go's `net/http` and Ory Hydra's defaults:
//!
//! - **head:** a request's head must arrive within `header_timeout` (5 s) of the connection's
//!   start, or of its first byte on a kept-alive connection (slowloris);
//! - **body:** a request's body must arrive within `body_timeout` (5 s) of the moment it first
//!   keeps the handler waiting, or the request fails (a `Content-Length` with no body behind it);
//! - **idle:** a kept-alive connection without a request is closed after `idle_timeout`
//!   (120 s: longer than a load balancer's own idle timeout, so that it never reuses a
//!   connection the server is closing);
//! - **count:** at most `max_connections` are open, kept below the process's file descriptor
//!   limit with a reserve for the database and files. A new connection beyond it closes the
//!   connection that has waited longest without a request in progress (stalled or idle), so a
//!   client holding thousands of stalled connections cannot keep anyone else out: health checks
//!   and new clients are still answered. A connection with a request in progress is never
//!   closed for another;
//! - **memory:** once a burst is over (three quarters of at least [`BURST`] connections have
//!   closed since the peak), the memory their buffers held is given back to the system
//!   (`crate::memory`), a second later and every second while connections keep closing, off
//!   the runtime's threads.

use crate::startup::RouteTenant;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

/// The limits of every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(120),
            max_connections: 4096,
        }
    }
}

/// File descriptors kept free of connections: the database's, the log's, the WAL's, and
/// room to accept one more connection in order to close another.
const FD_RESERVE: usize = 256;

/// How often each connection looks at its own clock.
const TICK: Duration = Duration::from_millis(500);

impl ConnLimits {
    /// The limits with `max_connections` lowered, if need be, to fit under the process's limit
    /// of open files (Linux: `/proc/self/limits`).
    pub fn fitted(mut self) -> Self {
        if let Some(files) = open_files_limit() {
            let room = files.saturating_sub(FD_RESERVE).max(16);
            if room < self.max_connections {
                tracing::warn!(
                    max_connections = room,
                    open_files = files,
                    "max_connections lowered to fit the open files limit (raise it with ulimit -n)"
                );
                self.max_connections = room;
            }
        }
        self
    }
}

fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Where a connection stands, for its own clock and for eviction.
///
/// A request changes it with two atomic stores and no clock read: the connection's own task
/// looks at it every `TICK` and counts how many ticks the same wait has lasted (a wait is one
/// `phase` under one `turn`), so the timeouts hold to within a tick at no cost per request.
#[derive(Debug)]
struct ConnState {
    /// `HEAD` (waiting for a request's head: from the connection's start, or from the first
    /// byte of the next head on a kept-alive connection), `IDLE` (a kept-alive connection
    /// after its last answer) or `BUSY` (a request in progress).
    phase: AtomicU8,
    /// Changes with every change of phase, so that two waits in the same phase are told apart.
    turn: AtomicU64,
    /// Ticks the current wait has lasted (kept by the connection's task, read for eviction).
    waited: AtomicU32,
    kill: Notify,
}

const HEAD: u8 = 0;
const IDLE: u8 = 1;
const BUSY: u8 = 2;

impl ConnState {
    fn new() -> Self {
        Self { phase: AtomicU8::new(HEAD), turn: AtomicU64::new(0), waited: AtomicU32::new(0), kill: Notify::new() }
    }

    fn enter(&self, phase: u8) {
        self.phase.store(phase, Ordering::Relaxed);
        self.turn.fetch_add(1, Ordering::Relaxed);
    }

    /// Bytes came in: on an idle connection, they are the next request's head.
    fn read_some(&self) {
        if self.phase.load(Ordering::Relaxed) == IDLE {
            self.enter(HEAD);
        }
    }
}

/// A connection's view of its own clock: the wait it saw at the last tick.
struct Clock {
    turn: u64,
    ticks: u32,
}

impl Clock {
    /// Counts a tick; true when the current wait has lasted longer than its phase allows.
    fn overdue(&mut self, state: &ConnState, limits: &ConnLimits) -> bool {
        let turn = state.turn.load(Ordering::Relaxed);
        if turn == self.turn {
            self.ticks = self.ticks.saturating_add(1);
        } else {
            (self.turn, self.ticks) = (turn, 0);
        }
        state.waited.store(self.ticks, Ordering::Relaxed);
        let waited = TICK * self.ticks;
        match state.phase.load(Ordering::Relaxed) {
            HEAD => waited >= limits.header_timeout,
            IDLE => waited >= limits.idle_timeout,
            _ => false,
        }
    }
}

/// How many connections open at once make a burst whose memory is worth giving back after.
const BURST: usize = 256;

/// The open connections, for the count and for eviction.
#[derive(Default)]
struct Open {
    next: u64,
    conns: BTreeMap<u64, Arc<ConnState>>,
    /// The most connections open at once since memory was last given back.
    peak: usize,
}

/// The open connections, and signals when the last one closes and when a burst is over.
#[derive(Default)]
struct Connections {
    open: Mutex<Open>,
    emptied: Notify,
    burst_over: Notify,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remove(&self, id: u64) {
        let mut open = self.lock();
        open.conns.remove(&id);
        if open.conns.is_empty() {
            self.emptied.notify_waiters();
        }
        if open.peak >= BURST && open.conns.len() <= open.peak / 4 {
            open.peak = open.conns.len();
            self.burst_over.notify_one();
        }
    }

    /// Gives memory back after each burst, until dropped (`serve` aborts it when it returns).
    async fn give_back_after_bursts(&self) {
        loop {
            self.burst_over.notified().await;
            // The rest of the burst closes meanwhile (slowly on a busy machine): give back
            // every second while connections keep closing, so that their frees go back too.
            let mut open = usize::MAX;
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let before = std::time::Instant::now();
                let gave = tokio::task::spawn_blocking(crate::memory::give_back).await.unwrap_or(false);
                tracing::debug!(gave, took_us = before.elapsed().as_micros() as u64, "memory given back after a burst of connections");
                let now = self.lock().conns.len();
                if now >= open {
                    break;
                }
                open = now;
            }
        }
    }

    /// Waits until no connection is open.
    async fn drained(&self) {
        loop {
            let emptied = self.emptied.notified();
            if self.lock().conns.is_empty() {
                return;
            }
            emptied.await;
        }
    }
}

impl Open {
    /// Closes the connection that has waited longest without a request in progress (of equal
    /// waits, the oldest connection).
    fn evict_one(&self) -> bool {
        let oldest =
            self.conns.values().rev().filter(|c| c.phase.load(Ordering::Relaxed) != BUSY).max_by_key(|c| c.waited.load(Ordering::Relaxed));
        match oldest {
            Some(c) => {
                c.kill.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A connection's socket, which tells its state when bytes come in.
struct Watched {
    stream: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.state.read_some();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// A request body that must arrive within `timeout` of the moment it first keeps the handler
/// waiting. The timer (and its clock read) is made only then: a body that came with its head,
/// or a request without one, costs none.
struct DeadlineBody {
    inner: hyper::body::Incoming,
    timeout: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// The body did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the body timeout")]
struct BodyTimeout;

impl http_body::Body for DeadlineBody {
    type Data = bytes::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let timeout = self.timeout;
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimeout.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The service of one connection: marks the connection busy while a request is served, gives
/// the handlers the peer's address, and puts the body under its deadline.
#[derive(Clone)]
struct ConnService {
    app: RouteTenant,
    peer: SocketAddr,
    state: Arc<ConnState>,
    body_timeout: Duration,
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for ConnService {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, req: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        self.state.enter(BUSY);
        let timeout = self.body_timeout;
        let mut req = req.map(|inner| Body::new(DeadlineBody { inner, timeout, timer: None }));
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let (app, state) = (self.app.clone(), Arc::clone(&self.state));
        Box::pin(async move {
            let answer = tower::ServiceExt::oneshot(app, req).await;
            state.enter(IDLE);
            answer
        })
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets the requests in flight
/// finish (each connection closes once its answer is sent).
pub(crate) async fn serve(
    listener: TcpListener,
    app: RouteTenant,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let open = Arc::new(Connections::default());
    let giving_back = tokio::spawn({
        let open = Arc::clone(&open);
        async move { open.give_back_after_bursts().await }
    });
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors (EMFILE, ENFILE) or a connection reset before it was
                // taken: make room, pause a moment rather than spin, and go on.
                tracing::warn!(error = %e, "accept failed");
                open.lock().evict_one();
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::new(ConnState::new());
        let id = {
            let mut open = open.lock();
            if open.conns.len() >= limits.max_connections && !open.evict_one() {
                // Every connection has a request in progress: this one waits its turn in the
                // kernel's queue no longer; closing it is the only answer left.
                drop(stream);
                continue;
            }
            open.next += 1;
            let id = open.next;
            open.conns.insert(id, Arc::clone(&state));
            open.peak = open.peak.max(open.conns.len());
            id
        };
        let service = ConnService { app: app.clone(), peer, state: Arc::clone(&state), body_timeout: limits.body_timeout };
        let (open, mut stopping) = (Arc::clone(&open), stopping.clone());
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            // No hyper timer: it would make and drop a timer for every request's head. The
            // connection's clock below applies the head and idle timeouts.
            http.header_read_timeout(None);
            let conn = http.serve_connection(TokioIo::new(Watched { stream, state: Arc::clone(&state) }), service);
            tokio::pin!(conn);
            let mut tick = tokio::time::interval(TICK);
            // A late tick counts once: a busy runtime must not age every connection at once.
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut clock = Clock { turn: 0, ticks: 0 };
            let mut draining = *stopping.borrow();
            if draining {
                conn.as_mut().graceful_shutdown();
            }
            loop {
                tokio::select! {
                    _ = conn.as_mut() => break,
                    () = state.kill.notified() => break,
                    _ = stopping.changed(), if !draining => {
                        draining = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    _ = tick.tick() => if clock.overdue(&state, &limits) { break },
                }
            }
            open.remove(id);
        });
    }
    let _ = stop.send(true);
    // Wait for the connections to finish their answers (graceful shutdown closes each one as
    // soon as it has no request in progress).
    open.drained().await;
    giving_back.abort();
    Ok(())
}
