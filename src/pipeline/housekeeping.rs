//! What time makes due enters the pipeline here: a timer queues a
//! housekeeping tick when an allow expired, a pause ended or a digest slot
//! passed, and an hourly loop prunes what retention no longer keeps.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ruma::OwnedUserId;

use super::Shared;
use super::processor::due_now;
use super::translate::Internal;
use crate::engine::{self, policy::PolicyList};
use crate::store::{QUARANTINE_KEEP, Store, StoreError};

/// How long acknowledged transaction IDs are remembered for replay checks.
const TXN_MEMORY: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long an event set aside is kept to look at (`gatekeeper inspect`).
const QUARANTINE_MEMORY: Duration = Duration::from_secs(30 * 24 * 3600);

/// Every `interval`, queues a tick if something has come due (an allow that
/// expired, a pause that ended), and one digest input per owner whose
/// digest is due — so that deciding it holds that one owner's overview,
/// not every due owner's at once — for the engine to act on in order with
/// everything else. Both are idempotent: one that finds nothing due
/// (because an earlier one handled it) decides nothing. An owner's digest
/// is queued once per slot while this runs (again after a restart).
pub async fn queue_due_ticks(shared: Shared, interval: Duration) {
    let Shared { store, clock, wake, mut shutdown, .. } = shared;
    let tick = serde_json::to_vec(&Internal::Tick).expect("tick serializes");
    // Owners whose work is queued, and for what: the digest slot and the
    // reply window, so that each is queued once while it stays due.
    type Queued = HashMap<OwnedUserId, (Option<u64>, Option<u64>)>;
    let queued_owners: Arc<Mutex<Queued>> = Arc::default();
    // Owners whose pending check is queued, and for which change of lists.
    let queued_checks: Arc<Mutex<HashMap<OwnedUserId, u64>>> = Arc::default();
    loop {
        if shutdown.sleep(interval).await {
            return;
        }
        let (s, t, now, queued_owners) = (store.clone(), tick.clone(), clock.now_ms(), queued_owners.clone());
        let queued_checks = queued_checks.clone();
        let queued = tokio::task::spawn_blocking(move || {
            let due = due_now(s.as_ref(), now)?;
            let mut queued = false;
            if !due.expired.is_empty() || !due.unpause.is_empty() {
                s.push_internal(&t)?;
                queued = true;
            }
            let mut work: HashMap<OwnedUserId, (Option<u64>, Option<u64>)> = HashMap::new();
            for d in &due.digests {
                work.entry(d.owner.user_id.clone()).or_default().0 = Some(d.slot_ms);
            }
            for r in &due.replies {
                work.entry(r.owner.user_id.clone()).or_default().1 = Some(r.owner.reply_window_start_ms);
            }
            let mut sent = queued_owners.lock().unwrap_or_else(|p| p.into_inner());
            sent.retain(|owner, _| work.contains_key(owner));
            for (owner, what) in work {
                if sent.get(&owner) == Some(&what) {
                    continue;
                }
                let input = Internal::OwnerDue { owner: owner.clone() };
                s.push_internal(&serde_json::to_vec(&input).expect("inputs serialize"))?;
                sent.insert(owner, what);
                queued = true;
            }
            let checks = checks_due(s.as_ref())?;
            let mut sent = queued_checks.lock().unwrap_or_else(|p| p.into_inner());
            sent.retain(|owner, _| checks.contains_key(owner));
            for (owner, changed) in checks {
                if sent.get(&owner) == Some(&changed) {
                    continue;
                }
                let input = Internal::CheckPending { owner: owner.clone() };
                s.push_internal(&serde_json::to_vec(&input).expect("inputs serialize"))?;
                sent.insert(owner, changed);
                queued = true;
            }
            Ok::<_, StoreError>(queued)
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

/// The owners whose pending strangers are due a check against their ban
/// lists (a list they follow, or the operator's, gained a rule since their
/// last check), each with the latest change: one input per owner, however
/// many rules came, and only while a list changed.
pub fn checks_due(store: &dyn Store) -> Result<HashMap<OwnedUserId, u64>, StoreError> {
    let lists = store.policy_lists()?;
    let mut due = HashMap::new();
    if lists.is_empty() {
        return Ok(due);
    }
    for owner in store.owners()? {
        let theirs: Vec<&PolicyList> =
            lists.iter().filter(|l| l.operator || owner.policy_lists.contains(&l.room_id)).collect();
        if engine::policy::check_due(&owner, &theirs) {
            let changed = theirs.iter().map(|l| l.changed_ms).max().unwrap_or_default();
            due.insert(owner.user_id, changed);
        }
    }
    Ok(due)
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
                let denied = now.saturating_sub(crate::engine::undo::KEEP_MS);
                messages += s.prune_deferred(&owner.user_id, now.saturating_sub(keep), denied)?;
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
        // The owner's own input: deciding it loads their overview only.
        let alice = "@alice:example.org".try_into().unwrap();
        assert_eq!(translate(&inbox[0].raw, true).unwrap(), Some(crate::engine::Input::OwnerDue { owner: alice }));
        // Not handled yet, still due: not queued again for the same slot.
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(store.inbox_batch(10).unwrap().len(), 1);
        trigger.fire();
        task.await.unwrap();
    }
}
