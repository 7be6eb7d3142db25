//! Gatekeeper: keeps strangers' instant messages from interrupting a Matrix
//! user. See ARCHITECTURE.md for the map of this crate.

pub use gatekeeper_common::secret;
/// The pure decision core, its own crate so that the compiler keeps it free
/// of I/O.
pub use gatekeeper_engine as engine;

pub mod allocator;
pub mod app;
pub mod appservice;
pub mod client;
pub mod config;
pub mod email;
#[doc(hidden)]
pub mod fuzz_targets;
pub mod inspect;
pub mod logging;
pub mod matrix;
pub mod metrics;
pub mod pipeline;
pub mod registration;
pub mod store;
pub mod web;

#[cfg(test)]
mod tidy;
