//! The refresh token grant (RFC 6749 §6, OAuth 2.1 §4.3, RFC 9700 §4.14).

use crate::jose;
use crate::model::{Client, TokenKind, TokenView};
use crate::scope::ScopeSet;
use crate::{OAuthError, UnixTime};
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

/// What a refresh presentation is, once its record has been found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshCheck {
    /// Valid: rotate it, issuing an access token with this scope.
    Rotate { access_scope: ScopeSet },
    /// Already exchanged: RFC 9700 §4.14.2 reuse detection; revoke the family.
    Reused,
}

/// Checks a refresh token presentation. Nothing here consumes the token: a failed refresh
/// never costs the client its session (docs/security.md RT-08).
pub fn check_refresh(view: &TokenView, client: &Client, requested: Option<ScopeSet>, now: UnixTime) -> Result<RefreshCheck, OAuthError> {
    let t = &view.token;
    if t.kind != TokenKind::Refresh {
        return Err(OAuthError::invalid_grant("refresh_token_invalid: the token is not a refresh token"));
    }
    // OAuth 2.1 §4.3.1: the refresh token is bound to the client it was issued to.
    if t.client_id != client.client_id {
        return Err(OAuthError::invalid_grant("refresh_token_client_mismatch: the refresh token was issued to another client"));
    }
    if t.revoked_at.is_some() || view.family.revoked_at.is_some() {
        return Err(OAuthError::invalid_grant("refresh_token_revoked: the refresh token has been revoked"));
    }
    if t.rotated_at.is_some() {
        return Ok(RefreshCheck::Reused);
    }
    if now >= t.expires_at || now >= view.family.expires_at {
        return Err(OAuthError::invalid_grant("refresh_token_expired: the refresh token has expired"));
    }
    // OAuth 2.1 §4.3.1: the requested scope must not include any scope not originally granted;
    // absent, it is the original scope. The new refresh token keeps the full original scope.
    let access_scope = match requested {
        None => t.scope.clone(),
        Some(s) if s.is_subset(&t.scope) => s,
        Some(_) => return Err(OAuthError::invalid_scope("scope_widened: a refresh may narrow the scope, never widen it")),
    };
    Ok(RefreshCheck::Rotate { access_scope })
}

/// What makes two refresh requests "the same request" for the replay window: the presented
/// token, the authenticated client and the `scope` parameter exactly as sent.
#[derive(Clone, Copy)]
pub struct ReplayBinding<'a> {
    pub refresh_token: &'a str,
    pub client_id: &'a str,
    pub scope: Option<&'a str>,
}

impl ReplayBinding<'_> {
    /// The sealing key comes from the refresh token alone (SHA-256 under a purpose label), so
    /// only its presenter can derive it: neither the database (which holds an HMAC of the
    /// token under another key) nor the server's master key opens a stored answer.
    fn key(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"latchkey refresh replay key v1\0");
        h.update(self.refresh_token.as_bytes());
        h.finalize().into()
    }

    /// The rest of the request, bound as associated data: a different client or scope opens
    /// nothing.
    fn aad(&self) -> Vec<u8> {
        let mut aad = b"latchkey refresh replay v1\0".to_vec();
        aad.extend_from_slice(self.client_id.as_bytes());
        aad.push(0);
        match self.scope {
            Some(s) => {
                aad.push(1);
                aad.extend_from_slice(s.as_bytes());
            }
            None => aad.push(0),
        }
        aad
    }

    /// Seals the answer a rotation gave, for an exact duplicate of the request.
    pub fn seal(&self, answer: &[u8], rng: &mut (impl RngCore + CryptoRng)) -> Result<Vec<u8>, jose::JoseError> {
        jose::seal(&self.key(), &self.aad(), answer, rng)
    }

    /// The answer sealed for this very request, or `None` if the request differs.
    pub fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        jose::open(&self.key(), &self.aad(), sealed).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Family, GrantType, TenantId, TokenRecord};
    use crate::secret::SecretHash;
    use uuid::Uuid;

    fn view(kind: TokenKind) -> TokenView {
        let scope = ScopeSet::parse("openid email").unwrap();
        TokenView {
            token: TokenRecord {
                hash: SecretHash([0; 32]),
                tenant: TenantId(Uuid::nil()),
                kind,
                family_id: Uuid::nil(),
                client_id: "c1".into(),
                user_id: Some(Uuid::nil()),
                business_id: None,
                scope: scope.clone(),
                jti: Uuid::nil(),
                created_at: 0,
                expires_at: 100,
                revoked_at: None,
                rotated_at: None,
            },
            family: Family {
                id: Uuid::nil(),
                tenant: TenantId(Uuid::nil()),
                grant_id: Some(Uuid::nil()),
                client_id: "c1".into(),
                user_id: Some(Uuid::nil()),
                business_id: None,
                scope,
                auth_time: 0,
                created_at: 0,
                expires_at: 100,
                revoked_at: None,
            },
            subject_email: None,
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

    #[test]
    fn a_replay_opens_only_for_the_same_request() {
        let b = ReplayBinding { refresh_token: "lk_rt_abc", client_id: "c1", scope: None };
        let sealed = b.seal(b"answer", &mut rand::thread_rng()).unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"answer"), "the answer must not be stored in clear");
        assert_eq!(b.open(&sealed).as_deref(), Some(&b"answer"[..]));
        for other in [
            ReplayBinding { refresh_token: "lk_rt_abd", ..b },
            ReplayBinding { client_id: "c2", ..b },
            ReplayBinding { scope: Some(""), ..b },
            ReplayBinding { scope: Some("openid"), ..b },
        ] {
            assert_eq!(other.open(&sealed), None);
        }
        let scoped = ReplayBinding { scope: Some("openid"), ..b };
        assert!(scoped.open(&scoped.seal(b"x", &mut rand::thread_rng()).unwrap()).is_some());
    }

    fn s(x: &str) -> Option<ScopeSet> {
        Some(ScopeSet::parse(x).unwrap())
    }

    #[test]
    fn refresh_rules() {
        let c1 = client("c1");
        let v = view(TokenKind::Refresh);
        assert_eq!(check_refresh(&v, &c1, None, 10), Ok(RefreshCheck::Rotate { access_scope: s("openid email").unwrap() }));
        assert_eq!(check_refresh(&v, &c1, s("email"), 10), Ok(RefreshCheck::Rotate { access_scope: s("email").unwrap() }));
        assert!(check_refresh(&v, &c1, s("email admin"), 10).unwrap_err().reason.starts_with("scope_widened"));
        assert!(check_refresh(&v, &client("c2"), None, 10).unwrap_err().reason.starts_with("refresh_token_client_mismatch"));
        assert!(check_refresh(&v, &c1, None, 100).unwrap_err().reason.starts_with("refresh_token_expired"));
        assert!(check_refresh(&view(TokenKind::Access), &c1, None, 10).is_err());
        let mut rotated = v.clone();
        rotated.token.rotated_at = Some(5);
        assert_eq!(check_refresh(&rotated, &c1, None, 10), Ok(RefreshCheck::Reused));
        let mut revoked = v;
        revoked.family.revoked_at = Some(5);
        assert!(check_refresh(&revoked, &c1, None, 10).unwrap_err().reason.starts_with("refresh_token_revoked"));
    }
}
