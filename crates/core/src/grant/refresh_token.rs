//! The refresh token grant (RFC 6749 §6, OAuth 2.1 §4.3, RFC 9700 §4.14).

use crate::model::{Client, TokenKind, TokenView};
use crate::scope::ScopeSet;
use crate::{OAuthError, UnixTime};

/// What a refresh presentation is, once its record has been found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshCheck {
    /// Valid: rotate it, issuing an access token with this scope.
    Rotate { access_scope: ScopeSet },
    /// Already exchanged: RFC 9700 §4.14.2 reuse detection; revoke the family.
    Reused,
}

/// Checks a refresh token presentation. Nothing here consumes the token: a failed refresh
/// never costs the client its session (SECURITY.md RT-08).
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
        }
    }

    fn client(id: &str) -> Client {
        Client {
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

    fn s(x: &str) -> Option<ScopeSet> {
        Some(ScopeSet::parse(x).unwrap())
    }

    #[test]
    fn refresh_rules() {
        let c1 = client("c1");
        let v = view(TokenKind::Refresh);
        assert_eq!(check_refresh(&v, &c1, None, 10), Ok(RefreshCheck::Rotate { access_scope: s("openid email").unwrap() }));
        assert_eq!(check_refresh(&v, &c1, s("email"), 10), Ok(RefreshCheck::Rotate { access_scope: s("email").unwrap() }));
        assert!(check_refresh(&v, &c1, s("email admin"), 10).unwrap_err().description.starts_with("scope_widened"));
        assert!(check_refresh(&v, &client("c2"), None, 10).unwrap_err().description.starts_with("refresh_token_client_mismatch"));
        assert!(check_refresh(&v, &c1, None, 100).unwrap_err().description.starts_with("refresh_token_expired"));
        assert!(check_refresh(&view(TokenKind::Access), &c1, None, 10).is_err());
        let mut rotated = v.clone();
        rotated.token.rotated_at = Some(5);
        assert_eq!(check_refresh(&rotated, &c1, None, 10), Ok(RefreshCheck::Reused));
        let mut revoked = v;
        revoked.family.revoked_at = Some(5);
        assert!(check_refresh(&revoked, &c1, None, 10).unwrap_err().description.starts_with("refresh_token_revoked"));
    }
}
