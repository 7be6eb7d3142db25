//! An in-memory store with the same behaviour as the sled one, for fast
//! tests of everything above the store.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use ruma::{OwnedRoomId, OwnedUserId, RoomId};

use super::*;
use crate::engine::{Decision, RoomState, StateChange};

#[derive(Default)]
struct Inner {
    txns: HashMap<String, ([u8; 32], u64)>,
    inbox: BTreeMap<u64, Vec<u8>>,
    outbox: BTreeMap<u64, Effect>,
    owners: BTreeMap<OwnedUserId, OwnerState>,
    rooms: BTreeMap<OwnedRoomId, RoomState>,
    quarantine: BTreeMap<u64, QuarantinedEvent>,
    failed: BTreeMap<u64, FailedEffect>,
    next_id: u64,
    outbox_high: u64,
    stats: Stats,
}

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for MemoryStore {
    fn accept_transaction(
        &self,
        txn_id: &str,
        events: &[&[u8]],
        now_ms: u64,
    ) -> Result<Accepted, StoreError> {
        let digest = transaction_digest(events);
        let mut s = self.lock();
        let reused = match s.txns.get(txn_id) {
            Some((seen, _)) if *seen == digest => {
                s.stats.replayed_transactions += 1;
                return Ok(Accepted::Replay);
            }
            Some(_) => true,
            None => false,
        };
        s.txns.insert(txn_id.to_owned(), (digest, now_ms));
        for raw in events {
            s.next_id += 1;
            let seq = s.next_id;
            s.inbox.insert(seq, raw.to_vec());
        }
        s.stats.transactions += 1;
        s.stats.events_received += events.len() as u64;
        Ok(if reused {
            Accepted::ReusedId {
                events: events.len(),
            }
        } else {
            Accepted::New {
                events: events.len(),
            }
        })
    }

    fn inbox_batch(&self, limit: usize) -> Result<Vec<InboxItem>, StoreError> {
        Ok(self
            .lock()
            .inbox
            .iter()
            .take(limit)
            .map(|(seq, raw)| InboxItem {
                seq: *seq,
                raw: raw.clone(),
            })
            .collect())
    }

    fn snapshot(&self, room: &RoomId, users: &[OwnedUserId]) -> Result<Snapshot, StoreError> {
        let s = self.lock();
        Ok(Snapshot {
            room: s.rooms.get(room).cloned(),
            owners: users
                .iter()
                .filter_map(|u| s.owners.get(u).map(|o| (u.clone(), o.clone())))
                .collect(),
        })
    }

    fn commit(&self, seq: u64, decision: &Decision) -> Result<(), StoreError> {
        let mut s = self.lock();
        if s.inbox.remove(&seq).is_none() {
            return Ok(());
        }
        for change in &decision.changes {
            match change {
                StateChange::PutOwner(o) => {
                    s.owners.insert(o.user_id.clone(), o.clone());
                }
                StateChange::RemoveOwner(u) => {
                    s.owners.remove(u);
                }
                StateChange::PutRoom(r, st) => {
                    s.rooms.insert(r.clone(), st.clone());
                }
                StateChange::RemoveRoom(r) => {
                    s.rooms.remove(r);
                }
            }
        }
        for effect in &decision.effects {
            s.next_id += 1;
            let id = s.next_id;
            s.outbox.insert(id, effect.clone());
            s.outbox_high = id;
        }
        s.stats.events_processed += 1;
        Ok(())
    }

    fn quarantine(&self, seq: u64, reason: &str, now_ms: u64) -> Result<(), StoreError> {
        let mut s = self.lock();
        if let Some(raw) = s.inbox.remove(&seq) {
            let raw = String::from_utf8_lossy(&raw).into_owned();
            s.quarantine.insert(
                seq,
                QuarantinedEvent {
                    seq,
                    at_ms: now_ms,
                    reason: reason.to_owned(),
                    raw,
                },
            );
            s.stats.events_quarantined += 1;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn outbox_batch(&self, up_to: u64, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        Ok(self
            .lock()
            .outbox
            .range(..=up_to)
            .take(limit)
            .map(|(id, e)| OutboxItem {
                id: *id,
                effect: e.clone(),
            })
            .collect())
    }

    fn outbox_high_water(&self) -> Result<u64, StoreError> {
        Ok(self.lock().outbox_high)
    }

    fn finish_effect(
        &self,
        id: u64,
        outcome: &EffectOutcome,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let mut s = self.lock();
        let Some(effect) = s.outbox.remove(&id) else {
            return Ok(());
        };
        match outcome {
            EffectOutcome::Done => s.stats.effects_done += 1,
            EffectOutcome::Failed(reason) => {
                let effect = super::records::effect_summary(&effect);
                s.failed.insert(
                    id,
                    FailedEffect {
                        id,
                        at_ms: now_ms,
                        reason: reason.clone(),
                        effect,
                    },
                );
                s.stats.effects_failed += 1;
            }
        }
        Ok(())
    }

    fn stats(&self) -> Result<Stats, StoreError> {
        let s = self.lock();
        Ok(Stats {
            inbox_pending: s.inbox.len() as u64,
            outbox_pending: s.outbox.len() as u64,
            owners: s.owners.len() as u64,
            ..s.stats.clone()
        })
    }

    fn quarantined(&self, limit: usize) -> Result<Vec<QuarantinedEvent>, StoreError> {
        Ok(self
            .lock()
            .quarantine
            .values()
            .take(limit)
            .cloned()
            .collect())
    }

    fn failed_effects(&self, limit: usize) -> Result<Vec<FailedEffect>, StoreError> {
        Ok(self.lock().failed.values().take(limit).cloned().collect())
    }

    fn owners(&self) -> Result<Vec<OwnerState>, StoreError> {
        Ok(self.lock().owners.values().cloned().collect())
    }

    fn prune_transactions(&self, before_ms: u64) -> Result<usize, StoreError> {
        let mut s = self.lock();
        let before = s.txns.len();
        s.txns.retain(|_, (_, at)| *at >= before_ms);
        Ok(before - s.txns.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> (MemoryStore, ()) {
        (MemoryStore::new(), ())
    }

    crate::store_conformance!(fresh);
}
