//! One shutdown signal for every long-running task: a [`Trigger`] fires it
//! once, and each task holds a [`Shutdown`] to ask, wait or sleep on.

use std::time::Duration;

use tokio::sync::watch;

/// Fires the shutdown for every [`Shutdown`] made from it; clones fire the
/// same signal.
#[derive(Debug, Clone)]
pub struct Trigger(std::sync::Arc<watch::Sender<bool>>);

/// A task's view of the shutdown signal. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A trigger and the signal it fires.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(std::sync::Arc::new(tx)), Shutdown(rx))
}

impl Trigger {
    pub fn fire(&self) {
        self.0.send_replace(true);
    }

    /// Another handle on the same signal.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    /// Whether the shutdown has fired, or can no longer fire because every
    /// trigger is gone (a task then stops rather than spin).
    pub fn is_set(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Resolves once the shutdown fires (at once if it has). Also resolves
    /// when every trigger is gone, since nothing could fire it any more.
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Sleeps for `d` or until the shutdown fires; `true` when it has fired,
    /// so loops read `if shutdown.sleep(backoff).await { return; }`.
    pub async fn sleep(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.wait() => {}
        }
        self.is_set()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_sleep_ends_early_when_the_shutdown_fires() {
        let (trigger, mut shutdown) = channel();
        assert!(!shutdown.sleep(Duration::from_secs(1)).await, "a plain sleep runs out");
        let mut other = trigger.subscribe();
        let sleeper = tokio::spawn(async move { other.sleep(Duration::from_secs(3600)).await });
        tokio::task::yield_now().await;
        trigger.fire();
        assert!(sleeper.await.unwrap(), "the sleep saw the shutdown");
        assert!(shutdown.is_set());
        shutdown.wait().await;
    }

    /// With every trigger gone nothing can fire it: loops stop instead of
    /// spinning on a sleep that returns at once.
    #[tokio::test(start_paused = true)]
    async fn a_signal_nobody_can_fire_counts_as_fired() {
        let (trigger, mut shutdown) = channel();
        drop(trigger);
        assert!(shutdown.is_set());
        assert!(shutdown.sleep(Duration::from_secs(3600)).await);
    }
}
