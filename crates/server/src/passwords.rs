//! Password checks on threads of their own.
//!
//! Argon2id needs 19 MiB of working memory per check. Run on tokio's blocking pool, each check
//! allocated it afresh on whichever pool thread ran it, and glibc kept the freed memory in that
//! thread's arena: resident memory grew by 19 MiB per pool thread ever used (hundreds of MB
//! under a sign-in load). Here a fixed set of threads, one per core the process may run on,
//! takes the checks from a queue, each with one buffer that it reuses, so the memory for
//! passwords is bounded by the number of cores. The checks never run on the async runtime
//! (DESIGN.md principle 4).

use latchkey_core::password;
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use tokio::sync::oneshot;

struct Check {
    password: String,
    stored: String,
    reply: oneshot::Sender<bool>,
}

/// The queue of password checks; the threads end when the last handle is dropped.
#[derive(Clone)]
pub struct PasswordChecker {
    queue: mpsc::Sender<Check>,
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
        for i in 0..threads {
            let checks = Arc::clone(&checks);
            std::thread::Builder::new().name(format!("password-{i}")).spawn(move || {
                let mut memory = Vec::new();
                loop {
                    // The lock is held while waiting, so one idle thread waits on the queue
                    // and the others on the lock.
                    let next = checks.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    let Ok(check) = next else { return };
                    let ok = password::verify_with_memory(&check.password, &check.stored, &mut memory);
                    // The request may have gone away meanwhile.
                    let _ = check.reply.send(ok);
                }
            })?;
        }
        Ok(Self { queue })
    }

    /// Whether `password` matches the PHC string `stored`; `None` if the checking threads are
    /// gone (never while the server runs).
    pub async fn verify(&self, password: String, stored: String) -> Option<bool> {
        let (reply, answer) = oneshot::channel();
        self.queue.send(Check { password, stored, reply }).ok()?;
        answer.await.ok()
    }
}
