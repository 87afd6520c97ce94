//! The grant types of the token endpoint, one module each, and the lifetimes they issue with.

pub mod authorization_code;
pub mod refresh_token;

use crate::scope::ScopeSet;

/// When a code or refresh grant issues a refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
    pub code: i64,
    pub id_token: i64,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self { access_token: 3600, refresh_token: 30 * 24 * 3600, code: 600, id_token: 3600 }
    }
}

impl Lifetimes {
    /// Refuses absurd values, such as milliseconds given for seconds (SECURITY.md TK-01).
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
    fn absurd_lifetimes_are_refused() {
        assert!(Lifetimes::default().validate().is_ok());
        assert!(Lifetimes { access_token: 1_295_999, ..Default::default() }.validate().is_ok());
        assert!(Lifetimes { access_token: 3_600_000_000, ..Default::default() }.validate().is_err());
        assert!(Lifetimes { code: 3600, ..Default::default() }.validate().is_err());
        assert!(Lifetimes { id_token: 0, ..Default::default() }.validate().is_err());
    }
}
