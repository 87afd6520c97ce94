//! Housekeeping: the server removes expired codes, tokens, families, sessions, interactions
//! and guessing counters on a schedule, so storage stays bounded (docs/design.md, "Scale and
//! durability targets"). Every node may run it; each pass is idempotent and batched.

use crate::keys;
use crate::runtime::Runtime;
use crate::state::AppState;
use crate::tenants::Registry;
use latchkey_store::{Cleanup, StoreResult};
use std::time::Duration;

/// Rows per statement: short write locks, many passes when there is much to do.
///
/// Each statement is one job of the single SQLite writer (or one PostgreSQL transaction), and
/// every request's write that is queued behind it waits for it. Removing a row touches a random
/// page of each index keyed by a secret's hash, so a statement's cost grows with its rows: on the
/// benchmark VM under refresh load, 1,000-row statements held the writer 7 to 18 ms each and
/// were the longest commits of the run; 100-row statements take 1 to 3 ms, less than a usual
/// group commit, and the writer's resident memory under that load fell by 2 MB.
pub const BATCH: u32 = 100;
/// How long an expired or revoked personal token stays listed for its owner.
const PERSONAL_TOKEN_RETENTION: i64 = 30 * 24 * 3600;

/// One full pass: batches until nothing expired is left.
///
/// Between two batches the pass rests as long as the last batch took, so that it never takes
/// more than half of the database's time (the single SQLite writer, or a PostgreSQL backend and
/// the cores it shares with the server): a pass with much to remove (a burst of tokens that all
/// expired together) is spread out instead of stalling the requests behind it. The benchmark
/// saw one pass of 88,000 rows hold code flows on PostgreSQL up to 170 ms without it.
pub async fn run_once(rt: &Runtime, guessing_window: i64) -> StoreResult<Cleanup> {
    let now = rt.now();
    let mut total = Cleanup::default();
    loop {
        let started = std::time::Instant::now();
        let c = rt.store.delete_expired(rt.tenant.id, now, now - guessing_window, now - PERSONAL_TOKEN_RETENTION, BATCH).await?;
        total += c;
        // A kind that filled its batch may have more left.
        let full = c.counts().contains(&u64::from(BATCH));
        if !full {
            return Ok(total);
        }
        tokio::time::sleep(started.elapsed()).await;
    }
}

/// Every `interval`: `run_once`, and the scheduled signing key rotation, until the task is
/// aborted.
pub(crate) fn spawn(registry: std::sync::Arc<Registry>, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            for state in registry.all() {
                pass(&state).await;
            }
        }
    })
}

/// One tenant's scheduled work: key rotation when due, then the removal of expired rows.
async fn pass(state: &AppState) {
    let rt = &state.rt;
    // A new tenant's first key may still be in the making: a rotation now would see no key
    // and make a second.
    state.keys.current(rt).await;
    let rotated = match keys::rotation_policy(rt, &state.config).await {
        Ok(policy) => keys::rotate_if_due(rt, state.keys.alg(), state.config.signing_key_rotation_interval, policy).await,
        Err(e) => Err(e),
    };
    if let Err(e) = rotated {
        tracing::warn!(tenant = %rt.tenant.name, error = %crate::error::error_chain(&e), "scheduled signing key rotation failed; it is tried again at the next interval");
    }
    match run_once(rt, state.config.guessing.window).await {
        Ok(c) if c.total() > 0 => {
            tracing::info!(tenant = %rt.tenant.name, removed = c.total(), tokens = c.tokens, codes = c.codes, families = c.families, "housekeeping")
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(tenant = %rt.tenant.name, error = %crate::error::error_chain(&e), "housekeeping failed; it runs again at the next interval")
        }
    }
}
