//! The tenant's scope catalogue: what each scope means in words (the consent and account
//! pages say it), and whether a person may put it on a personal access token. The CLI
//! (`latchkey scope ...`), the pages and the account API all read it through here.
//!
//! Four scopes are built in, with the sentences of `core::scope::describe`: `openid`,
//! `profile` and `email` (which personal tokens may carry, for UserInfo) and `offline_access`
//! (which they may not: a personal token is not refreshed). A stored entry of the same name
//! replaces a built-in one.

use crate::admin::{AdminError, AdminResult};
use crate::runtime::Runtime;
use latchkey_core::model::ScopeEntry;
use latchkey_core::scope::{self, ScopeSet};
use latchkey_core::text;

/// The built-in scopes and whether personal tokens may carry them.
const BUILT_IN: [(&str, bool); 4] = [("email", true), ("offline_access", false), ("openid", true), ("profile", true)];

/// The longest sentence of a scope, in characters.
const MAX_DESCRIPTION: usize = 200;

/// Every scope of the catalogue, stored and built in, by name.
pub async fn entries(rt: &Runtime) -> AdminResult<Vec<ScopeEntry>> {
    let mut all = rt.store.list_scopes(rt.tenant.id).await?;
    for (name, personal) in BUILT_IN {
        if !all.iter().any(|e| e.name == name) {
            all.push(ScopeEntry { tenant: rt.tenant.id, name: name.into(), description: scope::describe(name), personal, created_at: 0 });
        }
    }
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(all)
}

/// The sentence for `scope`: the catalogue's, or the built-in reading of its name.
pub fn describe(entries: &[ScopeEntry], name: &str) -> String {
    entries.iter().find(|e| e.name == name).map_or_else(|| scope::describe(name), |e| e.description.clone())
}

fn check_name(name: &str) -> AdminResult<String> {
    let name = name.trim();
    match ScopeSet::parse(name) {
        Ok(set) if set.iter().count() == 1 => Ok(name.to_owned()),
        _ => Err(AdminError::Invalid(format!("{name:?} is not one scope: use visible characters without spaces, quotes or backslashes"))),
    }
}

fn check_description(description: &str) -> AdminResult<String> {
    text::name(description, MAX_DESCRIPTION).ok_or_else(|| {
        AdminError::Invalid(format!("the description must have 1 to {MAX_DESCRIPTION} characters, none of them a control character"))
    })
}

/// Adds a scope to the catalogue (or replaces a built-in one).
pub async fn create(rt: &Runtime, name: &str, description: &str, personal: bool) -> AdminResult<ScopeEntry> {
    let name = check_name(name)?;
    if rt.store.list_scopes(rt.tenant.id).await?.iter().any(|e| e.name == name) {
        return Err(AdminError::Exists(format!("the scope {name}")));
    }
    let entry = ScopeEntry { tenant: rt.tenant.id, name, description: check_description(description)?, personal, created_at: rt.now() };
    rt.store.upsert_scope(&entry).await?;
    Ok(entry)
}

/// Changes a scope's sentence or whether personal tokens may carry it.
pub async fn update(rt: &Runtime, name: &str, description: Option<&str>, personal: Option<bool>) -> AdminResult<ScopeEntry> {
    let name = check_name(name)?;
    let mut entry = entries(rt).await?.into_iter().find(|e| e.name == name).ok_or_else(|| AdminError::NotFound(format!("scope {name}")))?;
    if let Some(d) = description {
        entry.description = check_description(d)?;
    }
    if let Some(p) = personal {
        entry.personal = p;
    }
    if entry.created_at == 0 {
        entry.created_at = rt.now();
    }
    rt.store.upsert_scope(&entry).await?;
    Ok(entry)
}

/// Removes a stored scope (a built-in one reads as built in again).
pub async fn delete(rt: &Runtime, name: &str) -> AdminResult<()> {
    let name = check_name(name)?;
    if rt.store.delete_scope(rt.tenant.id, &name).await? {
        Ok(())
    } else {
        Err(AdminError::NotFound(format!("scope {name} in the catalogue")))
    }
}
