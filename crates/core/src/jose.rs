//! Signing keys, JSON Web Keys and compact JWS (RFC 7515, RFC 7517, RFC 7518, RFC 8037), and
//! sealing of private keys under the master key.

use crate::model::SigningAlg;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use latchkey_proto::Jwk;
use rand::{CryptoRng, RngCore};
pub use ring::rand::{SecureRandom, SystemRandom};
use serde::Serialize;
use sha2::{Digest, Sha256, Sha512};

#[derive(Debug, thiserror::Error)]
pub enum JoseError {
    #[error("key generation failed: {0}")]
    Generate(String),
    #[error("the stored private key could not be read: {0}")]
    Decode(String),
    #[error("a sealed key could not be opened: wrong master key or damaged data")]
    Unseal,
    #[error("signing failed")]
    Sign,
    #[error("serializing JWT claims failed: {0}")]
    Claims(#[from] serde_json::Error),
}

enum Inner {
    /// AWS-LC's RSA: constant-time private-key operations (the pure-Rust `rsa` crate's are
    /// not, RUSTSEC-2023-0071, and a network client can time a signature made inline in a
    /// token answer), and about three times faster.
    Rs256(Box<aws_lc_rs::rsa::KeyPair>),
    /// The key, and the same key in ring, whose assembly signs about six times faster than
    /// the pure-Rust `p256` on x86_64 (measured: 37 µs against 216 µs per signature).
    Es256(p256::ecdsa::SigningKey, Box<ring::signature::EcdsaKeyPair>),
    EdDsa(ed25519_dalek::SigningKey),
}

/// A parsed private key, ready to sign: parse once, sign many times.
pub struct KeyPair {
    alg: SigningAlg,
    jwk: Jwk,
    inner: Inner,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyPair({} {})", self.alg.as_str(), self.jwk.kid)
    }
}

impl KeyPair {
    /// Generates a fresh key: RSA 2048, P-256 or Ed25519. `nonces` seeds the ES256 signer's
    /// nonce key (see [`KeyPair::sign_jwt`]).
    pub fn generate(alg: SigningAlg, rng: &mut (impl RngCore + CryptoRng), nonces: &dyn SecureRandom) -> Result<Self, JoseError> {
        let inner = match alg {
            // AWS-LC draws the primes from its own system generator: `rng` cannot feed it.
            SigningAlg::RS256 => Inner::Rs256(Box::new(
                aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(|e| JoseError::Generate(e.to_string()))?,
            )),
            SigningAlg::ES256 => es256(p256::ecdsa::SigningKey::random(rng), nonces)?,
            SigningAlg::EdDSA => Inner::EdDsa(ed25519_dalek::SigningKey::generate(rng)),
        };
        Ok(Self::from_inner(alg, inner))
    }

    /// Reads a key from the bytes `private_bytes` produced.
    pub fn from_private_bytes(alg: SigningAlg, bytes: &[u8], nonces: &dyn SecureRandom) -> Result<Self, JoseError> {
        let inner = match alg {
            // PKCS #8, as every version has stored RSA keys.
            SigningAlg::RS256 => {
                Inner::Rs256(Box::new(aws_lc_rs::rsa::KeyPair::from_pkcs8(bytes).map_err(|e| JoseError::Decode(e.to_string()))?))
            }
            SigningAlg::ES256 => es256(p256::ecdsa::SigningKey::from_slice(bytes).map_err(|e| JoseError::Decode(e.to_string()))?, nonces)?,
            SigningAlg::EdDSA => {
                let seed: [u8; 32] = bytes.try_into().map_err(|_| JoseError::Decode("an Ed25519 seed is 32 bytes".into()))?;
                Inner::EdDsa(ed25519_dalek::SigningKey::from_bytes(&seed))
            }
        };
        Ok(Self::from_inner(alg, inner))
    }

