//! Server-generated secrets (codes, tokens, client secrets) and the keyed hash that stores them.
//!
//! DESIGN.md, principle 3: every server-generated secret carries 256 bits from a CSPRNG
//! (OAuth 2.1 §7.2 asks for a guessing probability of at most 2^-160), so a fast keyed hash is
//! enough to store it: no slow KDF on the token endpoint. Only the hash reaches the database
//! (RFC 6819 §5.1.4.1.3).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::CryptoRng;
use rand::RngCore;
use sha2::Sha256;
use std::fmt;
use subtle::ConstantTimeEq;

/// What a secret is for; each kind has a prefix that secret scanners can recognize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    AuthorizationCode,
    AccessToken,
    RefreshToken,
    ClientSecret,
    PersonalAccessToken,
    Session,
    Browser,
}

impl SecretKind {
    pub fn prefix(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "lk_ac_",
            Self::AccessToken => "lk_at_",
            Self::RefreshToken => "lk_rt_",
            Self::ClientSecret => "lk_cs_",
            Self::PersonalAccessToken => "lk_pat_",
            Self::Session => "lk_ss_",
            Self::Browser => "lk_br_",
        }
    }
}

/// A secret in clear, as handed to its owner once. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Draws 256 bits from `rng` and prefixes them with the kind's marker.
    pub fn generate(kind: SecretKind, rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        Self(format!("{}{}", kind.prefix(), URL_SAFE_NO_PAD.encode(bytes)))
    }

    pub fn from_presented(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The stored form of a secret: HMAC-SHA256 under the server's hashing key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretHash(pub [u8; 32]);

impl SecretHash {
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(b).ok().map(Self)
    }

    /// Constant-time comparison (SECURITY.md TE-05).
    pub fn ct_eq(&self, other: &SecretHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretHash({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

/// Hashes secrets with a key the server derives from its master key, so a stolen database
/// alone does not even allow offline checks of guessed tokens.
#[derive(Clone)]
pub struct SecretHasher {
    key: [u8; 32],
}

impl SecretHasher {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    pub fn hash(&self, secret: &str) -> SecretHash {
        SecretHash(self.mac(b"secret", secret.as_bytes()))
    }

    /// A derived value bound to a purpose label, for example the CSRF token of a browser.
    pub fn derive(&self, purpose: &[u8], input: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(purpose, input))
    }

    /// A 256-bit key for `purpose`, derived from this hasher's key (an HMAC-based KDF with a
    /// purpose label, as in HKDF-Expand with a single block).
    pub fn derive_key(&self, purpose: &[u8]) -> [u8; 32] {
        self.mac(b"key derivation", purpose)
    }

    fn mac(&self, purpose: &[u8], input: &[u8]) -> [u8; 32] {
        // RFC 2104 §2: a key shorter than the block is padded with zeros to the block size, so
        // passing the padded block is the same HMAC, through the infallible constructor.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&self.key);
        let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new(&block.into());
        mac.update(purpose);
        mac.update(&[0]);
        mac.update(input);
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for SecretHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHasher(<redacted>)")
    }
}

/// Constant-time comparison of two strings (SECURITY.md TE-05).
pub fn ct_str_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::collections::HashSet;

    #[test]
    fn secrets_carry_256_bits_and_their_prefix() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let s = Secret::generate(SecretKind::AccessToken, &mut rng);
            let body = s.expose().strip_prefix("lk_at_").expect("prefix");
            assert_eq!(URL_SAFE_NO_PAD.decode(body).expect("base64url").len(), 32);
            assert!(seen.insert(s.expose().to_owned()));
        }
    }

    #[test]
    fn padded_key_is_the_same_hmac() {
        let h = SecretHasher::new([7; 32]);
        let mut reference = <Hmac<Sha256> as Mac>::new_from_slice(&[7; 32]).unwrap();
        reference.update(b"secret\0x");
        let want: [u8; 32] = reference.finalize().into_bytes().into();
        assert_eq!(h.hash("x").0, want);
    }

    #[test]
    fn hash_is_keyed_and_stable() {
        let a = SecretHasher::new([1; 32]);
        let b = SecretHasher::new([2; 32]);
        assert!(a.hash("x").ct_eq(&a.hash("x")));
        assert!(!a.hash("x").ct_eq(&b.hash("x")));
        assert!(!a.hash("x").ct_eq(&a.hash("y")));
        assert_ne!(a.derive(b"csrf", b"1"), a.derive(b"other", b"1"));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = Secret::from_presented("lk_at_topsecret");
        assert!(!format!("{s:?}").contains("topsecret"));
    }
}
