//! What a person may do to their own account, and an operator to anyone's: personal access
//! tokens, the apps they authorized, their password. The account pages, the account JSON API
//! and the CLI all call these, so the three cannot disagree on a rule.

use crate::admin::{AdminError, AdminResult};
use crate::catalogue;
use crate::runtime::{new_secret, Runtime};
use latchkey_core::model::{GrantSummary, PersonalToken, User};
use latchkey_core::password;
use latchkey_core::scope::ScopeSet;
use latchkey_core::secret::{Secret, SecretHash, SecretKind};
use latchkey_core::text;
use uuid::Uuid;

/// Who is acting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// An operator with the CLI on the server: any user, any scope.
    Operator,
    /// A signed-in person, on their own account only, within the scope catalogue.
    User(Uuid),
}

/// How long a personal token lives unless asked otherwise, and at most (docs/security.md 1.L).
pub const PERSONAL_TOKEN_DEFAULT_LIFETIME: i64 = 90 * 24 * 3600;
pub const PERSONAL_TOKEN_MAX_LIFETIME: i64 = 366 * 24 * 3600;
/// The lifetimes the pages offer, in days (the last is the maximum).
pub const PERSONAL_TOKEN_LIFETIME_CHOICES: [i64; 5] = [7, 30, 90, 180, 366];
/// The longest name of a personal token, in characters.
const MAX_TOKEN_NAME: usize = 100;

/// What a person asks for when they create a personal token.
#[derive(Debug, Clone, Default)]
pub struct NewPersonalToken {
    pub name: String,
    /// Scope tokens (each may hold several, space-separated).
    pub scopes: Vec<String>,
    pub expires_in: Option<i64>,
}

fn field(field: &'static str, message: impl Into<String>) -> AdminError {
    AdminError::Field { field, message: message.into() }
}

/// Creates a personal access token for `user`; the secret is returned once. A person may
/// only choose scopes the catalogue lets personal tokens carry; an operator any scope.
pub async fn create_personal_token(rt: &Runtime, actor: Actor, user: Uuid, new: NewPersonalToken) -> AdminResult<(PersonalToken, Secret)> {
    if matches!(actor, Actor::User(u) if u != user) {
        return Err(AdminError::NotFound("user".into()));
    }
    let name = text::name(&new.name, MAX_TOKEN_NAME)
        .ok_or_else(|| field("name", format!("Give the token a name of 1 to {MAX_TOKEN_NAME} characters, without line breaks.")))?;
    let scope = ScopeSet::from_tokens(new.scopes.iter().flat_map(|s| s.split(' ')).filter(|s| !s.is_empty()))
        .map_err(|_| field("scope", "A scope contains characters that scopes cannot have."))?;
    if scope.is_empty() {
        return Err(field("scope", "Choose at least one scope."));
    }
    if let Actor::User(_) = actor {
        let catalogue = catalogue::entries(rt).await?;
        if let Some(s) = scope.iter().find(|s| !catalogue.iter().any(|e| e.personal && e.name == *s)) {
            return Err(field("scope", format!("The scope {s} cannot be given to a personal token here.")));
        }
    }
    let lifetime = new.expires_in.unwrap_or(PERSONAL_TOKEN_DEFAULT_LIFETIME);
    if !(60..=PERSONAL_TOKEN_MAX_LIFETIME).contains(&lifetime) {
        return Err(field(
            "expires_in",
            format!("The token must live between a minute and {} days.", PERSONAL_TOKEN_MAX_LIFETIME / 86_400),
        ));
    }
    let secret = new_secret(SecretKind::PersonalAccessToken, &mut rand::rngs::OsRng);
    let now = rt.now();
    let token = PersonalToken {
        id: Uuid::new_v4(),
        tenant: rt.tenant.id,
        user_id: user,
        name,
        hash: rt.hasher.hash(secret.expose()),
        scope,
        created_at: now,
        expires_at: now + lifetime,
        last_used_at: None,
        revoked_at: None,
    };
    rt.store.insert_personal_token(&token).await?;
    tracing::info!(user = %user, token = %token.id, "personal token created");
    Ok((token, secret))
}

/// A personal token that `actor` may change: a person's own (another's is "not found").
pub async fn find_personal_token(rt: &Runtime, actor: Actor, id: Uuid) -> AdminResult<PersonalToken> {
    match rt.store.find_personal_token(rt.tenant.id, id).await? {
        Some(t) if actor == Actor::Operator || actor == Actor::User(t.user_id) => Ok(t),
        _ => Err(AdminError::NotFound(format!("personal token {id}"))),
    }
}

/// A new secret for the same token record (name, scopes, expiry and audit trail stay).
pub async fn regenerate_personal_token(rt: &Runtime, actor: Actor, id: Uuid) -> AdminResult<(PersonalToken, Secret)> {
    let token = find_personal_token(rt, actor, id).await?;
    let secret = new_secret(SecretKind::PersonalAccessToken, &mut rand::rngs::OsRng);
    if rt.store.update_personal_token_secret(rt.tenant.id, id, rt.hasher.hash(secret.expose()), rt.now()).await? {
        tracing::info!(token = %id, "personal token regenerated");
        Ok((token, secret))
    } else {
        Err(AdminError::NotFound(format!("live personal token {id}")))
    }
}

pub async fn revoke_personal_token(rt: &Runtime, actor: Actor, id: Uuid) -> AdminResult<PersonalToken> {
    let token = find_personal_token(rt, actor, id).await?;
    if rt.store.revoke_personal_token(rt.tenant.id, id, rt.now()).await? {
        tracing::info!(token = %id, "personal token revoked");
        Ok(token)
    } else {
        Err(AdminError::NotFound(format!("live personal token {id}")))
    }
}

/// The apps a user has authorized.
pub async fn authorized_apps(rt: &Runtime, user: Uuid) -> AdminResult<Vec<GrantSummary>> {
    Ok(rt.store.list_user_grants(rt.tenant.id, user).await?)
}

/// Ends an app's access: the grant, and every token issued under it, at once.
pub async fn revoke_app(rt: &Runtime, actor: Actor, user: Uuid, grant: Uuid) -> AdminResult<()> {
    if matches!(actor, Actor::User(u) if u != user) || !rt.store.revoke_grant(rt.tenant.id, user, grant, rt.now()).await? {
        return Err(AdminError::NotFound("authorized application".into()));
    }
    tracing::info!(user = %user, grant = %grant, "app access revoked");
    Ok(())
}

/// Sets a user's password, and signs out their other sessions (`keep` is the session that
/// asked, if any). A person's page checks the current password first, behind the guessing
/// limits (`auth::check_password`).
pub async fn set_password(rt: &Runtime, user: &User, new: &str, confirm: &str, keep: Option<SecretHash>) -> AdminResult<()> {
    password::check_policy(new).map_err(|e| field("new_password", format!("{}{}.", e[..1].to_uppercase(), &e[1..])))?;
    if new != confirm {
        return Err(field("confirm_password", "The two new passwords are not the same."));
    }
    let pw = new.to_owned();
    let hash = tokio::task::spawn_blocking(move || password::hash(&pw, &mut rand::rngs::OsRng))
        .await
        .map_err(|e| AdminError::Invalid(format!("hashing failed: {e}")))?
        .map_err(|e| AdminError::Invalid(e.to_string()))?;
    if !rt.store.update_user_password(rt.tenant.id, user.id, &hash, keep).await? {
        return Err(AdminError::NotFound("user".into()));
    }
    tracing::info!(user = %user.id, "password changed; other sessions ended");
    Ok(())
}
