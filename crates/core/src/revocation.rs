//! Token revocation (RFC 7009): what a revocation request ends.

use crate::model::{TokenKind, TokenView};
use crate::params::Params;
use crate::secret::SecretHash;
use crate::{OAuthError, UnixTime};
use uuid::Uuid;

/// The token a revocation request names. RFC 7009 §2.1: `token_type_hint` is only a hint,
/// and an unknown one is ignored (one lookup finds either kind); it may still not repeat.
pub fn presented_token(params: &Params) -> Result<&str, OAuthError> {
    let token = params.get("token")?.ok_or_else(|| OAuthError::invalid_request("token_missing: token is required"))?;
    let _ = params.get("token_type_hint")?;
    Ok(token)
}

/// What revoking a token ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// Nothing: the token is another client's, or already over. RFC 7009 §2.2: the answer is
    /// the same either way, so it tells nobody whether the token exists.
    Nothing,
    /// A self-contained access token (sealed, or a client's own JWT), which has no row: its
    /// `jti` is recorded until it expires. The rest of its grant lives on, as with a stored
    /// access token.
    Jti { jti: Uuid, until: UnixTime },
    /// A refresh token: its whole family, the access tokens of the same grant included (RFC
    /// 7009 §2.1).
    Family(Uuid),
    /// An access token alone.
    Token(SecretHash),
}

/// RFC 7009 §2.1: a client may only revoke its own tokens.
pub fn of_stored(view: &TokenView, client_id: &str) -> Revocation {
    if view.token.client_id != client_id {
        return Revocation::Nothing;
    }
    match view.token.kind {
        TokenKind::Refresh => Revocation::Family(view.family.id),
        TokenKind::Access => Revocation::Token(view.token.hash),
    }
}

/// A self-contained access token (`client` and `jti` from its verified or opened claims),
/// alive until `exp`: only its client may revoke it, and only while it could still be used.
pub fn of_self_contained(token_client: &str, jti: &str, exp: UnixTime, client_id: &str, now: UnixTime) -> Revocation {
    match Uuid::parse_str(jti) {
        Ok(jti) if token_client == client_id && exp > now => Revocation::Jti { jti, until: exp },
        _ => Revocation::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_clients_own_living_token_is_revoked() {
        let jti = Uuid::new_v4().to_string();
        assert_eq!(of_self_contained("a", &jti, 100, "a", 50), Revocation::Jti { jti: jti.parse().unwrap(), until: 100 });
        assert_eq!(of_self_contained("a", &jti, 100, "b", 50), Revocation::Nothing, "another client's");
        assert_eq!(of_self_contained("a", &jti, 100, "a", 100), Revocation::Nothing, "already over");
        assert_eq!(of_self_contained("a", "not-a-uuid", 100, "a", 50), Revocation::Nothing);
        assert!(presented_token(&Params::from_urlencoded("token=x&token_type_hint=whatever")).is_ok());
        assert!(presented_token(&Params::from_urlencoded("token_type_hint=refresh_token")).is_err());
        assert!(presented_token(&Params::from_urlencoded("token=x&token=y")).is_err());
    }
}
