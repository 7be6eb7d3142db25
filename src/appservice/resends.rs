//! When the homeserver's resend is over, so that the rooms can be read
//! forward once more.
//!
//! After the start-up ping, and after every transaction Gatekeeper did not
//! accept, Synapse's recoverer sends what it held back, oldest first. Its
//! race (see `catch_up`) strands a transaction created in the moment it
//! finds nothing more to send and marks Gatekeeper up again: an owner's
//! command sent just as Gatekeeper came back would go unanswered until the
//! next start. The end of that moment cannot be seen from here, only
//! guessed: the homeserver has sent nothing for [`QUIET`], or
//! [`LONGEST`] has passed (a busy server is never quiet).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::pipeline::Shutdown;

/// No transaction for this long: the resend is over.
pub const QUIET: Duration = Duration::from_secs(2);
/// A resend that is never quiet is taken as over after this long.
pub const LONGEST: Duration = Duration::from_secs(300);

/// What the intake and the start-up tell the read forward.
#[derive(Default)]
pub struct Resends {
    /// Transactions that reached the intake, whatever their answer.
    arrived: AtomicU64,
    /// A resend has started; one stored permit, so that a resend that
    /// starts while the rooms are being read is not missed.
    started: Notify,
}

impl Resends {
    /// A transaction reached the intake.
    pub fn arrived(&self) {
        self.arrived.fetch_add(1, Ordering::Relaxed);
    }

    /// The homeserver will resend what it holds: the ping succeeded, or a
    /// transaction was not accepted. Several before the next
    /// [`Resends::over`] count as one.
    pub fn started(&self) {
        self.started.notify_one();
    }

    /// Waits for a resend to start and then to be over. False at shutdown.
    pub async fn over(&self, shutdown: &mut Shutdown) -> bool {
        tokio::select! {
            _ = self.started.notified() => {}
            _ = shutdown.wait() => return false,
        }
        let began = Instant::now();
        loop {
            let before = self.arrived.load(Ordering::Relaxed);
            if shutdown.sleep(QUIET).await {
                return false;
            }
            if self.arrived.load(Ordering::Relaxed) == before || began.elapsed() >= LONGEST {
                return true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::shutdown;

    /// `over` as a task, and whether it has returned (and with what).
    fn watch(resends: &std::sync::Arc<Resends>, stop: Shutdown) -> tokio::task::JoinHandle<bool> {
        let (r, mut stop) = (std::sync::Arc::clone(resends), stop);
        tokio::spawn(async move { r.over(&mut stop).await })
    }

    #[tokio::test(start_paused = true)]
    async fn a_resend_is_over_once_nothing_arrived_for_a_while() {
        let (_trigger, stop) = shutdown::channel();
        let resends = std::sync::Arc::new(Resends::default());
        let waiting = watch(&resends, stop);
        // Nothing started: no read, however quiet.
        tokio::time::sleep(QUIET * 5).await;
        assert!(!waiting.is_finished());
        resends.started();
        // Transactions keep coming: not over.
        for _ in 0..10 {
            tokio::time::sleep(QUIET / 2).await;
            resends.arrived();
        }
        assert!(!waiting.is_finished());
        tokio::time::sleep(QUIET * 3).await;
        assert!(waiting.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_resend_that_never_goes_quiet_is_over_after_the_longest_wait() {
        let (_trigger, stop) = shutdown::channel();
        let resends = std::sync::Arc::new(Resends::default());
        resends.started();
        // Started before anyone waited: the permit is kept.
        let waiting = watch(&resends, stop);
        let began = Instant::now();
        while !waiting.is_finished() {
            tokio::time::sleep(QUIET / 4).await;
            resends.arrived();
        }
        assert!(waiting.await.unwrap());
        assert!(began.elapsed() >= LONGEST && began.elapsed() < LONGEST + QUIET * 2, "{:?}", began.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_wait_with_no_read() {
        let (trigger, stop) = shutdown::channel();
        let resends = std::sync::Arc::new(Resends::default());
        let waiting = watch(&resends, stop.clone());
        trigger.fire();
        assert!(!waiting.await.unwrap());
        resends.started();
        let during = watch(&resends, stop);
        assert!(!during.await.unwrap());
    }
}
