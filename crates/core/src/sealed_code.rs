//! An authorization code (RFC 6749 §4.1.2) whose record is sealed (XChaCha20-Poly1305, as
//! `sealed_token`) into the code itself, so that the authorization endpoint writes nothing: it
//! goes through the user's browser and only the server can read it (the user, the grant, the
//! redirect URI, the PKCE challenge and the nonce it binds). Its single use is kept where it is
//! redeemed: the redemption stores the code's hash, consumed, in the statement that creates its
//! family, and a second redemption finds it there (OAuth 2.1 §4.1.3; docs/security.md AC-06).
//! The redemption also requires its grant to still exist, which is how withdrawing consent, or
//! losing the business, ends a code not yet redeemed.

use crate::jose::JoseError;
use crate::model::{AuthCode, TenantId};
use crate::scope::ScopeSet;
use crate::sealed_token::{open_as, put_text, seal_as, Reader};
use crate::secret::SecretHash;
use rand::{CryptoRng, RngCore};

/// What starts a sealed code; a code of earlier versions, with a row, starts with `lk_ac_`.
pub const PREFIX: &str = "lk_sc_";
/// Binds the sealed record to this use of the key (a sealed access token never opens as a code).
const PURPOSE: &[u8] = b"latchkey sealed authorization code v1";
/// Longer than any code `seal` makes (its texts are bounded by the authorization request's
/// own limits); anything longer is not opened.
const MAX_LEN: usize = 8192;

const NONCE: u8 = 1;
const CHALLENGE: u8 = 2;
const BUSINESS: u8 = 4;
const EXPLICIT: u8 = 8;

/// Seals `code` (all but its hash and `consumed_at`, which the redemption decides).
pub fn seal(key: &[u8; 32], code: &AuthCode, rng: &mut (impl RngCore + CryptoRng)) -> Result<String, JoseError> {
    let bad = || JoseError::Decode("an authorization code's text is longer than its layout holds".into());
    let flags = if code.nonce.is_some() { NONCE } else { 0 }
        | if code.code_challenge.is_some() { CHALLENGE } else { 0 }
        | if code.business_id.is_some() { BUSINESS } else { 0 }
        | if code.redirect_uri_explicit { EXPLICIT } else { 0 };
    let mut out = vec![flags];
    for id in [code.tenant.0, code.user_id, code.grant_id, code.family_id] {
        out.extend_from_slice(id.as_bytes());
    }
    if let Some(b) = code.business_id {
        out.extend_from_slice(b.as_bytes());
    }
    for t in [code.auth_time, code.created_at, code.expires_at] {
        out.extend_from_slice(&t.to_be_bytes());
    }
    let scope = code.scope.to_string();
    let texts =
        [Some(code.client_id.as_str()), Some(&code.redirect_uri), Some(&scope), code.nonce.as_deref(), code.code_challenge.as_deref()];
    for text in texts.into_iter().flatten() {
        put_text(&mut out, text).ok_or_else(bad)?;
    }
    seal_as(key, PURPOSE, PREFIX, &out, rng)
}

/// Whether `code` has the form of a sealed code (it may still not open).
pub fn is_sealed(code: &str) -> bool {
    code.starts_with(PREFIX)
}

