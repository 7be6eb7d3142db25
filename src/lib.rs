//! Gatekeeper: keeps strangers' instant messages from interrupting a Matrix
//! user. See ARCHITECTURE.md for the map of this crate.

pub mod appservice;
pub mod client;
pub mod config;
pub mod email;
pub mod engine;
pub mod executor;
#[doc(hidden)]
pub mod fuzz_targets;
pub mod inspect;
pub mod logging;
pub mod metrics;
pub mod processor;
pub mod registration;
pub mod secret;
pub mod store;
pub mod translate;
pub mod web;
pub mod workers;
