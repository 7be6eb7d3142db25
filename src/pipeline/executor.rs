//! Carries out the outbox in order through a connector's [`Performer`],
//! retrying what may succeed later and setting aside what never will.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Shared;
use crate::engine::Effect;
use crate::metrics::METRICS;
use crate::store::{EffectOutcome, FollowUp};

#[derive(Debug, thiserror::Error)]
pub enum PerformError {
    /// Network trouble, 429, 5xx: worth retrying with the same request.
    #[error("temporary: {0}")]
    Transient(String),
    /// The homeserver said no for good (e.g. 403): retrying cannot help.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// A connector's way of doing one effect. Must be idempotent: an effect is
/// repeated after a crash between doing it and recording it.
/// What it learned comes back as follow-ups, to go through the engine.
pub trait Performer: Send + Sync + 'static {
    fn perform(&self, effect: &Effect) -> impl Future<Output = Result<Vec<FollowUp>, PerformError>> + Send;
}

const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Carries out one lane of the outbox (`mail_lane`: e-mail, else every
/// Matrix effect), up to what `released` says is durable, until shutdown.
pub async fn run<P: Performer>(shared: Shared, performer: Arc<P>, mail_lane: bool, mut released: watch::Receiver<u64>) {
    let Shared { store, clock, wake, mut shutdown, .. } = shared;
    loop {
        if shutdown.is_set() {
            return;
        }
        let up_to = *released.borrow_and_update();
        let s = store.clone();
        let batch = match tokio::task::spawn_blocking(move || s.outbox_batch(up_to, 100, mail_lane)).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "reading the outbox failed; will retry");
                shutdown.sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "outbox task died; will retry");
                continue;
            }
        };
        if batch.is_empty() {
            tokio::select! {
                _ = released.changed() => {}
                _ = shutdown.wait() => {}
            }
            continue;
        }
        for item in batch {
            let mut backoff = Duration::from_secs(1);
            let (outcome, follow_ups) = loop {
                let span = tracing::info_span!("action", id = item.id, kind = item.effect.kind());
                match tracing::Instrument::instrument(performer.perform(&item.effect), span).await {
                    Ok(follow_ups) => {
                        METRICS.done(&item.effect);
                        break (EffectOutcome::Done, follow_ups);
                    }
                    Err(PerformError::Permanent(reason)) => {
                        METRICS.action_failures.inc();
                        tracing::warn!(id = item.id, kind = item.effect.kind(), %reason, "effect failed for good; set aside");
                        break (EffectOutcome::Failed(reason), Vec::new());
                    }
                    Err(PerformError::Transient(reason)) => {
                        METRICS.action_retries.inc();
                        tracing::warn!(id = item.id, %reason, retry_in = ?backoff, "effect failed; will retry");
                        if shutdown.sleep(backoff).await {
                            return;
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            };
            let s = store.clone();
            let id = item.id;
            let had_follow_ups = !follow_ups.is_empty();
            // Recording must not be skipped: an unrecorded effect is done again
            // on restart (harmless, idempotent) but a lost one never would be.
            loop {
                let (s, o, f, now) = (s.clone(), outcome.clone(), follow_ups.clone(), clock.now_ms());
                match tokio::task::spawn_blocking(move || s.finish_effect(id, &o, &f, now)).await {
                    Ok(Ok(())) => {
                        if had_follow_ups {
                            wake.notify_one();
                        }
                        break;
                    }
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, id, "recording an effect failed; will retry")
                    }
                    Err(e) => tracing::error!(error = %e, id, "recording task died; will retry"),
                }
                if shutdown.sleep(Duration::from_secs(1)).await {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Decision;
    use crate::pipeline::{clock::ManualClock, shutdown};
    use crate::store::{MemoryStore, Store};
    use ruma::owned_user_id;
    use std::sync::Mutex;

    /// Fails each room's first attempt transiently, and `!no` rooms for good.
    #[derive(Default)]
    struct Flaky {
        log: Mutex<Vec<String>>,
    }

    impl Performer for Flaky {
        async fn perform(&self, effect: &Effect) -> Result<Vec<FollowUp>, PerformError> {
            let Effect::Join { room_id, .. } = effect else { unreachable!() };
            let mut log = self.log.lock().unwrap();
            let tries = log.iter().filter(|r| *r == room_id.as_str()).count();
            log.push(room_id.to_string());
            if room_id.as_str().starts_with("!no") {
                return Err(PerformError::Permanent("M_FORBIDDEN".into()));
            }
            if tries == 0 { Err(PerformError::Transient("503".into())) } else { Ok(vec![]) }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn effects_run_in_order_with_retries_and_permanent_failures_are_set_aside() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        store.accept_transaction("t", &[b"{}"], 1).unwrap();
        let join =
            |r: &str| Effect::Join { as_user: owned_user_id!("@gatekeeper:x.org"), room_id: r.try_into().unwrap() };
        let decision =
            Decision { effects: vec![join("!a:x.org"), join("!no:x.org"), join("!b:x.org")], ..Default::default() };
        store.commit(store.inbox_batch(1).unwrap()[0].seq, &decision).unwrap();
        let performer = Arc::new(Flaky::default());
        let (release_tx, release_rx) = watch::channel(store.outbox_high_water().unwrap());
        let (trigger, shutdown) = shutdown::channel();
        let shared = Shared {
            store: store.clone(),
            engine: Arc::new(crate::engine::tests_support::config()),
            clock: Arc::new(ManualClock::at(1)),
            wake: Arc::new(tokio::sync::Notify::new()),
            shutdown,
        };
        let task = tokio::spawn(run(shared, performer.clone(), false, release_rx));
        for _ in 0..100 {
            if store.stats().unwrap().outbox_pending == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        trigger.fire();
        task.await.unwrap();
        drop(release_tx);
        assert_eq!(*performer.log.lock().unwrap(), ["!a:x.org", "!a:x.org", "!no:x.org", "!b:x.org", "!b:x.org"]);
        let stats = store.stats().unwrap();
        assert_eq!((stats.effects_done, stats.effects_failed), (2, 1));
        assert_eq!(store.failed_effects(10).unwrap()[0].reason, "M_FORBIDDEN");
    }
}
