//! One module per endpoint family; each handler is named for what it serves.

pub(crate) mod account_api;
pub(crate) mod account_pages;
pub(crate) mod authorize;
pub(crate) mod consent;
pub(crate) mod developer_api;
pub(crate) mod developer_pages;
pub(crate) mod discovery;
pub(crate) mod introspect;
pub(crate) mod login;
pub(crate) mod misc;
pub(crate) mod revoke;
pub(crate) mod token;
pub(crate) mod userinfo;
