//! The OAuth 2 / OpenID Connect protocol and policy of Latchkey.
//!
//! Architecture invariant: nothing in this crate does I/O, reads the clock or draws from the
//! operating system's random number generator. The current time is a parameter (`now`, in
//! Unix seconds) and randomness comes from a caller-supplied `CryptoRngCore`.

pub mod address;
pub mod authorize;
pub mod business;
pub mod claims;
pub mod client_auth;
pub mod error;
pub mod grant;
pub mod guessing;
pub mod jose;
pub mod model;
pub mod params;
pub mod password;
pub mod pkce;
pub mod redirect;
pub mod revocation;
pub mod scope;
pub mod sealed_code;
pub mod sealed_token;
pub mod secret;
pub mod text;

pub use error::OAuthError;
pub use latchkey_proto::ErrorCode;

/// Unix time in whole seconds. Every time in Latchkey is one of these.
pub type UnixTime = i64;

#[cfg(test)]
mod proptests;
