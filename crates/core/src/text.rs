//! The grammar every piece of text from outside is held to, where it enters and before any
//! store sees it (`docs/inputs.md` lists which input follows which rule).
//!
//! The OAuth parameters follow RFC 6749 Appendix A: `client_id`, `client_secret`, `state` and
//! `code` are `VSCHAR` (visible ASCII and space), scope tokens are `NQCHAR`, `error` and
//! `error_description` are `NQSCHAR`, and `username` and `password` are `UNICODECHARNOCRLF`.
//! OpenID Connect gives `nonce` no grammar of its own; Latchkey holds it to `VSCHAR` like
//! `state`, which it resembles. Text that people write (names, descriptions) is printable
//! Unicode without control characters, trimmed and bounded. None of these admits a NUL byte,
//! which PostgreSQL's `text` cannot hold.

use std::fmt;

/// Why a value does not fit its grammar: which input, and what it must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed {
    /// The input's name (`client_id`, `email`, `name`).
    pub field: &'static str,
    /// What the input must be, as a phrase ("1 to 255 visible ASCII characters").
    pub expected: &'static str,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} must be {}", self.field, self.expected)
    }
}

impl std::error::Error for Malformed {}

/// RFC 6749 Appendix A: `VSCHAR = %x20-7E`.
pub fn is_vschar(s: &str) -> bool {
    s.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// RFC 6749 Appendix A: `NQCHAR = %x21 / %x23-5B / %x5D-7E` (a scope token's characters).
pub fn is_nqchar(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e))
}

/// RFC 6749 Appendix A: `NQSCHAR = %x20-21 / %x23-5B / %x5D-7E` (`error`,
/// `error_description`).
pub fn is_nqschar(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e))
}

/// RFC 6749 Appendix A: `UNICODECHARNOCRLF = %x09 / %x20-7E / %x80-D7FF / %xE000-FFFD /
/// %x10000-10FFFF`. A Rust `char` is never a surrogate, so this is: no control character of
/// ASCII but TAB, and no DEL.
pub fn is_unicode_no_crlf(s: &str) -> bool {
    s.chars().all(|c| c == '\t' || !(c < '\x20' || c == '\x7f'))
}

/// Printable text a person wrote: no control character at all (Unicode category Cc, which
/// includes NUL, CR, LF, TAB and DEL) and no line or paragraph separator.
pub fn is_printable(s: &str) -> bool {
    s.chars().all(|c| !c.is_control() && c != '\u{2028}' && c != '\u{2029}')
}

/// The longest `client_id` accepted. Latchkey's own are 32 characters; a chosen one (the
/// demo's, an imported client's) may be longer, but not without bound.
pub const MAX_CLIENT_ID: usize = 255;
/// The longest `state` and `nonce` accepted (docs/security.md AZ-16 asks for a cap).
pub const MAX_STATE: usize = 2048;
/// The longest email address (RFC 5321 §4.5.3.1.3 limits a path to 256 octets, of which an
/// address is at most 254).
pub const MAX_EMAIL: usize = 254;
/// The longest `username` of the password grant, in characters.
pub const MAX_USERNAME: usize = 254;
/// The longest `login_hint`, in characters.
pub const MAX_LOGIN_HINT: usize = 254;

/// A `client_id`: 1 to 255 `VSCHAR` (RFC 6749 §2.2, Appendix A.1).
pub fn client_id(s: &str) -> Result<&str, Malformed> {
    let ok = !s.is_empty() && s.len() <= MAX_CLIENT_ID && is_vschar(s);
    ok.then_some(s).ok_or(Malformed { field: "client_id", expected: "1 to 255 visible ASCII characters (RFC 6749 Appendix A.1)" })
}

/// A `client_secret`: `VSCHAR` (RFC 6749 Appendix A.2), at most 512 bytes. Latchkey's own
/// secrets are far shorter; a longer one cannot match.
pub fn client_secret(s: &str) -> Result<&str, Malformed> {
    let ok = s.len() <= 512 && is_vschar(s);
    ok.then_some(s).ok_or(Malformed { field: "client_secret", expected: "at most 512 visible ASCII characters (RFC 6749 Appendix A.2)" })
}

/// `state`: 1 to 2048 `VSCHAR` (RFC 6749 Appendix A.5).
pub fn state(s: &str) -> Result<&str, Malformed> {
    let ok = s.len() <= MAX_STATE && is_vschar(s);
    ok.then_some(s).ok_or(Malformed { field: "state", expected: "at most 2048 visible ASCII characters (RFC 6749 Appendix A.5)" })
}