    fn from_inner(alg: SigningAlg, inner: Inner) -> Self {
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let mut jwk = Jwk {
            kty: String::new(),
            kid: String::new(),
            use_: "sig".into(),
            alg: alg.as_str().into(),
            n: None,
            e: None,
            crv: None,
            x: None,
            y: None,
        };
        // RFC 7638 §3.2: the thumbprint input holds the required members in lexicographic
        // order without whitespace; the thumbprint is the key id.
        let thumbprint_input = match &inner {
            Inner::Rs256(key) => {
                // RFC 7518 §6.3.1: unsigned big-endian, without leading zero octets.
                let public = key.public_key();
                let (n, e) =
                    (b64(public.modulus().big_endian_without_leading_zero()), b64(public.exponent().big_endian_without_leading_zero()));
                let input = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
                (jwk.kty, jwk.n, jwk.e) = ("RSA".into(), Some(n), Some(e));
                input
            }
            Inner::Es256(key, _) => {
                let point = key.verifying_key().to_encoded_point(false);
                let x = b64(point.x().map(|x| x.as_slice()).unwrap_or_default());
                let y = b64(point.y().map(|y| y.as_slice()).unwrap_or_default());
                let input = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
                (jwk.kty, jwk.crv, jwk.x, jwk.y) = ("EC".into(), Some("P-256".into()), Some(x), Some(y));
                input
            }
            Inner::EdDsa(key) => {
                let x = b64(&key.verifying_key().to_bytes());
                let input = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
                (jwk.kty, jwk.crv, jwk.x) = ("OKP".into(), Some("Ed25519".into()), Some(x));
                input
            }
        };
        jwk.kid = b64(&Sha256::digest(thumbprint_input.as_bytes()));
        Self { alg, jwk, inner }
    }

    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    pub fn kid(&self) -> &str {
        &self.jwk.kid
    }

    pub fn public_jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// The private key as bytes: PKCS #8 DER for RSA, the scalar for P-256, the seed for
    /// Ed25519. Only ever stored sealed.
    pub fn private_bytes(&self) -> Result<Vec<u8>, JoseError> {
        Ok(match &self.inner {
            Inner::Rs256(key) => key.as_der().map_err(|e| JoseError::Decode(e.to_string()))?.as_ref().to_vec(),
            Inner::Es256(key, _) => key.to_bytes().to_vec(),
            Inner::EdDsa(key) => key.to_bytes().to_vec(),
        })
    }

    /// Signs `claims` as a compact JWS with `typ` in the header (RFC 7515 §7.1). An ES256
    /// signature draws its nonce from `nonces` (ring mixes the key and the message into it).
    /// ring's `SecureRandom` cannot be implemented outside ring, so callers pass its
    /// [`SystemRandom`]; core itself draws nothing.
    pub fn sign_jwt(&self, typ: &str, claims: &impl Serialize, nonces: &dyn SecureRandom) -> Result<String, JoseError> {
        #[derive(Serialize)]
        struct Header<'a> {
            alg: &'a str,
            typ: &'a str,
            kid: &'a str,
        }
        let header = serde_json::to_vec(&Header { alg: self.alg.as_str(), typ, kid: &self.jwk.kid })?;
        let payload = serde_json::to_vec(claims)?;
        let mut input = URL_SAFE_NO_PAD.encode(header);
        input.push('.');
        input.push_str(&URL_SAFE_NO_PAD.encode(payload));
        let signature = match &self.inner {
            Inner::Rs256(key) => {
                // PKCS #1 v1.5 is deterministic: the generator is AWS-LC's own, for blinding.
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &aws_lc_rs::rand::SystemRandom::new(), input.as_bytes(), &mut signature)
                    .map_err(|_| JoseError::Sign)?;
                signature
            }
            // RFC 7518 §3.4: R and S as two 32-byte big-endian integers, which is ring's
            // FIXED encoding.
            Inner::Es256(_, kp) => kp.sign(nonces, input.as_bytes()).map_err(|_| JoseError::Sign)?.as_ref().to_vec(),
            Inner::EdDsa(sk) => ed25519_dalek::Signer::sign(sk, input.as_bytes()).to_bytes().to_vec(),
        };
        input.push('.');
        input.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(input)
    }
}

