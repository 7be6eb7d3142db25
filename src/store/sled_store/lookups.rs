//! Reading the stored state: the engine's look-ups, an owner's overview,
//! the rooms tracked, owners and ban lists.

use ruma::{EventId, RoomId, UserId};

use crate::engine::policy::Slot;
use crate::engine::{Contact, Deferred, Kept, RoomState, StrangerState, Subject, WaveKey, WaveRecord};
use crate::store::policy_records::{
    INDEX_TAG, ListCountsV1, PolicyListRecord, RULE_TAG, RuleV1, rule_key, rule_prefix, slot_after,
};
use crate::store::records::{
    self, ContactRecord, DeferredRecord, OwnerRecord, RoomRecord, SeenRecord, StrangerRecord, WaveRecordV, pair_key,
};
use crate::store::{Lookups, OwnerOverview, OwnerState, StoreError, counts_something, tally};

use super::SledStore;

impl Lookups for SledStore {
    fn rooms(&self, room: &RoomId) -> Result<Vec<RoomState>, StoreError> {
        let prefix = records::owner_prefix(room.as_str());
        let mut rooms = Vec::new();
        for entry in self.room_by_id_owner.scan_prefix(&prefix) {
            let (k, v) = entry.map_err(|e| self.failed(e))?;
            let state: RoomState = records::decode::<RoomRecord>("room", &v)?.into();
            // The prefix also matches a longer room ID with a NUL in it: only
            // the record whose key is exactly this room's and its owner's counts.
            if *k == *pair_key(room.as_str(), state.owner().as_str()) {
                rooms.push(state);
            }
        }
        Ok(rooms)
    }
    fn owner(&self, user: &UserId) -> Result<Option<OwnerState>, StoreError> {
        match self.owner_by_user.get(user.as_bytes()).map_err(|e| self.failed(e))? {
            Some(b) => Ok(Some(records::decode::<OwnerRecord>("owner", &b)?.into())),
            None => Ok(None),
        }
    }
    fn contact(&self, owner: &UserId, subject: &Subject) -> Result<Option<Contact>, StoreError> {
        match self
            .contact_by_owner_user
            .get(pair_key(owner.as_str(), &subject.to_string()))
            .map_err(|e| self.failed(e))?
        {
            Some(b) => Ok(Some(records::decode::<ContactRecord>("contact", &b)?.into())),
            None => Ok(None),
        }
    }
    fn stranger(&self, owner: &UserId, user: &UserId) -> Result<Option<StrangerState>, StoreError> {
        match self.stranger_by_owner_user.get(pair_key(owner.as_str(), user.as_str())).map_err(|e| self.failed(e))? {
            Some(b) => Ok(Some(records::decode::<StrangerRecord>("stranger", &b)?.into())),
            None => Ok(None),
        }
    }
    fn deferred(&self, owner: &UserId, event: &EventId) -> Result<Option<Deferred>, StoreError> {
        match self.deferred_by_owner_event.get(pair_key(owner.as_str(), event.as_str())).map_err(|e| self.failed(e))? {
            Some(b) => Ok(Some(records::decode::<DeferredRecord>("deferred", &b)?.into())),
            None => Ok(None),
        }
    }
    fn wave(&self, key: &WaveKey) -> Result<Option<WaveRecord>, StoreError> {
        match self.wave_by_key.get(records::wave_key(key)).map_err(|e| self.failed(e))? {
            Some(b) => Ok(Some(records::decode::<WaveRecordV>("wave", &b)?.into())),
            None => Ok(None),
        }
    }
    fn kept(&self, owner: &UserId, with: Option<&UserId>) -> Result<Kept, StoreError> {
        tally::kept(|k| self.count(k), owner, with)
    }
    fn policy_list(&self, room: &RoomId) -> Result<Option<crate::engine::policy::PolicyList>, StoreError> {
        match self.policy_by_room.get(pair_key("l", room.as_str())).map_err(|e| self.failed(e))? {
            Some(b) => Ok(Some(self.list_with_counts(room.as_str(), &b)?)),
            None => Ok(None),
        }
    }
    fn policy_rules(
        &self,
        room: &RoomId,
        read: &crate::engine::policy::RulesRead,
    ) -> Result<Vec<(Slot, crate::engine::policy::PolicyRule)>, StoreError> {
        use crate::engine::policy::RulesRead;
        let rule = |slot: Slot| -> Result<Option<(Slot, crate::engine::policy::PolicyRule)>, StoreError> {
            let stored = self.policy_by_room.get(rule_key(room.as_str(), &slot)).map_err(|e| self.failed(e))?;
            Ok(match stored {
                Some(b) => Some((slot, records::decode::<RuleV1>("policy rule", &b)?.into())),
                None => None,
            })
        };
        let mut rules = Vec::new();
        match read {
            RulesRead::None => {}
            RulesRead::Slot(slot) => rules.extend(rule(slot.clone())?),
            RulesRead::Naming(keys) => {
                for key in keys {
                    let prefix = rule_prefix(INDEX_TAG, room.as_str(), &[key]);
                    for entry in self.policy_by_room.scan_prefix(&prefix).keys() {
                        let entry = entry.map_err(|e| self.failed(e))?;
                        let slot = slot_after(&entry, prefix.len())
                            .ok_or_else(|| StoreError::Corrupt("a ban list's index entry".into()))?;
                        rules.extend(rule(slot)?);
                    }
                }
            }
            RulesRead::All => {
                let prefix = rule_prefix(RULE_TAG, room.as_str(), &[]);
                for entry in self.policy_by_room.scan_prefix(&prefix) {
                    let (k, v) = entry.map_err(|e| self.failed(e))?;
                    let slot = slot_after(&k, prefix.len())
                        .ok_or_else(|| StoreError::Corrupt("a ban list's rule key".into()))?;
                    rules.push((slot, records::decode::<RuleV1>("policy rule", &v)?.into()));
                }
            }
        }
        Ok(rules)
    }
    fn operator_lists(&self) -> Result<Vec<ruma::OwnedRoomId>, StoreError> {
        let prefix = pair_key("o", "");
        let mut rooms = Vec::new();
        for entry in self.policy_by_room.scan_prefix(&prefix) {
            let (k, _) = entry.map_err(|e| self.failed(e))?;
            let room = std::str::from_utf8(&k[prefix.len()..]).ok().and_then(|r| ruma::OwnedRoomId::try_from(r).ok());
            rooms.extend(room);
        }
        Ok(rooms)
    }
    fn seen_events(&self, room: &RoomId) -> Result<Vec<ruma::OwnedEventId>, StoreError> {
        match self.seen_by_room.get(room.as_bytes()).map_err(|e| self.failed(e))? {
            Some(b) => Ok(records::decode::<SeenRecord>("seen", &b)?.into()),
            None => Ok(Vec::new()),
        }
    }
}

