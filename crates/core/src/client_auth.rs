//! Client authentication at the token and revocation endpoints: `client_secret_basic`,
//! `client_secret_post` and `none` (RFC 6749 §2.3.1, OpenID Connect Core §9).

use crate::model::Client;
use crate::params::Params;
use crate::secret::SecretHasher;
use crate::OAuthError;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// How a request identified its client.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientCredentials {
    /// `Authorization: Basic` with the form-urlencoded id and secret.
    Basic { client_id: String, secret: String },
    /// `client_id` and `client_secret` in the body.
    Post { client_id: String, secret: String },
    /// `client_id` alone: a public client.
    None { client_id: String },
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (m, id) = match self {
            Self::Basic { client_id, .. } => ("basic", client_id),
            Self::Post { client_id, .. } => ("post", client_id),
            Self::None { client_id } => ("none", client_id),
        };
        write!(f, "ClientCredentials::{m}({id})")
    }
}

impl ClientCredentials {
    pub fn client_id(&self) -> &str {
        match self {
            Self::Basic { client_id, .. } | Self::Post { client_id, .. } | Self::None { client_id } => client_id,
        }
    }

    pub fn is_basic(&self) -> bool {
        matches!(self, Self::Basic { .. })
    }

    /// Reads the credentials of a request from its `Authorization` header and body.
    ///
    /// OAuth 2.1 §2.4: "The client MUST NOT use more than one authentication method in each
    /// request"; such a request is `invalid_request`.
    pub fn extract(authorization: Option<&str>, params: &Params) -> Result<Self, OAuthError> {
        let body_id = params.get("client_id")?;
        let body_secret = params.get("client_secret")?;
        if let Some(header) = authorization {
            let (client_id, secret) = parse_basic(header)?;
            if body_secret.is_some() {
                return Err(OAuthError::invalid_request(
                    "multiple_client_auth_methods: use either HTTP Basic or client_secret in the body, not both",
                ));
            }
            if body_id.is_some_and(|id| id != client_id) {
                return Err(OAuthError::invalid_request("client_id_mismatch: client_id in the body differs from the Basic credentials"));
            }
            return Ok(Self::Basic { client_id, secret });
        }
        match (body_id, body_secret) {
            (Some(id), Some(secret)) => Ok(Self::Post { client_id: id.to_owned(), secret: secret.to_owned() }),
            (Some(id), None) => Ok(Self::None { client_id: id.to_owned() }),
            (None, Some(_)) => Err(OAuthError::invalid_request("client_id_missing: client_secret was sent without client_id")),
            (None, None) => {
                Err(OAuthError::invalid_client("client_auth_missing: authenticate with HTTP Basic, client_secret_post, or send client_id"))
            }
        }
    }

    /// The secret presented, if any.
    pub fn secret(&self) -> Option<&str> {
        match self {
            Self::Basic { secret, .. } | Self::Post { secret, .. } => Some(secret),
            Self::None { .. } => None,
        }
    }

    /// Checks the credentials against the registered client. The secret comparison runs in
    /// constant time on the keyed hashes (SECURITY.md TE-05).
    pub fn authenticate(&self, client: &Client, hasher: &SecretHasher) -> Result<(), OAuthError> {
        match (self, &client.secret_hash) {
            (Self::Basic { secret, .. } | Self::Post { secret, .. }, Some(stored)) => {
                if hasher.hash(secret).ct_eq(stored) {
                    Ok(())
                } else {
                    Err(OAuthError::invalid_client("client_secret_invalid: client authentication failed"))
                }
            }
            (Self::None { .. }, Some(_)) => {
                Err(OAuthError::invalid_client("client_secret_missing: this client is confidential and must authenticate"))
            }
            (Self::None { .. }, None) => Ok(()),
            (_, None) => Err(OAuthError::invalid_client("public_client_secret: this client is public and has no secret")),
        }
    }
}

/// RFC 6749 §2.3.1: the client identifier and secret are encoded with
/// `application/x-www-form-urlencoded` before they go into the Basic credentials (RFC 7617).
fn parse_basic(header: &str) -> Result<(String, String), OAuthError> {
    let bad = || OAuthError::invalid_client("basic_auth_malformed: the Authorization header is not valid Basic credentials");
    let (scheme, rest) = header.trim().split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client("auth_scheme_unsupported: only the Basic scheme authenticates a client"));
    }
    let decoded = STANDARD.decode(rest.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let id = form_decode(id);
    let secret = form_decode(secret);
    if id.is_empty() {
        return Err(bad());
    }
    Ok((id, secret))
}

fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("v={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let p = Params::default();
        let c = ClientCredentials::extract(Some(&basic("my%20app", "s%3Ae+cret")), &p).unwrap();
        assert_eq!(c, ClientCredentials::Basic { client_id: "my app".into(), secret: "s:e cret".into() });
    }

    #[test]
    fn two_methods_in_one_request_are_refused() {
        let p = Params::from_urlencoded("client_id=a&client_secret=b");
        let e = ClientCredentials::extract(Some(&basic("a", "b")), &p).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn body_forms() {
        let p = Params::from_urlencoded("client_id=a&client_secret=b");
        assert!(matches!(ClientCredentials::extract(None, &p).unwrap(), ClientCredentials::Post { .. }));
        let p = Params::from_urlencoded("client_id=a");
        assert!(matches!(ClientCredentials::extract(None, &p).unwrap(), ClientCredentials::None { .. }));
        let e = ClientCredentials::extract(None, &Params::default()).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidClient);
        let e = ClientCredentials::extract(Some("Bearer x"), &Params::default()).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidClient);
        let e = ClientCredentials::extract(Some("Basic !!!"), &Params::default()).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidClient);
    }
}
