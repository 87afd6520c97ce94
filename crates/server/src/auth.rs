//! Checking a user's password, shared by the sign-in form and the password grant, behind the
//! online guessing protection of `core::guessing`.

use crate::error::{AppError, AppResult};
use crate::state::AppState;
use latchkey_core::guessing;
use latchkey_core::model::User;
use latchkey_core::password;

/// Why a password was not accepted. Both cases look the same for a known and an unknown email.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CredentialFailure {
    /// The email is unknown or the password is wrong.
    Invalid,
    /// The account (or the client) used up its attempts; no password was checked.
    TooManyAttempts { retry_after: i64 },
}

/// Checks `email` and `password`, counting the attempt against the account and, for the
/// password grant, against the client.
pub(crate) async fn check_password(
    state: &AppState,
    email: &str,
    password: String,
    client_id: Option<&str>,
) -> AppResult<Result<User, CredentialFailure>> {
    let policy = state.config.guessing;
    let (store, tenant, now) = (state.store(), state.tenant_id(), state.now());
    let client_key = client_id.map(guessing::client_key);
    if let Some(key) = &client_key {
        let count = store.record_attempt(tenant, key, now, policy.window).await?;
        if let Err(retry_after) = count.verdict(policy.client_budget, policy.window, now) {
            tracing::warn!(client = client_id.unwrap_or_default(), "password grant throttled for the client");
            return Ok(Err(CredentialFailure::TooManyAttempts { retry_after }));
        }
    }
    let account_key = guessing::account_key(email);
    let count = store.record_attempt(tenant, &account_key, now, policy.window).await?;
    if let Err(retry_after) = count.verdict(policy.account_budget, policy.window, now) {
        if let Some(key) = &client_key {
            // Nothing was checked, so the client's budget is not charged.
            store.release_attempt(tenant, key).await?;
        }
        tracing::warn!("sign-in throttled for an account");
        return Ok(Err(CredentialFailure::TooManyAttempts { retry_after }));
    }
    let user = store.find_user_by_email(tenant, &email.trim().to_lowercase()).await?;
    // An unknown email is checked against a dummy hash, so both failures take the same time
    // (SECURITY.md PW-03). Argon2id runs on the password threads, never on the async runtime.
    let stored = user.as_ref().map_or_else(|| password::DUMMY_HASH.to_owned(), |u| u.password_hash.clone());
    let ok =
        state.passwords.verify(password, stored).await.ok_or_else(|| AppError::Internal("the password threads have stopped".into()))?;
    match (ok, user) {
        (true, Some(user)) => {
            store.clear_attempts(tenant, &account_key).await?;
            if let Some(key) = &client_key {
                store.release_attempt(tenant, key).await?;
            }
            Ok(Ok(user))
        }
        _ => Ok(Err(CredentialFailure::Invalid)),
    }
}
