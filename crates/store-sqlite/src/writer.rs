//! The single writer, with group commit.
//!
//! SQLite has one writer at a time, and with `synchronous=FULL` every commit waits for an
//! `fsync` of the WAL. One commit per request would cap the write rate at the disk's fsync
//! rate, and running each statement through an async driver costs a thread hand-off per
//! statement. So one thread owns the write connection and runs whole operations (jobs) on it:
//! it takes every job that is waiting, runs each inside its own `SAVEPOINT` of one
//! `BEGIN IMMEDIATE` transaction, commits once, and only then answers each job. A job that
//! fails is rolled back to its savepoint and does not touch the others; if the commit fails,
//! every job of the batch fails, so no answer ever reports a write that is not durable.
//! Jobs that ran in one batch see each other's writes in order, exactly as if they had
//! committed one after another.

use crate::{fault, BatchFailure};
use latchkey_store::{StoreError, StoreResult};
use rusqlite::Connection;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Weak};
use std::time::Duration;
use tokio::sync::oneshot;

/// At most this many jobs share one commit, so that a long queue still gets answers in
/// bounded steps.
const MAX_BATCH: usize = 256;

/// One operation waiting for the writer: it runs on the connection, then learns whether its
/// batch committed.
trait Work: Send {
    /// Runs the operation inside the batch's transaction; `false` if it failed (and its
    /// writes must be rolled back).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the batch's fate is known.
    fn finish(self: Box<Self>, committed: Result<(), &BatchFailure>);
}

struct Job<T, F> {
    op: Option<F>,
    outcome: Option<StoreResult<T>>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> Work for Job<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> StoreResult<T> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(op) = self.op.take() else { return false };
        // A panic in one operation fails that operation only; the writer lives on.
        let outcome =
            catch_unwind(AssertUnwindSafe(|| op(conn))).unwrap_or_else(|_| Err(StoreError::Database("a write operation panicked".into())));
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn finish(self: Box<Self>, committed: Result<(), &BatchFailure>) {
        let answer = match (self.outcome, committed) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (Some(Ok(_)), Err(failure)) | (None, Err(failure)) => Err(failure.to_store_error()),
            (None, Ok(())) => Err(StoreError::Database("a write operation did not run".into())),
        };
        // The caller may have gone away (its request was cancelled); the write stands.
        let _ = self.reply.send(answer);
    }
}

/// The handle to the writer thread. Dropping the last handle ends the thread once the queue is
/// empty.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Box<dyn Work>>,
}

impl Writer {
    /// Starts the writer thread on `conn` (already configured and migrated, with automatic
    /// checkpoints off) and the checkpointer thread on `checkpointer`. The writer thread ends
    /// when the last handle is dropped and the queue is empty; the checkpointer follows it.
    pub(crate) fn start(conn: Connection, checkpointer: Connection) -> std::io::Result<Self> {
        let (queue, jobs) = mpsc::channel::<Box<dyn Work>>();
        // Set by the checkpointer when the WAL has grown past
        // [`WAL_FRAMES_BEFORE_WRITER_CHECKPOINT`]; owned by the writer thread, so the
        // checkpointer sees it gone once the writer has stopped.
        let wal_is_long = Arc::new(AtomicBool::new(false));
        let weak = Arc::downgrade(&wal_is_long);
        std::thread::Builder::new().name("sqlite-writer".into()).spawn(move || run(&conn, &jobs, &wal_is_long))?;
        std::thread::Builder::new().name("sqlite-checkpoint".into()).spawn(move || checkpoints(&checkpointer, &weak))?;
        Ok(Self { queue })
    }

    /// Runs `op` in the writer's next batch and returns its result once the batch is durable.
    pub(crate) async fn run<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Work> = Box::new(Job { op: Some(op), outcome: None, reply });
        self.queue.send(job).map_err(|_| StoreError::Unavailable("the SQLite writer has stopped".into()))?;
        answer.await.map_err(|_| StoreError::Unavailable("the SQLite writer has stopped".into()))?
    }
}

