//! An opaque access token whose claims are sealed (XChaCha20-Poly1305, the same sealing as
//! `jose::seal`) under a key only the server holds: the token endpoint's opaque access token,
//! for a user (authorization_code, refresh_token, password) and for a client acting for itself
//! (client_credentials, RFC 6749 §4.4). Like a JWT access token it carries what it means, so it
//! needs no row of its own: expiry, the revoked jtis and, for a user's token, its family (the
//! grant it came from: revoked, or gone with its client or user) judge it. To the client it
//! stays opaque (RFC 6749 §1.4): it can neither read nor change what is inside, and only
//! introspection (RFC 7662) says what the token is.
//!
//! A row held nothing the claims and the family do not, and writing one per token was most of
//! what the client_credentials grant cost, and a third of a refresh's bytes, on SQLite and
//! still more on PostgreSQL (docs/performance.md).

use crate::claims::AccessTokenClaims;
use crate::jose::{self, JoseError};
use crate::UnixTime;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::{CryptoRng, RngCore};
use uuid::Uuid;

/// What starts a sealed access token; a random access token of earlier versions, judged by its
/// row, starts with `lk_at_`.
pub const PREFIX: &str = "lk_st_";
/// Binds the sealed claims, and the layout below, to this use of the key.
const PURPOSE: &[u8] = b"latchkey sealed access token v1";
/// Longer than any token `seal` makes (its claims are bounded by the client id's and the
/// scope's own limits); anything longer is not opened.
const MAX_LEN: usize = 4096;

/// What a sealed token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The claims a JWT access token would carry (RFC 9068 §2.2). `aud` is the issuer (the
    /// default audience, RFC 9068 §3), `jti` a UUID, and a user's `sub` and
    /// `authorized_business_id` UUIDs; `seal` refuses anything else.
    pub claims: AccessTokenClaims,
    /// The family of a user's token, whose state decides the token's; `None` for a client's
    /// own token, which has none.
    pub family: Option<Uuid>,
}

/// Seals `sealed` into a token.
pub fn seal(key: &[u8; 32], sealed: &Sealed, rng: &mut (impl RngCore + CryptoRng)) -> Result<String, JoseError> {
    seal_as(key, PURPOSE, PREFIX, &encode(sealed)?, rng)
}

/// The envelope of sealed tokens and codes: `bytes` sealed for `purpose` (`jose::seal`), in
/// base64url after `prefix`.
pub(crate) fn seal_as(
    key: &[u8; 32],
    purpose: &[u8],
    prefix: &str,
    bytes: &[u8],
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<String, JoseError> {
    Ok(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(jose::seal(key, purpose, bytes, rng)?)))
}

/// The bytes [`seal_as`] sealed into `s` with `key`, `purpose` and `prefix`; `None` for
/// anything else, and unread when `s` is longer than `max_len`.
pub(crate) fn open_as(key: &[u8; 32], purpose: &[u8], prefix: &str, max_len: usize, s: &str) -> Option<Vec<u8>> {
    if s.len() > max_len {
        return None;
    }
    jose::open(key, purpose, &URL_SAFE_NO_PAD.decode(s.strip_prefix(prefix)?).ok()?).ok()
}

