//! Client authentication at the token and revocation endpoints: `client_secret_basic`,
//! `client_secret_post` and `none` (RFC 6749 §2.3.1, OpenID Connect Core §9).

use crate::model::{Client, SecretUsed};
use crate::params::Params;
use crate::secret::SecretHasher;
use crate::text;
use crate::OAuthError;
use crate::UnixTime;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// How a request identified its client.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientCredentials {
    /// `Authorization: Basic` with the form-urlencoded id and secret.
    Basic { client_id: String, secret: String },
    /// `client_id` and `client_secret` in the body.
    Post { client_id: String, secret: String },
    /// `client_id` alone: a public client.
    None { client_id: String },
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (m, id) = match self {
            Self::Basic { client_id, .. } => ("basic", client_id),
            Self::Post { client_id, .. } => ("post", client_id),
            Self::None { client_id } => ("none", client_id),
        };
        write!(f, "ClientCredentials::{m}({id})")
    }
}

impl ClientCredentials {
    pub fn client_id(&self) -> &str {
        match self {
            Self::Basic { client_id, .. } | Self::Post { client_id, .. } | Self::None { client_id } => client_id,
        }
    }

    pub fn is_basic(&self) -> bool {
        matches!(self, Self::Basic { .. })
    }

    /// Reads the credentials of a request from its `Authorization` header and body.
    ///
    /// OAuth 2.1 §2.4: "The client MUST NOT use more than one authentication method in each
    /// request"; such a request is `invalid_request`.
    pub fn extract(authorization: Option<&str>, params: &Params) -> Result<Self, OAuthError> {
        // RFC 6749 Appendix A.1 and A.2: both are VSCHAR; anything else names no client.
        let body_id = params.get("client_id")?.map(text::client_id).transpose().map_err(malformed)?;
        let body_secret = params.get("client_secret")?.map(text::client_secret).transpose().map_err(malformed)?;
        if let Some(header) = authorization {
            let (client_id, secret) = parse_basic(header)?;
            if body_secret.is_some() {
                return Err(OAuthError::invalid_request(
                    "multiple_client_auth_methods: use either HTTP Basic or client_secret in the body, not both",
                ));
            }
            if body_id.is_some_and(|id| id != client_id) {
                return Err(OAuthError::invalid_request("client_id_mismatch: client_id in the body differs from the Basic credentials"));
            }
            return Ok(Self::Basic { client_id, secret });
        }
        match (body_id, body_secret) {
            (Some(id), Some(secret)) => Ok(Self::Post { client_id: id.to_owned(), secret: secret.to_owned() }),
            (Some(id), None) => Ok(Self::None { client_id: id.to_owned() }),
            (None, Some(_)) => Err(OAuthError::invalid_request("client_id_missing: client_secret was sent without client_id")),
            (None, None) => {
                Err(OAuthError::invalid_client("client_auth_missing: authenticate with HTTP Basic, client_secret_post, or send client_id"))
            }
        }
    }

    /// The secret presented, if any.
    pub fn secret(&self) -> Option<&str> {
        match self {
            Self::Basic { secret, .. } | Self::Post { secret, .. } => Some(secret),
            Self::None { .. } => None,
        }
    }

    /// Checks the credentials against the registered client, and says which secret matched:
    /// the current one, or the one a rotation replaced while its grace period lasts (`now`
    /// before its `expires_at`). The comparisons run in constant time on the keyed hashes
    /// (docs/security.md TE-05), both of them whatever the first gave, so that the time
    /// does not tell which secret a guess was close to.
    pub fn authenticate(&self, client: &Client, hasher: &SecretHasher, now: UnixTime) -> Result<SecretUsed, OAuthError> {
        match (self, &client.secret_hash) {
            (Self::Basic { secret, .. } | Self::Post { secret, .. }, Some(stored)) => {
                let presented = hasher.hash(secret);
                let current = presented.ct_eq(stored);
                let previous = client.secret_info.previous.as_ref().is_some_and(|p| presented.ct_eq(&p.hash) & (now < p.expires_at));
                match (current, previous) {
                    (true, _) => Ok(SecretUsed::Current),
                    (false, true) => Ok(SecretUsed::Previous),
                    (false, false) => Err(OAuthError::invalid_client("client_secret_invalid: client authentication failed")),
                }
            }
            (Self::None { .. }, Some(_)) => {
                Err(OAuthError::invalid_client("client_secret_missing: this client is confidential and must authenticate"))
            }
            (Self::None { .. }, None) => Ok(SecretUsed::None),
            (_, None) => Err(OAuthError::invalid_client("public_client_secret: this client is public and has no secret")),
        }
    }
}

/// RFC 6749 §2.3.1: "The client identifier is encoded using the
/// application/x-www-form-urlencoded encoding algorithm per Appendix B, and the encoded value
/// is used as the username; the client password is encoded using the same algorithm and used
/// as the password" (RFC 7617: base64 of `user:password`, in UTF-8). Decoded exactly: base64,
/// UTF-8, split at the first `:`, then each half percent-decoded with `+` as a space. The
/// halves are never read as a form, so a `&` or `=` in them is part of the value.
fn parse_basic(header: &str) -> Result<(String, String), OAuthError> {
    let bad = || OAuthError::invalid_client("basic_auth_malformed: the Authorization header is not valid Basic credentials");
    let (scheme, rest) = header.trim().split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client("auth_scheme_unsupported: only the Basic scheme authenticates a client"));
    }
    let decoded = STANDARD.decode(rest.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let id = form_decode(id).ok_or_else(bad)?;
    let secret = form_decode(secret).ok_or_else(bad)?;
    let id = text::client_id(&id).map_err(malformed)?.to_owned();
    text::client_secret(&secret).map_err(malformed)?;
    Ok((id, secret))
}

