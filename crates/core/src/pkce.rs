//! Proof Key for Code Exchange (RFC 7636), S256 only.

use crate::OAuthError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// RFC 7636 §4.1 and §4.2: `code_verifier` and `code_challenge` are 43 to 128 characters of
/// `[A-Za-z0-9-._~]`.
fn is_pkce_string(s: &str) -> bool {
    (43..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// A checked S256 code challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeChallenge(String);

impl CodeChallenge {
    /// Checks `code_challenge` and `code_challenge_method` of an authorization request.
    ///
    /// RFC 7636 §4.3 makes `plain` the default method; RFC 9700 §2.1.1 and OAuth 2.1 ask for
    /// S256, so Latchkey refuses `plain`, stated or implied.
    pub fn parse(challenge: Option<&str>, method: Option<&str>) -> Result<Option<Self>, OAuthError> {
        match (challenge, method) {
            (None, None) => Ok(None),
            (None, Some(_)) => {
                Err(OAuthError::invalid_request("pkce_method_without_challenge: code_challenge_method was sent without code_challenge"))
            }
            (Some(_), None | Some("plain")) => Err(OAuthError::invalid_request("pkce_plain_refused: code_challenge_method must be S256")),
            (Some(_), Some(m)) if m != "S256" => {
                Err(OAuthError::invalid_request("pkce_method_unsupported: code_challenge_method must be S256"))
            }
            (Some(c), Some(_)) => {
                if is_pkce_string(c) {
                    Ok(Some(Self(c.to_owned())))
                } else {
                    Err(OAuthError::invalid_request(
                        "pkce_challenge_malformed: code_challenge must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~",
                    ))
                }
            }
        }
    }

    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// RFC 7636 §4.6: BASE64URL(SHA256(ASCII(code_verifier))) == code_challenge.
    pub fn verify(&self, verifier: &str) -> Result<(), OAuthError> {
        if !is_pkce_string(verifier) {
            return Err(OAuthError::invalid_grant(
                "pkce_verifier_malformed: code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~",
            ));
        }
        let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        if crate::secret::ct_str_eq(&computed, &self.0) {
            Ok(())
        } else {
            Err(OAuthError::invalid_grant("pkce_mismatch: code_verifier does not match the code_challenge"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    // RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_appendix_b_vector_verifies() {
        let c = CodeChallenge::parse(Some(CHALLENGE), Some("S256")).unwrap().unwrap();
        assert_eq!(c.verify(VERIFIER), Ok(()));
        assert_eq!(c.verify(&VERIFIER.replace('d', "e")).unwrap_err().code, ErrorCode::InvalidGrant);
    }

    #[test]
    fn challenge_rules() {
        let cases: &[(Option<&str>, Option<&str>, &str)] = &[
            (None, None, "ok-none"),
            (None, Some("S256"), "pkce_method_without_challenge"),
            (Some(CHALLENGE), None, "pkce_plain_refused"),
            (Some(CHALLENGE), Some("plain"), "pkce_plain_refused"),
            (Some(CHALLENGE), Some("S512"), "pkce_method_unsupported"),
            (Some("short"), Some("S256"), "pkce_challenge_malformed"),
            (Some(&"a".repeat(129)), Some("S256"), "pkce_challenge_malformed"),
            (Some(&"a".repeat(42)), Some("S256"), "pkce_challenge_malformed"),
            (Some(&format!("{}!", &"a".repeat(43))), Some("S256"), "pkce_challenge_malformed"),
            (Some(&"a".repeat(128)), Some("S256"), "ok-some"),
        ];
        for (c, m, want) in cases {
            let got = match CodeChallenge::parse(*c, *m) {
                Ok(None) => "ok-none".to_owned(),
                Ok(Some(_)) => "ok-some".to_owned(),
                Err(e) => e.reason.to_string(),
            };
            assert_eq!(&got, want, "challenge {c:?} method {m:?}");
        }
    }

    #[test]
    fn verifier_rules() {
        let c = CodeChallenge::from_stored(CHALLENGE.to_owned());
        for bad in ["short", &"a".repeat(129), &format!("{VERIFIER}+")] {
            assert!(c.verify(bad).unwrap_err().reason.starts_with("pkce_verifier_malformed"), "{bad}");
        }
    }
}
