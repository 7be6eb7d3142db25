//! Before a batch is decided, everything its events will look up by their
//! room and their sender is asked of the store at once, into the overlay's
//! caches (see [`Lookups::rooms_of`]): on PostgreSQL a point read is a
//! round trip, and a batch of a hundred events would otherwise cost a few
//! hundred of them. What is read here is what the decisions would read
//! one at a time, and read the same way (the overlay answers both from the
//! same caches); what an event reads beyond it is still read when needed.
//! An embedded store (sled, memory), whose point read costs no more than a
//! batch's share, is left to its point reads.

use std::collections::BTreeSet;

use ruma::{OwnedRoomId, OwnedUserId};

use super::head::Head;
use crate::engine::Subject;
use crate::store::{InboxItem, Lookups, Overlay, StoreError};

struct Parts {
    kind: String,
    room: Option<OwnedRoomId>,
    users: Vec<OwnedUserId>,
}

fn parts(raw: &[u8]) -> Option<Parts> {
    let head = serde_json::from_slice::<Head<'_>>(raw).ok()?;
    let user = |u: Option<&str>| u.and_then(|u| OwnedUserId::try_from(u).ok());
    let mut users: Vec<OwnedUserId> =
        [user(head.sender.as_deref()), user(head.state_key.as_deref())].into_iter().flatten().collect();
    users.dedup();
    Some(Parts {
        kind: head.kind.unwrap_or_default().into_owned(),
        room: head.room_id.and_then(|r| OwnedRoomId::try_from(&*r).ok()),
        users,
    })
}

