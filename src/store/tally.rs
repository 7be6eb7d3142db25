//! The counts a store keeps of what it holds for owners — held rooms and
//! kept messages, per owner, per owner and sender, and in all — so that a
//! bound costs one read instead of a scan. A count changes in the same
//! write as the records it counts, by the difference between what a change
//! replaces and what it puts.

use ruma::{OwnedUserId, UserId};

use crate::engine::{Deferred, Kept, RoomState};

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum What {
    HeldRooms,
    Messages,
}

/// One count: in all (`owner` none), for an owner, or for one sender (the
/// inviter of a held room, the sender of a message) with an owner.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub what: What,
    pub owner: Option<OwnedUserId>,
    pub with: Option<OwnedUserId>,
}

impl Key {
    /// The stored key: a kind byte, then `owner \0 [with]`, so that one
    /// owner's counts of one kind share a prefix.
    pub fn encode(&self) -> Vec<u8> {
        let mut k = vec![match self.what {
            What::HeldRooms => b'h',
            What::Messages => b'm',
        }];
        if let Some(owner) = &self.owner {
            k.extend_from_slice(&super::records::pair_key(
                owner.as_str(),
                self.with.as_ref().map(|w| w.as_str()).unwrap_or(""),
            ));
        }
        k
    }
}

/// The three counts one item adds to (or takes from).
fn keys(what: What, owner: &UserId, with: &UserId) -> [Key; 3] {
    [
        Key { what, owner: None, with: None },
        Key { what, owner: Some(owner.to_owned()), with: None },
        Key { what, owner: Some(owner.to_owned()), with: Some(with.to_owned()) },
    ]
}

fn held(room: Option<&RoomState>) -> Option<(&OwnedUserId, &OwnedUserId)> {
    match room {
        Some(RoomState::Held(h)) => Some((&h.owner, &h.inviter)),
        _ => None,
    }
}

fn difference(what: What, before: Option<(&UserId, &UserId)>, after: Option<(&UserId, &UserId)>) -> Vec<(Key, i64)> {
    if before == after {
        return Vec::new();
    }
    let taken = before.into_iter().flat_map(|(o, w)| keys(what, o, w)).map(|k| (k, -1));
    let added = after.into_iter().flat_map(|(o, w)| keys(what, o, w)).map(|k| (k, 1));
    taken.chain(added).collect()
}

/// How the counts change when a room's state goes from `before` to `after`.
pub fn room(before: Option<&RoomState>, after: Option<&RoomState>) -> Vec<(Key, i64)> {
    let pair = |r| held(r).map(|(o, w)| (&**o, &**w));
    difference(What::HeldRooms, pair(before), pair(after))
}

/// How the counts change when a captured message goes from `before` to `after`.
pub fn message(before: Option<&Deferred>, after: Option<&Deferred>) -> Vec<(Key, i64)> {
    fn pair(d: Option<&Deferred>) -> Option<(&UserId, &UserId)> {
        d.map(|d| (&*d.owner, &*d.sender))
    }
    difference(What::Messages, pair(before), pair(after))
}

pub fn apply(count: u64, delta: i64) -> u64 {
    count.saturating_add_signed(delta)
}

/// An owner's (or an owner and sender's) two counts, from a look-up of one.
pub fn kept(
    mut count: impl FnMut(&Key) -> Result<u64, super::StoreError>,
    owner: &UserId,
    with: Option<&UserId>,
) -> Result<Kept, super::StoreError> {
    let key = |what| Key { what, owner: Some(owner.to_owned()), with: with.map(ToOwned::to_owned) };
    Ok(Kept { held_rooms: count(&key(What::HeldRooms))?, messages: count(&key(What::Messages))? })
}

#[cfg(test)]
mod tests {
    use ruma::{owned_room_id, owned_user_id};

    use super::*;
    use crate::engine::HeldRoom;

    fn held_room(owner: &str, inviter: &str) -> RoomState {
        RoomState::Held(HeldRoom::new(owner.try_into().unwrap(), inviter.try_into().unwrap(), true, 1))
    }

    #[test]
    fn a_room_counts_once_for_its_owner_and_inviter_and_updates_count_nothing() {
        let a = held_room("@alice:example.org", "@x:evil.example");
        let added = room(None, Some(&a));
        assert_eq!(added.len(), 3);
        assert!(added.iter().all(|(_, d)| *d == 1));
        assert!(room(Some(&a), Some(&a)).is_empty());
        assert!(
            room(Some(&a), Some(&RoomState::Control { owner: owned_user_id!("@alice:example.org") }))
                .iter()
                .all(|(_, d)| *d == -1)
        );
        let c = RoomState::Control { owner: owned_user_id!("@alice:example.org") };
        assert!(room(None, Some(&c)).is_empty());
        let _ = owned_room_id!("!r:example.org");
    }

    #[test]
    fn keys_of_one_owner_share_a_prefix_that_no_other_owner_has() {
        let k = |o: &str, w: Option<&str>| Key {
            what: What::Messages,
            owner: Some(o.try_into().unwrap()),
            with: w.map(|w| w.try_into().unwrap()),
        };
        let owner = k("@al:example.org", None).encode();
        assert!(k("@al:example.org", Some("@x:y.org")).encode().starts_with(&owner));
        assert!(!k("@alice:example.org", None).encode().starts_with(&owner));
        assert_ne!(Key { what: What::HeldRooms, ..k("@al:example.org", None) }.encode(), owner);
    }
}
