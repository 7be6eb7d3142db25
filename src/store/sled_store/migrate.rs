//! The moves made on opening a database written by an older version,
//! each once: rooms per owner, ban-list rules apart, kept counts.

use sled::Tree;

use crate::engine::RoomState;
use crate::engine::policy::index_key;
use crate::store::policy_records::{ListCountsV1, PolicyListRecord, RuleV1, index_entry, rule_key};
use crate::store::records::{self, DeferredRecord, RoomRecord, pair_key};
use crate::store::{StoreError, tally};

use super::SledStore;
use super::counters::{G_BUILT, G_INBOX, G_OUTBOX, G_OWNERS};

impl SledStore {
    /// Moves rooms from the tree that kept one record per room (before a
    /// room could be held for several owners) to one record per room and
    /// owner. Copies, then clears: a crash in between copies again.
    pub(super) fn with_rooms_by_owner(self, old: &Tree) -> Result<Self, StoreError> {
        if old.is_empty() {
            return Ok(self);
        }
        let mut batch = sled::Batch::default();
        for entry in old.iter() {
            let (k, v) = entry.map_err(|e| self.failed(e))?;
            let room: RoomState = records::decode::<RoomRecord>("room", &v)?.into();
            batch.insert(pair_key(&String::from_utf8_lossy(&k), room.owner().as_str()), v);
        }
        self.room_by_id_owner.apply_batch(batch).map_err(|e| self.failed(e))?;
        self.room_by_id_owner.flush().map_err(|e| self.failed(e))?;
        old.clear().map_err(|e| self.failed(e))?;
        old.flush().map_err(|e| self.failed(e))?;
        Ok(self)
    }

    /// Moves the rules of lists kept whole in their record (version 1) to
    /// one record per rule, with their index entries, in one batch with the
    /// list's new record: a crash before it leaves version 1 to move again.
    pub(super) fn with_rules_apart(self) -> Result<Self, StoreError> {
        let mut batch = sled::Batch::default();
        let mut moved = 0;
        for entry in self.policy_by_room.scan_prefix(pair_key("l", "")) {
            let (k, v) = entry.map_err(|e| self.failed(e))?;
            let record = records::decode::<PolicyListRecord>("policy list", &v)?;
            let Some(rules) = record.rules_inside() else { continue };
            let list: crate::engine::policy::PolicyList = record.into();
            for (slot, rule) in &rules {
                let room = list.room_id.as_str();
                batch.insert(rule_key(room, slot), records::encode(&RuleV1::from(rule)));
                batch.insert(index_entry(room, &index_key(rule), slot), &[][..]);
            }
            batch.insert(pair_key("c", list.room_id.as_str()), records::encode(&ListCountsV1::from(&list)));
            batch.insert(k, records::encode(&PolicyListRecord::header(&list)));
            moved += 1;
        }
        if moved > 0 {
            self.policy_by_room.apply_batch(batch).map_err(|e| self.failed(e))?;
            self.policy_by_room.flush().map_err(|e| self.failed(e))?;
            tracing::info!(lists = moved, "ban lists' rules moved to records of their own");
        }
        Ok(self)
    }

    /// Counts what is kept, and indexes held rooms by owner, once for a
    /// database written before these were: from then on every write keeps them.
    pub(super) fn with_tallies(self) -> Result<Self, StoreError> {
        if !self.counters.contains_key(G_BUILT).map_err(|e| self.failed(e))? {
            let mut sizes = sled::Batch::default();
            for (key, tree) in
                [(G_INBOX, &self.inbox_by_seq), (G_OUTBOX, &self.outbox_by_id), (G_OWNERS, &self.owner_by_user)]
            {
                sizes.insert(key, &(tree.len() as u64).to_be_bytes());
            }
            sizes.insert(G_BUILT, &[]);
            self.counters.apply_batch(sizes).map_err(|e| self.failed(e))?;
        }
        const BUILT: &[u8] = b"built";
        if self.kept_by_key.contains_key(BUILT).map_err(|e| self.failed(e))? {
            return Ok(self);
        }
        let mut counts: std::collections::HashMap<Vec<u8>, u64> = Default::default();
        let mut add = |deltas: Vec<(tally::Key, i64)>| {
            for (k, d) in deltas {
                let c = counts.entry(k.encode()).or_default();
                *c = tally::apply(*c, d);
            }
        };
        let mut index = sled::Batch::default();
        for entry in self.room_by_id_owner.iter() {
            let (k, v) = entry.map_err(|e| self.failed(e))?;
            let room: RoomState = records::decode::<RoomRecord>("room", &v)?.into();
            if let RoomState::Held(h) = &room {
                // The owner is after the last NUL (user IDs have none).
                let id = k.rsplitn(2, |b| *b == 0).nth(1).unwrap_or_default();
                index.insert(pair_key(h.owner.as_str(), &String::from_utf8_lossy(id)), &[]);
            }
            add(tally::room(None, Some(&room)));
        }
        self.held_by_owner_room.apply_batch(index).map_err(|e| self.failed(e))?;
        for entry in self.deferred_by_owner_event.iter() {
            let (_, v) = entry.map_err(|e| self.failed(e))?;
            add(tally::message(None, Some(&records::decode::<DeferredRecord>("deferred", &v)?.into())));
        }
        let mut batch = sled::Batch::default();
        for (k, c) in counts {
            batch.insert(k, &c.to_be_bytes());
        }
        batch.insert(BUILT, &[]);
        self.kept_by_key.apply_batch(batch).map_err(|e| self.failed(e))?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Decision, StateChange};
    use crate::store::{Lookups, Store};

