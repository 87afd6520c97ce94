//! Redirect URIs: what a client may register, and how a requested one is matched.

use crate::OAuthError;
use url::{Host, Url};

/// Checks a redirect URI at registration (docs/security.md AZ-09).
///
/// - RFC 6749 §3.1.2: an absolute URI without a fragment.
/// - RFC 9700 §2.6: `http` only for loopback (native apps, RFC 8252 §7.3).
/// - RFC 8252 §7.1 and OAuth 2.1 §2.3.1: a private-use scheme must contain a period
///   (reverse domain name), such as `com.example.app:/callback`.
pub fn validate_registration(uri: &str) -> Result<(), OAuthError> {
    let bad = |why: &str| Err(OAuthError::invalid_request(format!("invalid_redirect_uri: {uri} {why}")));
    let parsed = match Url::parse(uri) {
        Ok(u) => u,
        Err(_) => return bad("is not an absolute URI"),
    };
    if uri.contains('#') {
        return bad("must not contain a fragment");
    }
    // RFC 9700 §4.1.1: redirect URIs are compared as exact strings, so a pattern could never
    // match and must not look as if it would.
    if uri.contains('*') {
        return bad("must not contain a wildcard (*): register each address in full");
    }
    // RFC 3986 §3.2.1 deprecates a password in a URI, and RFC 3986 §7.6 notes how a user name
    // makes one host look like another (https://trusted.example@evil.example/).
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return bad("must not contain a user name or password");
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(&parsed) => Ok(()),
        "http" => bad("uses http on a host that is not loopback; use https"),
        "javascript" | "data" | "file" | "vbscript" | "blob" | "about" | "ftp" | "ws" | "wss" => bad("uses a forbidden scheme"),
        s if s.contains('.') => Ok(()),
        _ => bad("uses a private-use scheme without a period (use a reverse domain name such as com.example.app)"),
    }
}

fn is_loopback_host(u: &Url) -> bool {
    match u.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// Removes the port of an `http` loopback IP-literal URI, textually, leaving every other
/// character as it was; `None` if `uri` is not such a URI.
fn without_loopback_port(uri: &str) -> Option<String> {
    let host = ["http://127.0.0.1", "http://[::1]"].into_iter().find(|h| uri.starts_with(h))?;
    let rest = &uri[host.len()..];
    let rest = match rest.strip_prefix(':') {
        Some(after) => {
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 || digits > 5 {
                return None;
            }
            &after[digits..]
        }
        None => rest,
    };
    if !(rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')) {
        return None;
    }
    Some(format!("{host}{rest}"))
}

/// Finds the registered redirect URI a request names.
///
/// RFC 9700 §4.1.3 and OAuth 2.1 §4.1.1: simple string comparison (RFC 3986 §6.2.1), with the
/// one exception of RFC 8252 §7.3: for loopback IP literals any port is allowed.
pub fn match_registered<'a>(registered: &'a [String], requested: &str) -> Option<&'a str> {
    if let Some(exact) = registered.iter().find(|r| r.as_str() == requested) {
        return Some(exact);
    }
    let wanted = without_loopback_port(requested)?;
    registered.iter().find(|r| without_loopback_port(r).as_deref() == Some(wanted.as_str())).map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_rules() {
        let ok = [
            "https://c.example/cb",
            "https://c.example/cb?x=1",
            "http://127.0.0.1/cb",
            "http://127.0.0.1:8000/cb",
            "http://[::1]/cb",
            "http://localhost:3000/cb",
            "com.example.app:/oauth",
        ];
        for u in ok {
            assert_eq!(validate_registration(u), Ok(()), "{u}");
        }
        let bad = [
            "/cb",
            "https://c.example/cb#frag",
            "http://c.example/cb",
            "javascript:alert(1)",
            "data:text/html,x",
            "myapp:/cb",
            "not a uri",
            "https://*.c.example/cb",
            "https://c.example/*",
            "https://c.example@evil.example/cb",
            "https://user:pass@c.example/cb",
        ];
        for u in bad {
            assert!(validate_registration(u).is_err(), "{u}");
        }
    }

    #[test]
    fn matching_is_exact_except_the_loopback_port() {
        let reg = vec!["https://c.example/cb".to_owned(), "http://127.0.0.1/cb".to_owned(), "http://[::1]:9/n".to_owned()];
        assert_eq!(match_registered(&reg, "https://c.example/cb"), Some("https://c.example/cb"));
        // docs/security.md AZ-01: every near miss is refused.
        for near in [
            "https://c.example/cb/",
            "https://C.example/cb",
            "https://c.example:443/cb",
            "https://c.example/cb?x=1",
            "https://c.example/cb#f",
            "https://c.example/CB",
            "https://c.example/cb%2F",
            "https://c.example/./cb",
            "https://xn--c-example/cb",
            "http://c.example/cb",
            "http://127.0.0.1.evil.example/cb",
            "http://127.0.0.1:80x/cb",
            "http://127.0.0.1@evil.example/cb",
            "http://127.0.0.1:5000/cb/",
        ] {
            assert_eq!(match_registered(&reg, near), None, "{near}");
        }
        assert_eq!(match_registered(&reg, "http://127.0.0.1:51004/cb"), Some("http://127.0.0.1/cb"));
        assert_eq!(match_registered(&reg, "http://127.0.0.1/cb"), Some("http://127.0.0.1/cb"));
        assert_eq!(match_registered(&reg, "http://[::1]:4000/n"), Some("http://[::1]:9/n"));
    }
}