/// Decodes one `application/x-www-form-urlencoded` value (WHATWG URL, "urlencoded parsing",
/// which RFC 6749 Appendix B follows): `+` is a space and `%XX` a byte. A `%` without two hex
/// digits, or bytes that are not UTF-8, are refused rather than guessed at.
fn form_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |b: Option<u8>| b.and_then(|b| (b as char).to_digit(16));
                let (hi, lo) = (hex(bytes.next())?, hex(bytes.next())?);
                // Two hex digits make at most 0xff.
                out.push(u8::try_from(hi * 16 + lo).ok()?);
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

/// A client identifier or secret outside RFC 6749's grammar cannot name a client.
fn malformed(m: text::Malformed) -> OAuthError {
    OAuthError::invalid_client(format!("{}_malformed: {m}", m.field))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
    }

    /// A rotation's grace period: the replaced secret authenticates until `expires_at` (not at
    /// it), and the answer says which secret matched.
    #[test]
    fn a_replaced_secret_works_until_its_grace_period_ends() {
        use crate::model::{PreviousSecret, SecretInfo};
        let hasher = SecretHasher::new([9; 32]);
        let mut client = crate::grant::client_credentials::tests::client(false);
        client.secret_hash = Some(hasher.hash("new"));
        client.secret_info = SecretInfo {
            previous: Some(PreviousSecret { hash: hasher.hash("old"), created_at: None, expires_at: 1000, last_used_at: None }),
            ..SecretInfo::default()
        };
        let post = |secret: &str| ClientCredentials::Post { client_id: client.client_id.clone(), secret: secret.into() };
        assert_eq!(post("new").authenticate(&client, &hasher, 999), Ok(SecretUsed::Current));
        assert_eq!(post("old").authenticate(&client, &hasher, 999), Ok(SecretUsed::Previous));
        assert_eq!(post("new").authenticate(&client, &hasher, 1000), Ok(SecretUsed::Current));
        assert_eq!(post("old").authenticate(&client, &hasher, 1000).unwrap_err().code, ErrorCode::InvalidClient, "at the end of the grace");
        assert_eq!(post("wrong").authenticate(&client, &hasher, 999).unwrap_err().code, ErrorCode::InvalidClient);
        client.secret_info.previous = None;
        assert!(post("old").authenticate(&client, &hasher, 0).is_err(), "no grace without a previous secret");
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let p = Params::default();
        let c = ClientCredentials::extract(Some(&basic("my%20app", "s%3Ae+cret")), &p).unwrap();
        assert_eq!(c, ClientCredentials::Basic { client_id: "my app".into(), secret: "s:e cret".into() });
    }

    /// RFC 6749 §2.3.1: each half is form-decoded on its own; `&` and `=` are part of the
    /// value, never a parameter separator.
    #[test]
    fn basic_halves_are_decoded_exactly() {
        let p = Params::default();
        let creds = |h: &str| ClientCredentials::extract(Some(h), &p);
        for (id, secret, want_id, want_secret) in [
            ("CID&x", "SECRET", "CID&x", "SECRET"),
            ("CID&y=1", "SECRET", "CID&y=1", "SECRET"),
            ("CID=x", "SECRET", "CID=x", "SECRET"),
            ("CID", "SECRET&client_id=x", "CID", "SECRET&client_id=x"),
            ("C+D", "S+T", "C D", "S T"),
            ("C%2BD", "S%2BT", "C+D", "S+T"),
            ("C%3AD", "S%3AT", "C:D", "S:T"),
            ("CID", "a:b:c", "CID", "a:b:c"),
            ("CID", "", "CID", ""),
        ] {
            let c = creds(&basic(id, secret)).unwrap();
            assert_eq!(c, ClientCredentials::Basic { client_id: want_id.into(), secret: want_secret.into() }, "{id}:{secret}");
        }
        let raw = |bytes: &[u8]| format!("Basic {}", STANDARD.encode(bytes));
        for bad in [
            raw(b"no-colon"),
            raw(b":secret"),
            raw(b"C%zz:s"),
            raw(b"C%4:s"),
            raw(b"CID:%"),
            raw(b"C%00D:s"),
            raw(b"CID:s%00"),
            raw(b"C%FFD:s"),
            raw(b"\xff\xfe:s"),
            raw("Zo\u{eb}:s".as_bytes()),
            "Basic !!!".into(),
            "Basic".into(),
            "Basic Q0lE".into(),
        ] {
            let e = creds(&bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidClient, "{bad}");
        }
    }

    #[test]
    fn body_client_ids_outside_the_grammar_name_no_client() {
        for body in ["client_id=a%00b", "client_id=a%0Ab&client_secret=x", "client_id=a&client_secret=x%00"] {
            let e = ClientCredentials::extract(None, &Params::from_urlencoded(body)).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidClient, "{body}");
        }
    }

    #[test]
    fn two_methods_in_one_request_are_refused() {
        let p = Params::from_urlencoded("client_id=a&client_secret=b");
        let e = ClientCredentials::extract(Some(&basic("a", "b")), &p).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn body_forms() {
        let p = Params::from_urlencoded("client_id=a&client_secret=b");
        assert!(matches!(ClientCredentials::extract(None, &p).unwrap(), ClientCredentials::Post { .. }));
        let p = Params::from_urlencoded("client_id=a");
        assert!(matches!(ClientCredentials::extract(None, &p).unwrap(), ClientCredentials::None { .. }));
        let e = ClientCredentials::extract(None, &Params::default()).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidClient);
        let e = ClientCredentials::extract(Some("Bearer x"), &Params::default()).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidClient);
        let e = ClientCredentials::extract(Some("Basic !!!"), &Params::default()).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidClient);
    }
}
