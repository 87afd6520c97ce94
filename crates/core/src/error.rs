//! The typed protocol error every rule in this crate returns.

use latchkey_proto::ErrorCode;
use std::borrow::Cow;
use std::fmt;

/// An OAuth error: an RFC error code, a stable reason and an explanation.
///
/// Errors are written as one string, `"reason: explanation"` (`"code_reused: the authorization
/// code was already used"`), and kept as two fields: `reason` is the stable word that logs,
/// tests and clients may match on; `description` says what happened to a person. On the wire,
/// `error_description` carries both (`safe_description`), never CR, LF or TAB, nor any character
/// outside the set RFC 6749 §5.2 allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub code: ErrorCode,
    /// The stable reason (`code_reused`, `pkce_verifier_malformed`, ...).
    pub reason: Cow<'static, str>,
    /// What happened, in words (may be empty).
    pub description: Cow<'static, str>,
}

/// Splits `"reason: explanation"` at its first `": "`, without copying a `'static` string.
fn split(d: Cow<'static, str>) -> (Cow<'static, str>, Cow<'static, str>) {
    match d {
        Cow::Borrowed(s) => match s.split_once(": ") {
            Some((r, e)) => (Cow::Borrowed(r), Cow::Borrowed(e)),
            None => (Cow::Borrowed(s), Cow::Borrowed("")),
        },
        Cow::Owned(s) => match s.split_once(": ") {
            Some((r, e)) => (Cow::Owned(r.to_owned()), Cow::Owned(e.to_owned())),
            None => (Cow::Owned(s), Cow::Borrowed("")),
        },
    }
}

impl OAuthError {
    /// An error from `"reason: explanation"`.
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        let (reason, description) = split(description.into());
        Self { code, reason, description }
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

    /// `error_description` for the wire: `reason: explanation`, with every character RFC 6749
    /// §5.2 forbids replaced by a space (allowed: %x20-21 / %x23-5B / %x5D-7E).
    pub fn safe_description(&self) -> String {
        let whole = if self.description.is_empty() { self.reason.to_string() } else { format!("{}: {}", self.reason, self.description) };
        whole
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
        write!(f, "{}: {}", self.code, self.reason)?;
        if !self.description.is_empty() {
            write!(f, ": {}", self.description)?;
        }
        Ok(())
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

    #[test]
    fn the_reason_is_a_field_of_its_own() {
        let e = OAuthError::invalid_grant("code_reused: the code was already used");
        assert_eq!((e.reason.as_ref(), e.description.as_ref()), ("code_reused", "the code was already used"));
        assert_eq!(e.safe_description(), "code_reused: the code was already used");
        let e = OAuthError::invalid_request(format!("{}_malformed: nonce must be short", "nonce"));
        assert_eq!(e.reason, "nonce_malformed");
        assert_eq!(e.to_string(), "invalid_request: nonce_malformed: nonce must be short");
    }
}
