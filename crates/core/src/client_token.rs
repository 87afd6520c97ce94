//! A client's own opaque access token: the client_credentials grant's token (RFC 6749 §4.4)
//! for a client whose tokens are opaque. Its claims are sealed (XChaCha20-Poly1305, the same
//! sealing as `jose::seal`) under a key only the server holds, so that, like a client's own
//! JWT access token, it needs no row: expiry, the client's existence and the revoked jtis
//! judge it (`revocation::of_self_contained`). To the client it stays opaque (RFC 6749 §1.4):
//! it can neither read nor change what is inside, and only introspection (RFC 7662) says what
//! the token is.
//!
//! A client's token has no user and no grant to end with, so a row held nothing the claims do
//! not: writing one per token was most of what the client_credentials grant cost, on SQLite and
//! still more on PostgreSQL (docs/performance.md).

use crate::claims::AccessTokenClaims;
use crate::jose::{self, JoseError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::{CryptoRng, RngCore};

/// What starts a sealed client token; a random access token starts with `lk_at_`.
pub const PREFIX: &str = "lk_ct_";
/// Binds the sealed claims to this use of the key.
const PURPOSE: &[u8] = b"latchkey client access token v1";
/// Longer than any token `seal` makes (its claims are bounded by the client id's and the
/// scope's own limits); anything longer is not opened.
const MAX_LEN: usize = 4096;

/// Seals `claims` into a token.
pub fn seal(key: &[u8; 32], claims: &AccessTokenClaims, rng: &mut (impl RngCore + CryptoRng)) -> Result<String, JoseError> {
    let sealed = jose::seal(key, PURPOSE, &serde_json::to_vec(claims)?, rng)?;
    Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed)))
}

/// Whether `token` has the form of a sealed client token (it may still not open).
pub fn is_sealed(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// The claims of a token that `seal` made with `key`; `None` for anything else: another
/// form, another key, a changed byte.
pub fn open(key: &[u8; 32], token: &str) -> Option<AccessTokenClaims> {
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

    fn claims() -> AccessTokenClaims {
        AccessTokenClaims {
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
        }
    }

    #[test]
    fn a_sealed_token_opens_with_its_key_only() {
        let mut rng = StdRng::seed_from_u64(7);
        let (key, other) = ([1u8; 32], [2u8; 32]);
        let token = seal(&key, &claims(), &mut rng).unwrap();
        assert!(is_sealed(&token) && token.len() < MAX_LEN, "{token}");
        assert_eq!(open(&key, &token), Some(claims()));
        assert_eq!(open(&other, &token), None, "another server's key");
        // Two tokens of the same claims differ (a fresh nonce each), and neither shows them.
        let again = seal(&key, &claims(), &mut rng).unwrap();
        assert_ne!(token, again);
        assert!(!token.contains("cmVwb3J0") && !token.contains("reports"), "{token}");
    }

    #[test]
    fn a_changed_or_foreign_token_does_not_open() {
        let key = [1u8; 32];
        let token = seal(&key, &claims(), &mut StdRng::seed_from_u64(7)).unwrap();
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