impl SledStore {
    pub(super) fn overview(&self, owner: &UserId) -> Result<OwnerOverview, StoreError> {
        let prefix = records::owner_prefix(owner.as_str());
        let mut overview = OwnerOverview::default();
        for entry in self.contact_by_owner_user.scan_prefix(&prefix) {
            let (k, v) = entry.map_err(|e| self.failed(e))?;
            let subject: Subject = String::from_utf8_lossy(&k[prefix.len()..])
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("contact key: {e}")))?;
            overview.contacts.insert(subject, records::decode::<ContactRecord>("contact", &v)?.into());
        }
        for entry in self.deferred_by_owner_event.scan_prefix(&prefix) {
            let (_, v) = entry.map_err(|e| self.failed(e))?;
            let d: Deferred = records::decode::<DeferredRecord>("deferred", &v)?.into();
            if d.denied_ms.is_some() { overview.denied.push(d) } else { overview.deferred.push(d) }
        }
        for entry in self.stranger_by_owner_user.scan_prefix(&prefix) {
            let (k, v) = entry.map_err(|e| self.failed(e))?;
            let st: StrangerState = records::decode::<StrangerRecord>("stranger", &v)?.into();
            if counts_something(&st) {
                let user = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                let user =
                    ruma::OwnedUserId::try_from(user).map_err(|e| StoreError::Corrupt(format!("stranger key: {e}")))?;
                overview.strangers.insert(user, st);
            }
        }
        for entry in self.held_by_owner_room.scan_prefix(&prefix) {
            let (k, _) = entry.map_err(|e| self.failed(e))?;
            let room = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            let room = ruma::OwnedRoomId::try_from(room).map_err(|e| StoreError::Corrupt(format!("room key: {e}")))?;
            // The index and the room change in one write; a room it names
            // that is not held by this owner would be a bug, and is skipped.
            let record =
                self.room_by_id_owner.get(pair_key(room.as_str(), owner.as_str())).map_err(|e| self.failed(e))?;
            if let Some(b) = record
                && let RoomState::Held(h) = records::decode::<RoomRecord>("room", &b)?.into()
                && h.owner == owner
            {
                overview.held.insert(room, h);
            }
        }
        Ok(overview)
    }

    pub(super) fn seen_rooms(&self) -> Result<Vec<(ruma::OwnedRoomId, Vec<ruma::OwnedEventId>)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.seen_by_room.iter() {
            let (k, v) = entry.map_err(|e| self.failed(e))?;
            let room = ruma::OwnedRoomId::try_from(String::from_utf8_lossy(&k).into_owned())
                .map_err(|e| StoreError::Corrupt(format!("seen key: {e}")))?;
            out.push((room, records::decode::<SeenRecord>("seen", &v)?.into()));
        }
        Ok(out)
    }

    pub(super) fn policy_lists(&self) -> Result<Vec<crate::engine::policy::PolicyList>, StoreError> {
        let prefix = pair_key("l", "");
        let mut lists = Vec::new();
        for entry in self.policy_by_room.scan_prefix(&prefix) {
            let (k, v) = entry.map_err(|e| self.failed(e))?;
            lists.push(self.list_with_counts(&String::from_utf8_lossy(&k[prefix.len()..]), &v)?);
        }
        Ok(lists)
    }

    /// A list's record with the counts kept beside it (`c\0room`).
    fn list_with_counts(&self, room: &str, record: &[u8]) -> Result<crate::engine::policy::PolicyList, StoreError> {
        let counts = match self.policy_by_room.get(pair_key("c", room)).map_err(|e| self.failed(e))? {
            Some(b) => Some(records::decode::<ListCountsV1>("policy list counts", &b)?),
            None => None,
        };
        Ok(records::decode::<PolicyListRecord>("policy list", record)?.with_counts(counts))
    }

    pub(super) fn owners(&self) -> Result<Vec<OwnerState>, StoreError> {
        self.owner_by_user
            .iter()
            .map(|r| {
                r.map_err(|e| self.failed(e)).and_then(|(_, v)| Ok(records::decode::<OwnerRecord>("owner", &v)?.into()))
            })
            .collect()
    }
}
