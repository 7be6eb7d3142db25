//! The one client-server API client both connectors use: ruma's typed
//! requests, sent with the as_token and identity assertion (appservice) or
//! with the owner's own token (client mode), and the effects every
//! connector carries out the same way through it.

pub mod client;
pub mod effects;
pub mod native;
pub mod policy;

pub use client::{ClientError, HsClient};
pub use effects::classify;
