//! End-to-end tests: the real server on 127.0.0.1:0, driven over HTTP by a browser-like
//! client, by headless Chromium, and by panva's openid-client (npm, under Node; see
//! `latchkey_testkit::rp`) as the relying party.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod account;
mod authorize;
mod developer;
mod discovery;
mod edges;
mod hostile;
mod housekeeping;
mod inputs;
mod jwt;
mod keys;
mod oidc;
mod pages;
mod password;
mod races;
mod resource;
mod revoke;
mod sealed;
mod tenants;
mod token;
