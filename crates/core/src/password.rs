//! User passwords: Argon2id (RFC 9106) in PHC string format.
//!
//! These functions are CPU-heavy by design; the server calls them on its blocking pool, never
//! on the async runtime (docs/design.md principle 4).

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
/// A unit of Argon2 working memory (1 KiB), for the buffers of [`verify_with_memory`].
pub use argon2::Block;
use argon2::{Algorithm, Argon2, Params, Version};
use rand::{CryptoRng, RngCore};
use subtle::ConstantTimeEq;

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct PasswordError(String);

/// Hashes a password with Argon2id and the crate's recommended parameters
/// (m = 19 MiB, t = 2, p = 1, the OWASP baseline).
pub fn hash(password: &str, rng: &mut (impl RngCore + CryptoRng)) -> Result<String, PasswordError> {
    let salt = SaltString::generate(rng);
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| PasswordError(e.to_string()))
}

/// True if `password` matches the stored PHC string. A malformed hash never matches.
pub fn verify(password: &str, stored: &str) -> bool {
    verify_with_memory(password, stored, &mut Vec::new())
}

/// Like [`verify`], with the Argon2 working memory (19 MiB at the default cost) taken from
/// `memory`, which grows to the size the stored hash asks for and is kept for the next call.
/// A caller that verifies many passwords reuses one buffer per thread instead of allocating
/// (and, with glibc, keeping in a per-thread arena) a new one each time. Hashes asking for more
/// than [`MAX_MEMORY_KIB`] never match.
pub fn verify_with_memory(password: &str, stored: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else { return false };
    let (Ok(algorithm), Ok(params)) = (Algorithm::try_from(parsed.algorithm), Params::try_from(&parsed)) else { return false };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else { return false };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else { return false };
    if params.m_cost() > MAX_MEMORY_KIB {
        return false;
    }
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let argon2 = Argon2::new(algorithm, version, params);
    if argon2.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..]).is_err() {
        return false;
    }
    // Compared in constant time, like `PasswordVerifier` does.
    out.ct_eq(expected.as_bytes()).into()
}

/// The most memory a stored hash may ask [`verify_with_memory`] for: 64 MiB, over three times
/// the default, so that a corrupt or hostile hash cannot make the server allocate gigabytes.
pub const MAX_MEMORY_KIB: u32 = 64 * 1024;

/// A hash with the parameters [`hash`] uses, of a password nobody knows (random bytes thrown
/// away when it was made). A sign-in for an unknown account is checked against it, so that it
/// costs the same as a wrong password (docs/security.md PW-03); a match is still a failure, since
/// there is no account. A constant spares the server an Argon2 run at every start.
pub const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$K8z1Xf4mY0b2Y1q3JZ1aLg$4w3N2x9U3m6Jx0k1m0q8l3b2nC3p0u1d7Q5r8s2t1vY";

/// Rules for a new password: long enough to resist guessing, short enough to hash quickly.
pub fn check_policy(password: &str) -> Result<(), &'static str> {
    let n = password.chars().count();
    if n < 8 {
        Err("the password must have at least 8 characters")
    } else if password.len() > 1024 {
        Err("the password must have at most 1024 bytes")
    } else if !crate::text::is_unicode_no_crlf(password) {
        // RFC 6749 Appendix A.16: so that the password grant can carry every password.
        Err("the password must not contain control characters (tab aside)")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn hashes_verify_only_their_password() {
        let mut rng = StdRng::seed_from_u64(5);
        let h = hash("correct horse", &mut rng).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse", &h));
        assert!(!verify("wrong horse", &h));
        assert!(!verify("correct horse", "not a hash"));
    }

    #[test]
    fn verify_with_memory_agrees_with_verify_and_reuses_its_buffer() {
        let mut rng = StdRng::seed_from_u64(7);
        let h = hash("correct horse", &mut rng).unwrap();
        let mut memory = Vec::new();
        assert!(verify_with_memory("correct horse", &h, &mut memory));
        let blocks = memory.len();
        assert_eq!(blocks, 19456, "one 1 KiB block per KiB of m_cost");
        assert!(!verify_with_memory("wrong horse", &h, &mut memory));
        assert!(!verify_with_memory("correct horse", "not a hash", &mut memory));
        assert_eq!(memory.len(), blocks, "the buffer is reused, not grown");
        // A hash with a different cost than the default still verifies (the buffer grows).
        let params = Params::new(32 * 1024, 1, 1, None).unwrap();
        let salt = SaltString::generate(&mut rng);
        let other = Argon2::new(Algorithm::Argon2id, Version::V0x13, params).hash_password(b"pw-other-cost", &salt).unwrap().to_string();
        assert!(verify_with_memory("pw-other-cost", &other, &mut memory));
        assert!(verify("pw-other-cost", &other));
        // A hash that asks for more than the cap never matches, and allocates nothing.
        let huge = other.replace("m=32768", "m=4194304");
        let before = memory.len();
        assert!(!verify_with_memory("pw-other-cost", &huge, &mut memory));
        assert_eq!(memory.len(), before);
    }

    #[test]
    fn the_dummy_hash_costs_what_a_real_hash_costs() {
        let mut rng = StdRng::seed_from_u64(9);
        let real = PasswordHash::new(&hash("whatever", &mut rng).unwrap()).unwrap().to_string();
        let real = PasswordHash::new(&real).unwrap();
        let dummy = PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(Params::try_from(&dummy).unwrap(), Params::try_from(&real).unwrap());
        assert_eq!(dummy.salt.unwrap().len(), real.salt.unwrap().len());
        assert_eq!(dummy.hash.unwrap().len(), real.hash.unwrap().len());
        assert!(!verify_with_memory("password", DUMMY_HASH, &mut Vec::new()));
    }

    #[test]
    fn policy() {
        assert!(check_policy("short").is_err());
        assert!(check_policy("long enough").is_ok());
        assert!(check_policy(&"x".repeat(1025)).is_err());
    }
}
