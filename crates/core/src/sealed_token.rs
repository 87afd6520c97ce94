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
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What starts a sealed access token; a random access token of earlier versions, judged by its
/// row, starts with `lk_at_`.
pub const PREFIX: &str = "lk_st_";
/// Binds the sealed claims to this use of the key.
const PURPOSE: &[u8] = b"latchkey sealed access token v1";
/// Longer than any token `seal` makes (its claims are bounded by the client id's and the
/// scope's own limits); anything longer is not opened.
const MAX_LEN: usize = 4096;

/// What a sealed token carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// The claims a JWT access token would carry (RFC 9068 §2.2).
    #[serde(flatten)]
    pub claims: AccessTokenClaims,
    /// The family of a user's token, whose state decides the token's; `None` for a client's
    /// own token, which has none.
    #[serde(rename = "fam", default, skip_serializing_if = "Option::is_none")]
    pub family: Option<Uuid>,
}

/// Seals `sealed` into a token.
pub fn seal(key: &[u8; 32], sealed: &Sealed, rng: &mut (impl RngCore + CryptoRng)) -> Result<String, JoseError> {
    let sealed = jose::seal(key, PURPOSE, &serde_json::to_vec(sealed)?, rng)?;
    Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed)))
}

/// Whether `token` has the form of a sealed token (it may still not open).
pub fn is_sealed(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// What a token that `seal` made with `key` carries; `None` for anything else: another form,
/// another key, a changed byte.
pub fn open(key: &[u8; 32], token: &str) -> Option<Sealed> {
    if token.len() > MAX_LEN {
        return None;
    }
    let sealed = URL_SAFE_NO_PAD.decode(token.strip_prefix(PREFIX)?).ok()?;
    serde_json::from_slice(&jose::open(key, PURPOSE, &sealed).ok()?).ok()
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
        // A client's own token names no family, even as an empty field.
        assert!(!serde_json::to_string(&clients()).unwrap().contains("fam"));
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