    #[test]
    fn counts_missing_from_an_older_database_are_made_once_on_opening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let alice = ruma::owned_user_id!("@alice:example.org");
        {
            let s = SledStore::open(&path, 4).unwrap();
            s.accept_transaction("t1", &[b"{}"], 1).unwrap();
            let seq = s.inbox_batch(1).unwrap()[0].seq;
            let held = crate::engine::HeldRoom::new(alice.clone(), ruma::owned_user_id!("@x:evil.example"), true, 1);
            let d = Decision {
                changes: vec![StateChange::PutRoom(ruma::owned_room_id!("!h:e"), RoomState::Held(held))],
                effects: vec![],
                outcomes: vec![],
            };
            s.commit(seq, &d).unwrap();
            // As a database from before the counts and the index were kept.
            s.kept_by_key.clear().unwrap();
            s.held_by_owner_room.clear().unwrap();
            s.flush().unwrap();
        }
        let s = SledStore::open(&path, 4).unwrap();
        assert_eq!(s.kept(&alice, None).unwrap().held_rooms, 1);
        assert_eq!(s.overview(&alice).unwrap().held.len(), 1);
    }

    /// A database from before rooms were kept per owner had one record per
    /// room, keyed by the room alone: opening it moves each to its owner's
    /// key, once, keeping what it says.
    #[test]
    fn rooms_kept_per_room_are_moved_to_their_owners_on_opening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let alice = ruma::owned_user_id!("@alice:example.org");
        let room = ruma::owned_room_id!("!h:e");
        let held = RoomState::Held(crate::engine::HeldRoom::new(
            alice.clone(),
            ruma::owned_user_id!("@x:evil.example"),
            true,
            1,
        ));
        {
            let s = SledStore::open(&path, 4).unwrap();
            let old = s.db.open_tree("room_by_id").unwrap();
            old.insert(room.as_bytes(), records::encode(&RoomRecord::from(&held))).unwrap();
            s.held_by_owner_room.insert(pair_key(alice.as_str(), room.as_str()), &[]).unwrap();
            // Counted as an older database would be: rebuilt on opening.
            s.kept_by_key.clear().unwrap();
            s.flush().unwrap();
        }
        for _ in 0..2 {
            let s = SledStore::open(&path, 4).unwrap();
            assert_eq!(s.rooms(&room).unwrap(), vec![held.clone()]);
            assert_eq!(s.overview(&alice).unwrap().held.len(), 1);
            assert_eq!(s.kept(&alice, None).unwrap().held_rooms, 1);
            assert!(s.db.open_tree("room_by_id").unwrap().is_empty());
        }
    }

    #[test]
    fn rules_kept_inside_a_lists_record_are_moved_to_their_own_on_opening() {
        use crate::engine::policy::{RulesRead, names};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let room = ruma::owned_room_id!("!l:lists.org");
        let v1 = serde_json::json!({
            "v": "1", "room_id": room, "name": "#l:lists.org", "operator": true,
            "followers": ["@alice:example.org"],
            "rules": [
                ["m.policy.rule.user", "a", {"kind": "user", "entity": "@spam:evil.org"}],
                ["m.policy.rule.server", "b", {"kind": "server", "entity": "*.evil.org", "reason": "spam"}]
            ],
            "ignored": 2
        });
        {
            let s = SledStore::open(&path, 4).unwrap();
            s.policy_by_room.insert(pair_key("l", room.as_str()), serde_json::to_vec(&v1).unwrap()).unwrap();
            s.policy_by_room.insert(pair_key("o", room.as_str()), &[]).unwrap();
            s.flush().unwrap();
        }
        for _ in 0..2 {
            let s = SledStore::open(&path, 4).unwrap();
            let list = s.policy_list(&room).unwrap().unwrap();
            assert_eq!((list.kept, list.globs, list.ignored, list.operator), (2, 1, 2, true));
            assert!(list.changed_ms > 0, "every follower is checked once against it");
            let sender = ruma::owned_user_id!("@spam:mail.evil.org");
            let found = s.policy_rules(&room, &RulesRead::Naming(names(&sender, None))).unwrap();
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(found[0].1.reason.as_deref(), Some("spam"));
            assert_eq!(s.policy_rules(&room, &RulesRead::All).unwrap().len(), 2);
        }
    }
}