/// Whether `token` has the form of a sealed token (it may still not open).
pub fn is_sealed(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// What a token that `seal` made with `key` carries; `None` for anything else: another form,
/// another key, a changed byte.
pub fn open(key: &[u8; 32], token: &str) -> Option<Sealed> {
    decode(&open_as(key, PURPOSE, PREFIX, MAX_LEN, token)?)
}

// The sealed bytes: a compact layout rather than JSON, so that the token stays short (it is
// sent with every API call, and kept in the refresh replay answers) and opens in a fraction of
// the time (introspection opens one per call). Integers are big-endian; a text is a u16 length
// and UTF-8 bytes.
//
//   flags u8 (USER: a user's token; BUSINESS: with authorized_business_id)
//   exp i64, iat i64, jti 16 bytes
//   USER: family 16 bytes, sub (the user) 16 bytes, auth_time i64; BUSINESS: 16 bytes
//   client_id text, scope text, iss text
const USER: u8 = 1;
const BUSINESS: u8 = 2;

fn encode(s: &Sealed) -> Result<Vec<u8>, JoseError> {
    let c = &s.claims;
    let bad = |what: &str| JoseError::Decode(format!("a sealed token's {what} is not what its layout holds"));
    let uuid = |v: &str, what: &str| Uuid::parse_str(v).map_err(|_| bad(what));
    let business = c.authorized_business_id.as_deref().map(|b| uuid(b, "authorized_business_id")).transpose()?;
    let user = match (s.family, c.auth_time) {
        (Some(family), Some(auth_time)) => Some((family, uuid(&c.sub, "sub")?, auth_time)),
        (None, None) if business.is_none() && c.sub == c.client_id => None,
        _ => return Err(bad("owner")),
    };
    if c.aud != c.iss {
        return Err(bad("aud"));
    }
    let mut out = Vec::with_capacity(96 + c.client_id.len() + c.scope.len() + c.iss.len());
    out.push(if user.is_some() { USER } else { 0 } | if business.is_some() { BUSINESS } else { 0 });
    out.extend_from_slice(&c.exp.to_be_bytes());
    out.extend_from_slice(&c.iat.to_be_bytes());
    out.extend_from_slice(uuid(&c.jti, "jti")?.as_bytes());
    if let Some((family, sub, auth_time)) = user {
        out.extend_from_slice(family.as_bytes());
        out.extend_from_slice(sub.as_bytes());
        out.extend_from_slice(&auth_time.to_be_bytes());
    }
    if let Some(b) = business {
        out.extend_from_slice(b.as_bytes());
    }
    for text in [&c.client_id, &c.scope, &c.iss] {
        put_text(&mut out, text).ok_or_else(|| bad("text"))?;
    }
    Ok(out)
}

/// Appends a text as the layouts hold it: a u16 length, then its bytes. `None` if it is longer.
pub(crate) fn put_text(out: &mut Vec<u8>, text: &str) -> Option<()> {
    out.extend_from_slice(&u16::try_from(text.len()).ok()?.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    Some(())
}

/// Reads the layout back; `None` unless every byte is where `encode` puts it.
fn decode(bytes: &[u8]) -> Option<Sealed> {
    let mut r = Reader(bytes);
    let flags = r.take::<1>()?[0];
    if flags & !(USER | BUSINESS) != 0 {
        return None;
    }
    let exp = r.int()?;
    let iat = r.int()?;
    let jti = r.uuid()?;
    let user = if flags & USER != 0 { Some((r.uuid()?, r.uuid()?, r.int()?)) } else { None };
    let business = if flags & BUSINESS != 0 { Some(r.uuid()?) } else { None };
    let (client_id, scope, iss) = (r.text()?, r.text()?, r.text()?);
    if !r.0.is_empty() || (business.is_some() && user.is_none()) {
        return None;
    }
    let claims = AccessTokenClaims {
        aud: iss.clone(),
        iss,
        exp,
        sub: user.map_or_else(|| client_id.clone(), |(_, sub, _)| sub.to_string()),
        client_id,
        iat,
        jti: jti.to_string(),
        scope,
        auth_time: user.map(|(_, _, auth_time)| auth_time),
        authorized_business_id: business.map(|b| b.to_string()),
    };
    Some(Sealed { claims, family: user.map(|(family, _, _)| family) })
}

/// Reads a sealed layout front to back (shared with `sealed_code`).
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl Reader<'_> {
    pub(crate) fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    pub(crate) fn int(&mut self) -> Option<UnixTime> {
        self.take::<8>().map(i64::from_be_bytes)
    }

    pub(crate) fn uuid(&mut self) -> Option<Uuid> {
        self.take::<16>().map(Uuid::from_bytes)
    }

    pub(crate) fn text(&mut self) -> Option<String> {
        let len = usize::from(u16::from_be_bytes(self.take::<2>()?));
        let (text, rest) = self.0.split_at_checked(len)?;
        self.0 = rest;
        String::from_utf8(text.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// A client's own token: no family.
    fn clients() -> Sealed {
        Sealed {
            claims: AccessTokenClaims {
                iss: "https://auth.example".into(),
                exp: 2_000_003_600,
                aud: "https://auth.example".into(),
                sub: "reports-job".into(),
                client_id: "reports-job".into(),
                iat: 2_000_000_000,
                jti: "0b6f3e8e-4a9c-4d0e-9b1a-2f6c1d7e8a90".into(),
                scope: "reports:read".into(),
                auth_time: None,
                authorized_business_id: None,
            },
            family: None,
        }
    }

    /// A user's token: the user, the business and the family.
    fn users() -> Sealed {
        let mut s = clients();
        s.claims.sub = "5f0c2a4e-1b7d-4c3a-9e8f-6d2b1a0c9e7f".into();
        s.claims.auth_time = Some(1_999_999_000);
        s.claims.authorized_business_id = Some("7a1d3c5e-2b4f-4a6c-8e0d-1f3b5d7c9a2e".into());
        s.family = Some(Uuid::from_u128(0x1234));
        s
    }

    #[test]
    fn a_sealed_token_opens_with_its_key_only() {
        let mut rng = StdRng::seed_from_u64(7);
        let (key, other) = ([1u8; 32], [2u8; 32]);
        for sealed in [clients(), users()] {
            let token = seal(&key, &sealed, &mut rng).unwrap();
            assert!(is_sealed(&token) && token.len() < MAX_LEN, "{token}");
            assert_eq!(open(&key, &token), Some(sealed.clone()));
            assert_eq!(open(&other, &token), None, "another server's key");
            // Two tokens of the same claims differ (a fresh nonce each), and neither shows them.
            let again = seal(&key, &sealed, &mut rng).unwrap();
            assert_ne!(token, again);
            assert!(!token.contains("cmVwb3J0") && !token.contains("reports"), "{token}");
        }
    }

    #[test]
    fn every_kind_of_token_reads_back_as_it_was_sealed() {
        let mut without_business = users();
        without_business.claims.authorized_business_id = None;
        for sealed in [clients(), users(), without_business] {
            let bytes = encode(&sealed).unwrap();
            assert_eq!(decode(&bytes), Some(sealed.clone()));
            // Short: a user's token with its business and a long scope stays under 300 characters.
            let token = seal(&[1; 32], &sealed, &mut StdRng::seed_from_u64(1)).unwrap();
            assert!(token.len() < 300, "{} characters", token.len());
        }
    }

    #[test]
    fn only_the_layout_reads_back() {
        let bytes = encode(&users()).unwrap();
        // Every shorter prefix, and anything more.
        for n in 0..bytes.len() {
            assert_eq!(decode(&bytes[..n]), None, "cut at {n}");
        }
        assert_eq!(decode(&[bytes.as_slice(), &[0]].concat()), None, "a byte more");
        // Unknown flags; a business without a user.
        for flags in [4, 0x80, BUSINESS] {
            let mut changed = bytes.clone();
            changed[0] = flags;
            assert_eq!(decode(&changed), None, "flags {flags}");
        }
        // A text that is not UTF-8.
        let mut bad = encode(&clients()).unwrap();
        let last = bad.len() - 1;
        bad[last] = 0xff;
        assert_eq!(decode(&bad), None);
    }

    #[test]
    fn claims_outside_the_layout_are_refused() {
        let mut cases = Vec::new();
        let mut c = users();
        c.claims.jti = "not-a-uuid".into();
        cases.push(c);
        let mut c = users();
        c.claims.sub = "ada@example.com".into();
        cases.push(c);
        let mut c = users();
        c.claims.aud = "https://api.example".into();
        cases.push(c);
        let mut c = users();
        c.family = None;
        cases.push(c);
        let mut c = clients();
        c.claims.sub = "someone-else".into();
        cases.push(c);
        let mut c = clients();
        c.claims.scope = "s".repeat(70_000);
        cases.push(c);
        for c in cases {
            assert!(seal(&[1; 32], &c, &mut StdRng::seed_from_u64(1)).is_err(), "{c:?}");
        }
    }

    #[test]
    fn a_changed_or_foreign_token_does_not_open() {
        let key = [1u8; 32];
        let token = seal(&key, &users(), &mut StdRng::seed_from_u64(7)).unwrap();
        // Every single changed character of the sealed part.
        for i in PREFIX.len()..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(bytes).unwrap();
            assert_eq!(open(&key, &changed), None, "changed at {i}");
        }
        let body = token.strip_prefix(PREFIX).unwrap();
        for foreign in [format!("lk_at_{body}"), body.to_owned(), PREFIX.to_owned(), format!("{PREFIX}{}", "A".repeat(MAX_LEN))] {
            assert_eq!(open(&key, &foreign), None, "{foreign:.40}");
        }
    }
}