fn run(conn: &Connection, jobs: &mpsc::Receiver<Box<dyn Work>>, wal_is_long: &AtomicBool) {
    while let Ok(first) = jobs.recv() {
        if wal_is_long.swap(false, Ordering::Relaxed) {
            // The checkpointer has copied most of the WAL already; finishing here, between
            // transactions, lets the next transaction start the WAL over (see `checkpoints`).
            if let Err(e) = checkpoint(conn) {
                tracing::warn!(error = %e, "SQLite checkpoint on the writer failed");
            }
        }
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let committed = commit(conn, &mut batch);
        for job in batch {
            job.finish(committed.as_ref().map(|_| ()));
        }
    }
}

/// Runs the batch in one transaction, each job in its own savepoint, and commits it.
fn commit(conn: &Connection, batch: &mut [Box<dyn Work>]) -> Result<(), BatchFailure> {
    let step = |sql: &str| conn.prepare_cached(sql).and_then(|mut s| s.execute([])).map(drop).map_err(|e| BatchFailure::from(fault(e)));
    step("BEGIN IMMEDIATE")?;
    let outcome = batch.iter_mut().try_for_each(|job| {
        step("SAVEPOINT job")?;
        if !job.run(conn) {
            step("ROLLBACK TO job")?;
        }
        step("RELEASE job")
    });
    match outcome.and_then(|()| step("COMMIT")) {
        Ok(()) => Ok(()),
        Err(e) => {
            // After a failed COMMIT the transaction may still be open; end it so the next
            // batch starts clean. An error here means there was nothing left to roll back.
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            Err(e)
        }
    }
}

/// How soon the checkpointer copies the WAL again when it changed since the last pass.
/// Short passes keep each burst of database writes (and its `fsync`) small: measured on the
/// benchmark VM, 200 ms passes of about 5,000 pages each held commits' own `fsync` behind them
/// and pushed the p99 of client_credentials at 70% load to 20–40 ms; 25 ms passes brought it
/// to about 13 ms.
const BUSY_INTERVAL: Duration = Duration::from_millis(25);
/// How long the checkpointer sleeps when the WAL has not changed since its last pass.
const IDLE_INTERVAL: Duration = Duration::from_millis(250);
/// A WAL longer than this (4 KiB pages: 48 MiB) is finished by the writer itself, so that it
/// can start over. That hand-off holds the writer, and every request's write queued behind it,
/// for the frames committed since the checkpointer's last pass and two `fsync`s: 2 to 10 ms
/// (median 6 to 8) on the benchmark VM under client_credentials load, where at 4,096 frames it
/// came three times a second; a longer WAL makes it a third as frequent and costs readers nothing,
/// since they look up only the frames not yet copied back. It stays below
/// `journal_size_limit` (64 MiB), so the file is not cut back and regrown at each restart.
const WAL_FRAMES_BEFORE_WRITER_CHECKPOINT: i64 = 12_288;
/// Catch-up passes of the checkpointer before it hands the rest to the writer.
const MAX_CATCH_UP_PASSES: usize = 4;
/// Frames not yet copied that the writer may be left to copy.
const SMALL_REMAINDER: i64 = 64;

/// What a PASSIVE checkpoint reports.
#[derive(Clone, Copy)]
struct Pass {
    /// Frames in the WAL.
    frames: i64,
    /// Of those, frames not copied into the database yet.
    left: i64,
}

/// Runs `PRAGMA wal_checkpoint(PASSIVE)`.
fn checkpoint(conn: &Connection) -> rusqlite::Result<Pass> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        let (frames, done): (i64, i64) = (r.get(1)?, r.get(2)?);
        Ok(Pass { frames, left: frames - done })
    })
}

