//! The typed protocol error every rule in this crate returns.

use latchkey_proto::ErrorCode;
use std::borrow::Cow;
use std::fmt;

/// An OAuth error: an RFC error code and a stable, human-readable reason.
///
/// The description is a short stable phrase (for example `code_reused`, `client_mismatch`)
/// followed, where useful, by an explanation. It never contains CR, LF or TAB, nor any
/// character outside the set RFC 6749 §5.2 allows for `error_description`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: Cow<'static, str>,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self { code, description: description.into() }
    }
    pub fn invalid_request(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, d)
    }
    pub fn invalid_client(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidClient, d)
    }
    pub fn invalid_grant(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidGrant, d)
    }
    pub fn invalid_scope(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidScope, d)
    }
    pub fn unauthorized_client(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::UnauthorizedClient, d)
    }

    /// The description with every character RFC 6749 §5.2 forbids replaced by a space
    /// (allowed: %x20-21 / %x23-5B / %x5D-7E).
    pub fn safe_description(&self) -> String {
        self.description
            .chars()
            .map(|c| match c {
                '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e' => c,
                _ => ' ',
            })
            .collect()
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.description)
    }
}

impl std::error::Error for OAuthError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_never_carries_forbidden_characters() {
        let e = OAuthError::invalid_request("bad\r\nvalue \"x\" \\ é\t");
        assert_eq!(e.safe_description(), "bad  value  x      ");
    }
}