impl KeyPair {
    /// Whether `signature` over `input` was made by this key (RFC 7515 §5.2 step 8), with this
    /// key's own algorithm: the token's `alg` header never chooses it (RFC 8725 §3.1).
    fn verifies(&self, input: &[u8], signature: &[u8]) -> bool {
        match &self.inner {
            Inner::Rs256(key) => {
                aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256, key.public_key().as_ref())
                    .verify(input, signature)
                    .is_ok()
            }
            Inner::Es256(_, kp) => {
                let public = ring::signature::KeyPair::public_key(kp.as_ref()).as_ref();
                ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, public).verify(input, signature).is_ok()
            }
            Inner::EdDsa(sk) => {
                ed25519_dalek::Signature::from_slice(signature).is_ok_and(|sig| sk.verifying_key().verify_strict(input, &sig).is_ok())
            }
        }
    }
}

/// The claims of a compact JWS that one of `keys` signed, with `typ` in its header; `None`
/// for anything else: malformed, another `typ` (RFC 8725 §3.11: one kind of JWT must not pass
/// for another), an unknown `kid`, an `alg` that is not the key's, or a bad signature. Only
/// the signature is checked here; the caller judges the claims (issuer, expiry).
pub fn verify_jwt<'k, T: serde::de::DeserializeOwned>(token: &str, typ: &str, keys: impl IntoIterator<Item = &'k KeyPair>) -> Option<T> {
    #[derive(serde::Deserialize)]
    struct Header {
        alg: String,
        kid: String,
        typ: Option<String>,
    }
    let (input, signature) = token.rsplit_once('.')?;
    let (header, payload) = input.split_once('.')?;
    let header: Header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    // RFC 9068 §4: the resource server (here, the server itself) checks typ.
    if !header.typ.as_deref().is_some_and(|t| t.eq_ignore_ascii_case(typ)) {
        return None;
    }
    let key = keys.into_iter().find(|k| k.kid() == header.kid && k.alg().as_str() == header.alg)?;
    if !key.verifies(input.as_bytes(), &URL_SAFE_NO_PAD.decode(signature).ok()?) {
        return None;
    }
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

/// The claims of a compact JWS without checking anything: to decide how to judge a token
/// before paying for its signature. Never trust what this returns.
pub fn peek_jwt<T: serde::de::DeserializeOwned>(token: &str) -> Option<T> {
    let mut parts = token.split('.');
    let (_, payload, _, None) = (parts.next()?, parts.next()?, parts.next()?, parts.next()) else { return None };
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

/// The ES256 key with its ring twin for signing.
fn es256(key: p256::ecdsa::SigningKey, nonces: &dyn SecureRandom) -> Result<Inner, JoseError> {
    let public = key.verifying_key().to_encoded_point(false);
    let ring_key = ring::signature::EcdsaKeyPair::from_private_key_and_public_key(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &key.to_bytes(),
        public.as_bytes(),
        nonces,
    )
    .map_err(|e| JoseError::Decode(e.to_string()))?;
    Ok(Inner::Es256(key, Box::new(ring_key)))
}

/// OpenID Connect Core §3.1.3.6: `at_hash` is the base64url of the left half of the hash of
/// the access token, with the hash of the id_token's `alg` (SHA-512 for Ed25519).
pub fn at_hash(alg: SigningAlg, access_token: &str) -> String {
    match alg {
        SigningAlg::RS256 | SigningAlg::ES256 => URL_SAFE_NO_PAD.encode(&Sha256::digest(access_token.as_bytes())[..16]),
        SigningAlg::EdDSA => URL_SAFE_NO_PAD.encode(&Sha512::digest(access_token.as_bytes())[..32]),
    }
}

/// Encrypts `plaintext` with XChaCha20-Poly1305 under the master key; `aad` binds the result
/// to its purpose (for example the key id). The output is nonce ‖ ciphertext.
pub fn seal(master: &[u8; 32], aad: &[u8], plaintext: &[u8], rng: &mut (impl RngCore + CryptoRng)) -> Result<Vec<u8>, JoseError> {
    let cipher = XChaCha20Poly1305::new(master.into());
    let mut nonce = [0u8; 24];
    rng.fill_bytes(&mut nonce);
    let ct = cipher.encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad }).map_err(|_| JoseError::Unseal)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Reverses `seal`.
pub fn open(master: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, JoseError> {
    if sealed.len() < 24 {
        return Err(JoseError::Unseal);
    }
    let (nonce, ct) = sealed.split_at(24);
    XChaCha20Poly1305::new(master.into()).decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad }).map_err(|_| JoseError::Unseal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// An RS256 key as the `rsa` crate generated and stored it before RS256 moved to
    /// AWS-LC (PKCS #8 DER), with the kid and a token it made then: it still reads, keeps its
    /// kid, verifies its old token, and signs the same bytes (PKCS #1 v1.5 is deterministic).
    #[test]
    fn rsa_keys_stored_by_earlier_versions_keep_working() {
        use base64::engine::general_purpose::STANDARD;
        let der = STANDARD
            .decode(concat!(
                "MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQC7YbiZHq33VqRBcDgoHR2jMyJpdFm06JlqE9gG11Y9HCqj",
                "IY/e8WKnTAgphbtRL6oqh8Zdt9JKR+GBlOaPp42n2DH3bfW5QK+BrstksWHX6mHfAFjoUCQlPFQ0pIc4+HLI+G+FFsudQSvl",
                "5hqQf4XXQttTF/O1EUzhKhxo7EjgxWq/Msc9DJpKIHMpYociBzexE0IwGxVZ9orcrmbnWr1WKracukEKp24izj+FWER9Z+AB",
                "+76aFCQnSVp0g/NPBVub5YDy1fErCBA0xEH81E8focefL+mSyZPN8EGoj3gfaPWmxEcDmmaK0WTFb28HZ7jVPbT/995BNuGW",
                "/qgUr4mTAgMBAAECggEAejxFL53T3oWmoQmTmJdlvhCdYi2EV39klM5dHhlbKII3TjOWptjQglIXAP88MrnlR9lKjdhcVhiO",
                "AvofbZbf0Z42+jHBGhgYZYChLg6IxVEgh1iyptmguqmgRLcPfxqTxoZKOYelS/A3ssFoktqddM8oRAxb7sJaZIgUAF4jLHx+",
                "O8MsHcjxGnYkkmpFwHI2ROAvZjw5wMK7Qyem+q2hKiOfjCUyqvSiQSOc52BPOP9JHbnIwJ86MInxFgjDpUdvAw3sLG7b6WLF",
                "l5dLQI3eWZjqqdedXhYVXc7SKVCVit534ioXpBPw2r0x6rVgTghlRLNRf9Zv8WXNN5W0kCSIAQKBgQDijVutaQcTGDtc27JV",
                "fWuHwehCjHmgjHj1CdVrQKcqHKdV2CNGqISyht5rMIk641Y2mD901Vd2VPMNALlnorrLFg3EL3qgVfzYvDVWGw6TFY7DgJVS",
                "kvJDIvgvaFMDhLPNhd6BBSL+pkzxDn8yhDJW0LHEpboLfPP5kGFwwEBoZwKBgQDTvPISWXPPaf7FAbgY3Dmikw61ovx5a2dh",
                "qypcBTybIVc/hhgihrDVWNX5Dk96HvbSoOdc9rODMDRgbCnRJVOkAUMkpzgCH8hAs8lY9e7wTleW4af1uEBlb1nkT1uBFi49",
                "+BJD/jSZDN1JUemnzCmUJJdNjh9DAdTtNxNe9aAJ9QKBgG2Zh0WALuz85xMIMeEL2O6HT26KePjDnGynAjltwLEtxYJRGte/",
                "BNs9RfLDO1Bi1L16sBA8eaCEfkTHGeraHdXL6IMFmSRiFP1hJ8htNILRhgxsc1DMSClUjI6awLZOB5Ig9kCilIhvOX/QzJZK",
                "v/Oh6K5CopuWKo2MXKdoSoB3AoGALtFZiTskQ1mBjtgZd83CJLN1ji4Su1pHSq5JOH2j7/1ISHCDB6dWlGYHMgG7CxqrotkX",
                "L1QRT1GqUyO3f1pMizgIO6OJ29ZhNgVK4RPIGHSKI3+T3t41xvf/HV96sSlRYjxm9YfQ44KXr22gR4z6KJqKpghl2zAdf7Is",
                "41NWZr0CgYB0kvVqHXbnf++yv9DrD9i4ub/AJJC0C03zHVFgsG7tQRfXhSEsXyA6zz39Hynwp+Mr6ie2m3XMAxBBm6hCq1Ft",
                "YnPWwYgcL9zQMx27oVeelQ6je126YwQuAZi7e66MvWHWPArE+n69l0OzKF0JYhqisZuFfpS00q6svPHWkq7P5w==",
            ))
            .unwrap();
        let old_jwt = concat!(
            "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6IjVabTFLd3FlWHRiWGE5aExNZTdPa3dMalByWlZPWDFBVTZ2YklF",
            "ZDlHV2sifQ.eyJzdWIiOiJmaXh0dXJlIn0.A5mraJDup9tjVHzpLBJ9jd8AaIWK46aJrbraxWg1GBetdF1-3vhbylJn35hIE",
            "drigHsu2b-1RTKVlfZyDwrK6y1-lIV7HI-T4uA44iZUkqhkxFAMkqClJbP4kt6PCbmAAfYTAYR1w3SXVpjHFdXiPg_dmbSXV",
            "lOq1jlIZj5n67-YK_ilT4wZ11YknKM7RgIwpY5_L-MZhctLykiY88y49zrTYD0whAIh9ZioiT6bcXXNYr3d-_ffSVY2-MBLX",
            "xVdY8Ck9nhZFZoxJkcE5C4j2tS-is2UCy077pGkNUPGWWhP73fx1V5oAC16FhkmlyNOfCrl9dx29aqr9ubKcv4XwQ",
        );
        let k = KeyPair::from_private_bytes(SigningAlg::RS256, &der, &SystemRandom::new()).unwrap();
        assert_eq!(k.kid(), "5Zm1KwqeXtbXa9hLMe7OkwLjPrZVOX1AU6vbIEd9GWk");
        let claims: serde_json::Value = verify_jwt(old_jwt, "JWT", [&k]).expect("the old token verifies");
        assert_eq!(claims["sub"], "fixture");
        assert_eq!(k.sign_jwt("JWT", &serde_json::json!({"sub": "fixture"}), &SystemRandom::new()).unwrap(), old_jwt);
        assert_eq!(k.private_bytes().unwrap(), der, "stored again the same way");
    }

    #[test]
    fn keys_round_trip_and_sign() {
        let mut rng = StdRng::seed_from_u64(1);
        for alg in [SigningAlg::ES256, SigningAlg::EdDSA, SigningAlg::RS256] {
            let k = KeyPair::generate(alg, &mut rng, &SystemRandom::new()).unwrap();
            let again = KeyPair::from_private_bytes(alg, &k.private_bytes().unwrap(), &SystemRandom::new()).unwrap();
            assert_eq!(k.public_jwk(), again.public_jwk());
            let jwt = k.sign_jwt("JWT", &serde_json::json!({"a": 1}), &SystemRandom::new()).unwrap();
            let header: serde_json::Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(jwt.split('.').next().unwrap()).unwrap()).unwrap();
            assert_eq!(header["alg"], alg.as_str());
            assert_eq!(header["kid"], k.kid());
        }
    }

    #[test]
    fn es256_signature_verifies() {
        use p256::ecdsa::signature::Verifier;
        let mut rng = StdRng::seed_from_u64(2);
        let k = KeyPair::generate(SigningAlg::ES256, &mut rng, &SystemRandom::new()).unwrap();
        let jwt = k.sign_jwt("JWT", &serde_json::json!({"sub": "x"}), &SystemRandom::new()).unwrap();
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        let sig = p256::ecdsa::Signature::from_slice(&URL_SAFE_NO_PAD.decode(sig).unwrap()).unwrap();
        let Inner::Es256(sk, _) = &k.inner else { unreachable!() };
        sk.verifying_key().verify(input.as_bytes(), &sig).unwrap();
    }

    #[test]
    fn own_tokens_verify_and_nothing_else_does() {
        let mut rng = StdRng::seed_from_u64(4);
        let keys: Vec<KeyPair> = [SigningAlg::ES256, SigningAlg::EdDSA, SigningAlg::RS256]
            .into_iter()
            .map(|alg| KeyPair::generate(alg, &mut rng, &SystemRandom::new()).unwrap())
            .collect();
        let stranger = KeyPair::generate(SigningAlg::ES256, &mut rng, &SystemRandom::new()).unwrap();
        let claims = serde_json::json!({"sub": "job", "exp": 10});
        for k in &keys {
            let jwt = k.sign_jwt("at+jwt", &claims, &SystemRandom::new()).unwrap();
            assert_eq!(verify_jwt::<serde_json::Value>(&jwt, "at+jwt", &keys), Some(claims.clone()), "{:?}", k.alg());
            assert_eq!(peek_jwt::<serde_json::Value>(&jwt), Some(claims.clone()));
            // Another typ, a key that is not ours, a changed payload or signature: refused.
            assert_eq!(verify_jwt::<serde_json::Value>(&jwt, "JWT", &keys), None);
            assert_eq!(verify_jwt::<serde_json::Value>(&jwt, "at+jwt", [&stranger]), None);
            let (head, rest) = jwt.split_once('.').unwrap();
            let (_, sig) = rest.split_once('.').unwrap();
            let forged = format!("{head}.{}.{sig}", URL_SAFE_NO_PAD.encode(br#"{"sub":"admin","exp":10}"#));
            assert_eq!(verify_jwt::<serde_json::Value>(&forged, "at+jwt", &keys), None);
            let mut bad_sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
            bad_sig[0] ^= 1;
            let tampered = format!("{head}.{}.{}", rest.split_once('.').unwrap().0, URL_SAFE_NO_PAD.encode(bad_sig));
            assert_eq!(verify_jwt::<serde_json::Value>(&tampered, "at+jwt", &keys), None);
        }
        // A stranger's token with one of our kids, or alg "none", is refused (RFC 8725 §3.1).
        let header = |alg: &str| URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"at+jwt","kid":"{}"}}"#, keys[0].kid()));
        let body = URL_SAFE_NO_PAD.encode(br#"{"sub":"admin"}"#);
        assert_eq!(verify_jwt::<serde_json::Value>(&format!("{}.{body}.", header("none")), "at+jwt", &keys), None);
        let signed = stranger.sign_jwt("at+jwt", &serde_json::json!({"sub": "admin"}), &SystemRandom::new()).unwrap();
        let stolen = format!("{}.{body}.{}", header("ES256"), signed.rsplit_once('.').unwrap().1);
        assert_eq!(verify_jwt::<serde_json::Value>(&stolen, "at+jwt", &keys), None);
        for junk in ["", "a.b", "a.b.c.d", "lk_at_abc", "...", "eyJ.eyJ.x"] {
            assert_eq!(verify_jwt::<serde_json::Value>(junk, "at+jwt", &keys), None, "{junk}");
            assert_eq!(peek_jwt::<serde_json::Value>(junk), None, "{junk}");
        }
    }

    #[test]
    fn sealing_needs_the_same_key_and_purpose() {
        let mut rng = StdRng::seed_from_u64(3);
        let sealed = seal(&[9; 32], b"kid-1", b"secret key", &mut rng).unwrap();
        assert_eq!(open(&[9; 32], b"kid-1", &sealed).unwrap(), b"secret key");
        assert!(open(&[8; 32], b"kid-1", &sealed).is_err());
        assert!(open(&[9; 32], b"kid-2", &sealed).is_err());
    }

    #[test]
    fn at_hash_matches_the_openid_example() {
        // OpenID Connect Core, Appendix A.3: at_hash of "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y".
        assert_eq!(at_hash(SigningAlg::RS256, "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"), "77QmUPtjPfzWtF2AnpK9RQ");
    }
}
