//! An in-memory store with the same behaviour as the sled one, for fast
//! tests of everything above the store.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use ruma::{EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};

use super::*;
use crate::engine::{
    Contact, Decision, Deferred, Due, Kept, RoomState, StateChange, StrangerState, Subject, WaveKey, WaveRecord,
};

#[derive(Default)]
struct Inner {
    txns: HashMap<String, ([u8; 32], u64)>,
    inbox: BTreeMap<u64, (bool, Vec<u8>)>,
    outbox: BTreeMap<u64, Effect>,
    owners: BTreeMap<OwnedUserId, OwnerState>,
    /// One record per room and owner (`RoomState::owner`).
    rooms: BTreeMap<(OwnedRoomId, OwnedUserId), RoomState>,
    contacts: BTreeMap<(OwnedUserId, Subject), Contact>,
    strangers: BTreeMap<(OwnedUserId, OwnedUserId), StrangerState>,
    deferred: BTreeMap<(OwnedUserId, OwnedEventId), Deferred>,
    waves: BTreeMap<WaveKey, WaveRecord>,
    policy: BTreeMap<OwnedRoomId, crate::engine::policy::PolicyList>,
    /// Each list's rules by slot, apart from its record as sled keeps them:
    /// a rule written before its list's record is kept all the same.
    policy_rules: BTreeMap<OwnedRoomId, BTreeMap<crate::engine::policy::Slot, crate::engine::policy::PolicyRule>>,
    quarantine: BTreeMap<u64, QuarantinedEvent>,
    used_links: HashMap<String, u64>,
    failed: BTreeMap<u64, FailedEffect>,
    next_id: u64,
    outbox_high: u64,
    sync_position: Option<String>,
    highest_txn: Option<u64>,
    connector: BTreeMap<String, Vec<u8>>,
    seen: BTreeMap<OwnedRoomId, Vec<OwnedEventId>>,
    stats: Stats,
}

impl Inner {
    fn commit_one(&mut self, seq: u64, decision: &Decision) {
        if self.inbox.remove(&seq).is_none() {
            return;
        }
        for change in &decision.changes {
            match change.clone() {
                StateChange::PutOwner(o) => {
                    self.owners.insert(o.user_id.clone(), o);
                }
                StateChange::RemoveOwner(u) => {
                    self.owners.remove(&u);
                }
                StateChange::PutRoom(r, st) => {
                    self.rooms.insert((r, st.owner().clone()), st);
                }
                StateChange::RemoveRoom { room, owner } => {
                    self.rooms.remove(&(room.clone(), owner));
                    if !self.rooms.keys().any(|(r, _)| *r == room) {
                        self.seen.remove(&room);
                    }
                }
                StateChange::PutContact { owner, subject, contact } => {
                    self.contacts.insert((owner, subject), contact);
                }
                StateChange::RemoveContact { owner, subject } => {
                    self.contacts.remove(&(owner, subject));
                }
                StateChange::PutStranger { owner, user, state } => {
                    self.strangers.insert((owner, user), state);
                }
                StateChange::PutDeferred(d) => {
                    self.deferred.insert((d.owner.clone(), d.event_id.clone()), d);
                }
                StateChange::RemoveDeferred { owner, event_id } => {
                    self.deferred.remove(&(owner, event_id));
                }
                StateChange::ForgetOwnerData(owner) => {
                    self.contacts.retain(|(o, _), _| *o != owner);
                    self.strangers.retain(|(o, _), _| *o != owner);
                    self.deferred.retain(|(o, _), _| *o != owner);
                }
                StateChange::PutWave(key, record) => {
                    self.waves.insert(key, record);
                }
                StateChange::PutPolicyList(list) => {
                    let record = crate::engine::policy::PolicyList { rules: Default::default(), ..list };
                    self.policy.insert(record.room_id.clone(), record);
                }
                StateChange::PutPolicyRule { list, slot, rule } => {
                    let rules = self.policy_rules.entry(list).or_default();
                    match rule {
                        Some(r) => rules.insert(slot, r),
                        None => rules.remove(&slot),
                    };
                }
                StateChange::RemovePolicyList(room) => {
                    self.policy.remove(&room);
                    self.policy_rules.remove(&room);
                }
            }
        }
        for effect in &decision.effects {
            self.next_id += 1;
            let id = self.next_id;
            self.outbox.insert(id, effect.clone());
            self.outbox_high = id;
        }
        self.stats.events_processed += 1;
    }

