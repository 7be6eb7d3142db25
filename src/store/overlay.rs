//! Decisions made but not yet committed, layered over the store's point
//! look-ups. The processor commits a whole batch of decisions in one write;
//! until then each decision must still read what the ones before it decided
//! (a reply counted against the hourly cap, a message captured twice).
//!
//! Reads of owners, rooms, contacts and strangers are kept too: within a
//! batch the processor is the only writer of that state, and a hundred
//! messages to one owner then decode the owner's record once. Captured
//! messages are not cached, because retention pruning deletes them from
//! another task; only this batch's own writes to them are layered.
//!
//! The caches can be filled for a whole batch at once ([`Lookups`]'s batch
//! reads, which the overlay answers from its caches and asks the store
//! only what they lack): the processor asks for every room and sender of a
//! batch before deciding it, so that a store across a network is asked a
//! few times per batch instead of a few times per event. The stored kept
//! counts are cached too (the batch's own changes are layered over them):
//! retention pruning may lower a message count while the batch runs, and
//! the batch then decides on the count it read at its start, as a decision
//! already could on one read before the batch is committed; the stored
//! counts stay exact (each write counts what it replaces).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};

use ruma::{EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};

use super::tally;
use super::{Lookups, StoreError};
use crate::engine::policy::{PolicyRule, RulesRead, Slot};
use crate::engine::{
    Contact, Deferred, Kept, OwnerState, RoomState, StateChange, StrangerState, Subject, WaveKey, WaveRecord,
};

type Cache<K, V> = RefCell<HashMap<K, Option<V>>>;

pub struct Overlay<'a> {
    base: &'a dyn Lookups,
    /// Every owner's record of a room, as the batch left them.
    rooms: RefCell<HashMap<OwnedRoomId, Vec<RoomState>>>,
    owners: Cache<OwnedUserId, OwnerState>,
    contacts: Cache<(OwnedUserId, Subject), Contact>,
    strangers: Cache<(OwnedUserId, OwnedUserId), StrangerState>,
    waves: Cache<WaveKey, WaveRecord>,
    policy: Cache<OwnedRoomId, crate::engine::policy::PolicyList>,
    /// Rule slots this batch wrote, by list; a list this batch forgot
    /// (`true`) reads none of its stored rules.
    rules: HashMap<OwnedRoomId, (bool, BTreeMap<Slot, Option<PolicyRule>>)>,
    deferred: HashMap<(OwnedUserId, OwnedEventId), Option<Deferred>>,
    /// Owners whose contacts, strangers and captures this batch forgot:
    /// whatever the store still holds for them reads as gone.
    forgotten: HashSet<OwnedUserId>,
    /// How this batch changed the kept counts, over the store's.
    counted: HashMap<tally::Key, i64>,
    /// Events of tracked rooms this batch consumed, in order, and each
    /// room's list with them.
    seen: Vec<super::Seen>,
    seen_lists: Cache<OwnedRoomId, Vec<OwnedEventId>>,
    /// The stored kept counts read (without the batch's changes).
    kept: RefCell<HashMap<(OwnedUserId, Option<OwnedUserId>), Kept>>,
}

fn cached<K: Eq + std::hash::Hash, V: Clone>(
    cache: &Cache<K, V>,
    key: K,
    load: impl FnOnce() -> Result<Option<V>, StoreError>,
) -> Result<Option<V>, StoreError> {
    if let Some(v) = cache.borrow().get(&key) {
        return Ok(v.clone());
    }
    let v = load()?;
    cache.borrow_mut().insert(key, v.clone());
    Ok(v)
}