/// The record sealed in `code`, unconsumed, with `hash` (the code's, as the store keys it);
/// `None` for anything `seal` did not make with `key`.
pub fn open(key: &[u8; 32], code: &str, hash: SecretHash) -> Option<AuthCode> {
    let bytes = open_as(key, PURPOSE, PREFIX, MAX_LEN, code)?;
    let mut r = Reader(&bytes);
    let flags = r.take::<1>()?[0];
    if flags & !(NONCE | CHALLENGE | BUSINESS | EXPLICIT) != 0 {
        return None;
    }
    let (tenant, user_id, grant_id, family_id) = (r.uuid()?, r.uuid()?, r.uuid()?, r.uuid()?);
    let business_id = if flags & BUSINESS != 0 { Some(r.uuid()?) } else { None };
    let (auth_time, created_at, expires_at) = (r.int()?, r.int()?, r.int()?);
    let (client_id, redirect_uri, scope) = (r.text()?, r.text()?, r.text()?);
    let nonce = if flags & NONCE != 0 { Some(r.text()?) } else { None };
    let code_challenge = if flags & CHALLENGE != 0 { Some(r.text()?) } else { None };
    if !r.0.is_empty() {
        return None;
    }
    Some(AuthCode {
        hash,
        tenant: TenantId(tenant),
        client_id,
        user_id,
        grant_id,
        business_id,
        redirect_uri,
        redirect_uri_explicit: flags & EXPLICIT != 0,
        scope: ScopeSet::parse(&scope).ok()?,
        nonce,
        code_challenge,
        auth_time,
        created_at,
        expires_at,
        consumed_at: None,
        family_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use uuid::Uuid;

    fn code(full: bool) -> AuthCode {
        AuthCode {
            hash: SecretHash([7; 32]),
            tenant: TenantId(Uuid::from_u128(1)),
            client_id: "Xk3bq7tYl2m9pQz4Rv8sWn1a".into(),
            user_id: Uuid::from_u128(2),
            grant_id: Uuid::from_u128(3),
            business_id: full.then(|| Uuid::from_u128(4)),
            redirect_uri: "https://app.example/callback?x=1".into(),
            redirect_uri_explicit: full,
            scope: ScopeSet::parse("openid email business/orders:read").unwrap(),
            nonce: full.then(|| "n-0S6_WzA2Mj".into()),
            code_challenge: full.then(|| "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
            auth_time: 1_999_999_000,
            created_at: 2_000_000_000,
            expires_at: 2_000_000_060,
            consumed_at: None,
            family_id: Uuid::from_u128(5),
        }
    }

    #[test]
    fn a_sealed_code_opens_as_it_was_with_its_key_only() {
        let mut rng = StdRng::seed_from_u64(3);
        for c in [code(true), code(false)] {
            let sealed = seal(&[1; 32], &c, &mut rng).unwrap();
            assert!(is_sealed(&sealed) && sealed.len() < 450, "{} characters", sealed.len());
            assert_eq!(open(&[1; 32], &sealed, c.hash), Some(c.clone()));
            assert_eq!(open(&[2; 32], &sealed, c.hash), None, "another key");
            assert!(!sealed.contains("app.example") && !sealed.contains("orders"));
        }
    }

    #[test]
    fn a_changed_code_or_a_sealed_token_does_not_open() {
        let sealed = seal(&[1; 32], &code(true), &mut StdRng::seed_from_u64(3)).unwrap();
        for i in PREFIX.len()..sealed.len() {
            let mut bytes = sealed.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            assert_eq!(open(&[1; 32], &String::from_utf8(bytes).unwrap(), SecretHash([7; 32])), None, "changed at {i}");
        }
        // The same key seals access tokens, under another purpose: one never opens as the other.
        let token = crate::sealed_token::seal(
            &[1; 32],
            &crate::sealed_token::Sealed {
                claims: crate::claims::AccessTokenClaims {
                    iss: "https://auth.example".into(),
                    exp: 2_000_003_600,
                    aud: "https://auth.example".into(),
                    sub: "job".into(),
                    client_id: "job".into(),
                    iat: 2_000_000_000,
                    jti: Uuid::from_u128(9).to_string(),
                    scope: "reports:read".into(),
                    auth_time: None,
                    authorized_business_id: None,
                },
                family: None,
            },
            &mut StdRng::seed_from_u64(3),
        )
        .unwrap();
        let as_code = token.replacen(crate::sealed_token::PREFIX, PREFIX, 1);
        assert_eq!(open(&[1; 32], &as_code, SecretHash([7; 32])), None);
    }
}
