//! The client credentials grant (RFC 6749 §4.4): a confidential client acting for itself.

use crate::model::Client;
use crate::params::Params;
use crate::scope::ScopeSet;
use crate::OAuthError;

/// Scopes that speak of a user, meaningless for a client acting for itself.
pub const USER_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// Checks a client_credentials request and returns the scope its token carries.
///
/// - OAuth 2.1 §4.2: only confidential clients may use the grant.
/// - A scope that needs a user (`openid`, `email`, ...) cannot be asked for: there is none.
/// - RFC 6749 §3.3: no `scope` means every scope the client is registered for (its user
///   scopes aside).
pub fn check_request(client: &Client, params: &Params) -> Result<ScopeSet, OAuthError> {
    if client.is_public() {
        return Err(OAuthError::unauthorized_client("public_client: client_credentials needs a confidential client"));
    }
    let own_scopes = ScopeSet::from_tokens(client.scopes.iter().filter(|s| !USER_SCOPES.contains(s)))?;
    let requested = ScopeSet::from_params(params)?;
    if let Some(s) = requested.as_ref().and_then(|r| r.iter().find(|s| USER_SCOPES.contains(s))) {
        return Err(OAuthError::invalid_scope(format!("scope_needs_user: {s} needs a user; client_credentials has none")));
    }
    ScopeSet::resolve(requested, &own_scopes)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{GrantType, TenantId};
    use crate::ErrorCode;

    pub(crate) fn client(public: bool) -> Client {
        Client {
            profile: Default::default(),
            secret_info: Default::default(),
            tenant: TenantId(uuid::Uuid::nil()),
            client_id: "job".into(),
            name: "Job".into(),
            developer: "Ops".into(),
            secret_hash: (!public).then_some(crate::secret::SecretHash([7; 32])),
            redirect_uris: vec![],
            scopes: ScopeSet::parse("openid reports:read reports:write").unwrap(),
            grant_types: vec![GrantType::ClientCredentials],
            require_pkce: false,
            token_settings: Default::default(),
            created_at: 0,
        }
    }

    #[test]
    fn a_client_gets_its_own_scopes_and_never_a_users() {
        let c = client(false);
        assert_eq!(check_request(&c, &Params::default()).unwrap(), ScopeSet::parse("reports:read reports:write").unwrap());
        assert_eq!(check_request(&c, &Params::from_urlencoded("scope=reports:read")).unwrap(), ScopeSet::parse("reports:read").unwrap());
        assert_eq!(check_request(&c, &Params::from_urlencoded("scope=openid")).unwrap_err().code, ErrorCode::InvalidScope);
        assert_eq!(check_request(&c, &Params::from_urlencoded("scope=admin")).unwrap_err().code, ErrorCode::InvalidScope);
        assert_eq!(check_request(&client(true), &Params::default()).unwrap_err().code, ErrorCode::UnauthorizedClient);
    }
}