/// Reads into `cache`, in one batch read, the keys it lacks: each once,
/// and those `gone` says the batch forgot as absent, without asking.
fn fill<K: Eq + std::hash::Hash + Clone, V>(
    cache: &RefCell<HashMap<K, V>>,
    keys: &[K],
    gone: impl Fn(&K) -> Option<V>,
    load: impl FnOnce(&[K]) -> Result<Vec<V>, StoreError>,
) -> Result<(), StoreError> {
    let mut missing = Vec::new();
    {
        let mut cache = cache.borrow_mut();
        let mut asked = HashSet::new();
        for k in keys {
            if cache.contains_key(k) || !asked.insert(k) {
                continue;
            }
            match gone(k) {
                Some(v) => {
                    cache.insert(k.clone(), v);
                }
                None => missing.push(k.clone()),
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let found = load(&missing)?;
    if found.len() != missing.len() {
        return Err(StoreError::Backend(format!("a batch read answered {} of {} keys", found.len(), missing.len())));
    }
    cache.borrow_mut().extend(missing.into_iter().zip(found));
    Ok(())
}

/// The cached answers for `keys`, once [`fill`] has read them.
fn answers<K: Eq + std::hash::Hash, V: Clone>(cache: &RefCell<HashMap<K, V>>, keys: &[K]) -> Vec<V> {
    let cache = cache.borrow();
    keys.iter().map(|k| cache[k].clone()).collect()
}

impl<'a> Overlay<'a> {
    pub fn new(base: &'a dyn Lookups) -> Self {
        Self {
            base,
            rooms: Default::default(),
            owners: Default::default(),
            contacts: Default::default(),
            strangers: Default::default(),
            waves: Default::default(),
            policy: Default::default(),
            rules: HashMap::new(),
            deferred: HashMap::new(),
            forgotten: HashSet::new(),
            counted: HashMap::new(),
            seen: Vec::new(),
            seen_lists: Default::default(),
            kept: Default::default(),
        }
    }

    fn count(&mut self, deltas: Vec<(tally::Key, i64)>) {
        for (k, d) in deltas {
            *self.counted.entry(k).or_default() += d;
        }
    }

    /// Notes that inbox item `seq`, an event of a tracked room, is consumed
    /// by this batch; the store remembers it in the batch's write.
    pub fn note_seen(&mut self, seq: u64, room: &RoomId, event: &EventId) -> Result<(), StoreError> {
        if !self.seen_lists.get_mut().contains_key(room) {
            let stored = self.base.seen_events(room)?;
            self.seen_lists.get_mut().insert(room.to_owned(), Some(stored));
        }
        let list = self.seen_lists.get_mut().get_mut(room).expect("just read");
        super::remember(list.get_or_insert_with(Vec::new), event);
        self.seen.push(super::Seen { seq, room: room.to_owned(), event: event.to_owned() });
        Ok(())
    }

    /// What [`note_seen`](Self::note_seen) noted, for the batch's write.
    pub fn seen(&self) -> &[super::Seen] {
        &self.seen
    }

    /// Layers a decision's changes over what is stored. Reads what each
    /// change replaces, for the kept counts.
    pub fn apply(&mut self, changes: &[StateChange]) -> Result<(), StoreError> {
        for change in changes {
            match change {
                StateChange::PutRoom(r, st) => {
                    let before = self.rooms(r)?.into_iter().find(|b| b.owner() == st.owner());
                    self.count(tally::room(before.as_ref(), Some(st)));
                }
                StateChange::RemoveRoom { room, owner } => {
                    let before = self.rooms(room)?.into_iter().find(|b| b.owner() == owner);
                    self.count(tally::room(before.as_ref(), None));
                }
                StateChange::PutDeferred(d) => {
                    let before = self.deferred(&d.owner, &d.event_id)?;
                    self.count(tally::message(before.as_ref(), Some(d)));
                }
                StateChange::RemoveDeferred { owner, event_id } => {
                    let before = self.deferred(owner, event_id)?;
                    self.count(tally::message(before.as_ref(), None));
                }
                _ => {}
            }
            match change.clone() {
                StateChange::PutOwner(o) => {
                    self.owners.get_mut().insert(o.user_id.clone(), Some(o));
                }
                StateChange::RemoveOwner(u) => {
                    self.owners.get_mut().insert(u, None);
                }
                StateChange::PutRoom(r, st) => {
                    let mut list = self.rooms(&r)?;
                    list.retain(|b| b.owner() != st.owner());
                    list.push(st);
                    list.sort_by(|a, b| a.owner().cmp(b.owner()));
                    self.rooms.get_mut().insert(r, list);
                }
                StateChange::RemoveRoom { room, owner } => {
                    let mut list = self.rooms(&room)?;
                    list.retain(|b| *b.owner() != owner);
                    if list.is_empty() {
                        self.seen_lists.get_mut().insert(room.clone(), None);
                    }
                    self.rooms.get_mut().insert(room, list);
                }
                StateChange::PutContact { owner, subject, contact } => {
                    self.contacts.get_mut().insert((owner, subject), Some(contact));
                }
                StateChange::RemoveContact { owner, subject } => {
                    self.contacts.get_mut().insert((owner, subject), None);
                }
                StateChange::PutStranger { owner, user, state } => {
                    self.strangers.get_mut().insert((owner, user), Some(state));
                }
                StateChange::PutDeferred(d) => {
                    self.deferred.insert((d.owner.clone(), d.event_id.clone()), Some(d));
                }
                StateChange::RemoveDeferred { owner, event_id } => {
                    self.deferred.insert((owner, event_id), None);
                }
                StateChange::ForgetOwnerData(owner) => {
                    self.contacts.get_mut().retain(|(o, _), _| *o != owner);
                    self.strangers.get_mut().retain(|(o, _), _| *o != owner);
                    self.deferred.retain(|(o, _), _| *o != owner);
                    // Its message counts read as none from here on.
                    self.counted.retain(|k, _| !(k.what == tally::What::Messages && k.owner.as_ref() == Some(&owner)));
                    self.forgotten.insert(owner);
                }
                StateChange::PutWave(key, record) => {
                    self.waves.get_mut().insert(key, Some(record));
                }
                StateChange::PutPolicyList(list) => {
                    self.policy.get_mut().insert(list.room_id.clone(), Some(list));
                }
                StateChange::PutPolicyRule { list, slot, rule } => {
                    self.rules.entry(list).or_default().1.insert(slot, rule);
                }
                StateChange::RemovePolicyList(room) => {
                    self.policy.get_mut().insert(room.clone(), None);
                    self.rules.insert(room, (true, BTreeMap::new()));
                }
            }
        }
        Ok(())
    }

    /// Forgets everything layered: call once the batch is committed.
    pub fn clear(&mut self) {
        self.rooms.get_mut().clear();
        self.owners.get_mut().clear();
        self.contacts.get_mut().clear();
        self.strangers.get_mut().clear();
        self.waves.get_mut().clear();
        self.policy.get_mut().clear();
        self.rules.clear();
        self.deferred.clear();
        self.forgotten.clear();
        self.counted.clear();
        self.seen.clear();
        self.seen_lists.get_mut().clear();
        self.kept.get_mut().clear();
    }

    /// The stored counts of `owner` (with `with`), read once per batch.
    fn stored_kept(&self, owner: &UserId, with: Option<&UserId>) -> Result<Kept, StoreError> {
        let key = (owner.to_owned(), with.map(ToOwned::to_owned));
        if let Some(k) = self.kept.borrow().get(&key) {
            return Ok(*k);
        }
        let stored = self.base.kept(owner, with)?;
        self.kept.borrow_mut().insert(key, stored);
        Ok(stored)
    }
}

impl Lookups for Overlay<'_> {
    fn rooms(&self, room: &RoomId) -> Result<Vec<RoomState>, StoreError> {
        if let Some(list) = self.rooms.borrow().get(room) {
            return Ok(list.clone());
        }
        let list = self.base.rooms(room)?;
        self.rooms.borrow_mut().insert(room.to_owned(), list.clone());
        Ok(list)
    }

    fn tracks(&self, room: &RoomId) -> Result<bool, StoreError> {
        if let Some(list) = self.rooms.borrow().get(room) {
            return Ok(!list.is_empty());
        }
        Ok(!self.rooms(room)?.is_empty())
    }

    fn has_seen(&self, room: &RoomId, event: &EventId) -> Result<bool, StoreError> {
        if let Some(list) = self.seen_lists.borrow().get(room) {
            return Ok(list.iter().flatten().any(|e| e == event));
        }
        Ok(self.seen_events(room)?.iter().any(|e| e == event))
    }

    fn owner(&self, user: &UserId) -> Result<Option<OwnerState>, StoreError> {
        cached(&self.owners, user.to_owned(), || self.base.owner(user))
    }

    fn contact(&self, owner: &UserId, subject: &Subject) -> Result<Option<Contact>, StoreError> {
        cached(&self.contacts, (owner.to_owned(), subject.clone()), || {
            if self.forgotten.contains(owner) { Ok(None) } else { self.base.contact(owner, subject) }
        })
    }

    fn stranger(&self, owner: &UserId, user: &UserId) -> Result<Option<StrangerState>, StoreError> {
        cached(&self.strangers, (owner.to_owned(), user.to_owned()), || {
            if self.forgotten.contains(owner) { Ok(None) } else { self.base.stranger(owner, user) }
        })
    }

    fn deferred(&self, owner: &UserId, event: &EventId) -> Result<Option<Deferred>, StoreError> {
        if let Some(d) = self.deferred.get(&(owner.to_owned(), event.to_owned())) {
            return Ok(d.clone());
        }
        if self.forgotten.contains(owner) {
            return Ok(None);
        }
        self.base.deferred(owner, event)
    }

    fn wave(&self, key: &WaveKey) -> Result<Option<WaveRecord>, StoreError> {
        cached(&self.waves, key.clone(), || self.base.wave(key))
    }

    fn kept(&self, owner: &UserId, with: Option<&UserId>) -> Result<Kept, StoreError> {
        let stored = self.stored_kept(owner, with)?;
        // A forgotten owner's messages are gone, whatever the store says.
        let messages = if self.forgotten.contains(owner) { 0 } else { stored.messages };
        let delta = |what| {
            let key = tally::Key { what, owner: Some(owner.to_owned()), with: with.map(ToOwned::to_owned) };
            self.counted.get(&key).copied().unwrap_or(0)
        };
        Ok(Kept {
            held_rooms: tally::apply(stored.held_rooms, delta(tally::What::HeldRooms)),
            messages: tally::apply(messages, delta(tally::What::Messages)),
        })
    }

    fn seen_events(&self, room: &RoomId) -> Result<Vec<OwnedEventId>, StoreError> {
        Ok(cached(&self.seen_lists, room.to_owned(), || self.base.seen_events(room).map(Some))?.unwrap_or_default())
    }

    fn policy_list(&self, room: &RoomId) -> Result<Option<crate::engine::policy::PolicyList>, StoreError> {
        cached(&self.policy, room.to_owned(), || self.base.policy_list(room))
    }

    /// The stored rules, with the batch's own slots over them.
    fn policy_rules(&self, room: &RoomId, read: &RulesRead) -> Result<Vec<(Slot, PolicyRule)>, StoreError> {
        let Some((forgotten, written)) = self.rules.get(room) else { return self.base.policy_rules(room, read) };
        let mut rules: BTreeMap<Slot, PolicyRule> = match forgotten {
            true => BTreeMap::new(),
            false => self.base.policy_rules(room, read)?.into_iter().collect(),
        };
        for (slot, rule) in written {
            match rule {
                Some(r) if super::reads_rule(read, slot, r) => rules.insert(slot.clone(), r.clone()),
                _ => rules.remove(slot),
            };
        }
        Ok(rules.into_iter().collect())
    }

    fn reads_in_batches(&self) -> bool {
        self.base.reads_in_batches()
    }

    fn rooms_of(&self, rooms: &[OwnedRoomId]) -> Result<Vec<Vec<RoomState>>, StoreError> {
        fill(&self.rooms, rooms, |_| None, |missing| self.base.rooms_of(missing))?;
        Ok(answers(&self.rooms, rooms))
    }

    fn owners_of(&self, users: &[OwnedUserId]) -> Result<Vec<Option<OwnerState>>, StoreError> {
        fill(&self.owners, users, |_| None, |missing| self.base.owners_of(missing))?;
        Ok(answers(&self.owners, users))
    }

    fn contacts_of(&self, keys: &[(OwnedUserId, Subject)]) -> Result<Vec<Option<Contact>>, StoreError> {
        let gone = |(o, _): &(OwnedUserId, Subject)| self.forgotten.contains(o).then_some(None);
        fill(&self.contacts, keys, gone, |missing| self.base.contacts_of(missing))?;
        Ok(answers(&self.contacts, keys))
    }

    fn strangers_of(&self, keys: &[(OwnedUserId, OwnedUserId)]) -> Result<Vec<Option<StrangerState>>, StoreError> {
        let gone = |(o, _): &(OwnedUserId, OwnedUserId)| self.forgotten.contains(o).then_some(None);
        fill(&self.strangers, keys, gone, |missing| self.base.strangers_of(missing))?;
        Ok(answers(&self.strangers, keys))
    }

    fn kept_of(&self, keys: &[(OwnedUserId, Option<OwnedUserId>)]) -> Result<Vec<Kept>, StoreError> {
        fill(&self.kept, keys, |_| None, |missing| self.base.kept_of(missing))?;
        keys.iter().map(|(o, w)| self.kept(o, w.as_deref())).collect()
    }

    fn waves_of(&self, keys: &[WaveKey]) -> Result<Vec<Option<WaveRecord>>, StoreError> {
        fill(&self.waves, keys, |_| None, |missing| self.base.waves_of(missing))?;
        Ok(answers(&self.waves, keys))
    }

    fn seen_events_of(&self, rooms: &[OwnedRoomId]) -> Result<Vec<Vec<OwnedEventId>>, StoreError> {
        let load = |missing: &[OwnedRoomId]| Ok(self.base.seen_events_of(missing)?.into_iter().map(Some).collect());
        fill(&self.seen_lists, rooms, |_| None, load)?;
        Ok(answers(&self.seen_lists, rooms).into_iter().map(Option::unwrap_or_default).collect())
    }

    /// The stored ones, with the batch's own changes over them.
    fn operator_lists(&self) -> Result<Vec<OwnedRoomId>, StoreError> {
        let mut rooms: Vec<OwnedRoomId> = self.base.operator_lists()?;
        for (room, list) in self.policy.borrow().iter() {
            rooms.retain(|r| r != room);
            if list.as_ref().is_some_and(|l| l.operator) {
                rooms.push(room.clone());
            }
        }
        Ok(rooms)
    }
}

#[cfg(test)]
mod tests {
    use ruma::{owned_event_id, owned_room_id, owned_user_id};

    use super::*;
    use crate::engine::{AllowSource, Decision, Deferred};
    use crate::store::{MemoryStore, Store};

    fn capture(event: OwnedEventId, body: &str) -> Deferred {
        Deferred {
            owner: owned_user_id!("@alice:example.org"),
            room_id: owned_room_id!("!held:example.org"),
            event_id: event,
            sender: owned_user_id!("@stranger:example.org"),
            ts_ms: 1,
            received_ms: 1,
            msgtype: "m.text".into(),
            body: body.into(),
            html: None,
            media: None,
            encrypted: false,
            edited: false,
            digested: false,
            redacted_by: None,
            denied_ms: None,
        }
    }

    fn stored() -> MemoryStore {
        let store = MemoryStore::new();
        store.accept_transaction("t", &[b"{}"], 1).unwrap();
        let seq = store.inbox_batch(1).unwrap()[0].seq;
        let alice = owned_user_id!("@alice:example.org");
        let decision = Decision {
            changes: vec![
                StateChange::PutOwner(OwnerState::new(alice.clone(), owned_room_id!("!c:example.org"), 1)),
                StateChange::PutContact {
                    owner: alice.clone(),
                    subject: Subject::User(owned_user_id!("@friend:example.org")),
                    contact: Contact::Allowed { source: AllowSource::Imported, until_ms: None, since_ms: 1 },
                },
                StateChange::PutDeferred(capture(owned_event_id!("$old"), "stored")),
            ],
            effects: vec![],
            outcomes: vec![],
        };
        store.commit(seq, &decision).unwrap();
        store
    }

    #[test]
    fn reads_the_store_until_the_batch_changes_it() {
        let store = stored();
        let alice = owned_user_id!("@alice:example.org");
        let friend = Subject::User(owned_user_id!("@friend:example.org"));
        let mut overlay = Overlay::new(&store);
        assert_eq!(overlay.owner(&alice).unwrap().unwrap().replies_in_window, 0);
        assert!(overlay.contact(&alice, &friend).unwrap().is_some());
        overlay
            .apply(&[
                StateChange::PutOwner(OwnerState {
                    replies_in_window: 2,
                    ..OwnerState::new(alice.clone(), owned_room_id!("!c:example.org"), 1)
                }),
                StateChange::RemoveContact { owner: alice.clone(), subject: friend.clone() },
                StateChange::PutDeferred(capture(owned_event_id!("$new"), "new")),
            ])
            .unwrap();
        assert_eq!(overlay.owner(&alice).unwrap().unwrap().replies_in_window, 2);
        assert_eq!(overlay.contact(&alice, &friend).unwrap(), None);
        assert_eq!(overlay.deferred(&alice, &owned_event_id!("$new")).unwrap().unwrap().body, "new");
        assert_eq!(overlay.deferred(&alice, &owned_event_id!("$old")).unwrap().unwrap().body, "stored");
        // The store itself is untouched until the batch is committed.
        assert_eq!(store.owner(&alice).unwrap().unwrap().replies_in_window, 0);
        assert!(store.deferred(&alice, &owned_event_id!("$new")).unwrap().is_none());
        overlay.clear();
        assert_eq!(overlay.owner(&alice).unwrap().unwrap().replies_in_window, 0);
    }

    #[test]
    fn forgetting_an_owner_hides_what_the_store_still_holds() {
        let store = stored();
        let alice = owned_user_id!("@alice:example.org");
        let friend = Subject::User(owned_user_id!("@friend:example.org"));
        let mut overlay = Overlay::new(&store);
        assert!(overlay.contact(&alice, &friend).unwrap().is_some());
        overlay.apply(&[StateChange::ForgetOwnerData(alice.clone())]).unwrap();
        assert_eq!(overlay.contact(&alice, &friend).unwrap(), None);
        assert_eq!(overlay.deferred(&alice, &owned_event_id!("$old")).unwrap(), None);
        // What the batch writes after forgetting is seen again.
        overlay.apply(&[StateChange::PutDeferred(capture(owned_event_id!("$after"), "after"))]).unwrap();
        assert!(overlay.deferred(&alice, &owned_event_id!("$after")).unwrap().is_some());
    }

    #[test]
    fn kept_counts_include_the_batch_and_match_the_store_once_committed() {
        let store = stored();
        let alice = owned_user_id!("@alice:example.org");
        let stranger = owned_user_id!("@stranger:example.org");
        let mut overlay = Overlay::new(&store);
        assert_eq!(overlay.kept(&alice, Some(&stranger)).unwrap().messages, 1);
        let room = RoomState::Held(crate::engine::HeldRoom::new(alice.clone(), stranger.clone(), true, 1));
        let changes = vec![
            StateChange::PutDeferred(capture(owned_event_id!("$new"), "new")),
            // Seen before: replaced, not added.
            StateChange::PutDeferred(capture(owned_event_id!("$old"), "edited")),
            StateChange::PutRoom(owned_room_id!("!held:example.org"), room.clone()),
            StateChange::PutRoom(owned_room_id!("!held:example.org"), room),
        ];
        overlay.apply(&changes).unwrap();
        let through_overlay = overlay.kept(&alice, Some(&stranger)).unwrap();
        assert_eq!((through_overlay.held_rooms, through_overlay.messages), (1, 2));
        assert_eq!(store.kept(&alice, Some(&stranger)).unwrap().messages, 1);
        store.accept_transaction("t2", &[b"{}"], 1).unwrap();
        let seq = store.inbox_batch(1).unwrap()[0].seq;
        store.commit(seq, &Decision { changes, effects: vec![], outcomes: vec![] }).unwrap();
        overlay.clear();
        assert_eq!(overlay.kept(&alice, Some(&stranger)).unwrap(), through_overlay);
        overlay.apply(&[StateChange::ForgetOwnerData(alice.clone())]).unwrap();
        assert_eq!(overlay.kept(&alice, None).unwrap().messages, 0);
    }
}