/// Checkpoints off the request path. SQLite's automatic checkpoint runs inside the commit that
/// crosses the threshold, so one request in a thousand would wait for a whole checkpoint and
/// its `fsync` (stalls of hundreds of milliseconds under load). Here a thread of its own copies
/// the WAL back into the database every [`BUSY_INTERVAL`] while there are writes (a PASSIVE
/// checkpoint never blocks the writer or the readers). The WAL can only start over once a
/// checkpoint has caught up with the last commit, which a concurrent checkpointer may never
/// do while writes go on: a pass copies the frames that were committed when it began, and
/// reports only those. When the WAL gets long, the checkpointer runs a few more passes if a
/// reader's snapshot kept the last one from copying all of its frames, then the writer
/// finishes the checkpoint between two batches, which then costs only the frames committed
/// since that pass began (and the `fsync`s).
fn checkpoints(conn: &Connection, alive: &Weak<AtomicBool>) {
    let (mut interval, mut last_frames) = (IDLE_INTERVAL, 0);
    loop {
        std::thread::sleep(interval);
        // The store is gone (every handle dropped): stop.
        let Some(flag) = alive.upgrade() else { return };
        let mut pass = checkpoint(conn);
        for _ in 0..MAX_CATCH_UP_PASSES {
            match pass {
                Ok(p) if p.frames > WAL_FRAMES_BEFORE_WRITER_CHECKPOINT && p.left > SMALL_REMAINDER => pass = checkpoint(conn),
                _ => break,
            }
        }
        match pass {
            Ok(p) => {
                // The WAL grew or started over since the last pass: there are writes.
                interval = if p.frames != last_frames { BUSY_INTERVAL } else { IDLE_INTERVAL };
                last_frames = p.frames;
                if p.frames > WAL_FRAMES_BEFORE_WRITER_CHECKPOINT {
                    flag.store(true, Ordering::Relaxed);
                }
            }
            Err(e) => tracing::warn!(error = %e, "SQLite checkpoint failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{open_writer, Durability};
    use std::os::unix::fs::FileExt;
    use std::path::Path;
    use std::sync::atomic::AtomicI64;

    /// The WAL's checkpoint sequence number (bytes 12..16 of its header), which goes up each
    /// time the WAL starts over; `None` before the first commit has created the file.
    fn wal_generation(wal: &Path) -> Option<u32> {
        let mut n = [0; 4];
        std::fs::File::open(wal).ok()?.read_exact_at(&mut n, 12).ok()?;
        Some(u32::from_be_bytes(n))
    }

    /// Writes that never pause leave the checkpointer no moment to catch up with the last
    /// commit by itself; the hand-off to the writer must still let the WAL start over, or the
    /// file grows for as long as the writes go on. 64 tasks each send their next job as soon
    /// as the last one is answered, so the writer's queue is never empty.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_starts_over_under_writes_that_never_pause() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latchkey.db");
        let conn = open_writer(&path, Durability::Full).unwrap();
        conn.execute_batch("CREATE TABLE blobs (b BLOB NOT NULL)").unwrap();
        let writer = Writer::start(conn, open_writer(&path, Durability::Full).unwrap()).unwrap();
        // 64 KiB: 16 overflow pages, so at least 16 WAL frames per job.
        let insert = |c: &Connection| c.execute("INSERT INTO blobs VALUES (zeroblob(65536))", []).map_err(crate::fault);
        writer.run(insert).await.unwrap();
        let wal = dir.path().join("latchkey.db-wal");
        let first = wal_generation(&wal).expect("the first commit wrote the WAL");

        // The budget only bounds what a failing run writes (1.4 GiB): thirty times the
        // hand-off's WAL length, in jobs of at least 16 frames. How far past that length the
        // WAL gets before the checkpointer's first pass notices depends on the disk's speed:
        // three times was not enough on a machine that wrote 400 MB/s (the WAL started over
        // after 3,000 to 3,800 jobs, nearly five times the length).
        let budget = 30 * WAL_FRAMES_BEFORE_WRITER_CHECKPOINT / 16;
        let (sent, stop) = (Arc::new(AtomicI64::new(0)), Arc::new(AtomicBool::new(false)));
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (writer, sent, stop) = (writer.clone(), sent.clone(), stop.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) && sent.fetch_add(1, Ordering::Relaxed) < budget {
                        writer.run(insert).await.unwrap();
                    }
                })
            })
            .collect();
        while wal_generation(&wal) == Some(first) {
            assert!(!tasks.iter().all(|t| t.is_finished()), "the WAL did not start over after {budget} jobs of 64 KiB");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await.unwrap();
        }
    }
}
