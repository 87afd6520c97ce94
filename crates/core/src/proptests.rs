//! Property tests of every parser and matcher in `core` that sees outside input: it never
//! panics on generated input, and it keeps its invariants.
//!
//! Each property runs proptest's default 256 cases; `PROPTEST_CASES=10000 cargo test -p
//! latchkey-core proptests` is the long run (`docs/inputs.md`).

use crate::client_auth::ClientCredentials;
use crate::jose::{verify_jwt, KeyPair, SystemRandom};
use crate::model::SigningAlg;
use crate::params::Params;
use crate::pkce::CodeChallenge;
use crate::redirect::{match_registered, validate_registration};
use crate::scope::ScopeSet;
use crate::secret::ct_str_eq;
use crate::text;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use proptest::prelude::*;
use sha2::{Digest, Sha256};

/// Any text, weighted towards what breaks parsers: delimiters, percent signs, NUL and control
/// bytes, and non-ASCII.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[&=+%:;, .\\x00-\\x1f\\x7fa-zA-Z0-9éü€\\u{2028}\"'\\\\/?#\\[\\]{}<>]{0,64}",
        "(%[0-9a-fA-FgG]{0,2}|[a-z&=+]){0,32}",
    ]
}

fn vschar(min: usize, max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[\\x20-\\x7e]{{{min},{max}}}")).expect("a valid regex")
}

fn scope_token() -> impl Strategy<Value = String> {
    "[\\x21\\x23-\\x5b\\x5d-\\x7e]{1,24}"
}

fn pkce_string() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._~-]{43,128}"
}

