//! User passwords: Argon2id (RFC 9106) in PHC string format.
//!
//! These functions are CPU-heavy by design; the server calls them on its blocking pool, never
//! on the async runtime (DESIGN.md principle 4).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::{CryptoRng, RngCore};

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
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Rules for a new password: long enough to resist guessing, short enough to hash quickly.
pub fn check_policy(password: &str) -> Result<(), &'static str> {
    let n = password.chars().count();
    if n < 8 {
        Err("the password must have at least 8 characters")
    } else if password.len() > 1024 {
        Err("the password must have at most 1024 bytes")
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
    fn policy() {
        assert!(check_policy("short").is_err());
        assert!(check_policy("long enough").is_ok());
        assert!(check_policy(&"x".repeat(1025)).is_err());
    }
}
