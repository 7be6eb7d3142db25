//! From stored input to carried-out effect, the same for every connector:
//! inbox events are translated ([`translate`]), decided by the engine and
//! committed ([`processor`]), carried out in order ([`executor`]); timers
//! queue what time makes due ([`housekeeping`]). Every task reads one
//! [`clock`] and stops on one [`shutdown`] signal.

pub mod clock;
pub mod executor;
mod head;
pub mod housekeeping;
mod prefetch;
pub mod processor;
pub mod shutdown;
pub mod translate;

use std::sync::Arc;

use tokio::sync::Notify;

use crate::engine::EngineConfig;
use crate::store::Store;

pub use clock::Clock;
pub use shutdown::Shutdown;

/// What the pipeline's tasks and a connector's own tasks work on.
#[derive(Clone)]
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub engine: Arc<EngineConfig>,
    pub clock: Arc<dyn Clock>,
    /// Rung whenever the inbox or the outbox has something new.
    pub wake: Arc<Notify>,
    pub shutdown: Shutdown,
}