/// Reads into `overlay` what the homeserver's events among `items` will
/// look up: first their rooms and their senders' and targets' owner
/// records, then what those found lead to (the rooms' owners, the events
/// consumed last in tracked rooms, and between each owner concerned and
/// each other user of an event: contacts, stranger entries, kept counts,
/// and the senders' wave records).
pub fn prefetch(overlay: &Overlay<'_>, items: &[InboxItem]) -> Result<(), StoreError> {
    if !overlay.reads_in_batches() {
        return Ok(());
    }
    let events: Vec<Parts> = items.iter().filter(|i| !i.internal).filter_map(|i| parts(&i.raw)).collect();
    if events.is_empty() {
        return Ok(());
    }
    let rooms: Vec<OwnedRoomId> =
        events.iter().filter_map(|e| e.room.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    let users: BTreeSet<OwnedUserId> = events.iter().flat_map(|e| e.users.iter().cloned()).collect();
    let found = overlay.rooms_of(&rooms)?;
    overlay.owners_of(&users.into_iter().collect::<Vec<_>>())?;

    let tracked: Vec<OwnedRoomId> =
        rooms.iter().zip(&found).filter(|(_, list)| !list.is_empty()).map(|(r, _)| r.clone()).collect();
    let room_owners: BTreeSet<OwnedUserId> = found.iter().flatten().map(|r| r.owner().clone()).collect();
    overlay.seen_events_of(&tracked)?;
    overlay.owners_of(&room_owners.into_iter().collect::<Vec<_>>())?;

    let (mut contacts, mut strangers, mut kept, mut waves) =
        (BTreeSet::new(), BTreeSet::new(), BTreeSet::new(), Vec::new());
    for event in &events {
        // Every lookup below is answered from the caches filled above.
        let mut owners: BTreeSet<OwnedUserId> = match &event.room {
            Some(room) => overlay.rooms(room)?.iter().map(|r| r.owner().clone()).collect(),
            None => BTreeSet::new(),
        };
        for user in &event.users {
            if overlay.owner(user)?.is_some() {
                owners.insert(user.clone());
            }
        }
        let invite = event.kind == "m.room.member" && event.users.len() > 1;
        if owners.is_empty() && !invite {
            continue;
        }
        if let Some(sender) = event.users.first() {
            waves.extend(crate::engine::waves::keys(sender));
        }
        for owner in &owners {
            kept.insert((owner.clone(), None));
            for user in event.users.iter().filter(|u| *u != owner) {
                contacts.insert((owner.clone(), Subject::User(user.clone())));
                contacts.insert((owner.clone(), Subject::Server(user.server_name().to_owned())));
                strangers.insert((owner.clone(), user.clone()));
                kept.insert((owner.clone(), Some(user.clone())));
            }
        }
    }
    overlay.contacts_of(&contacts.into_iter().collect::<Vec<_>>())?;
    overlay.strangers_of(&strangers.into_iter().collect::<Vec<_>>())?;
    overlay.kept_of(&kept.into_iter().collect::<Vec<_>>())?;
    overlay.waves_of(&waves)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use ruma::{EventId, OwnedEventId, RoomId, UserId};

    use super::*;
    use crate::engine::{
        Contact, Decision, HeldRoom, Kept, OwnerState, RoomState, StateChange, StrangerState, WaveKey, WaveRecord,
    };
    use crate::store::{MemoryStore, Store, assemble_snapshot, read_waves};

    /// The memory store, counting the point reads and the batch reads
    /// asked of it.
    #[derive(Default)]
    struct Counted {
        inner: MemoryStore,
        points: AtomicUsize,
        batches: AtomicUsize,
    }

    impl Counted {
        fn point(&self) -> &MemoryStore {
            self.points.fetch_add(1, Ordering::SeqCst);
            &self.inner
        }
        fn batch(&self) -> &MemoryStore {
            self.batches.fetch_add(1, Ordering::SeqCst);
            &self.inner
        }
    }

    impl Lookups for Counted {
        fn reads_in_batches(&self) -> bool {
            true
        }
        fn rooms(&self, room: &RoomId) -> Result<Vec<RoomState>, StoreError> {
            self.point().rooms(room)
        }
        fn owner(&self, user: &UserId) -> Result<Option<OwnerState>, StoreError> {
            self.point().owner(user)
        }
        fn contact(&self, owner: &UserId, subject: &Subject) -> Result<Option<Contact>, StoreError> {
            self.point().contact(owner, subject)
        }
        fn stranger(&self, owner: &UserId, user: &UserId) -> Result<Option<StrangerState>, StoreError> {
            self.point().stranger(owner, user)
        }
        fn deferred(&self, owner: &UserId, event: &EventId) -> Result<Option<crate::engine::Deferred>, StoreError> {
            self.point().deferred(owner, event)
        }
        fn kept(&self, owner: &UserId, with: Option<&UserId>) -> Result<Kept, StoreError> {
            self.point().kept(owner, with)
        }
        fn wave(&self, key: &WaveKey) -> Result<Option<WaveRecord>, StoreError> {
            self.point().wave(key)
        }
        fn seen_events(&self, room: &RoomId) -> Result<Vec<OwnedEventId>, StoreError> {
            self.point().seen_events(room)
        }
        fn rooms_of(&self, rooms: &[OwnedRoomId]) -> Result<Vec<Vec<RoomState>>, StoreError> {
            self.batch().rooms_of(rooms)
        }
        fn owners_of(&self, users: &[OwnedUserId]) -> Result<Vec<Option<OwnerState>>, StoreError> {
            self.batch().owners_of(users)
        }
        fn contacts_of(&self, keys: &[(OwnedUserId, Subject)]) -> Result<Vec<Option<Contact>>, StoreError> {
            self.batch().contacts_of(keys)
        }
        fn strangers_of(&self, keys: &[(OwnedUserId, OwnedUserId)]) -> Result<Vec<Option<StrangerState>>, StoreError> {
            self.batch().strangers_of(keys)
        }
        fn kept_of(&self, keys: &[(OwnedUserId, Option<OwnedUserId>)]) -> Result<Vec<Kept>, StoreError> {
            self.batch().kept_of(keys)
        }
        fn waves_of(&self, keys: &[WaveKey]) -> Result<Vec<Option<WaveRecord>>, StoreError> {
            self.batch().waves_of(keys)
        }
        fn seen_events_of(&self, rooms: &[OwnedRoomId]) -> Result<Vec<Vec<OwnedEventId>>, StoreError> {
            self.batch().seen_events_of(rooms)
        }
    }

    fn message(n: usize, room: &str, sender: &str) -> InboxItem {
        let raw = serde_json::json!({
            "type": "m.room.message", "event_id": format!("$e{n}"), "room_id": room, "sender": sender,
            "content": {"msgtype": "m.text", "body": "hi"},
        });
        InboxItem { seq: n as u64, internal: false, raw: raw.to_string().into_bytes() }
    }

    /// A batch of unrelated traffic and of strangers' messages costs a
    /// batch read per kind of key; then everything the processor reads by
    /// an event's room and sender (whether it concerns anyone, and the
    /// snapshot of those that do) is answered without asking the store.
    #[test]
    fn after_the_prefetch_a_batch_reads_by_room_and_sender_without_asking_the_store() {
        let store = Counted::default();
        let alice: OwnedUserId = "@alice:example.org".try_into().unwrap();
        let changes = vec![
            StateChange::PutOwner(OwnerState::new(alice.clone(), "!control:example.org".try_into().unwrap(), 1)),
            StateChange::PutRoom(
                "!held:remote.org".try_into().unwrap(),
                RoomState::Held(HeldRoom::new(alice.clone(), "@s:remote.org".try_into().unwrap(), true, 1)),
            ),
        ];
        store.inner.accept_transaction("setup", &[b"{}"], 1).unwrap();
        let seq = store.inner.inbox_batch(1).unwrap()[0].seq;
        store.inner.commit(seq, &Decision { changes, ..Default::default() }).unwrap();

        let mut items: Vec<InboxItem> =
            (0..80).map(|n| message(n, &format!("!r{n}:busy.org"), &format!("@u{n}:busy.org"))).collect();
        items.extend((80..95).map(|n| message(n, "!held:remote.org", "@s:remote.org")));
        items.push(message(95, "!elsewhere:busy.org", alice.as_str()));
        items.push(InboxItem { seq: 96, internal: false, raw: b"not json".to_vec() });
        let overlay = Overlay::new(&store);
        prefetch(&overlay, &items).unwrap();
        let batches = store.batches.load(Ordering::SeqCst);
        assert!(batches <= 8, "{batches} batch reads");

        for item in &items[..96] {
            let parts = parts(&item.raw).unwrap();
            let (room, sender) = (parts.room.unwrap(), parts.users[0].clone());
            let tracked = !overlay.rooms(&room).unwrap().is_empty();
            let owner = overlay.owner(&sender).unwrap().is_some();
            if tracked {
                overlay.seen_events(&room).unwrap();
            }
            if tracked || owner {
                let snapshot = assemble_snapshot(&overlay, Some(&room), std::slice::from_ref(&sender), None).unwrap();
                assert!(!snapshot.owners.is_empty());
                read_waves(&overlay, &sender).unwrap();
            }
        }
        assert_eq!(store.points.load(Ordering::SeqCst), 0, "point reads after the prefetch");
        assert_eq!(store.batches.load(Ordering::SeqCst), batches);
    }
}
