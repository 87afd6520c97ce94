//! Online guessing protection for passwords (RFC 6819 §4.4.3.6, §5.1.4.2.3; docs/security.md PW-02).
//!
//! Attempts are counted before the password is checked, in one atomic step of the store, so a
//! burst of parallel guesses cannot get more checks than the budget (the race Keycloak fixed
//! in #31726).
//!
//! The budgets are aimed at the guesser, not at the account (OWASP, "Slow Down Online
//! Guessing Attacks with Device Cookies"): a lock that anyone who knows an email could set
//! would lock its owner out. Each attempt is counted against its *source*:
//! - a browser that has signed in to the account before (it holds a device cookie for it) has
//!   a budget of its own, which nobody else's guesses touch;
//! - any other browser is counted by its address, per account;
//! - the password grant is counted per client and account, so one abusive user of an app
//!   cannot lock the app's other users out.
//!
//! Attempts from sources the account does not know (every address and client together) also
//! count against a larger budget per account, which bounds a guesser spread over many
//! addresses; a known browser is never held by it. A right password gives back its attempts.
//!
//! Client secrets (docs/security.md TE-04, RFC 6819 §4.3.5) are counted differently: only failures
//! count, per client and network address, so that a stranger who knows a client_id (they are
//! public) can lock out only their own address, never the client's own servers.

use crate::UnixTime;
use std::net::IpAddr;

/// How many attempts each source gets per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuessingPolicy {
    /// Password checks per account and source per window on the sign-in form (a known
    /// browser, or an address), successes excepted.
    pub account_budget: i64,
    /// Password checks per account per window from every unknown source together (addresses
    /// and clients): the bound on a guesser spread over many addresses.
    pub account_total_budget: i64,
    /// Failed password grants per client and account per window.
    pub client_budget: i64,
    /// The window in seconds; a locked source may try again when it ends.
    pub window: i64,
    /// Failed client authentications per client and address per `client_secret_window`.
    pub client_secret_budget: i64,
    /// The window of `client_secret_budget`, in seconds.
    pub client_secret_window: i64,
}

impl Default for GuessingPolicy {
    fn default() -> Self {
        Self {
            account_budget: 10,
            account_total_budget: 100,
            client_budget: 10,
            window: 15 * 60,
            client_secret_budget: 20,
            client_secret_window: 5 * 60,
        }
    }
}

/// Where a password attempt comes from, which decides the budgets it is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    /// A browser holding a device cookie for this account (`device` identifies the cookie).
    KnownBrowser { device: &'a str },
    /// Any other browser, by its address.
    Browser { address: IpAddr },
    /// The password grant of a client.
    Client { client_id: &'a str },
}

/// One budget an attempt is counted against: its counter key and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub key: String,
    pub size: i64,
}

/// The budgets an attempt on `email` from `source` is counted against: its source's own, and,
/// for a source the account does not know, the account's total.
pub fn budgets(policy: &GuessingPolicy, email: &str, source: Source<'_>) -> Vec<Budget> {
    let email = email.trim().to_lowercase();
    let own = match source {
        Source::KnownBrowser { device } => Budget { key: format!("device:{device}:{email}"), size: policy.account_budget },
        Source::Browser { address } => Budget { key: format!("account:{email}@{address}"), size: policy.account_budget },
        Source::Client { client_id } => Budget { key: format!("client:{client_id}:{email}"), size: policy.client_budget },
    };
    match source {
        Source::KnownBrowser { .. } => vec![own],
        _ => vec![own, Budget { key: account_key(&email), size: policy.account_total_budget }],
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
        let p = GuessingPolicy::default();
        let keys = |source| budgets(&p, "Ada@Example.com", source).into_iter().map(|b| (b.key, b.size)).collect::<Vec<_>>();
        assert_eq!(
            keys(Source::KnownBrowser { device: "d1" }),
            [("device:d1:ada@example.com".to_owned(), 10)],
            "a known browser has its own budget only"
        );
        assert_eq!(
            keys(Source::Browser { address: "10.0.0.1".parse().unwrap() }),
            [("account:ada@example.com@10.0.0.1".to_owned(), 10), ("account:ada@example.com".to_owned(), 100)]
        );
        assert_eq!(
            keys(Source::Client { client_id: "app" }),
            [("client:app:ada@example.com".to_owned(), 10), ("account:ada@example.com".to_owned(), 100)]
        );
        assert_eq!(client_secret_key("app", "::1".parse().unwrap()), "client-secret:app@::1");
    }
}
