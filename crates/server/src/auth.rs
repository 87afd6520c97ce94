//! Checking a user's password (shared by the sign-in form and the password grant) and a
//! client's secret (shared by the token, introspection and revocation endpoints), behind the
//! online guessing protection of `core::guessing`.

use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::web::Peer;
use axum::http::{header, HeaderMap};
use latchkey_core::client_auth::ClientCredentials;
use latchkey_core::model::{Client, SecretUsed, User};
use latchkey_core::params::Params;
use latchkey_core::{address, guessing, password, OAuthError, UnixTime};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Mutex, PoisonError};

/// Client authentication (RFC 6749 §2.3) behind the lockout of docs/security.md TE-04 (RFC 6819
/// §4.3.5, online guessing of client secrets).
///
/// Only a wrong secret for a client that has one counts, per client and address, in the store
/// (so every node shares the count). Past the budget the address is refused with 429 until
/// the window ends, the right secret included, so a guess made during the lock tells nothing.
/// A success reads and writes nothing extra: each node keeps the locks it has seen in memory,
/// and learns of one at its own first failure after the shared count passed the budget.
pub(crate) async fn authenticate_client(state: &AppState, peer: Peer, headers: &HeaderMap, params: &Params) -> AppResult<Client> {
    let auth = ClientAuth::start(state, peer, headers, params)?;
    let found = state.store().find_client(state.tenant_id(), auth.client_id()).await?;
    auth.finish(state, found).await
}

/// A client authentication under way, split where the client is read, so that an endpoint
/// may read it together with what it needs next (introspection reads the token in the same
/// read). Nothing read beside the client is used before `finish` accepts the caller.
pub(crate) struct ClientAuth {
    creds: ClientCredentials,
    address: Option<IpAddr>,
    now: UnixTime,
}

impl ClientAuth {
    /// Takes the credentials from the request (RFC 6749 §2.3.1) and refuses an address that
    /// is locked for this client, before anything is read.
    pub(crate) fn start(state: &AppState, peer: Peer, headers: &HeaderMap, params: &Params) -> AppResult<Self> {
        let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let creds = ClientCredentials::extract(authorization, params)?;
        let now = state.now();
        // The key is only spelled out when a lock is known or a secret was wrong: a success
        // allocates nothing for it.
        let address = creds.secret().map(|_| client_address(state, peer, headers));
        if let Some(until) = address.and_then(|a| state.client_locks.until(creds.client_id(), a, now)) {
            return Err(too_many_failures(until - now));
        }
        Ok(Self { creds, address, now })
    }

    /// The client the caller says it is, to be read.
    pub(crate) fn client_id(&self) -> &str {
        self.creds.client_id()
    }

    /// Judges the credentials against `found`, the client read for `client_id()`, and counts
    /// a wrong secret.
    pub(crate) async fn finish(self, state: &AppState, found: Option<Client>) -> AppResult<Client> {
        let Self { creds, address, now } = self;
        let client = found.ok_or_else(|| OAuthError::invalid_client("client_unknown: client authentication failed"))?;
        let refused = match creds.authenticate(&client, state.hasher(), now) {
            Ok(used) => {
                record_secret_use(state, &client, used, now);
                return Ok(client);
            }
            Err(e) => e,
        };
        // A missing secret or a secret sent for a public client is a mistake, not a guess.
        if let (Some(address), Some(_)) = (address, &client.secret_hash) {
            let key = guessing::client_secret_key(&client.client_id, address);
            let policy = state.config.guessing;
            let count = state.store().record_attempt(state.tenant_id(), &key, now, policy.client_secret_window).await?;
            if let Err(retry_after) = count.verdict(policy.client_secret_budget, policy.client_secret_window, now) {
                tracing::warn!(client = %client.client_id, key = %key, "client authentication locked after too many wrong secrets");
                state.client_locks.lock(key, now + retry_after, now);
                return Err(too_many_failures(retry_after));
            }
        }
        Err(refused.into())
    }
}

/// How often a secret's "last used" is written: the developer pages show it to the hour, and a
/// write per token request would cost the token endpoint a write it does not need.
const SECRET_USE_RESOLUTION: i64 = 3600;

/// Records that a secret authenticated a request, when what is stored is older than
/// [`SECRET_USE_RESOLUTION`], after the answer (off the request's path; a failure is only
/// logged: it loses a date, never a token).
fn record_secret_use(state: &AppState, client: &Client, used: SecretUsed, now: UnixTime) {
    let last = match used {
        SecretUsed::None => return,
        SecretUsed::Current => client.secret_info.last_used_at,
        SecretUsed::Previous => client.secret_info.previous.as_ref().and_then(|p| p.last_used_at),
    };
    if last.is_some_and(|at| now - at < SECRET_USE_RESOLUTION) {
        return;
    }
    let (store, tenant, client_id) = (state.rt.store.clone(), state.tenant_id(), client.client_id.clone());
    tokio::spawn(async move {
        if let Err(e) = store.record_client_secret_use(tenant, &client_id, used == SecretUsed::Previous, now).await {
            tracing::warn!(client = %client_id, error = %e, "could not record when the client secret was last used");
        }
    });
}

fn too_many_failures(retry_after: i64) -> AppError {
    AppError::TooManyAttempts {
        retry_after,
        error: OAuthError::invalid_client(format!(
            "too_many_failed_attempts: client authentication from this address is paused for {retry_after} seconds"
        )),
    }
}

