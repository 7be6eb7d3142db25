//! When the homeserver's resend is over, so that the rooms can be read
//! forward once more.
//!
//! After the start-up ping, and after a transaction Gatekeeper did not
//! accept, Synapse's recoverer sends what it held back, oldest first: at
//! once after the ping (it forces a retry), after its backoff (2 s, 4 s …)
//! after a refusal, beginning with the refused transaction. Its race (see
//! `catch_up`) strands a transaction created in the moment it finds
//! nothing more to send and marks Gatekeeper up again: an owner's command
//! sent just as Gatekeeper came back would go unanswered until the next
//! start. That moment cannot be seen from here, only guessed: no
//! transaction arrived or was being answered for [`QUIET`], or [`LONGEST`]
//! has passed (a busy server is never quiet).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// Of those, the ones answered (the rest are being stored).
    answered: AtomicU64,
    /// A transaction was refused and none accepted since: the resend
    /// begins with the next one accepted.
    refused: AtomicBool,
    /// A resend has begun; one stored permit, so that one that begins
    /// while the rooms are being read is not missed.
    began: Notify,
}

impl Resends {
    /// A transaction reached the intake: it counts as being answered until
    /// the guard is answered or dropped (a request cancelled half way).
    pub fn arrived(&self) -> InFlight<'_> {
        self.arrived.fetch_add(1, Ordering::SeqCst);
        InFlight { resends: self, answered: false }
    }

    /// The start-up ping succeeded: the homeserver resends at once.
    pub fn pinged(&self) {
        self.began.notify_one();
    }

    /// Waits for a resend to begin and then to be over. False at shutdown.
    /// Several that begin before it returns count as one.
    pub async fn over(&self, shutdown: &mut Shutdown) -> bool {
        self.over_or_after(shutdown, None).await
    }

    /// [`Resends::over`], or, if none has begun within `unless_begun`, once
    /// the homeserver is quiet anyway (one that does not support the ping).
    pub async fn over_or_after(&self, shutdown: &mut Shutdown, unless_begun: Option<Duration>) -> bool {
        let waited = async {
            match unless_begun {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.began.notified() => {}
            _ = waited => {}
            _ = shutdown.wait() => return false,
        }
        let began = Instant::now();
        loop {
            let before = self.arrived.load(Ordering::SeqCst);
            if shutdown.sleep(QUIET).await {
                return false;
            }
            // Answered first: one that arrives and is answered between the
            // two loads then counts as not yet answered, never the reverse.
            let answered = self.answered.load(Ordering::SeqCst);
            let arrived = self.arrived.load(Ordering::SeqCst);
            if (arrived == before && answered == arrived) || began.elapsed() >= LONGEST {
                return true;
            }
        }
    }
}

/// A transaction being answered (see [`Resends::arrived`]).
pub struct InFlight<'r> {
    resends: &'r Resends,
    answered: bool,
}

impl InFlight<'_> {
    /// It was answered: accepted (2xx) or not.
    pub fn answered(mut self, accepted: bool) {
        let r = self.resends;
        if accepted {
            if r.refused.swap(false, Ordering::SeqCst) {
                r.began.notify_one();
            }
        } else {
            r.refused.store(true, Ordering::SeqCst);
        }
        self.answered = true;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.answered {
            // Cancelled (the homeserver hung up) or panicked: to the
            // homeserver a failure, after which it resends.
            self.resends.refused.store(true, Ordering::SeqCst);
        }
        self.resends.answered.fetch_add(1, Ordering::SeqCst);
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
        // Nothing began: no read, however quiet.
        tokio::time::sleep(QUIET * 5).await;
        assert!(!waiting.is_finished());
        resends.pinged();
        // Transactions keep coming: not over.
        for _ in 0..10 {
            tokio::time::sleep(QUIET / 2).await;
            resends.arrived().answered(true);
        }
        assert!(!waiting.is_finished());
        // One that takes longer than the quiet to answer: not over either.
        let slow = resends.arrived();
        tokio::time::sleep(QUIET * 3).await;
        assert!(!waiting.is_finished());
        slow.answered(true);
        tokio::time::sleep(QUIET * 3).await;
        assert!(waiting.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_resend_that_never_goes_quiet_is_over_after_the_longest_wait() {
        let (_trigger, stop) = shutdown::channel();
        let resends = std::sync::Arc::new(Resends::default());
        resends.pinged();
        // Began before anyone waited: the permit is kept.
        let waiting = watch(&resends, stop);
        let began = Instant::now();
        while !waiting.is_finished() {
            tokio::time::sleep(QUIET / 4).await;
            resends.arrived().answered(true);
        }
        assert!(waiting.await.unwrap());
        assert!(began.elapsed() >= LONGEST && began.elapsed() < LONGEST + QUIET * 2, "{:?}", began.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_refusal_the_resend_begins_with_the_next_transaction_accepted() {
        let (_trigger, stop) = shutdown::channel();
        let resends = std::sync::Arc::new(Resends::default());
        let waiting = watch(&resends, stop);
        resends.arrived().answered(false);
        // The homeserver backs off before it resends: quiet, but not over.
        tokio::time::sleep(LONGEST * 2).await;
        assert!(!waiting.is_finished());
        resends.arrived().answered(false);
        resends.arrived().answered(true);
        tokio::time::sleep(QUIET * 3).await;
        assert!(waiting.await.unwrap());
        // Accepted with no refusal before: nothing begins.
        let (_trigger, stop) = shutdown::channel();
        let again = watch(&resends, stop);
        resends.arrived().answered(true);
        tokio::time::sleep(QUIET * 5).await;
        assert!(!again.is_finished());
        again.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_cancelled_half_way_counts_as_refused() {
        let (_trigger, stop) = shutdown::channel();
        let resends = std::sync::Arc::new(Resends::default());
        let waiting = watch(&resends, stop);
        drop(resends.arrived());
        tokio::time::sleep(QUIET * 5).await;
        assert!(!waiting.is_finished(), "not before the homeserver resends");
        resends.arrived().answered(true);
        tokio::time::sleep(QUIET * 3).await;
        assert!(waiting.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn with_no_ping_the_first_read_waits_only_so_long_then_for_quiet() {
        let (_trigger, mut stop) = shutdown::channel();
        let resends = Resends::default();
        let start = Instant::now();
        assert!(resends.over_or_after(&mut stop, Some(QUIET * 10)).await);
        assert!(start.elapsed() >= QUIET * 11 && start.elapsed() < QUIET * 12, "{:?}", start.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_wait_with_no_read() {
        let (trigger, stop) = shutdown::channel();
        let resends = std::sync::Arc::new(Resends::default());
        let waiting = watch(&resends, stop.clone());
        trigger.fire();
        assert!(!waiting.await.unwrap());
        resends.pinged();
        let during = watch(&resends, stop);
        assert!(!during.await.unwrap());
    }
}
