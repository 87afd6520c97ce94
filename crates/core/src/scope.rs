//! Scopes: parsing (space-delimited or YouCan's `scope[]` array), subset rules and the words a
//! consent page shows for each.

use crate::params::Params;
use crate::OAuthError;
use std::collections::BTreeSet;
use std::fmt;

/// A set of scope tokens, kept sorted so that order never matters (docs/security.md AZ-04).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet(BTreeSet<String>);

/// RFC 6749 §3.3: scope-token = 1*NQCHAR, at most 256 bytes here.
fn is_scope_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && crate::text::is_nqchar(s)
}

impl ScopeSet {
    /// Parses a space-delimited scope string (RFC 6749 §3.3).
    pub fn parse(s: &str) -> Result<Self, OAuthError> {
        Self::from_tokens(s.split(' ').filter(|t| !t.is_empty()))
    }

    /// Builds a set from single tokens, refusing any that is not a scope-token.
    pub fn from_tokens<'a>(tokens: impl IntoIterator<Item = &'a str>) -> Result<Self, OAuthError> {
        let mut set = BTreeSet::new();
        for t in tokens {
            if !is_scope_token(t) {
                return Err(OAuthError::invalid_scope("scope_malformed: a scope contains a character RFC 6749 §3.3 does not allow"));
            }
            set.insert(t.to_owned());
        }
        Ok(Self(set))
    }

    /// The `scope` of a request: the standard string, or YouCan's `scope[]=a&scope[]=b`
    /// array; `None` when neither was sent. Both at once is `invalid_request`.
    pub fn from_params(params: &Params) -> Result<Option<Self>, OAuthError> {
        let single = params.get("scope")?;
        let array: Vec<&str> = params.get_all("scope[]").collect();
        match (single, array.is_empty()) {
            (Some(_), false) => Err(OAuthError::invalid_request("scope_twice: send either scope or scope[], not both")),
            (Some(s), true) => Self::parse(s).map(|set| (!set.is_empty()).then_some(set)),
            (None, false) => Self::from_tokens(array.iter().flat_map(|s| s.split(' ')).filter(|t| !t.is_empty())).map(Some),
            (None, true) => Ok(None),
        }
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn is_subset(&self, other: &ScopeSet) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Resolves what a client asked for against what it is registered for.
    ///
    /// Absent: every registered scope (UltraCart sets scopes on the application profile).
    /// `*`: every registered scope (YouCan). Anything not registered: `invalid_scope`
    /// (RFC 6749 §4.1.2.1; OAuth 2.1 §10.2 "restrict the scopes each client may request").
    pub fn resolve(requested: Option<ScopeSet>, allowed: &ScopeSet) -> Result<ScopeSet, OAuthError> {
        let Some(mut requested) = requested else {
            return Ok(allowed.clone());
        };
        if requested.0.remove("*") {
            requested.0.extend(allowed.0.iter().cloned());
        }
        if let Some(extra) = requested.0.iter().find(|s| !allowed.contains(s)) {
            return Err(OAuthError::invalid_scope(format!("scope_not_allowed: the client is not registered for the scope {extra}")));
        }
        Ok(requested)
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(s)?;
            first = false;
        }
        Ok(())
    }
}

/// The sentence a consent page shows for a scope.
pub fn describe(scope: &str) -> String {
    match scope {
        "openid" => "Confirm who you are (your name, email address and businesses)".to_owned(),
        "profile" => "See your name".to_owned(),
        "email" => "See your email address".to_owned(),
        "offline_access" => "Keep access while you are not using the app".to_owned(),
        _ => describe_resource_scope(scope),
    }
}

/// `business/orders:read` reads as "Read your business's orders"; other forms are shown with
/// the scope's own name.
fn describe_resource_scope(scope: &str) -> String {
    let (resource, action) = match scope.rsplit_once(':') {
        Some((r, a)) => (r, Some(a)),
        None => (scope, None),
    };
    let (owner, thing) = match resource.split_once('/') {
        Some((o, t)) => (Some(o), t),
        None => (None, resource),
    };
    let thing = thing.replace(['_', '-', '/', '.'], " ");
    let whose = match owner {
        Some("business") => "your business's ".to_owned(),
        Some(o) => format!("{} ", o.replace(['_', '-'], " ")),
        None => "your ".to_owned(),
    };
    let verb = match action {
        Some("read") => "Read",
        Some("write") => "Change",
        Some("delete") => "Delete",
        Some("manage") | Some("admin") => "Manage",
        Some(_) | None => return format!("Use {whose}{thing} ({scope})"),
    };
    format!("{verb} {whose}{thing}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn set(s: &str) -> ScopeSet {
        ScopeSet::parse(s).unwrap()
    }

    #[test]
    fn parses_string_and_array_forms() {
        let p = Params::from_urlencoded("scope=b%20a%20%20b");
        assert_eq!(ScopeSet::from_params(&p).unwrap().unwrap().to_string(), "a b");
        let p = Params::from_urlencoded("scope%5B%5D=x&scope%5B%5D=y");
        assert_eq!(ScopeSet::from_params(&p).unwrap().unwrap().to_string(), "x y");
        let p = Params::from_urlencoded("scope=a&scope%5B%5D=y");
        assert!(ScopeSet::from_params(&p).is_err());
        assert_eq!(ScopeSet::from_params(&Params::from_urlencoded("scope=")).unwrap(), None);
        assert!(ScopeSet::parse("a \"b").is_err());
    }

    #[test]
    fn resolves_against_the_registration() {
        let allowed = set("openid email business/orders:read");
        assert_eq!(ScopeSet::resolve(None, &allowed).unwrap(), allowed);
        assert_eq!(ScopeSet::resolve(Some(set("*")), &allowed).unwrap(), allowed);
        assert_eq!(ScopeSet::resolve(Some(set("email")), &allowed).unwrap(), set("email"));
        let e = ScopeSet::resolve(Some(set("email admin")), &allowed).unwrap_err();
        assert_eq!(e.code, crate::ErrorCode::InvalidScope);
    }

    #[test]
    fn describes_scopes_in_words() {
        let got: Vec<String> =
            ["openid", "business/orders:read", "business/payments:write", "read_orders", "x:y"].iter().map(|s| describe(s)).collect();
        expect![[r#"
            [
                "Confirm who you are (your name, email address and businesses)",
                "Read your business's orders",
                "Change your business's payments",
                "Use your read orders (read_orders)",
                "Use your x (x:y)",
            ]
        "#]]
        .assert_debug_eq(&got);
    }
}
