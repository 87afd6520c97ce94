//! The authorization code grant at the token endpoint (RFC 6749 §4.1.3, RFC 7636 §4.6).

use crate::model::{AuthCode, Client};
use crate::pkce::CodeChallenge;
use crate::{OAuthError, UnixTime};

/// Checks a code redemption before the code is consumed. Run before consumption on purpose:
/// a replay that fails these checks must not revoke anything (OAuth 2.1 §4.1.3, docs/security.md
/// AC-02).
pub fn check_redemption(
    code: &AuthCode,
    client: &Client,
    redirect_uri: Option<&str>,
    code_verifier: Option<&str>,
    now: UnixTime,
) -> Result<(), OAuthError> {
    // RFC 6749 §4.1.3: the code was issued to the authenticated client.
    if code.client_id != client.client_id {
        return Err(OAuthError::invalid_grant("code_client_mismatch: the code was issued to another client"));
    }
    if now >= code.expires_at {
        return Err(OAuthError::invalid_grant("code_expired: the authorization code has expired"));
    }
    // RFC 6749 §4.1.3: redirect_uri is REQUIRED if it was in the authorization request, and
    // the values MUST be identical. OAuth 2.1 §4.1.3 lets clients send it anyway.
    match redirect_uri {
        Some(uri) if uri != code.redirect_uri => {
            return Err(OAuthError::invalid_grant("redirect_uri_mismatch: redirect_uri differs from the authorization request"));
        }
        None if code.redirect_uri_explicit => {
            return Err(OAuthError::invalid_grant(
                "redirect_uri_missing: the authorization request named a redirect_uri, so the token request must repeat it",
            ));
        }
        _ => {}
    }
    // RFC 9700 §4.8.2: code_verifier is present if and only if a code_challenge was.
    match (&code.code_challenge, code_verifier) {
        (Some(challenge), Some(verifier)) => CodeChallenge::from_stored(challenge.clone()).verify(verifier),
        (Some(_), None) => {
            Err(OAuthError::invalid_grant("pkce_verifier_missing: the code was issued with a code_challenge; send code_verifier"))
        }
        (None, Some(_)) => {
            Err(OAuthError::invalid_grant("pkce_downgrade: the code was issued without a code_challenge; code_verifier is not accepted"))
        }
        (None, None) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GrantType, TenantId};
    use crate::scope::ScopeSet;
    use crate::secret::SecretHash;
    use uuid::Uuid;

    const V: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CH: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn code(challenge: Option<&str>, explicit: bool) -> AuthCode {
        AuthCode {
            hash: SecretHash([0; 32]),
            tenant: TenantId(Uuid::nil()),
            client_id: "c1".into(),
            user_id: Uuid::nil(),
            grant_id: Uuid::nil(),
            business_id: None,
            redirect_uri: "https://a.example/cb".into(),
            redirect_uri_explicit: explicit,
            scope: ScopeSet::default(),
            nonce: None,
            code_challenge: challenge.map(str::to_owned),
            auth_time: 0,
            created_at: 0,
            expires_at: 600,
            consumed_at: None,
            family_id: Uuid::nil(),
        }
    }

    fn client(id: &str) -> Client {
        Client {
            profile: Default::default(),
            secret_info: Default::default(),
            tenant: TenantId(Uuid::nil()),
            client_id: id.into(),
            name: String::new(),
            developer: String::new(),
            secret_hash: None,
            redirect_uris: vec![],
            scopes: ScopeSet::default(),
            grant_types: GrantType::DEFAULT.to_vec(),
            require_pkce: false,
            token_settings: Default::default(),
            created_at: 0,
        }
    }

    fn reason(r: Result<(), OAuthError>) -> String {
        match r {
            Ok(()) => "ok".into(),
            Err(e) => e.reason.to_string(),
        }
    }

    #[test]
    fn redemption_rules() {
        let cb = Some("https://a.example/cb");
        let c1 = client("c1");
        assert_eq!(reason(check_redemption(&code(Some(CH), true), &c1, cb, Some(V), 10)), "ok");
        assert_eq!(reason(check_redemption(&code(None, false), &c1, None, None, 10)), "ok");
        assert_eq!(reason(check_redemption(&code(None, false), &client("c2"), None, None, 10)), "code_client_mismatch");
        assert_eq!(reason(check_redemption(&code(None, false), &c1, None, None, 600)), "code_expired");
        assert_eq!(reason(check_redemption(&code(None, true), &c1, None, None, 10)), "redirect_uri_missing");
        assert_eq!(reason(check_redemption(&code(None, false), &c1, Some("https://a.example/x"), None, 10)), "redirect_uri_mismatch");
        assert_eq!(reason(check_redemption(&code(Some(CH), false), &c1, None, None, 10)), "pkce_verifier_missing");
        assert_eq!(reason(check_redemption(&code(None, false), &c1, None, Some(V), 10)), "pkce_downgrade");
        assert_eq!(reason(check_redemption(&code(Some(CH), false), &c1, None, Some(&V.replace('d', "x")), 10)), "pkce_mismatch");
    }
}
