//! The resource owner password credentials grant (RFC 6749 §4.3), for YOC: only for a
//! confidential client registered for it (RFC 9700 §2.4 forbids it otherwise; docs/security.md
//! PW-01). The password itself is checked by the server, behind the guessing limits.

use crate::model::Client;
use crate::params::Params;
use crate::scope::ScopeSet;
use crate::text;
use crate::OAuthError;

/// A password request that passed its rules: who, with what, for which scope.
#[derive(Debug, PartialEq, Eq)]
pub struct PasswordRequest<'a> {
    pub username: &'a str,
    pub password: &'a str,
    pub scope: ScopeSet,
}

/// Checks a password-grant request before any password is: a confidential client, a
/// `username` and a `password` in their grammar (RFC 6749 Appendix A.15, A.16:
/// UNICODECHARNOCRLF), and a scope the client is registered for.
pub fn check_request<'a>(client: &Client, params: &'a Params) -> Result<PasswordRequest<'a>, OAuthError> {
    if client.is_public() {
        return Err(OAuthError::unauthorized_client("public_client: the password grant needs a confidential client"));
    }
    let username = params.get("username")?.ok_or_else(|| OAuthError::invalid_request("username_missing: username is required"))?;
    let password = params.get("password")?.ok_or_else(|| OAuthError::invalid_request("password_missing: password is required"))?;
    let malformed = |m: text::Malformed| OAuthError::invalid_request(format!("{}_malformed: {m}", m.field));
    let username = text::username(username).map_err(malformed)?;
    let password = text::password(password).map_err(malformed)?;
    let scope = ScopeSet::resolve(ScopeSet::from_params(params)?, &client.scopes)?;
    Ok(PasswordRequest { username, password, scope })
}
