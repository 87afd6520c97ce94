//! The authorization endpoint's rules (RFC 6749 §4.1.1, OpenID Connect Core §3.1.2): which
//! errors may be redirected, what a valid request is, and when the user must sign in or consent.

use crate::model::{Client, Grant};
use crate::params::Params;
use crate::pkce::CodeChallenge;
use crate::redirect;
use crate::scope::ScopeSet;
use crate::text::{self, Malformed};
use crate::{OAuthError, UnixTime};

/// An error that must not be redirected: the client or its redirect URI is unknown
/// (RFC 6749 §4.1.2.1; RFC 9700 §4.11.2). The server shows it as an HTML page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageError(pub OAuthError);

/// An error reported to the client through its validated redirect URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectError {
    pub redirect_uri: String,
    pub state: Option<String>,
    pub error: OAuthError,
}

/// The OpenID Connect `prompt` values (Core §3.1.2.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
    pub select_account: bool,
}

impl Prompt {
    fn parse(s: Option<&str>) -> Result<Self, OAuthError> {
        let mut p = Prompt::default();
        for v in s.unwrap_or_default().split(' ').filter(|v| !v.is_empty()) {
            match v {
                "none" => p.none = true,
                "login" => p.login = true,
                "consent" => p.consent = true,
                "select_account" => p.select_account = true,
                _ => return Err(OAuthError::invalid_request(format!("prompt_unsupported: prompt={v} is not supported"))),
            }
        }
        // Core §3.1.2.1: "If this parameter contains none with any other value, an error is
        // returned."
        if p.none && (p.login || p.consent || p.select_account) {
            return Err(OAuthError::invalid_request("prompt_none_combined: prompt=none cannot be combined with another value"));
        }
        Ok(p)
    }
}

/// Per-tenant switches that change what a valid request is.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthorizePolicy {
    /// UltraCart requires `state`.
    pub require_state: bool,
}

/// A checked authorization request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRequest {
    pub client_id: String,
    /// Where the answer goes: the URI the request named (with its loopback port), or the
    /// client's only registered one.
    pub redirect_uri: String,
    pub redirect_uri_explicit: bool,
    pub scope: ScopeSet,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<CodeChallenge>,
    pub prompt: Prompt,
    pub max_age: Option<u64>,
    pub login_hint: Option<String>,
}

/// Step one: the redirect URI. Until it is known to be the client's, nothing may redirect.
///
/// RFC 6749 §3.1.2.3: optional when exactly one URI is registered; otherwise it must match a
/// registered one (see `redirect::match_registered`).
pub fn resolve_redirect(client: &Client, params: &Params) -> Result<(String, bool), PageError> {
    let requested = params.get("redirect_uri").map_err(PageError)?;
    match requested {
        Some(uri) => match redirect::match_registered(&client.redirect_uris, uri) {
            Some(_) => Ok((uri.to_owned(), true)),
            None => {
                Err(PageError(OAuthError::invalid_request("redirect_uri_mismatch: the redirect_uri is not registered for this client")))
            }
        },
        None => match client.redirect_uris.as_slice() {
            [only] => Ok((only.clone(), false)),
            [] => Err(PageError(OAuthError::invalid_request("redirect_uri_unregistered: the client has no registered redirect_uri"))),
            _ => Err(PageError(OAuthError::invalid_request(
                "redirect_uri_missing: the client has several redirect URIs; the request must name one",
            ))),
        },
    }
}