/// `nonce`: 1 to 2048 `VSCHAR`, as `state`.
pub fn nonce(s: &str) -> Result<&str, Malformed> {
    let ok = s.len() <= MAX_STATE && is_vschar(s);
    ok.then_some(s).ok_or(Malformed { field: "nonce", expected: "at most 2048 visible ASCII characters" })
}

/// The password grant's `username` (RFC 6749 Appendix A.15): `UNICODECHARNOCRLF`, at most
/// 254 characters.
pub fn username(s: &str) -> Result<&str, Malformed> {
    let ok = s.chars().count() <= MAX_USERNAME && is_unicode_no_crlf(s);
    ok.then_some(s)
        .ok_or(Malformed { field: "username", expected: "at most 254 characters without control characters (RFC 6749 Appendix A.15)" })
}

/// A password as it is presented (RFC 6749 Appendix A.16): `UNICODECHARNOCRLF`, at most 1024
/// bytes (the longest a password may be set to, see `password::check_policy`).
pub fn password(s: &str) -> Result<&str, Malformed> {
    let ok = s.len() <= 1024 && is_unicode_no_crlf(s);
    ok.then_some(s)
        .ok_or(Malformed { field: "password", expected: "at most 1024 bytes without control characters (RFC 6749 Appendix A.16)" })
}

/// OpenID Connect Core §3.1.2.1 `login_hint`: printable, at most 254 characters.
pub fn login_hint(s: &str) -> Result<&str, Malformed> {
    let ok = s.chars().count() <= MAX_LOGIN_HINT && is_printable(s);
    ok.then_some(s).ok_or(Malformed { field: "login_hint", expected: "at most 254 printable characters" })
}

/// An email address as Latchkey keeps it: trimmed and lowercased, at most 254 bytes, one `@`
/// with something before it and a dotted domain after it, printable, no space.
pub fn email(s: &str) -> Result<String, Malformed> {
    let e = s.trim().to_lowercase();
    let ok = e.len() <= MAX_EMAIL
        && is_printable(&e)
        && !e.contains(char::is_whitespace)
        && e.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.contains('@') && domain.split('.').count() >= 2 && domain.split('.').all(|label| !label.is_empty())
        });
    if ok {
        Ok(e)
    } else {
        Err(Malformed { field: "email", expected: "an email address such as name@example.com" })
    }
}

/// A name a person gives something (a user, a business, an app, a token): trimmed, 1 to
/// `max` printable characters; `None` otherwise.
pub fn name(s: &str, max: usize) -> Option<String> {
    let n = s.trim();
    (!n.is_empty() && n.chars().count() <= max && is_printable(n)).then(|| n.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_parameters_follow_appendix_a() {
        assert!(client_id("my-app_1.x ~").is_ok());
        for bad in ["", "a\0b", "a\nb", "é", "a\x7f", &"x".repeat(256)] {
            assert!(client_id(bad).is_err(), "{bad:?}");
        }
        assert!(state("a b\"c").is_ok());
        assert!(state("a\0").is_err() && state(&"s".repeat(2049)).is_err());
        assert!(nonce("n-0").is_ok() && nonce("n\u{0}").is_err() && nonce("ü").is_err());
        assert!(username("Zoë\tx").is_ok());
        for bad in ["a\0b", "a\rb", "a\nb", "\x7f"] {
            assert!(username(bad).is_err() && password(bad).is_err(), "{bad:?}");
        }
        assert!(client_secret("s\0").is_err() && client_secret("lk_cs_abc").is_ok());
        assert!(is_nqschar("error text!") && !is_nqschar("a\"b") && !is_nqschar("a\\b"));
        assert!(is_nqchar("business/orders:read") && !is_nqchar("a b"));
    }

    #[test]
    fn emails_are_normalized_and_checked() {
        assert_eq!(email("  You@Example.COM ").unwrap(), "you@example.com");
        for bad in ["you", "@example.com", "you@example", "you@@example.com", "y ou@example.com", "you@example..com", "a\0@b.c"] {
            assert!(email(bad).is_err(), "{bad:?}");
        }
        assert!(email(&format!("{}@example.com", "a".repeat(250))).is_err());
    }

    #[test]
    fn names_are_printable_and_bounded() {
        assert_eq!(name("  CI deploys ", 100).unwrap(), "CI deploys");
        for bad in ["", "   ", "a\0", "a\nb", "a\u{2028}b", "a\u{85}b"] {
            assert!(name(bad, 100).is_none(), "{bad:?}");
        }
        assert!(name(&"é".repeat(100), 100).is_some());
        assert!(name(&"é".repeat(101), 100).is_none());
    }
}
