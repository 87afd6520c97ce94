//! Server-generated secrets (codes, tokens, client secrets) and the keyed hash that stores them.
//!
//! docs/design.md, principle 3: every server-generated secret carries 256 bits from a CSPRNG
//! (OAuth 2.1 §7.2 asks for a guessing probability of at most 2^-160), so a fast keyed hash is
//! enough to store it: no slow KDF on the token endpoint. Only the hash reaches the database
//! (RFC 6819 §5.1.4.1.3).
//!
//! The stored hash is also the key the database finds the secret by. A hash is uniformly
//! random, so each new token, code or session would land on a random leaf page of its table's
//! index: one more page written to the WAL and the checkpoint per secret, the largest share of
//! the disk writes under token load. So a secret's body starts with [`ORDER_LEN`] bytes that
//! grow with the time it was made (a UUIDv7's first bytes, RFC 9562 §5.7), and its stored key
//! starts with those same bytes, followed by 192 bits of the keyed hash: new keys go to the end
//! of the index, next to each other. The ordering bytes say when the secret was made, which its
//! holder knows and introspection reports (`iat`); the 256 random bits after them are what make
//! it a secret, and the hash part binds all of it.

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
    const ALL: [SecretKind; 7] = [
        Self::AuthorizationCode,
        Self::AccessToken,
        Self::RefreshToken,
        Self::ClientSecret,
        Self::PersonalAccessToken,
        Self::Session,
        Self::Browser,
    ];

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

/// How many bytes at the front of a secret's body order it by the time it was made.
pub const ORDER_LEN: usize = 8;
/// The random part of a secret: 256 bits.
const RANDOM_LEN: usize = 32;
/// The body of a secret made by [`Secret::generate`], in base64url without padding.
const BODY_CHARS: usize = (ORDER_LEN + RANDOM_LEN) * 4 / 3 + 1;

/// A secret in clear, as handed to its owner once. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The kind's marker, then base64url of `order` (bytes that grow with the time of
    /// issue, from the caller's clock; see the module's documentation) and 256 bits from `rng`.
    pub fn generate(kind: SecretKind, order: [u8; ORDER_LEN], rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let mut bytes = [0u8; ORDER_LEN + RANDOM_LEN];
        bytes[..ORDER_LEN].copy_from_slice(&order);
        rng.fill_bytes(&mut bytes[ORDER_LEN..]);
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

/// The stored form of a secret, and the key it is found by: HMAC-SHA256 under the server's
/// hashing key, after the secret's ordering bytes when it has them (see the module's
/// documentation).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretHash(pub [u8; 32]);

impl SecretHash {
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(b).ok().map(Self)
    }

    /// Constant-time comparison (docs/security.md TE-05).
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

    /// The stored key of a presented secret. A secret made by [`Secret::generate`] gives its
    /// ordering bytes, then the first 192 bits of the HMAC of the whole secret: finding a row
    /// still takes the HMAC, which only the server can compute (a guess succeeds with
    /// probability 2^-192 per stored secret of the same millisecond). Any other string, such
    /// as a secret from a version before the ordering bytes, keys by its whole HMAC.
    pub fn hash(&self, secret: &str) -> SecretHash {
        let mac = self.mac(b"secret", secret.as_bytes());
        let Some(order) = ordering_bytes(secret) else { return SecretHash(mac) };
        let mut key = [0u8; 32];
        key[..ORDER_LEN].copy_from_slice(&order);
        key[ORDER_LEN..].copy_from_slice(&mac[..32 - ORDER_LEN]);
        SecretHash(key)
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

/// The ordering bytes of a string shaped like a secret from [`Secret::generate`]: a kind's
/// marker and a body of exactly `ORDER_LEN + RANDOM_LEN` bytes.
fn ordering_bytes(secret: &str) -> Option<[u8; ORDER_LEN]> {
    let body = SecretKind::ALL.iter().find_map(|k| secret.strip_prefix(k.prefix()))?;
    if body.len() != BODY_CHARS {
        return None;
    }
    let mut bytes = [0u8; ORDER_LEN + RANDOM_LEN];
    match URL_SAFE_NO_PAD.decode_slice(body, &mut bytes) {
        Ok(n) if n == bytes.len() => bytes[..ORDER_LEN].try_into().ok(),
        _ => None,
    }
}

/// Constant-time comparison of two strings (docs/security.md TE-05).
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
            let s = Secret::generate(SecretKind::AccessToken, [9; ORDER_LEN], &mut rng);
            let body = s.expose().strip_prefix("lk_at_").expect("prefix");
            assert_eq!(body.len(), BODY_CHARS);
            let bytes = URL_SAFE_NO_PAD.decode(body).expect("base64url");
            assert_eq!(bytes[..ORDER_LEN], [9; ORDER_LEN]);
            assert_eq!(bytes.len() - ORDER_LEN, 32);
            assert!(seen.insert(bytes[ORDER_LEN..].to_vec()));
        }
    }

    #[test]
    fn stored_keys_follow_the_order_of_issue() {
        let h = SecretHasher::new([3; 32]);
        let mut rng = StdRng::seed_from_u64(8);
        let keys: Vec<_> = (0u64..1000)
            .flat_map(|t| {
                let kinds = [SecretKind::AccessToken, SecretKind::RefreshToken, SecretKind::AuthorizationCode, SecretKind::Session];
                let mut rng = StdRng::seed_from_u64(rng.next_u64());
                kinds.map(|k| h.hash(Secret::generate(k, t.to_be_bytes(), &mut rng).expose()))
            })
            .collect();
        for pair in keys.windows(2) {
            assert!(pair[0].0[..ORDER_LEN] <= pair[1].0[..ORDER_LEN]);
            assert_ne!(pair[0].0[ORDER_LEN..], pair[1].0[ORDER_LEN..]);
        }
        // The rest of the key is the HMAC of the whole secret, ordering bytes included.
        let s = Secret::generate(SecretKind::AccessToken, 5u64.to_be_bytes(), &mut rng);
        assert_eq!(h.hash(s.expose()).0[..ORDER_LEN], 5u64.to_be_bytes());
        assert_eq!(h.hash(s.expose()).0[ORDER_LEN..], h.mac(b"secret", s.expose().as_bytes())[..32 - ORDER_LEN]);
    }

    #[test]
    fn other_strings_key_by_their_whole_hmac() {
        let h = SecretHasher::new([4; 32]);
        let before = format!("lk_at_{}", URL_SAFE_NO_PAD.encode([1u8; 32]));
        let unknown_kind = format!("lk_xx_{}", URL_SAFE_NO_PAD.encode([1u8; 40]));
        let not_base64 = format!("lk_at_{}", "*".repeat(BODY_CHARS));
        for s in [before.as_str(), &unknown_kind, &not_base64, "lk_at_", "", "x"] {
            assert_eq!(h.hash(s).0, h.mac(b"secret", s.as_bytes()), "{s}");
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
