//! What time makes due enters the pipeline here: a timer queues a
//! housekeeping tick when an allow expired, a pause ended or a digest slot
//! passed, and an hourly loop prunes what retention no longer keeps.

use std::time::Duration;

use super::Shared;
use super::processor::due_now;
use super::translate::Internal;
use crate::store::StoreError;

/// How long acknowledged transaction IDs are remembered for replay checks.
const TXN_MEMORY: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long an event set aside is kept to look at (`gatekeeper inspect`).
const QUARANTINE_MEMORY: Duration = Duration::from_secs(30 * 24 * 3600);
/// How many events set aside are kept at most, newest first.
const QUARANTINE_KEEP: usize = 10_000;

/// Every `interval`, queues a tick if something has come due (an allow that
/// expired, a pause that ended, a digest), so the engine acts on it in order
/// with everything else. Ticks are idempotent: a tick that finds nothing due
/// (because an earlier one handled it) decides nothing.
pub async fn queue_due_ticks(shared: Shared, interval: Duration) {
    let Shared { store, clock, wake, mut shutdown, .. } = shared;
    let tick = serde_json::to_vec(&Internal::Tick).expect("tick serializes");
    loop {
        if shutdown.sleep(interval).await {
            return;
        }
        let (s, t, now) = (store.clone(), tick.clone(), clock.now_ms());
        let queued = tokio::task::spawn_blocking(move || {
            let due = due_now(s.as_ref(), now, false)?;
            if due.expired.is_empty() && due.unpause.is_empty() && due.digests.is_empty() && due.replies.is_empty() {
                return Ok(false);
            }
            s.push_internal(&t).map(|()| true)
        })
        .await;
        match queued {
            Ok(Ok(true)) => wake.notify_one(),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "housekeeping failed; will retry"),
            Err(e) => tracing::warn!(error = %e, "housekeeping task died; will retry"),
        }
    }
}

/// Forgets old transaction IDs and drops captured messages past each
/// owner's retention (or `default_retention`), once an hour.
pub async fn prune(shared: Shared, default_retention: Duration) {
    let Shared { store, clock, mut shutdown, .. } = shared;
    loop {
        let s = store.clone();
        let now = clock.now_ms();
        let txns_before = now.saturating_sub(TXN_MEMORY.as_millis() as u64);
        let default_retention = default_retention.as_millis() as u64;
        let pruned = tokio::task::spawn_blocking(move || {
            let txns = s.prune_transactions(txns_before)?;
            s.prune_quarantine(now.saturating_sub(QUARANTINE_MEMORY.as_millis() as u64), QUARANTINE_KEEP)?;
            // Wave records past their window (and memory) say nothing.
            s.prune_waves(now)?;
            let mut messages = 0;
            for owner in s.owners()? {
                let keep = owner.retention_ms.unwrap_or(default_retention);
                messages += s.prune_deferred(&owner.user_id, now.saturating_sub(keep))?;
            }
            Ok::<_, StoreError>((txns, messages))
        })
        .await;
        match pruned {
            Ok(Ok((txns, messages))) if txns + messages > 0 => {
                tracing::info!(transaction_ids = txns, captured_messages = messages, "pruned past retention")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "pruning failed; will retry"),
            _ => {}
        }
        if shutdown.sleep(Duration::from_secs(3600)).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Decision, OwnerState, StateChange};
    use crate::pipeline::clock::ManualClock;
    use crate::pipeline::shutdown;
    use crate::pipeline::translate::translate;
    use crate::store::MemoryStore;
    use crate::store::Store;
    use std::sync::Arc;
    use tokio::sync::Notify;

    /// The digest timer runs on tokio time: with the clock paused, nothing
    /// happens until it is advanced past the interval, then a tick is queued
    /// for the owner whose digest is due.
    const NOW: u64 = 1_700_000_000_000;

    #[tokio::test(start_paused = true)]
    async fn housekeeping_queues_a_tick_when_a_digest_is_due() {
        let store = Arc::new(MemoryStore::new());
        store.accept_transaction("setup", &[b"{}"], 1).unwrap();
        let item = store.inbox_batch(1).unwrap().remove(0);
        // Opted in two days ago: yesterday's 08:00 UTC slot is due.
        let owner = OwnerState::new(
            "@alice:example.org".try_into().unwrap(),
            "!c:example.org".try_into().unwrap(),
            NOW - 2 * 86_400_000,
        );
        store
            .commit(
                item.seq,
                &Decision { changes: vec![StateChange::PutOwner(owner)], effects: vec![], outcomes: vec![] },
            )
            .unwrap();
        let (trigger, shutdown) = shutdown::channel();
        let shared = Shared {
            store: store.clone(),
            engine: Arc::new(crate::engine::tests_support::config()),
            clock: Arc::new(ManualClock::at(NOW)),
            wake: Arc::new(Notify::new()),
            shutdown,
        };
        let task = tokio::spawn(queue_due_ticks(shared, Duration::from_secs(30)));
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert!(store.inbox_batch(10).unwrap().is_empty(), "nothing before the interval");
        tokio::time::sleep(Duration::from_secs(2)).await;
        for _ in 0..50 {
            if !store.inbox_batch(10).unwrap().is_empty() {
                break;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let inbox = store.inbox_batch(10).unwrap();
        assert_eq!(inbox.len(), 1);
        assert!(inbox[0].internal);
        assert_eq!(translate(&inbox[0].raw, true).unwrap(), Some(crate::engine::Input::Tick));
        trigger.fire();
        task.await.unwrap();
    }
}
