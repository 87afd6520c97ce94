//! The HTTP face of Latchkey: the axum router, handlers, pages, configuration and startup.
//!
//! Architecture invariant: only this crate knows HTTP. Handlers parse, call the core's rules
//! and the store, and map errors in one place (`error.rs`).

pub mod account;
pub mod admin;
mod auth;
mod bearer;
mod browser;
pub mod catalogue;
pub mod config;
pub mod developer;
pub mod error;
mod handlers;
pub mod housekeeping;
pub mod keys;
pub mod memory;
pub mod pages;
pub mod passwords;
pub mod runtime;
pub mod serve;
pub mod startup;
pub mod state;
mod tenants;
pub mod web;

#[cfg(test)]
mod proptests;

pub use config::{Config, Settings};
pub use runtime::{Clock, Runtime, SystemClock};
pub use startup::{Application, BuildOptions};