/// Step two: everything else, each failure redirected to the client with `state`.
pub fn validate(
    client: &Client,
    redirect_uri: String,
    redirect_uri_explicit: bool,
    params: &Params,
    policy: AuthorizePolicy,
) -> Result<AuthorizationRequest, RedirectError> {
    // A `state` that is malformed or repeated is not echoed: the error itself is the answer.
    let state = params.get("state").ok().flatten().and_then(|s| text::state(s).ok()).map(str::to_owned);
    let fail = |error: OAuthError| RedirectError { redirect_uri: redirect_uri.clone(), state: state.clone(), error };

    let checked = (|| {
        // RFC 6749 Appendix A.5: state is VSCHAR; docs/security.md AZ-16: and bounded.
        let state = params.get("state")?.map(text::state).transpose().map_err(malformed)?;
        if policy.require_state && state.is_none() {
            return Err(OAuthError::invalid_request("state_missing: this server requires state"));
        }
        // OpenID Connect Core §6: request objects are not supported, and say so.
        if params.contains("request") {
            return Err(OAuthError::new(crate::ErrorCode::RequestNotSupported, "request_not_supported: request objects are not supported"));
        }
        if params.contains("request_uri") {
            return Err(OAuthError::new(
                crate::ErrorCode::RequestUriNotSupported,
                "request_uri_not_supported: request_uri is not supported",
            ));
        }
        // RFC 6749 §4.1.1 and §4.1.2.1; RFC 9700 §2.1.2: only the code flow.
        match params.get("response_type")? {
            None => return Err(OAuthError::invalid_request("response_type_missing: response_type=code is required")),
            Some("code") if !client.allows_grant(crate::model::GrantType::AuthorizationCode) => {
                return Err(OAuthError::unauthorized_client(
                    "grant_type_not_allowed: this client is not registered for the authorization code grant",
                ));
            }
            Some("code") => {}
            Some(_) => {
                return Err(OAuthError::new(
                    crate::ErrorCode::UnsupportedResponseType,
                    "response_type_unsupported: only response_type=code is supported",
                ))
            }
        }
        match params.get("response_mode")? {
            None | Some("query") => {}
            Some(_) => return Err(OAuthError::invalid_request("response_mode_unsupported: only response_mode=query is supported")),
        }
        let scope = ScopeSet::resolve(ScopeSet::from_params(params)?, &client.scopes)?;
        let nonce = params.get("nonce")?.map(text::nonce).transpose().map_err(malformed)?;
        let code_challenge = CodeChallenge::parse(params.get("code_challenge")?, params.get("code_challenge_method")?)?;
        // OAuth 2.1 §4.1.2.1 and RFC 9700 §2.1.1: public clients MUST use PKCE.
        if code_challenge.is_none() && client.needs_pkce() {
            return Err(OAuthError::invalid_request("pkce_required: this client must send code_challenge with code_challenge_method=S256"));
        }
        let prompt = Prompt::parse(params.get("prompt")?)?;
        let max_age = match params.get("max_age")? {
            None => None,
            Some(v) => Some(
                v.parse::<u64>().map_err(|_| OAuthError::invalid_request("max_age_malformed: max_age must be a non-negative integer"))?,
            ),
        };
        Ok(AuthorizationRequest {
            client_id: client.client_id.clone(),
            redirect_uri: redirect_uri.clone(),
            redirect_uri_explicit,
            scope,
            state: state.map(str::to_owned),
            nonce: nonce.map(str::to_owned),
            code_challenge,
            prompt,
            max_age,
            login_hint: params.get("login_hint")?.map(text::login_hint).transpose().map_err(malformed)?.map(str::to_owned),
        })
    })();
    checked.map_err(fail)
}

/// A parameter outside its grammar is a malformed request (RFC 6749 §4.1.2.1).
fn malformed(m: Malformed) -> OAuthError {
    OAuthError::invalid_request(format!("{}_malformed: {m}", m.field))
}

/// Whether the user must (again) sign in before this request can proceed.
///
/// `session_auth_time` is when the browser's session signed in; `fresh_login` says the user
/// signed in during this very interaction, which satisfies `prompt=login` and `max_age`
/// (Core §3.1.2.1 and §3.1.2.3).
pub fn needs_login(req: &AuthorizationRequest, session_auth_time: Option<UnixTime>, fresh_login: bool, now: UnixTime) -> bool {
    let Some(auth_time) = session_auth_time else {
        return true;
    };
    if fresh_login {
        return false;
    }
    if req.prompt.login {
        return true;
    }
    match req.max_age {
        Some(max) => now.saturating_sub(auth_time) > i64::try_from(max).unwrap_or(i64::MAX),
        None => false,
    }
}

