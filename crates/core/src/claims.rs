//! The claims of an id_token (OpenID Connect Core §2 and §5.1) and Yoco's identity claims.

use crate::model::{SigningAlg, User};
use crate::scope::ScopeSet;
use crate::UnixTime;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: UnixTime,
    pub iat: UnixTime,
    pub auth_time: UnixTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    /// Yoco: the same as `sub`.
    pub user_id: String,
    pub user_name: String,
    pub user_email: String,
    pub default_business_id: Option<String>,
    pub business_ids: Vec<String>,
    pub authorized_business_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// Who the id_token speaks of, and for which business.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    pub user: &'a User,
    pub business_ids: &'a [Uuid],
    pub authorized_business_id: Option<Uuid>,
}

pub struct IdTokenInput<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub subject: Subject<'a>,
    pub scope: &'a ScopeSet,
    pub nonce: Option<&'a str>,
    pub auth_time: UnixTime,
    pub access_token: &'a str,
    pub alg: SigningAlg,
    pub now: UnixTime,
    pub lifetime: i64,
}

/// Builds the claims. `sub` is the user's UUID, stable for every client (Core §8, public
/// subject type). `name` and `email` follow the `profile` and `email` scopes (Core §5.4);
/// Yoco's `user_*` and business claims come with `openid`.
pub fn id_token_claims(input: IdTokenInput<'_>) -> IdTokenClaims {
    let user = input.subject.user;
    IdTokenClaims {
        iss: input.issuer.to_owned(),
        sub: user.id.to_string(),
        aud: input.client_id.to_owned(),
        exp: input.now + input.lifetime,
        iat: input.now,
        auth_time: input.auth_time,
        nonce: input.nonce.map(str::to_owned),
        at_hash: Some(crate::jose::at_hash(input.alg, input.access_token)),
        user_id: user.id.to_string(),
        user_name: user.name.clone(),
        user_email: user.email.clone(),
        default_business_id: user.default_business_id.map(|b| b.to_string()),
        business_ids: input.subject.business_ids.iter().map(Uuid::to_string).collect(),
        authorized_business_id: input.subject.authorized_business_id.map(|b| b.to_string()),
        name: input.scope.contains("profile").then(|| user.name.clone()),
        email: input.scope.contains("email").then(|| user.email.clone()),
    }
}

/// The claims of a JWT access token (RFC 9068 §2.2).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessTokenClaims {
    pub iss: String,
    pub exp: UnixTime,
    /// RFC 9068 §3: without a resource indicator, the default audience (the issuer).
    pub aud: String,
    /// The user, or the client itself for client_credentials.
    pub sub: String,
    pub client_id: String,
    pub iat: UnixTime,
    pub jti: String,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<UnixTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorized_business_id: Option<String>,
}

impl AccessTokenClaims {
    /// A client's own token (client_credentials): the subject is the client and nobody signed
    /// in. Client ids never look like user ids, which are UUIDs (RFC 9700 §4.15).
    pub fn is_clients_own(&self) -> bool {
        self.auth_time.is_none() && self.sub == self.client_id
    }
}

/// The UserInfo claims (OpenID Connect Core §5.3.2, §5.4): `sub` always; Yoco's identity and
/// business claims with `openid`; `name` with `profile`; `email` with `email`.
pub fn userinfo_claims(subject: &Subject<'_>, scope: &ScopeSet) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::{json, Value};
    let user = subject.user;
    let mut m = serde_json::Map::new();
    m.insert("sub".into(), json!(user.id.to_string()));
    if scope.contains("openid") {
        m.insert("user_id".into(), json!(user.id.to_string()));
        m.insert("user_name".into(), json!(user.name));
        m.insert("user_email".into(), json!(user.email));
        m.insert("default_business_id".into(), user.default_business_id.map_or(Value::Null, |b| json!(b.to_string())));
        m.insert("business_ids".into(), json!(subject.business_ids.iter().map(Uuid::to_string).collect::<Vec<_>>()));
        m.insert("authorized_business_id".into(), subject.authorized_business_id.map_or(Value::Null, |b| json!(b.to_string())));
    }
    if scope.contains("profile") {
        m.insert("name".into(), json!(user.name));
    }
    if scope.contains("email") {
        m.insert("email".into(), json!(user.email));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TenantId;
    use expect_test::expect;

    #[test]
    fn claims_follow_scopes() {
        let user = User {
            developer: false,
            id: Uuid::from_u128(1),
            tenant: TenantId(Uuid::nil()),
            email: "ada@example.com".into(),
            name: "Ada".into(),
            password_hash: String::new(),
            default_business_id: Some(Uuid::from_u128(2)),
            created_at: 0,
        };
        let businesses = [Uuid::from_u128(2), Uuid::from_u128(3)];
        let scope = ScopeSet::parse("openid email").unwrap();
        let c = id_token_claims(IdTokenInput {
            issuer: "http://127.0.0.1:8080",
            client_id: "c1",
            subject: Subject { user: &user, business_ids: &businesses, authorized_business_id: Some(businesses[1]) },
            scope: &scope,
            nonce: Some("n-0S6_WzA2Mj"),
            auth_time: 90,
            access_token: "lk_at_x",
            alg: SigningAlg::ES256,
            now: 100,
            lifetime: 3600,
        });
        expect![[r#"{"iss":"http://127.0.0.1:8080","sub":"00000000-0000-0000-0000-000000000001","aud":"c1","exp":3700,"iat":100,"auth_time":90,"nonce":"n-0S6_WzA2Mj","at_hash":"vKm7cCbBVy6UbcA-YZ_LZg","user_id":"00000000-0000-0000-0000-000000000001","user_name":"Ada","user_email":"ada@example.com","default_business_id":"00000000-0000-0000-0000-000000000002","business_ids":["00000000-0000-0000-0000-000000000002","00000000-0000-0000-0000-000000000003"],"authorized_business_id":"00000000-0000-0000-0000-000000000003","email":"ada@example.com"}"#]]
        .assert_eq(&serde_json::to_string(&c).unwrap());
    }
}
