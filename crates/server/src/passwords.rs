//! Password checks on threads of their own.
//!
//! Argon2id needs 19 MiB of working memory per check. Run on tokio's blocking pool, each check
//! allocated it afresh on whichever pool thread ran it, and glibc kept the freed memory in that
//! thread's arena: resident memory grew by 19 MiB per pool thread ever used (hundreds of MB
//! under a sign-in load). Here a fixed set of threads, one per core the process may run on,
//! takes the checks from a queue, with buffers that are reused, so the memory for passwords is
//! bounded by the number of cores. The checks never run on the async runtime (docs/design.md
//! principle 4).
//!
//! Reused buffers are freed once no check has needed one for [`IDLE`]: a server that signed
//! people in this morning does not keep 19 MiB per core for the rest of the day, and a burst of
//! sign-ins pays for the allocation once, not per check.

use latchkey_core::password::{self, Block};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long Argon2 memory that no check uses is kept for the next one.
pub const IDLE: Duration = Duration::from_secs(5);

struct Check {
    password: String,
    stored: String,
    reply: oneshot::Sender<bool>,
}

/// The queue of password checks; the threads end when the last handle is dropped.
#[derive(Clone)]
pub struct PasswordChecker {
    queue: mpsc::Sender<Check>,
    spare: Arc<Spare>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Capacity of a new Argon2 buffer: more than glibc's largest dynamic mmap threshold (32 MiB on
/// 64-bit), so that the buffer is always its own mapping and freeing it gives the memory back.
/// glibc raises its threshold to the size of each mapping freed below that limit, and serves
/// later allocations of the size from its arenas, which keep freed memory: with 19 MiB
/// buffers, each idle period left one more buffer's worth resident (measured: 31, 51, 71 MB
/// after three bursts). Only the pages Argon2 touches (19 MiB at the default cost) are resident.
const FRESH_CAPACITY_BYTES: usize = 33 << 20;

fn fresh_memory() -> Vec<Block> {
    Vec::with_capacity(FRESH_CAPACITY_BYTES / std::mem::size_of::<Block>())
}

/// Argon2 buffers between checks, and when one was last given back.
#[derive(Default)]
struct Spare(Mutex<(Vec<Vec<Block>>, Option<Instant>)>);

impl Spare {
    fn take(&self) -> Vec<Block> {
        lock(&self.0).0.pop().unwrap_or_else(fresh_memory)
    }

    fn put(&self, memory: Vec<Block>, now: Instant) {
        let mut spare = lock(&self.0);
        spare.0.push(memory);
        spare.1 = Some(now);
    }

    /// How long until the spare memory has been unused for [`IDLE`].
    fn until_idle(&self, now: Instant) -> Duration {
        lock(&self.0).1.map_or(IDLE, |last| IDLE.saturating_sub(now.duration_since(last)))
    }

    /// Frees every spare buffer if none has been given back for [`IDLE`]. A check running
    /// now keeps its own buffer until it gives it back.
    fn free_if_idle(&self, now: Instant) {
        let mut spare = lock(&self.0);
        if spare.1.is_some_and(|last| now.duration_since(last) >= IDLE) {
            spare.0 = Vec::new();
            spare.1 = None;
        }
    }

    fn bytes(&self) -> usize {
        lock(&self.0).0.iter().map(|m| m.len() * std::mem::size_of::<Block>()).sum()
    }
}

impl std::fmt::Debug for PasswordChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordChecker")
    }
}

impl PasswordChecker {
    /// Starts one checking thread per core this process may run on.
    pub fn start() -> std::io::Result<Self> {
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let (queue, checks) = mpsc::channel::<Check>();
        let checks = Arc::new(Mutex::new(checks));
        let spare = Arc::new(Spare::default());
        for i in 0..threads {
            let (checks, spare) = (Arc::clone(&checks), Arc::clone(&spare));
            std::thread::Builder::new().name(format!("password-{i}")).spawn(move || loop {
                // The lock is held while waiting, so one idle thread waits on the queue and
                // the others on the lock; the one on the queue wakes when the spare memory
                // will have been unused for IDLE (or after IDLE if there is none yet: a
                // buffer may be given back while it waits), to free it.
                let queue = lock(&checks);
                let next = queue.recv_timeout(spare.until_idle(Instant::now()));
                let check = match next {
                    Ok(check) => check,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        spare.free_if_idle(Instant::now());
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                };
                let mut memory = spare.take();
                let ok = password::verify_with_memory(&check.password, &check.stored, &mut memory);
                spare.put(memory, Instant::now());
                // The request may have gone away meanwhile.
                let _ = check.reply.send(ok);
            })?;
        }
        Ok(Self { queue, spare })
    }

    /// Bytes of Argon2 memory kept for the next checks (those in use are not counted).
    pub fn spare_bytes(&self) -> usize {
        self.spare.bytes()
    }

    /// Whether `password` matches the PHC string `stored`; `None` if the checking threads are
    /// gone (never while the server runs).
    pub async fn verify(&self, password: String, stored: String) -> Option<bool> {
        let (reply, answer) = oneshot::channel();
        self.queue.send(Check { password, stored, reply }).ok()?;
        answer.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_memory_is_freed_only_after_idle() {
        let spare = Spare::default();
        let t0 = Instant::now();
        spare.put(vec![Block::default(); 8], t0);
        spare.free_if_idle(t0 + IDLE - Duration::from_millis(1));
        assert_eq!(spare.bytes(), 8 * 1024, "kept while it may be needed again");
        assert_eq!(spare.take().len(), 8, "the next check reuses it");
        spare.put(vec![Block::default(); 8], t0 + Duration::from_secs(1));
        assert_eq!(spare.until_idle(t0 + Duration::from_secs(2)), IDLE - Duration::from_secs(1));
        spare.free_if_idle(t0 + IDLE);
        assert_eq!(spare.bytes(), 8 * 1024, "idle counts from the last buffer given back");
        spare.free_if_idle(t0 + Duration::from_secs(1) + IDLE);
        assert_eq!(spare.bytes(), 0);
        assert!(spare.take().is_empty(), "a check after that allocates afresh");
        assert_eq!(spare.until_idle(t0 + Duration::from_secs(60)), IDLE, "with nothing spare, the waiter still looks again");
    }

    #[tokio::test]
    async fn checks_still_verify_after_the_memory_was_freed() {
        let checker = PasswordChecker::start().unwrap();
        let stored = password::hash("correct horse", &mut rand::thread_rng()).unwrap();
        assert_eq!(checker.verify("correct horse".into(), stored.clone()).await, Some(true));
        assert!(checker.spare_bytes() >= 19 * 1024 * 1024);
        checker.spare.free_if_idle(Instant::now() + IDLE);
        assert_eq!(checker.spare_bytes(), 0);
        assert_eq!(checker.verify("wrong horse".into(), stored.clone()).await, Some(false));
        assert_eq!(checker.verify("correct horse".into(), stored).await, Some(true));
    }
}