/// Whether the user must be asked: `prompt=consent` or `select_account`, or no earlier grant
/// to this client covers the requested scopes, or nothing proves the client is who it says.
pub fn needs_consent(client: &Client, req: &AuthorizationRequest, existing: Option<&Grant>) -> bool {
    if req.prompt.consent || req.prompt.select_account {
        return true;
    }
    // RFC 8252 §8.6 and RFC 6819 §5.2.4.1 (docs/security.md AZ-18): a public client on a loopback
    // or private-use redirect URI can be impersonated by any local app, so its requests are
    // never approved without the user.
    if client.is_public() && !req.redirect_uri.starts_with("https://") {
        return true;
    }
    match existing {
        Some(g) => !req.scope.is_subset(&g.scope),
        None => true,
    }
}

/// Appends answer parameters to a redirect URI, keeping its own query (RFC 6749 §3.1.2: the
/// query component MUST be retained).
pub fn redirect_with(redirect_uri: &str, pairs: &[(&str, &str)]) -> String {
    let encoded = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    format!("{redirect_uri}{sep}{encoded}")
}

/// The redirect URI of an error answer, with `error`, `error_description`, `state` and `iss`
/// (RFC 6749 §4.1.2.1; RFC 9207 §2).
pub fn error_redirect(err: &RedirectError, issuer: &str) -> String {
    let description = err.error.safe_description();
    let mut pairs = vec![("error", err.error.code.as_str()), ("error_description", description.as_str())];
    if let Some(s) = &err.state {
        pairs.push(("state", s));
    }
    pairs.push(("iss", issuer));
    redirect_with(&err.redirect_uri, &pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GrantType, TenantId};
    use crate::secret::SecretHash;
    use crate::ErrorCode;

    fn client(public: bool, uris: &[&str]) -> Client {
        Client {
            profile: Default::default(),
            secret_info: Default::default(),
            tenant: TenantId(uuid::Uuid::nil()),
            client_id: "c1".into(),
            name: "App".into(),
            developer: "Dev".into(),
            secret_hash: (!public).then_some(SecretHash([0; 32])),
            redirect_uris: uris.iter().map(|s| s.to_string()).collect(),
            scopes: ScopeSet::parse("openid email").unwrap(),
            grant_types: GrantType::DEFAULT.to_vec(),
            require_pkce: false,
            token_settings: Default::default(),
            created_at: 0,
        }
    }

    fn check(c: &Client, query: &str) -> Result<AuthorizationRequest, String> {
        let p = Params::from_urlencoded(query);
        let (uri, explicit) = resolve_redirect(c, &p).map_err(|e| format!("page {}", e.0.reason))?;
        validate(c, uri, explicit, &p, AuthorizePolicy::default())
            .map_err(|e| format!("redirect {} {} state={:?}", e.error.code, e.error.reason, e.state))
    }

    const CH: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn redirect_uri_rules() {
        let one = client(false, &["https://a.example/cb"]);
        let two = client(false, &["https://a.example/cb", "https://a.example/cb2"]);
        assert!(check(&one, "response_type=code").is_ok());
        assert!(check(&two, "response_type=code").unwrap_err().starts_with("page redirect_uri_missing"));
        assert!(check(&two, "response_type=code&redirect_uri=https://a.example/x").unwrap_err().starts_with("page redirect_uri_mismatch"));
        assert!(check(&two, "response_type=code&redirect_uri=https://a.example/cb2").is_ok());
        assert!(check(&one, "response_type=code&redirect_uri=https://a.example/cb&redirect_uri=https://a.example/cb")
            .unwrap_err()
            .starts_with("page parameter_repeated"));
    }

    #[test]
    fn request_rules() {
        let c = client(false, &["https://a.example/cb"]);
        let p = client(true, &["https://a.example/cb"]);
        let cases = [
            (&c, "state=s", "redirect invalid_request response_type_missing state=Some(\"s\")"),
            (&c, "response_type=token&state=s", "redirect unsupported_response_type response_type_unsupported state=Some(\"s\")"),
            (&c, "response_type=code&scope=admin", "redirect invalid_scope scope_not_allowed state=None"),
            (&p, "response_type=code", "redirect invalid_request pkce_required state=None"),
            (&c, "response_type=code&prompt=none%20login", "redirect invalid_request prompt_none_combined state=None"),
            (&c, "response_type=code&max_age=-1", "redirect invalid_request max_age_malformed state=None"),
            (&c, "response_type=code&request=x", "redirect request_not_supported request_not_supported state=None"),
            (&c, "response_type=code&response_mode=fragment", "redirect invalid_request response_mode_unsupported state=None"),
            (&c, "response_type=code&nonce=a&nonce=b", "redirect invalid_request parameter_repeated state=None"),
        ];
        for (client, q, want) in cases {
            assert_eq!(check(client, q).unwrap_err(), want, "{q}");
        }
        let ok = check(&p, &format!("response_type=code&code_challenge={CH}&code_challenge_method=S256&scope=email&extra=1&state=%20x"))
            .unwrap();
        assert_eq!(ok.scope.to_string(), "email");
        assert_eq!(ok.state.as_deref(), Some(" x"));
        let all = check(&c, "response_type=code&scope%5B%5D=*").unwrap();
        assert_eq!(all.scope.to_string(), "email openid");
    }

    #[test]
    fn clients_without_the_code_grant_are_refused() {
        let mut c = client(false, &["https://a.example/cb"]);
        c.grant_types = vec![GrantType::ClientCredentials];
        assert_eq!(
            check(&c, "response_type=code&state=s").unwrap_err(),
            "redirect unauthorized_client grant_type_not_allowed state=Some(\"s\")"
        );
    }

    #[test]
    fn required_state_policy() {
        let c = client(false, &["https://a.example/cb"]);
        let p = Params::from_urlencoded("response_type=code");
        let e = validate(&c, "https://a.example/cb".into(), false, &p, AuthorizePolicy { require_state: true }).unwrap_err();
        assert!(e.error.reason.starts_with("state_missing"));
    }

    #[test]
    fn login_and_consent_decisions() {
        let c = client(false, &["https://a.example/cb"]);
        let req = check(&c, "response_type=code&max_age=60").unwrap();
        assert!(needs_login(&req, None, false, 100));
        assert!(!needs_login(&req, Some(50), false, 100));
        assert!(needs_login(&req, Some(10), false, 100));
        assert!(!needs_login(&req, Some(10), true, 100));
        let login = check(&c, "response_type=code&prompt=login").unwrap();
        assert!(needs_login(&login, Some(99), false, 100));
        let g = Grant {
            id: uuid::Uuid::nil(),
            tenant: c.tenant,
            user_id: uuid::Uuid::nil(),
            client_id: "c1".into(),
            business_id: None,
            scope: ScopeSet::parse("openid email").unwrap(),
            created_at: 0,
        };
        assert!(!needs_consent(&c, &req, Some(&g)));
        assert!(needs_consent(&c, &req, None));
        assert!(needs_consent(&c, &check(&c, "response_type=code&prompt=consent").unwrap(), Some(&g)));
        let native = client(true, &["http://127.0.0.1/cb"]);
        let req = check(&native, &format!("response_type=code&code_challenge={CH}&code_challenge_method=S256")).unwrap();
        assert!(needs_consent(&native, &req, Some(&g)), "a public loopback client is always asked");
    }

    #[test]
    fn error_redirects_carry_state_and_iss() {
        let e = RedirectError {
            redirect_uri: "https://a.example/cb?x=1".into(),
            state: Some("a b&c".into()),
            error: OAuthError::new(ErrorCode::AccessDenied, "access_denied: the user refused"),
        };
        assert_eq!(
            error_redirect(&e, "http://127.0.0.1:8080"),
            "https://a.example/cb?x=1&error=access_denied&error_description=access_denied%3A+the+user+refused&state=a+b%26c&iss=http%3A%2F%2F127.0.0.1%3A8080"
        );
    }
}