proptest! {
    /// Form bodies and query strings: anything parses, and what `to_urlencoded` writes reads
    /// back as the same pairs.
    #[test]
    fn params_parse_anything_and_round_trip(raw in hostile(), pairs in proptest::collection::vec((hostile(), hostile()), 0..8)) {
        let p = Params::from_urlencoded(&raw);
        for (k, _) in p.pairs() {
            let _ = p.get(k);
        }
        let p = Params::new(pairs.clone());
        let back = Params::from_urlencoded(&p.to_urlencoded());
        let kept: Vec<_> = pairs.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        prop_assert_eq!(back.pairs(), kept.as_slice());
    }

    /// The parser reads exactly what the URL Standard's does (its fast path changes nothing).
    #[test]
    fn params_parse_as_the_url_standard_does(raw in hostile()) {
        let standard = Params::new(url::form_urlencoded::parse(raw.as_bytes()).into_owned());
        let ours = Params::from_urlencoded(&raw);
        prop_assert_eq!(ours.pairs(), standard.pairs());
    }

    /// A parameter sent twice is refused, whatever its values (OAuth 2.1 §3.1).
    #[test]
    fn params_refuse_repeats(name in "[a-z_]{1,12}", a in "[a-z]{1,5}", b in "[a-z]{1,5}") {
        let p = Params::from_urlencoded(&format!("{name}={a}&{name}={b}"));
        prop_assert!(p.get(&name).is_err());
    }

    /// The Basic header never panics, and whatever it accepts is in the client_id grammar.
    #[test]
    fn basic_header_never_panics(raw in hostile(), bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let p = Params::default();
        for header in [raw.clone(), format!("Basic {raw}"), format!("Basic {}", STANDARD.encode(&bytes))] {
            if let Ok(c) = ClientCredentials::extract(Some(&header), &p) {
                prop_assert!(text::client_id(c.client_id()).is_ok());
                prop_assert!(text::client_secret(c.secret().unwrap_or_default()).is_ok());
            }
        }
    }

    /// RFC 6749 §2.3.1: any client_id and secret, form-encoded into the Basic header, come back
    /// exactly as they were.
    #[test]
    fn basic_header_round_trips(id in vschar(1, 64), secret in vschar(0, 64)) {
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let header = format!("Basic {}", STANDARD.encode(format!("{}:{}", enc(&id), enc(&secret))));
        let c = ClientCredentials::extract(Some(&header), &Params::default()).unwrap();
        prop_assert_eq!(c, ClientCredentials::Basic { client_id: id, secret });
    }

    /// Body credentials: never a panic; what is accepted is in the grammar.
    #[test]
    fn body_credentials_never_panic(raw in hostile()) {
        if let Ok(c) = ClientCredentials::extract(None, &Params::from_urlencoded(&raw)) {
            prop_assert!(text::client_id(c.client_id()).is_ok());
        }
    }

    /// A scope set formats and parses back to itself; any string parses or is refused.
    #[test]
    fn scope_sets_round_trip(tokens in proptest::collection::btree_set(scope_token(), 0..12), raw in hostile()) {
        let set = ScopeSet::from_tokens(tokens.iter().map(String::as_str)).unwrap();
        prop_assert_eq!(ScopeSet::parse(&set.to_string()).unwrap(), set);
        if let Ok(parsed) = ScopeSet::parse(&raw) {
            prop_assert!(parsed.iter().all(text::is_nqchar));
        }
        let _ = ScopeSet::from_params(&Params::from_urlencoded(&raw));
    }

    /// A registered redirect URI matches itself and nothing else (RFC 9700 §4.1.3); only a
    /// loopback IP literal matches on any port (RFC 8252 §7.3).
    #[test]
    fn redirect_uris_match_only_themselves(
        host in "[a-z]{1,10}\\.example",
        path in "/[a-zA-Z0-9/._-]{0,20}",
        other in hostile(),
        port in 1u16..,
    ) {
        let registered = format!("https://{host}{path}");
        prop_assert!(validate_registration(&registered).is_ok());
        let reg = vec![registered.clone()];
        prop_assert_eq!(match_registered(&reg, &registered), Some(registered.as_str()));
        for near in [
            other.clone(),
            format!("{registered}{other}"),
            format!("https://{host}:{port}{path}"),
            registered.to_uppercase(),
            format!("{registered}/"),
        ] {
            if near != registered {
                prop_assert_eq!(match_registered(&reg, &near), None, "{}", near);
            }
        }
        let loopback = vec![format!("http://127.0.0.1{path}")];
        let any_port = format!("http://127.0.0.1:{port}{path}");
        prop_assert!(match_registered(&loopback, &any_port).is_some());
        let longer = format!("{any_port}{other}");
        prop_assert_eq!(match_registered(&loopback, &longer).is_some(), other.is_empty());
        let _ = validate_registration(&other);
    }

    /// RFC 7636 §4.1: a verifier outside 43 to 128 characters of `[A-Za-z0-9-._~]` is refused,
    /// whatever the challenge; a valid one verifies only against its own challenge.
    #[test]
    fn pkce_verifiers_outside_the_grammar_are_refused(raw in hostile(), v in pkce_string(), w in pkce_string()) {
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes()));
        let c = CodeChallenge::parse(Some(&challenge), Some("S256")).unwrap().unwrap();
        prop_assert!(c.verify(&v).is_ok());
        prop_assert_eq!(c.verify(&w).is_ok(), v == w);
        let in_grammar = (43..=128).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if !in_grammar {
            prop_assert!(c.verify(&raw).is_err());
            prop_assert!(CodeChallenge::parse(Some(&raw), Some("S256")).is_err());
        }
        let _ = CodeChallenge::parse(Some(&raw), Some(&raw));
    }

    /// Compact JWS: any string is refused without a panic, and so is a signed token with any
    /// one character changed.
    #[test]
    fn jws_never_panics_and_refuses_any_change(raw in hostile(), at in any::<prop::sample::Index>(), by in "[A-Za-z0-9_-]") {
        let key = test_key();
        let keys = std::slice::from_ref(&key);
        prop_assert!(verify_jwt::<serde_json::Value>(&raw, "at+jwt", keys).is_none());
        let _ = crate::jose::peek_jwt::<serde_json::Value>(&raw);
        let token = key.sign_jwt("at+jwt", &serde_json::json!({"sub": "x", "n": 1}), &SystemRandom::new()).unwrap();
        prop_assert!(verify_jwt::<serde_json::Value>(&token, "at+jwt", keys).is_some());
        let i = at.index(token.len());
        let replaced = by.chars().next().unwrap();
        let original = char::from(token.as_bytes()[i]);
        if original != '.' && original != replaced {
            let mut changed = token.into_bytes();
            changed[i] = replaced as u8;
            let changed = String::from_utf8(changed).unwrap();
            prop_assert!(verify_jwt::<serde_json::Value>(&changed, "at+jwt", keys).is_none(), "{}", changed);
        }
    }

    /// CSRF tokens and other secrets are compared in constant time, and correctly.
    #[test]
    fn constant_time_comparison_is_equality(a in hostile(), b in hostile()) {
        prop_assert_eq!(ct_str_eq(&a, &b), a == b);
        prop_assert!(ct_str_eq(&a, &a));
    }

    /// Emails: anything is refused or normalized; a normalized address is printable, bounded,
    /// and normalizes to itself.
    #[test]
    fn emails_normalize_to_themselves(raw in hostile(), local in "[a-zA-Z0-9._%+-]{1,20}", domain in "[a-z0-9-]{1,12}\\.[a-z]{2,6}") {
        if let Ok(e) = text::email(&raw) {
            prop_assert!(text::is_printable(&e) && e.len() <= text::MAX_EMAIL && !e.contains('\0'));
            prop_assert_eq!(text::email(&e), Ok(e.clone()));
        }
        let address = format!("{local}@{domain}");
        prop_assert_eq!(text::email(&address), Ok(address.to_lowercase()));
    }

    /// Every grammar of `text` refuses a NUL byte wherever it is, and never panics.
    #[test]
    fn grammars_refuse_nul(raw in hostile(), at in any::<prop::sample::Index>()) {
        let mut with_nul = raw.clone();
        let i = at.index(raw.len() + 1);
        let i = (0..=i).rev().find(|&i| raw.is_char_boundary(i)).unwrap_or(0);
        with_nul.insert(i, '\0');
        prop_assert!(text::client_id(&with_nul).is_err());
        prop_assert!(text::client_secret(&with_nul).is_err());
        prop_assert!(text::state(&with_nul).is_err());
        prop_assert!(text::nonce(&with_nul).is_err());
        prop_assert!(text::username(&with_nul).is_err());
        prop_assert!(text::password(&with_nul).is_err());
        prop_assert!(text::login_hint(&with_nul).is_err());
        prop_assert!(text::email(&with_nul).is_err());
        prop_assert!(text::name(&with_nul, 1000).is_none());
        let _ = (text::client_id(&raw), text::username(&raw), text::name(&raw, 10));
    }

    /// Proxy addresses: any `trusted_proxies` entry parses or is refused, without a panic.
    #[test]
    fn ip_ranges_never_panic(raw in hostile()) {
        let _ = raw.parse::<crate::address::IpRange>();
    }
}

/// One ES256 key for the JWS property (generating one per case would only slow it down).
fn test_key() -> KeyPair {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    KeyPair::generate(SigningAlg::ES256, &mut rng, &SystemRandom::new()).unwrap()
}
