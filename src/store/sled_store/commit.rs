//! The batch commit: a batch's decisions, its consumed inbox items and the
//! events it saw, in one sled transaction over every tree they touch.

use ruma::RoomId;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use crate::engine::policy::index_key;
use crate::engine::{Decision, Deferred, RoomState, StateChange};
use crate::store::policy_records::{
    INDEX_TAG, ListCountsV1, PolicyListRecord, RULE_TAG, RuleV1, index_entry, rule_key, rule_prefix,
};
use crate::store::records::{
    self, ContactRecord, DeferredRecord, EffectRecord, OwnerRecord, RoomRecord, SeenRecord, StrangerRecord,
    WaveRecordV, pair_key,
};
use crate::store::{Seen, StoreError, tally};

use super::SledStore;
use super::counters::{C_PROCESSED, Counts, G_INBOX, G_OUTBOX, G_OWNERS, K_OUTBOX_HIGH, bump, resize};
use super::inbox::Taker;

impl SledStore {
    /// The stored keys of each list's rules and index entries, read before
    /// a write that forgets the list (sled's transactions cannot scan).
    fn rule_keys<'r>(
        &self,
        lists: impl Iterator<Item = &'r RoomId>,
    ) -> Result<std::collections::HashMap<&'r RoomId, Vec<sled::IVec>>, StoreError> {
        let mut keys: std::collections::HashMap<&RoomId, Vec<sled::IVec>> = Default::default();
        for room in lists {
            if keys.contains_key(room) {
                continue;
            }
            let mut found = Vec::new();
            for tag in [RULE_TAG, INDEX_TAG] {
                for key in self.policy_by_room.scan_prefix(rule_prefix(tag, room.as_str(), &[])).keys() {
                    found.push(key.map_err(|e| self.failed(e))?);
                }
            }
            keys.insert(room, found);
        }
        Ok(keys)
    }

    /// The owners with a record of each of `rooms`, read before a write
    /// that may remove some (sled's transactions cannot scan).
    fn holders<'r>(
        &self,
        rooms: impl Iterator<Item = &'r RoomId>,
    ) -> Result<std::collections::HashMap<&'r RoomId, std::collections::BTreeSet<Vec<u8>>>, StoreError> {
        let mut holders = std::collections::HashMap::new();
        for room in rooms {
            if holders.contains_key(room) {
                continue;
            }
            let prefix = records::owner_prefix(room.as_str());
            let mut owners = std::collections::BTreeSet::new();
            for key in self.room_by_id_owner.scan_prefix(&prefix).keys() {
                let owner = key.map_err(|e| self.failed(e))?[prefix.len()..].to_vec();
                // A longer room ID with a NUL in it shares the prefix; user
                // IDs have no NUL, so its keys are told apart by one.
                if !owner.contains(&0) {
                    owners.insert(owner);
                }
            }
            holders.insert(room, owners);
        }
        Ok(holders)
    }

    pub(super) fn commit_batch_seen(
        &self,
        decided: &[(u64, &Decision)],
        empty: &[u64],
        seen: &[Seen],
    ) -> Result<(), StoreError> {
        let effect_ids: Vec<Vec<u64>> = decided
            .iter()
            .map(|(_, d)| d.effects.iter().map(|_| self.generate_id()).collect())
            .collect::<Result<_, _>>()?;
        // Prefix scans cannot run inside a sled transaction: collect each
        // forgotten owner's stored keys first. Keys the batch itself writes
        // are tracked inside the transaction, so an opt-out in the middle of
        // a batch forgets what came before it and keeps what comes after.
        let mut forget: std::collections::HashMap<&ruma::UserId, Vec<(u8, sled::IVec)>> = Default::default();
        for change in decided.iter().flat_map(|(_, d)| &d.changes) {
            if let StateChange::ForgetOwnerData(owner) = change
                && !forget.contains_key(&**owner)
            {
                let prefix = records::owner_prefix(owner.as_str());
                let mut keys = Vec::new();
                for (which, tree) in [
                    (0u8, &self.contact_by_owner_user),
                    (1, &self.stranger_by_owner_user),
                    (2, &self.deferred_by_owner_event),
                ] {
                    for key in tree.scan_prefix(&prefix).keys() {
                        keys.push((which, key.map_err(|e| self.failed(e))?));
                    }
                }
                forget.insert(owner, keys);
            }
        }
        let rule_keys = self.rule_keys(decided.iter().flat_map(|(_, d)| &d.changes).filter_map(|c| match c {
            StateChange::RemovePolicyList(room) => Some(&**room),
            _ => None,
        }))?;
        let holders = self.holders(
            decided
                .iter()
                .flat_map(|(_, d)| &d.changes)
                .filter_map(|c| match c {
                    StateChange::RemoveRoom { room, .. } | StateChange::PutRoom(room, _) => Some(&**room),
                    _ => None,
                })
                .chain(seen.iter().map(|s| &*s.room)),
        )?;
        (
            &self.inbox_by_seq,
            &self.outbox_by_id,
            &self.owner_by_user,
            &self.room_by_id_owner,
            &self.contact_by_owner_user,
            &self.stranger_by_owner_user,
            &self.deferred_by_owner_event,
            &self.counters,
            &self.kept_by_key,
            &self.held_by_owner_room,
            &self.wave_by_key,
            &self.seen_by_room,
            &self.inbox_done,
            &self.policy_by_room,
        )
            .transaction(
                |(
                    inbox,
                    outbox,
                    owners,
                    rooms,
                    contacts,
                    strangers,
                    deferred,
                    counters,
                    kept,
                    held,
                    waves,
                    seen_rooms,
                    inbox_done,
                    policy,
                )| {
                    let mut taker = Taker::new(inbox, inbox_done);
                    // Per-owner keys this attempt wrote (sled may retry the closure).
                    let mut written: Vec<(u8, Vec<u8>)> = Vec::new();
                    // Rule keys this attempt wrote, for a list forgotten later in it.
                    let mut rules_written: Vec<Vec<u8>> = Vec::new();
                    // Who holds each room this batch touches, as it goes.
                    let mut holders = holders.clone();
                    let mut processed = 0;
                    // The inbox items this write consumes: only their events are remembered.
                    let mut consumed = std::collections::HashSet::new();
                    for seq in empty {
                        if taker.consume(*seq)? {
                            processed += 1;
                            consumed.insert(*seq);
                        }
                    }
                    let mut high = None;
                    let mut counts = Counts::default();
                    for ((seq, decision), ids) in decided.iter().zip(&effect_ids) {
                        // A commit for an item that is gone was already made:
                        // doing it again would enqueue its effects twice.
                        if !taker.consume(*seq)? {
                            continue;
                        }
                        consumed.insert(*seq);
                        processed += 1;
                        for change in &decision.changes {
                            match change {
                                StateChange::PutOwner(o) => {
                                    if owners
                                        .insert(o.user_id.as_bytes(), records::encode(&OwnerRecord::from(o)))?
                                        .is_none()
                                    {
                                        resize(counters, G_OWNERS, 1)?;
                                    }
                                }
                                StateChange::RemoveOwner(u) => {
                                    if owners.remove(u.as_bytes())?.is_some() {
                                        resize(counters, G_OWNERS, -1)?;
                                    }
                                }
                                StateChange::PutRoom(r, st) => {
                                    let key = pair_key(r.as_str(), st.owner().as_str());
                                    let before = rooms.insert(key, records::encode(&RoomRecord::from(st)))?;
                                    let before = decoded::<RoomRecord, RoomState>("room", before)?;
                                    index_held(held, r, before.as_ref(), Some(st))?;
                                    counts.add(tally::room(before.as_ref(), Some(st)));
                                    holders.entry(r).or_default().insert(st.owner().as_bytes().to_vec());
                                }
                                StateChange::RemoveRoom { room: r, owner } => {
                                    let key = pair_key(r.as_str(), owner.as_str());
                                    let before = decoded::<RoomRecord, RoomState>("room", rooms.remove(key)?)?;
                                    let left = holders.entry(r).or_default();
                                    left.remove(owner.as_bytes());
                                    // The last record of the room gone: it is not tracked any more.
                                    if left.is_empty() {
                                        seen_rooms.remove(r.as_bytes())?;
                                    }
                                    index_held(held, r, before.as_ref(), None)?;
                                    counts.add(tally::room(before.as_ref(), None));
                                }
                                StateChange::PutContact { owner, subject, contact } => {
                                    let key = pair_key(owner.as_str(), &subject.to_string());
                                    contacts.insert(key.as_slice(), records::encode(&ContactRecord::from(contact)))?;
                                    written.push((0, key));
                                }
                                StateChange::RemoveContact { owner, subject } => {
                                    contacts.remove(pair_key(owner.as_str(), &subject.to_string()))?;
                                }
                                StateChange::PutStranger { owner, user, state } => {
                                    let key = pair_key(owner.as_str(), user.as_str());
                                    strangers.insert(key.as_slice(), records::encode(&StrangerRecord::from(state)))?;
                                    written.push((1, key));
                                }
                                StateChange::PutDeferred(d) => {
                                    let key = pair_key(d.owner.as_str(), d.event_id.as_str());
                                    let before =
                                        deferred.insert(key.as_slice(), records::encode(&DeferredRecord::from(d)))?;
                                    let before = decoded::<DeferredRecord, Deferred>("deferred", before)?;
                                    counts.add(tally::message(before.as_ref(), Some(d)));
                                    written.push((2, key));
                                }
                                StateChange::RemoveDeferred { owner, event_id } => {
                                    let before = deferred.remove(pair_key(owner.as_str(), event_id.as_str()))?;
                                    let before = decoded::<DeferredRecord, Deferred>("deferred", before)?;
                                    counts.add(tally::message(before.as_ref(), None));
                                }
                                StateChange::ForgetOwnerData(owner) => {
                                    let prefix = records::owner_prefix(owner.as_str());
                                    let stored = forget.get(&**owner).into_iter().flatten().map(|(w, k)| (*w, &k[..]));
                                    let in_batch = written
                                        .iter()
                                        .filter(|(_, k)| k.starts_with(&prefix))
                                        .map(|(w, k)| (*w, &k[..]));
                                    for (which, key) in stored.chain(in_batch) {
                                        match which {
                                            0 => {
                                                contacts.remove(key)?;
                                            }
                                            1 => {
                                                strangers.remove(key)?;
                                            }
                                            _ => {
                                                let before = decoded::<DeferredRecord, Deferred>(
                                                    "deferred",
                                                    deferred.remove(key)?,
                                                )?;
                                                counts.add(tally::message(before.as_ref(), None));
                                            }
                                        };
                                    }
                                    written.retain(|(_, k)| !k.starts_with(&prefix));
                                }
                                StateChange::PutWave(key, record) => {
                                    waves
                                        .insert(records::wave_key(key), records::encode(&WaveRecordV::from(record)))?;
                                }
                                StateChange::PutPolicyList(list) => {
                                    let room = list.room_id.as_str();
                                    // The followers only when they (or the name) changed:
                                    // every rule event changes the counts alone.
                                    let header = records::encode(&PolicyListRecord::header(list));
                                    let key = pair_key("l", room);
                                    if policy.get(&key)?.is_none_or(|stored| *stored != *header) {
                                        policy.insert(key, header)?;
                                    }
                                    policy.insert(pair_key("c", room), records::encode(&ListCountsV1::from(list)))?;
                                    if list.operator {
                                        policy.insert(pair_key("o", room), &[][..])?;
                                    } else {
                                        policy.remove(pair_key("o", room))?;
                                    }
                                }
                                StateChange::PutPolicyRule { list, slot, rule } => {
                                    let room = list.as_str();
                                    let key = rule_key(room, slot);
                                    if let Some(old) = policy.get(&key)? {
                                        let old: crate::engine::policy::PolicyRule =
                                            records::decode::<RuleV1>("policy rule", &old)
                                                .map_err(ConflictableTransactionError::Abort)?
                                                .into();
                                        policy.remove(index_entry(room, &index_key(&old), slot))?;
                                    }
                                    match rule {
                                        Some(rule) => {
                                            policy.insert(key.as_slice(), records::encode(&RuleV1::from(rule)))?;
                                            let entry = index_entry(room, &index_key(rule), slot);
                                            policy.insert(entry.as_slice(), &[][..])?;
                                            rules_written.push(key);
                                            rules_written.push(entry);
                                        }
                                        None => {
                                            policy.remove(key)?;
                                        }
                                    }
                                }
                                StateChange::RemovePolicyList(room) => {
                                    policy.remove(pair_key("l", room.as_str()))?;
                                    policy.remove(pair_key("c", room.as_str()))?;
                                    policy.remove(pair_key("o", room.as_str()))?;
                                    // Its rules, stored and written by this batch.
                                    let [rules, index] =
                                        [RULE_TAG, INDEX_TAG].map(|tag| rule_prefix(tag, room.as_str(), &[]));
                                    let stored = rule_keys.get(&**room).into_iter().flatten().map(|k| &k[..]);
                                    let in_batch = rules_written
                                        .iter()
                                        .filter(|k| k.starts_with(&rules) || k.starts_with(&index))
                                        .map(|k| &k[..]);
                                    for key in stored.chain(in_batch) {
                                        policy.remove(key)?;
                                    }
                                    rules_written.retain(|k| !k.starts_with(&rules) && !k.starts_with(&index));
                                }
                            }
                        }
                        for (id, effect) in ids.iter().zip(&decision.effects) {
                            outbox.insert(&id.to_be_bytes(), records::encode(&EffectRecord::V1(effect.into())))?;
                        }
                        resize(counters, G_OUTBOX, ids.len() as i64)?;
                        high = ids.last().or(high);
                    }
                    taker.finish()?;
                    counts.write(kept)?;
                    if let Some(high) = high {
                        counters.insert(K_OUTBOX_HIGH, &high.to_be_bytes())?;
                    }
                    if processed > 0 {
                        bump(counters, C_PROCESSED, processed)?;
                        resize(counters, G_INBOX, -(processed as i64))?;
                    }
                    let mut lists: std::collections::HashMap<&RoomId, Vec<ruma::OwnedEventId>> = Default::default();
                    for s in seen.iter().filter(|s| consumed.contains(&s.seq)) {
                        // A room this batch stopped tracking keeps no list.
                        if holders.get(&*s.room).is_none_or(|h| h.is_empty()) {
                            continue;
                        }
                        let list = match lists.entry(&s.room) {
                            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                            std::collections::hash_map::Entry::Vacant(v) => {
                                let stored = match seen_rooms.get(s.room.as_bytes())? {
                                    Some(b) => records::decode::<SeenRecord>("seen", &b)
                                        .map_err(ConflictableTransactionError::Abort)?
                                        .into(),
                                    None => Vec::new(),
                                };
                                v.insert(stored)
                            }
                        };
                        crate::store::remember(list, &s.event);
                    }
                    for (room, list) in &lists {
                        seen_rooms.insert(room.as_bytes(), records::encode(&SeenRecord::from(list.as_slice())))?;
                    }
                    Ok(())
                },
            )
            .map_err(|e| self.failed_tx(e))
    }
}

/// Keeps the per-owner index of held rooms in step with a room's change.
fn index_held(
    t: &TransactionalTree,
    room: &RoomId,
    before: Option<&RoomState>,
    after: Option<&RoomState>,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    let owner = |r: Option<&RoomState>| match r {
        Some(RoomState::Held(h)) => Some(pair_key(h.owner.as_str(), room.as_str())),
        _ => None,
    };
    let (before, after) = (owner(before), owner(after));
    if before != after {
        if let Some(k) = before {
            t.remove(k)?;
        }
        if let Some(k) = after {
            t.insert(k, &[])?;
        }
    }
    Ok(())
}

/// A stored record read inside a transaction, for the counts it changes.
fn decoded<R: serde::de::DeserializeOwned + Into<T>, T>(
    what: &str,
    stored: Option<sled::IVec>,
) -> Result<Option<T>, ConflictableTransactionError<StoreError>> {
    match stored {
        Some(v) => Ok(Some(records::decode::<R>(what, &v).map_err(ConflictableTransactionError::Abort)?.into())),
        None => Ok(None),
    }
}