    fn push_inbox(&mut self, internal: bool, raw: &[u8]) {
        self.next_id += 1;
        let seq = self.next_id;
        self.inbox.insert(seq, (internal, raw.to_vec()));
    }
}

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    failing: std::sync::atomic::AtomicBool,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes intake fail as a full disk would, to test what callers do then.
    pub fn fail_writes(&self, failing: bool) {
        self.failing.store(failing, std::sync::atomic::Ordering::SeqCst);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Lookups for Inner {
    fn rooms(&self, room: &RoomId) -> Result<Vec<RoomState>, StoreError> {
        Ok(self.rooms.iter().filter(|((r, _), _)| r == room).map(|(_, st)| st.clone()).collect())
    }
    fn owner(&self, user: &UserId) -> Result<Option<OwnerState>, StoreError> {
        Ok(self.owners.get(user).cloned())
    }
    fn contact(&self, owner: &UserId, subject: &Subject) -> Result<Option<Contact>, StoreError> {
        Ok(self.contacts.get(&(owner.to_owned(), subject.clone())).cloned())
    }
    fn stranger(&self, owner: &UserId, user: &UserId) -> Result<Option<StrangerState>, StoreError> {
        Ok(self.strangers.get(&(owner.to_owned(), user.to_owned())).cloned())
    }
    fn deferred(&self, owner: &UserId, event: &EventId) -> Result<Option<Deferred>, StoreError> {
        Ok(self.deferred.get(&(owner.to_owned(), event.to_owned())).cloned())
    }
    fn wave(&self, key: &WaveKey) -> Result<Option<WaveRecord>, StoreError> {
        Ok(self.waves.get(key).cloned())
    }
    /// Counted by looking: the memory store is the reference the kept
    /// counts of the real store are tested against.
    fn kept(&self, owner: &UserId, with: Option<&UserId>) -> Result<Kept, StoreError> {
        let held_rooms = self
            .rooms
            .values()
            .filter(|r| matches!(r, RoomState::Held(h) if h.owner == owner && with.is_none_or(|w| h.inviter == w)))
            .count() as u64;
        let messages =
            self.deferred.values().filter(|d| d.owner == owner && with.is_none_or(|w| d.sender == w)).count() as u64;
        Ok(Kept { held_rooms, messages })
    }
    fn seen_events(&self, room: &RoomId) -> Result<Vec<OwnedEventId>, StoreError> {
        Ok(self.seen.get(room).cloned().unwrap_or_default())
    }
    fn policy_list(&self, room: &RoomId) -> Result<Option<crate::engine::policy::PolicyList>, StoreError> {
        Ok(self.policy.get(room).map(|l| crate::engine::policy::PolicyList { rules: Default::default(), ..l.clone() }))
    }
    fn policy_rules(
        &self,
        room: &RoomId,
        read: &crate::engine::policy::RulesRead,
    ) -> Result<Vec<(crate::engine::policy::Slot, crate::engine::policy::PolicyRule)>, StoreError> {
        let rules = self.policy_rules.get(room).into_iter().flatten();
        Ok(rules
            .filter(|(slot, rule)| super::reads_rule(read, slot, rule))
            .map(|(s, r)| (s.clone(), r.clone()))
            .collect())
    }
    fn operator_lists(&self) -> Result<Vec<OwnedRoomId>, StoreError> {
        Ok(self.policy.values().filter(|l| l.operator).map(|l| l.room_id.clone()).collect())
    }
}

impl Lookups for MemoryStore {
    fn rooms(&self, room: &RoomId) -> Result<Vec<RoomState>, StoreError> {
        self.lock().rooms(room)
    }
    fn owner(&self, user: &UserId) -> Result<Option<OwnerState>, StoreError> {
        self.lock().owner(user)
    }
    fn contact(&self, owner: &UserId, subject: &Subject) -> Result<Option<Contact>, StoreError> {
        self.lock().contact(owner, subject)
    }
    fn stranger(&self, owner: &UserId, user: &UserId) -> Result<Option<StrangerState>, StoreError> {
        self.lock().stranger(owner, user)
    }
    fn deferred(&self, owner: &UserId, event: &EventId) -> Result<Option<Deferred>, StoreError> {
        self.lock().deferred(owner, event)
    }
    fn wave(&self, key: &WaveKey) -> Result<Option<WaveRecord>, StoreError> {
        self.lock().wave(key)
    }
    fn kept(&self, owner: &UserId, with: Option<&UserId>) -> Result<Kept, StoreError> {
        self.lock().kept(owner, with)
    }
    fn seen_events(&self, room: &RoomId) -> Result<Vec<OwnedEventId>, StoreError> {
        self.lock().seen_events(room)
    }
    fn policy_list(&self, room: &RoomId) -> Result<Option<crate::engine::policy::PolicyList>, StoreError> {
        self.lock().policy_list(room)
    }
    fn policy_rules(
        &self,
        room: &RoomId,
        read: &crate::engine::policy::RulesRead,
    ) -> Result<Vec<(crate::engine::policy::Slot, crate::engine::policy::PolicyRule)>, StoreError> {
        self.lock().policy_rules(room, read)
    }
    fn operator_lists(&self) -> Result<Vec<OwnedRoomId>, StoreError> {
        self.lock().operator_lists()
    }
}

impl Store for MemoryStore {
    fn accept_transaction(&self, txn_id: &str, events: &[&[u8]], now_ms: u64) -> Result<Accepted, StoreError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Backend("No space left on device (simulated)".into()));
        }
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
            s.push_inbox(false, raw);
        }
        s.stats.transactions += 1;
        s.stats.events_received += events.len() as u64;
        if let Ok(n) = txn_id.parse::<u64>() {
            s.highest_txn = Some(s.highest_txn.map_or(n, |h| h.max(n)));
        }
        Ok(if reused { Accepted::ReusedId { events: events.len() } } else { Accepted::New { events: events.len() } })
    }

    fn highest_transaction_number(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.lock().highest_txn)
    }

    fn accept_sync(&self, since: Option<&str>, next_batch: &str, events: &[&[u8]]) -> Result<bool, StoreError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Backend("No space left on device (simulated)".into()));
        }
        let mut s = self.lock();
        if s.sync_position.as_deref() != since {
            return Ok(false);
        }
        s.sync_position = Some(next_batch.to_owned());
        for raw in events {
            s.push_inbox(false, raw);
        }
        s.stats.events_received += events.len() as u64;
        Ok(true)
    }

    fn sync_position(&self) -> Result<Option<String>, StoreError> {
        Ok(self.lock().sync_position.clone())
    }

    fn reset_sync_position(&self) -> Result<(), StoreError> {
        self.lock().sync_position = None;
        Ok(())
    }

    fn connector_value(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().connector.get(key).cloned())
    }

    fn set_connector_value(&self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        let mut s = self.lock();
        match value {
            Some(v) => s.connector.insert(key.to_owned(), v.to_vec()),
            None => s.connector.remove(key),
        };
        Ok(())
    }

    fn connector_values(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self
            .lock()
            .connector
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn inbox_batch_within(&self, limit: usize, max_bytes: usize) -> Result<Vec<InboxItem>, StoreError> {
        let mut bytes = 0;
        Ok(self
            .lock()
            .inbox
            .iter()
            .take(limit)
            .take_while(|(_, (_, raw))| {
                let more = bytes < max_bytes;
                bytes += raw.len();
                more
            })
            .map(|(seq, (internal, raw))| InboxItem { seq: *seq, internal: *internal, raw: raw.clone() })
            .collect())
    }

    // All look-ups under one lock, so that the snapshot is consistent.
    fn snapshot(
        &self,
        room: Option<&RoomId>,
        users: &[OwnedUserId],
        related: Option<&EventId>,
    ) -> Result<Snapshot, StoreError> {
        assemble_snapshot(&*self.lock(), room, users, related)
    }

    fn overview(&self, owner: &UserId) -> Result<OwnerOverview, StoreError> {
        let s = self.lock();
        Ok(OwnerOverview {
            contacts: s
                .contacts
                .iter()
                .filter(|((o, _), _)| o == owner)
                .map(|((_, u), c)| (u.clone(), c.clone()))
                .collect(),
            held: s
                .rooms
                .iter()
                .filter_map(|((r, _), st)| match st {
                    RoomState::Held(h) if h.owner == owner => Some((r.clone(), h.clone())),
                    _ => None,
                })
                .collect(),
            deferred: s
                .deferred
                .iter()
                .filter(|((o, _), d)| o == owner && d.denied_ms.is_none())
                .map(|(_, d)| d.clone())
                .collect(),
            denied: s
                .deferred
                .iter()
                .filter(|((o, _), d)| o == owner && d.denied_ms.is_some())
                .map(|(_, d)| d.clone())
                .collect(),
            strangers: s
                .strangers
                .iter()
                .filter(|((o, _), st)| o == owner && counts_something(st))
                .map(|((_, u), st)| (u.clone(), st.clone()))
                .collect(),
        })
    }

    fn commit_batch_seen(&self, decided: &[(u64, &Decision)], empty: &[u64], seen: &[Seen]) -> Result<(), StoreError> {
        let mut s = self.lock();
        let mut consumed = std::collections::HashSet::new();
        for seq in empty {
            if s.inbox.remove(seq).is_some() {
                s.stats.events_processed += 1;
                consumed.insert(*seq);
            }
        }
        for (seq, decision) in decided {
            if s.inbox.contains_key(seq) {
                consumed.insert(*seq);
            }
            s.commit_one(*seq, decision);
        }
        for e in seen.iter().filter(|e| consumed.contains(&e.seq)) {
            // A room this batch stopped tracking keeps no list.
            if s.rooms.keys().any(|(r, _)| *r == e.room) {
                super::remember(s.seen.entry(e.room.clone()).or_default(), &e.event);
            }
        }
        Ok(())
    }

    fn seen_rooms(&self) -> Result<Vec<(OwnedRoomId, Vec<OwnedEventId>)>, StoreError> {
        Ok(self.lock().seen.iter().map(|(r, l)| (r.clone(), l.clone())).collect())
    }

    fn push_follow_ups(&self, follow_ups: &[FollowUp]) -> Result<(), StoreError> {
        let mut s = self.lock();
        for f in follow_ups {
            s.push_inbox(f.internal, &f.raw);
        }
        s.stats.follow_ups += follow_ups.len() as u64;
        Ok(())
    }

    fn quarantine(&self, seq: u64, reason: &str, now_ms: u64) -> Result<(), StoreError> {
        let mut s = self.lock();
        if let Some((_, raw)) = s.inbox.remove(&seq) {
            let raw = super::quarantined_raw(&raw);
            s.quarantine.insert(seq, QuarantinedEvent { seq, at_ms: now_ms, reason: reason.to_owned(), raw });
            s.stats.events_quarantined += 1;
        }
        while s.quarantine.len() > super::QUARANTINE_KEEP {
            s.quarantine.pop_first();
        }
        Ok(())
    }

    fn prune_quarantine(&self, before_ms: u64, keep: usize) -> Result<usize, StoreError> {
        let mut s = self.lock();
        let before = s.quarantine.len();
        s.quarantine.retain(|_, q| q.at_ms >= before_ms);
        while s.quarantine.len() > keep {
            s.quarantine.pop_first();
        }
        Ok(before - s.quarantine.len())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn outbox_after(&self, after: u64, up_to: u64, limit: usize, mail: bool) -> Result<Vec<OutboxItem>, StoreError> {
        if after >= up_to {
            return Ok(Vec::new());
        }
        Ok(self
            .lock()
            .outbox
            .range(after + 1..=up_to)
            .filter(|(_, e)| e.is_mail() == mail)
            .take(limit)
            .map(|(id, e)| OutboxItem { id: *id, effect: e.clone() })
            .collect())
    }

    fn outbox_high_water(&self) -> Result<u64, StoreError> {
        Ok(self.lock().outbox_high)
    }

    fn finish_effects(
        &self,
        finished: &[(u64, EffectOutcome)],
        follow_ups: &[FollowUp],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let mut s = self.lock();
        let Some((first, _)) = finished.first() else { return Ok(()) };
        if !s.outbox.contains_key(first) {
            return Ok(());
        }
        for (id, outcome) in finished {
            let Some(effect) = s.outbox.remove(id) else { continue };
            match outcome {
                EffectOutcome::Done => s.stats.effects_done += 1,
                EffectOutcome::Failed(reason) => {
                    let effect = super::records::effect_summary(&effect);
                    s.failed.insert(*id, FailedEffect { id: *id, at_ms: now_ms, reason: reason.clone(), effect });
                    s.stats.effects_failed += 1;
                }
            }
        }
        for f in follow_ups {
            s.push_inbox(f.internal, &f.raw);
        }
        s.stats.follow_ups += follow_ups.len() as u64;
        Ok(())
    }

    fn stats(&self) -> Result<Stats, StoreError> {
        let s = self.lock();
        Ok(Stats {
            inbox_pending: s.inbox.len() as u64,
            outbox_pending: s.outbox.len() as u64,
            owners: s.owners.len() as u64,
            deferred_messages: s.deferred.len() as u64,
            ..s.stats.clone()
        })
    }

    fn quarantined(&self, limit: usize) -> Result<Vec<QuarantinedEvent>, StoreError> {
        Ok(self.lock().quarantine.values().take(limit).cloned().collect())
    }

    fn failed_effects(&self, limit: usize) -> Result<Vec<FailedEffect>, StoreError> {
        Ok(self.lock().failed.values().take(limit).cloned().collect())
    }

    fn owners(&self) -> Result<Vec<OwnerState>, StoreError> {
        Ok(self.lock().owners.values().cloned().collect())
    }

    fn policy_lists(&self) -> Result<Vec<crate::engine::policy::PolicyList>, StoreError> {
        let s = self.lock();
        Ok(s.policy
            .values()
            .map(|l| crate::engine::policy::PolicyList { rules: Default::default(), ..l.clone() })
            .collect())
    }

    fn prune_transactions(&self, before_ms: u64) -> Result<usize, StoreError> {
        let mut s = self.lock();
        let before = s.txns.len();
        s.txns.retain(|_, (_, at)| *at >= before_ms);
        Ok(before - s.txns.len())
    }

    fn due(&self, now_ms: u64) -> Result<Due, StoreError> {
        let s = self.lock();
        Ok(Due {
            expired: s
                .contacts
                .iter()
                .filter(|(_, c)| matches!(c, Contact::Allowed { until_ms: Some(u), .. } if *u <= now_ms))
                .map(|(k, _)| k.clone())
                .collect(),
            unpause: s.owners.values().filter(|o| o.paused_until_ms.is_some_and(|u| u <= now_ms)).cloned().collect(),
            digests: Vec::new(),
            replies: Vec::new(),
        })
    }

    fn push_internal(&self, raw: &[u8]) -> Result<(), StoreError> {
        self.lock().push_inbox(true, raw);
        Ok(())
    }

    fn use_link(&self, nonce: &str, expires_ms: u64, raw: &[u8]) -> Result<bool, StoreError> {
        let mut s = self.lock();
        if s.used_links.contains_key(nonce) {
            return Ok(false);
        }
        s.used_links.insert(nonce.to_owned(), expires_ms);
        s.push_inbox(true, raw);
        Ok(true)
    }

    fn prune_deferred(&self, owner: &UserId, before_ms: u64, denied_before_ms: u64) -> Result<usize, StoreError> {
        let mut s = self.lock();
        let before = s.deferred.len();
        s.deferred.retain(|(o, _), d| {
            o != owner || (d.received_ms >= before_ms && d.denied_ms.is_none_or(|t| t >= denied_before_ms))
        });
        Ok(before - s.deferred.len())
    }

    fn prune_waves(&self, now_ms: u64) -> Result<usize, StoreError> {
        let mut s = self.lock();
        let before = s.waves.len();
        s.waves.retain(|_, w| w.expires_ms > now_ms);
        Ok(before - s.waves.len())
    }

    fn wave_records(&self) -> Result<usize, StoreError> {
        Ok(self.lock().waves.len())
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
