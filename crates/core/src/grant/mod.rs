//! The grant types of the token endpoint, one module each, and the lifetimes they issue with.

pub mod authorization_code;
pub mod client_credentials;
pub mod password;
pub mod refresh_token;

use crate::scope::ScopeSet;
use serde::{Deserialize, Serialize};

/// When a code or refresh grant issues a refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshPolicy {
    /// Always (YouCan, YOC, UltraCart).
    #[default]
    Always,
    /// Only when `offline_access` was granted (Yoco; OpenID Connect Core §11).
    OfflineAccess,
}

impl RefreshPolicy {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "always" => Some(Self::Always),
            "offline_access" => Some(Self::OfflineAccess),
            _ => None,
        }
    }

    pub fn issues_refresh_token(self, scope: &ScopeSet) -> bool {
        match self {
            Self::Always => true,
            Self::OfflineAccess => scope.contains("offline_access"),
        }
    }
}

/// Token lifetimes in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    pub access_token: i64,
    /// Absolute lifetime of a refresh family, counted from the code's redemption.
    pub refresh_token: i64,
    /// A refresh token unused this long expires (RFC 9700 §4.14.2, OAuth 2.1 §4.3.1), even
    /// while its family's absolute lifetime runs.
    pub refresh_token_idle: i64,
    pub code: i64,
    pub id_token: i64,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self { access_token: 3600, refresh_token: 30 * 24 * 3600, refresh_token_idle: 14 * 24 * 3600, code: 600, id_token: 3600 }
    }
}

/// What one client changes of the server's token settings; `None` keeps the server's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTokenSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_lifetime: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_lifetime: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_idle_lifetime: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_lifetime: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token_lifetime: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_policy: Option<RefreshPolicy>,
    /// Opaque (the default) or JWT access tokens (RFC 9068).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_format: Option<AccessTokenFormat>,
}

/// The form of the access tokens a client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessTokenFormat {
    /// `lk_st_`, the claims sealed under a key only the server holds (`sealed_token`): only
    /// the server can tell what it means, and nothing is stored for it.
    #[default]
    Opaque,
    /// A signed JWT (RFC 9068) that resource servers can check with the JWKS; a user's is still
    /// stored by hash, so revocation and introspection work for it too.
    Jwt,
}

impl AccessTokenFormat {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "opaque" => Some(Self::Opaque),
            "jwt" => Some(Self::Jwt),
            _ => None,
        }
    }
}

impl ClientTokenSettings {
    /// The lifetimes in force for this client.
    pub fn lifetimes(&self, base: Lifetimes) -> Lifetimes {
        Lifetimes {
            access_token: self.access_token_lifetime.unwrap_or(base.access_token),
            refresh_token: self.refresh_token_lifetime.unwrap_or(base.refresh_token),
            refresh_token_idle: self.refresh_token_idle_lifetime.unwrap_or(base.refresh_token_idle),
            code: self.code_lifetime.unwrap_or(base.code),
            id_token: self.id_token_lifetime.unwrap_or(base.id_token),
        }
    }

    pub fn refresh_policy(&self, base: RefreshPolicy) -> RefreshPolicy {
        self.refresh_policy.unwrap_or(base)
    }

    /// These settings laid over `base`: what is set here wins.
    pub fn over(self, base: ClientTokenSettings) -> ClientTokenSettings {
        ClientTokenSettings {
            access_token_lifetime: self.access_token_lifetime.or(base.access_token_lifetime),
            refresh_token_lifetime: self.refresh_token_lifetime.or(base.refresh_token_lifetime),
            refresh_token_idle_lifetime: self.refresh_token_idle_lifetime.or(base.refresh_token_idle_lifetime),
            code_lifetime: self.code_lifetime.or(base.code_lifetime),
            id_token_lifetime: self.id_token_lifetime.or(base.id_token_lifetime),
            refresh_policy: self.refresh_policy.or(base.refresh_policy),
            access_token_format: self.access_token_format.or(base.access_token_format),
        }
    }
}

impl Lifetimes {
    /// Refuses absurd values, such as milliseconds given for seconds (docs/security.md TK-01).
    pub fn validate(&self) -> Result<(), String> {
        const TEN_YEARS: i64 = 10 * 365 * 24 * 3600;
        let check = |name: &str, v: i64, max: i64| {
            if v < 1 || v > max {
                Err(format!("{name} must be between 1 and {max} seconds, not {v}"))
            } else {
                Ok(())
            }
        };
        check("access_token lifetime", self.access_token, TEN_YEARS)?;
        check("refresh_token lifetime", self.refresh_token, TEN_YEARS)?;
        check("refresh_token idle lifetime", self.refresh_token_idle, TEN_YEARS)?;
        // OAuth 2.1 §4.1.2: a maximum code lifetime of 10 minutes is RECOMMENDED.
        check("code lifetime", self.code, 600)?;
        check("id_token lifetime", self.id_token, TEN_YEARS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_policy() {
        let with = ScopeSet::parse("openid offline_access").unwrap();
        let without = ScopeSet::parse("openid").unwrap();
        assert!(RefreshPolicy::Always.issues_refresh_token(&without));
        assert!(RefreshPolicy::OfflineAccess.issues_refresh_token(&with));
        assert!(!RefreshPolicy::OfflineAccess.issues_refresh_token(&without));
        assert_eq!(RefreshPolicy::parse("offline_access"), Some(RefreshPolicy::OfflineAccess));
        assert_eq!(RefreshPolicy::parse("never"), None);
    }

    #[test]
    fn client_settings_override_the_server() {
        let base = Lifetimes::default();
        let c = ClientTokenSettings {
            access_token_lifetime: Some(1_295_999),
            refresh_policy: Some(RefreshPolicy::OfflineAccess),
            ..Default::default()
        };
        assert_eq!(c.lifetimes(base), Lifetimes { access_token: 1_295_999, ..base });
        assert_eq!(c.refresh_policy(RefreshPolicy::Always), RefreshPolicy::OfflineAccess);
        assert_eq!(ClientTokenSettings::default().lifetimes(base), base);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, r#"{"access_token_lifetime":1295999,"refresh_policy":"offline_access"}"#);
        assert_eq!(serde_json::from_str::<ClientTokenSettings>(&json).unwrap(), c);
    }

    #[test]
    fn absurd_lifetimes_are_refused() {
        assert!(Lifetimes::default().validate().is_ok());
        assert!(Lifetimes { access_token: 1_295_999, ..Default::default() }.validate().is_ok());
        assert!(Lifetimes { access_token: 3_600_000_000, ..Default::default() }.validate().is_err());
        assert!(Lifetimes { code: 3600, ..Default::default() }.validate().is_err());
        assert!(Lifetimes { id_token: 0, ..Default::default() }.validate().is_err());
    }
}
