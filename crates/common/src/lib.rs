//! What the pure engine and the shell (configuration, connectors) both
//! need, so that neither has to import the other: a secret that never shows
//! itself, and durations written for people.

pub mod duration;
pub mod secret;

pub use secret::Secret;
