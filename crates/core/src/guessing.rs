//! Online guessing protection for passwords (RFC 6819 §4.4.3.6, §5.1.4.2.3; SECURITY.md PW-02).
//!
//! Attempts are counted before the password is checked, in one atomic step of the store, so a
//! burst of parallel guesses cannot get more checks than the budget (the race Keycloak fixed
//! in #31726). A success clears the account's count; other accounts are never touched, so
//! valid sign-ins of other users are not slowed.
//!
//! Client secrets (SECURITY.md TE-04, RFC 6819 §4.3.5) are counted differently: only failures
//! count, per client and network address, so that a stranger who knows a client_id (they are
//! public) can lock out only their own address, never the client's own servers.

use crate::UnixTime;

/// How many attempts an account and a client get per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuessingPolicy {
    /// Password checks per account (email) per window, successes excepted.
    pub account_budget: i64,
    /// Failed password grants per client per window.
    pub client_budget: i64,
    /// The window in seconds; a locked account opens again when it ends.
    pub window: i64,
    /// Failed client authentications per client and address per `client_secret_window`.
    pub client_secret_budget: i64,
    /// The window of `client_secret_budget`, in seconds.
    pub client_secret_window: i64,
}

impl Default for GuessingPolicy {
    fn default() -> Self {
        Self { account_budget: 10, client_budget: 200, window: 15 * 60, client_secret_budget: 20, client_secret_window: 5 * 60 }
    }
}

/// The counter of one key after an attempt was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptCount {
    /// Attempts in the current window, this one included.
    pub attempts: i64,
    pub window_start: UnixTime,
}

impl AttemptCount {
    /// Whether this attempt is within `budget`; if not, how long until the window ends.
    pub fn verdict(&self, budget: i64, window: i64, now: UnixTime) -> Result<(), i64> {
        if self.attempts <= budget {
            Ok(())
        } else {
            Err((self.window_start + window - now).max(1))
        }
    }
}

/// The counter key of an account: the email as typed, lowercased, so that unknown emails are
/// limited exactly like known ones.
pub fn account_key(email: &str) -> String {
    format!("account:{}", email.trim().to_lowercase())
}

pub fn client_key(client_id: &str) -> String {
    format!("client:{client_id}")
}

/// The counter key of failed client authentications from one address.
pub fn client_secret_key(client_id: &str, address: std::net::IpAddr) -> String {
    format!("client-secret:{client_id}@{address}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let c = AttemptCount { attempts: 10, window_start: 100 };
        assert_eq!(c.verdict(10, 900, 200), Ok(()));
        let c = AttemptCount { attempts: 11, window_start: 100 };
        assert_eq!(c.verdict(10, 900, 200), Err(800));
        assert_eq!(c.verdict(10, 900, 2000), Err(1));
        assert_eq!(account_key(" Ada@Example.com"), "account:ada@example.com");
        assert_eq!(client_secret_key("app", "::1".parse().unwrap()), "client-secret:app@::1");
    }
}