/// The address the request came from: the peer, or what trusted proxies say it is.
pub(crate) fn client_address(state: &AppState, peer: Peer, headers: &HeaderMap) -> IpAddr {
    let Some(peer) = peer.0 else { return IpAddr::V4(Ipv4Addr::UNSPECIFIED) };
    let forwarded: Vec<&str> = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
    address::client_address(peer, &forwarded, &state.config.trusted_proxies)
}

/// At most this many locks are remembered; past it, expired ones are dropped first, and a
/// node that still has no room relies on the store's count alone (each further failure is
/// still refused; only a right secret may pass on this node).
const MAX_LOCKS: usize = 100_000;

/// The client-secret locks this node has seen: key → locked until.
#[derive(Debug, Default)]
pub struct ClientLocks(Mutex<HashMap<String, UnixTime>>);

impl ClientLocks {
    fn until(&self, client_id: &str, address: IpAddr, now: UnixTime) -> Option<UnixTime> {
        let locks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if locks.is_empty() {
            return None;
        }
        locks.get(&guessing::client_secret_key(client_id, address)).copied().filter(|until| *until > now)
    }

    fn lock(&self, key: String, until: UnixTime, now: UnixTime) {
        let mut locks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if locks.len() >= MAX_LOCKS {
            locks.retain(|_, u| *u > now);
        }
        if locks.len() < MAX_LOCKS {
            locks.insert(key, until);
        }
    }
}

/// Why a password was not accepted. Both cases look the same for a known and an unknown email.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CredentialFailure {
    /// The email is unknown or the password is wrong.
    Invalid,
    /// The account (or the client) used up its attempts; no password was checked.
    TooManyAttempts { retry_after: i64 },
}

/// A right password: its user, and the attempt's counts, which the caller settles together
/// with the writes its sign-in makes anyway ([`Verified::settle_with`]).
#[must_use = "a right password must be settled, or it stays counted as a failed attempt"]
pub(crate) struct Verified {
    user: User,
    /// The source's own budget, then (for a source the account does not know) the account's
    /// total.
    budgets: Vec<guessing::Budget>,
}

impl Verified {
    pub(crate) fn user(&self) -> &User {
        &self.user
    }

    /// Forgets the source's failures (it proved itself) and gives back its attempt on the
    /// account's total, sent to the store at the same time as `writes`, so that the SQLite
    /// writer commits them all in one batch: a password grant costs one `fsync` less (it had
    /// three durable commits: the attempt counted, its settling, its tokens). The counts
    /// settle even if `writes` fails: the password was right.
    pub(crate) async fn settle_with<T>(self, state: &AppState, writes: impl Future<Output = AppResult<T>>) -> AppResult<T> {
        let (store, tenant) = (state.store(), state.tenant_id());
        let settle = futures::future::try_join_all(self.budgets.iter().enumerate().map(|(i, b)| async move {
            if i == 0 {
                store.clear_attempts(tenant, &b.key).await
            } else {
                store.release_attempt(tenant, &b.key).await
            }
        }));
        let (_, out) = tokio::try_join!(async { settle.await.map_err(AppError::from) }, writes)?;
        Ok(out)
    }
}

/// Checks `email` and `password`, counting the attempt against the budgets of its `source`
/// (`core::guessing`: the source's own, and the account's total for a source the account does
/// not know). A right password comes back unsettled: see [`Verified`].
pub(crate) async fn check_password(
    state: &AppState,
    email: &str,
    password: String,
    source: guessing::Source<'_>,
) -> AppResult<Result<Verified, CredentialFailure>> {
    let policy = state.config.guessing;
    let (store, tenant, now) = (state.store(), state.tenant_id(), state.now());
    let budgets = guessing::budgets(&policy, email, source);
    // Every budget is counted at once, so that the SQLite writer commits them together (one
    // `fsync`). An attempt refused on any budget is checked by nobody, so it takes back what it
    // counted on the others (a refusal may briefly show one attempt more to a parallel one,
    // which can only refuse it too: never more checks than the budgets, docs/security.md PW-02,
    // RFC 6819 §4.3.5).
    let counts = futures::future::try_join_all(budgets.iter().map(|b| store.record_attempt(tenant, &b.key, now, policy.window))).await?;
    let verdicts: Vec<Result<(), i64>> = budgets.iter().zip(&counts).map(|(b, c)| c.verdict(b.size, policy.window, now)).collect();
    if let Some(retry_after) = verdicts.iter().filter_map(|v| v.err()).max() {
        let charged = budgets.iter().zip(&verdicts).filter(|(_, v)| v.is_ok()).map(|(b, _)| store.release_attempt(tenant, &b.key));
        futures::future::try_join_all(charged).await?;
        tracing::warn!(source = ?source, "password attempts throttled for a source of an account");
        return Ok(Err(CredentialFailure::TooManyAttempts { retry_after }));
    }
    let user = store.find_user_by_email(tenant, &email.trim().to_lowercase()).await?;
    // An unknown email is checked against a dummy hash, so both failures take the same time
    // (docs/security.md PW-03). Argon2id runs on the password threads, never on the async runtime.
    let stored = user.as_ref().map_or_else(|| password::DUMMY_HASH.to_owned(), |u| u.password_hash.clone());
    let ok =
        state.passwords.verify(password, stored).await.ok_or_else(|| AppError::Internal("the password threads have stopped".into()))?;
    match (ok, user) {
        (true, Some(user)) => Ok(Ok(Verified { user, budgets })),
        _ => Ok(Err(CredentialFailure::Invalid)),
    }
}
