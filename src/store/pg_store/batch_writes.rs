//! A batch's state changes in a few multi-row statements, one per table and
//! kind of write, instead of one (or three) per change: a batch of a hundred
//! strangers' messages otherwise costs some four hundred round trips inside
//! its transaction.
//!
//! The changes are applied as they would be one by one, in order: between
//! two changes that reach beyond one row (forgetting an owner's data,
//! dropping a list with its rules), the run of changes is folded into each
//! row's last value (a row changed twice is written once, as PostgreSQL's
//! `ON CONFLICT DO UPDATE` requires), then written; the wide change then
//! runs alone, as before. The kept counts change by what each change
//! replaced: the rows a run touches are read first (one statement per
//! table), and the run is played over them in memory.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};

use super::{Db, big, count_in, decode_deferred, decode_room, records};
use crate::engine::policy::{PolicyList, PolicyRule, index_key};
use crate::engine::{Contact, Deferred, OwnerState, RoomState, StateChange, StrangerState, WaveKey, WaveRecord};
use crate::store::policy_records::{PolicyListRecord, RuleV1};
use crate::store::records::{ContactRecord, DeferredRecord, OwnerRecord, RoomRecord, StrangerRecord, WaveRecordV};
use crate::store::{StoreError, tally};

type Tx<'a, 'b, C> = &'a Db<'b, C>;

/// Applies `changes`, in order, inside the batch's transaction.
pub(super) fn apply_all<C: postgres::GenericClient>(
    tx: Tx<'_, '_, C>,
    changes: &[&StateChange],
) -> Result<(), StoreError> {
    let mut run = Run::default();
    for change in changes {
        if !run.take(change) {
            run.write(tx)?;
            run = Run::default();
            super::apply_wide(tx, change)?;
        }
    }
    run.write(tx)
}

/// Changes of single rows, folded per row (the last value of each), and
/// the changes of counted rows (rooms, captured messages) in order.
#[derive(Default)]
struct Run<'c> {
    owners: HashMap<&'c OwnedUserId, Option<&'c OwnerState>>,
    contacts: HashMap<(&'c OwnedUserId, String), Option<&'c Contact>>,
    strangers: HashMap<(&'c OwnedUserId, &'c OwnedUserId), &'c StrangerState>,
    waves: HashMap<&'c WaveKey, &'c WaveRecord>,
    lists: HashMap<&'c OwnedRoomId, &'c PolicyList>,
    rules: HashMap<(&'c OwnedRoomId, &'c str, &'c str), Option<&'c PolicyRule>>,
    rooms: Vec<(&'c OwnedRoomId, &'c OwnedUserId, Option<&'c RoomState>)>,
    deferred: Vec<(&'c OwnedUserId, &'c OwnedEventId, Option<&'c Deferred>)>,
}

impl<'c> Run<'c> {
    /// Adds a change of one row; `false` for one that reaches beyond it.
    fn take(&mut self, change: &'c StateChange) -> bool {
        match change {
            StateChange::PutOwner(o) => {
                self.owners.insert(&o.user_id, Some(o));
            }
            StateChange::RemoveOwner(u) => {
                self.owners.insert(u, None);
            }
            StateChange::PutRoom(r, st) => self.rooms.push((r, st.owner(), Some(st))),
            StateChange::RemoveRoom { room, owner } => self.rooms.push((room, owner, None)),
            StateChange::PutContact { owner, subject, contact } => {
                self.contacts.insert((owner, subject.to_string()), Some(contact));
            }
            StateChange::RemoveContact { owner, subject } => {
                self.contacts.insert((owner, subject.to_string()), None);
            }
            StateChange::PutStranger { owner, user, state } => {
                self.strangers.insert((owner, user), state);
            }
            StateChange::PutDeferred(d) => self.deferred.push((&d.owner, &d.event_id, Some(d))),
            StateChange::RemoveDeferred { owner, event_id } => self.deferred.push((owner, event_id, None)),
            StateChange::PutWave(key, record) => {
                self.waves.insert(key, record);
            }
            StateChange::PutPolicyList(list) => {
                self.lists.insert(&list.room_id, list);
            }
            StateChange::PutPolicyRule { list, slot: (kind, key), rule } => {
                self.rules.insert((list, kind, key), rule.as_ref());
            }
            StateChange::ForgetOwnerData(_) | StateChange::RemovePolicyList(_) => return false,
        }
        true
    }

    fn write<C: postgres::GenericClient>(&self, tx: Tx<'_, '_, C>) -> Result<(), StoreError> {
        self.write_owners(tx)?;
        self.write_contacts(tx)?;
        self.write_strangers(tx)?;
        self.write_waves(tx)?;
        self.write_lists(tx)?;
        self.write_rules(tx)?;
        self.write_rooms(tx)?;
        self.write_deferred(tx)
    }

    fn write_owners<C: postgres::GenericClient>(&self, tx: Tx<'_, '_, C>) -> Result<(), StoreError> {
        let (mut ids, mut paused, mut recs, mut gone) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (user, owner) in &self.owners {
            match owner {
                Some(o) => {
                    ids.push(user.as_bytes());
                    paused.push(o.paused_until_ms.map(big));
                    recs.push(records::encode(&OwnerRecord::from(*o)));
                }
                None => gone.push(user.as_bytes()),
            }
        }
        if !ids.is_empty() {
            tx.execute(
                "INSERT INTO owners (user_id, paused_until_ms, record) \
                 SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::bytea[]) \
                 ON CONFLICT (user_id) DO UPDATE SET paused_until_ms = EXCLUDED.paused_until_ms, record = EXCLUDED.record",
                &[&ids, &paused, &recs],
            )?;
        }
        if !gone.is_empty() {
            tx.execute("DELETE FROM owners WHERE user_id = ANY($1)", &[&gone])?;
        }
        Ok(())
    }

    fn write_contacts<C: postgres::GenericClient>(&self, tx: Tx<'_, '_, C>) -> Result<(), StoreError> {
        let (mut owners, mut subjects, mut until, mut recs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut gone_owners, mut gone_subjects) = (Vec::new(), Vec::new());
        for ((owner, subject), contact) in &self.contacts {
            match contact {
                Some(c) => {
                    owners.push(owner.as_bytes());
                    subjects.push(subject.as_bytes());
                    until.push(match c {
                        Contact::Allowed { until_ms: Some(u), .. } => Some(big(*u)),
                        _ => None,
                    });
                    recs.push(records::encode(&ContactRecord::from(*c)));
                }
                None => {
                    gone_owners.push(owner.as_bytes());
                    gone_subjects.push(subject.as_bytes());
                }
            }
        }
        if !owners.is_empty() {
            tx.execute(
                "INSERT INTO contacts (owner, subject, allowed_until_ms, record) \
                 SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bigint[], $4::bytea[]) \
                 ON CONFLICT (owner, subject) DO UPDATE \
                 SET allowed_until_ms = EXCLUDED.allowed_until_ms, record = EXCLUDED.record",
                &[&owners, &subjects, &until, &recs],
            )?;
        }
        if !gone_owners.is_empty() {
            tx.execute(
                "DELETE FROM contacts c USING unnest($1::bytea[], $2::bytea[]) AS k(o, s) \
                 WHERE c.owner = k.o AND c.subject = k.s",
                &[&gone_owners, &gone_subjects],
            )?;
        }
        Ok(())
    }

    fn write_strangers<C: postgres::GenericClient>(&self, tx: Tx<'_, '_, C>) -> Result<(), StoreError> {
        if self.strangers.is_empty() {
            return Ok(());
        }
        let (mut owners, mut users, mut recs) = (Vec::new(), Vec::new(), Vec::new());
        for ((owner, user), state) in &self.strangers {
            owners.push(owner.as_bytes());
            users.push(user.as_bytes());
            recs.push(records::encode(&StrangerRecord::from(*state)));
        }
        tx.execute(
            "INSERT INTO strangers (owner, user_id, record) SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bytea[]) \
             ON CONFLICT (owner, user_id) DO UPDATE SET record = EXCLUDED.record",
            &[&owners, &users, &recs],
        )?;
        Ok(())
    }

    fn write_waves<C: postgres::GenericClient>(&self, tx: Tx<'_, '_, C>) -> Result<(), StoreError> {
        if self.waves.is_empty() {
            return Ok(());
        }
        let (mut keys, mut expires, mut recs) = (Vec::new(), Vec::new(), Vec::new());
        for (key, record) in &self.waves {
            keys.push(records::wave_key(key));
            expires.push(big(record.expires_ms));
            recs.push(records::encode(&WaveRecordV::from(*record)));
        }
        tx.execute(
            "INSERT INTO waves (key, expires_ms, record) SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::bytea[]) \
             ON CONFLICT (key) DO UPDATE SET expires_ms = EXCLUDED.expires_ms, record = EXCLUDED.record",
            &[&keys, &expires, &recs],
        )?;
        Ok(())
    }

    fn write_lists<C: postgres::GenericClient>(&self, tx: Tx<'_, '_, C>) -> Result<(), StoreError> {
        if self.lists.is_empty() {
            return Ok(());
        }
        let (mut rooms, mut operator, mut recs) = (Vec::new(), Vec::new(), Vec::new());
        for (room, list) in &self.lists {
            rooms.push(room.as_bytes());
            operator.push(list.operator);
            recs.push(records::encode(&PolicyListRecord::from(*list)));
        }
        tx.execute(
            "INSERT INTO policy_lists (room_id, operator, record) \
             SELECT * FROM unnest($1::bytea[], $2::boolean[], $3::bytea[]) \
             ON CONFLICT (room_id) DO UPDATE SET operator = EXCLUDED.operator, record = EXCLUDED.record",
            &[&rooms, &operator, &recs],
        )?;
        Ok(())
    }

    fn write_rules<C: postgres::GenericClient>(&self, tx: Tx<'_, '_, C>) -> Result<(), StoreError> {
        let (mut rooms, mut kinds, mut keys, mut index, mut recs) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut gone_rooms, mut gone_kinds, mut gone_keys) = (Vec::new(), Vec::new(), Vec::new());
        for ((room, kind, key), rule) in &self.rules {
            match rule {
                Some(rule) => {
                    rooms.push(room.as_bytes());
                    kinds.push(kind.as_bytes());
                    keys.push(key.as_bytes());
                    index.push(index_key(rule).into_bytes());
                    recs.push(records::encode(&RuleV1::from(*rule)));
                }
                None => {
                    gone_rooms.push(room.as_bytes());
                    gone_kinds.push(kind.as_bytes());
                    gone_keys.push(key.as_bytes());
                }
            }
        }
        if !rooms.is_empty() {
            tx.execute(
                "INSERT INTO policy_rules (room_id, kind, state_key, index_key, record) \
                 SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::bytea[], $5::bytea[]) \
                 ON CONFLICT (room_id, kind, state_key) DO UPDATE \
                 SET index_key = EXCLUDED.index_key, record = EXCLUDED.record",
                &[&rooms, &kinds, &keys, &index, &recs],
            )?;
        }
        if !gone_rooms.is_empty() {
            tx.execute(
                "DELETE FROM policy_rules p USING unnest($1::bytea[], $2::bytea[], $3::bytea[]) AS k(r, t, s) \
                 WHERE p.room_id = k.r AND p.kind = k.t AND p.state_key = k.s",
                &[&gone_rooms, &gone_kinds, &gone_keys],
            )?;
        }
        Ok(())
    }

    /// Rooms: every record of each room touched read first, so that the
    /// counts change by what each change replaced, and a room whose last
    /// record goes forgets its list of events consumed, as one change at a
    /// time would.
    fn write_rooms<C: postgres::GenericClient>(&self, tx: Tx<'_, '_, C>) -> Result<(), StoreError> {
        if self.rooms.is_empty() {
            return Ok(());
        }
        let touched: Vec<&[u8]> =
            self.rooms.iter().map(|(r, _, _)| r.as_bytes()).collect::<BTreeSet<_>>().into_iter().collect();
        let mut stored: HashMap<Vec<u8>, BTreeMap<Vec<u8>, RoomState>> = HashMap::new();
        for row in tx.query("SELECT room_id, owner, record FROM rooms WHERE room_id = ANY($1)", &[&touched])? {
            stored.entry(row.get(0)).or_default().insert(row.get(1), decode_room(row.get(2))?);
        }
        let mut deltas = Vec::new();
        let mut last: HashMap<(&OwnedRoomId, &OwnedUserId), Option<&RoomState>> = HashMap::new();
        let mut untracked = BTreeSet::new();
        for (room, owner, after) in &self.rooms {
            let records = stored.entry(room.as_bytes().to_vec()).or_default();
            let before = match after {
                Some(st) => records.insert(owner.as_bytes().to_vec(), (*st).clone()),
                None => records.remove(owner.as_bytes()),
            };
            deltas.extend(tally::room(before.as_ref(), *after));
            if after.is_none() && records.is_empty() {
                untracked.insert(room.as_bytes());
            }
            last.insert((room, owner), *after);
        }
        let (mut ids, mut owners, mut held, mut recs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut gone_ids, mut gone_owners) = (Vec::new(), Vec::new());
        for ((room, owner), after) in &last {
            match after {
                Some(st) => {
                    ids.push(room.as_bytes());
                    owners.push(owner.as_bytes());
                    held.push(matches!(st, RoomState::Held(_)));
                    recs.push(records::encode(&RoomRecord::from(*st)));
                }
                None => {
                    gone_ids.push(room.as_bytes());
                    gone_owners.push(owner.as_bytes());
                }
            }
        }
        if !ids.is_empty() {
            tx.execute(
                "INSERT INTO rooms (room_id, owner, held, record) \
                 SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::boolean[], $4::bytea[]) \
                 ON CONFLICT (room_id, owner) DO UPDATE SET held = EXCLUDED.held, record = EXCLUDED.record",
                &[&ids, &owners, &held, &recs],
            )?;
        }
        if !gone_ids.is_empty() {
            tx.execute(
                "DELETE FROM rooms r USING unnest($1::bytea[], $2::bytea[]) AS k(id, o) \
                 WHERE r.room_id = k.id AND r.owner = k.o",
                &[&gone_ids, &gone_owners],
            )?;
        }
        if !untracked.is_empty() {
            let untracked: Vec<&[u8]> = untracked.into_iter().collect();
            tx.execute("DELETE FROM seen WHERE room_id = ANY($1)", &[&untracked])?;
        }
        count_in(tx, deltas)
    }

    /// Captured messages: those touched read first, for the counts.
    fn write_deferred<C: postgres::GenericClient>(&self, tx: Tx<'_, '_, C>) -> Result<(), StoreError> {
        if self.deferred.is_empty() {
            return Ok(());
        }
        let keys: Vec<(&OwnedUserId, &OwnedEventId)> =
            self.deferred.iter().map(|(o, e, _)| (*o, *e)).collect::<BTreeSet<_>>().into_iter().collect();
        let (o, e): (Vec<&[u8]>, Vec<&[u8]>) = keys.iter().map(|(o, e)| (o.as_bytes(), e.as_bytes())).unzip();
        let mut now: HashMap<(&OwnedUserId, &OwnedEventId), Option<Deferred>> =
            keys.iter().map(|k| (*k, None)).collect();
        for row in tx.query(
            "SELECT k.n, d.record FROM unnest($1::bytea[], $2::bytea[]) WITH ORDINALITY AS k(o, e, n) \
             JOIN deferred d ON d.owner = k.o AND d.event_id = k.e",
            &[&o, &e],
        )? {
            let n: i64 = row.get(0);
            let key = usize::try_from(n - 1)
                .ok()
                .and_then(|i| keys.get(i))
                .ok_or_else(|| StoreError::Backend(format!("a batch read answered key {n} of {}", keys.len())))?;
            now.insert(*key, Some(decode_deferred(row.get(1))?));
        }
        let mut deltas = Vec::new();
        for (owner, event, after) in &self.deferred {
            let slot = now.get_mut(&(*owner, *event)).expect("every key read above");
            deltas.extend(tally::message(slot.as_ref(), *after));
            *slot = after.cloned();
        }
        let (mut owners, mut events, mut received, mut denied, mut recs) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut gone_owners, mut gone_events) = (Vec::new(), Vec::new());
        for ((owner, event), d) in &now {
            match d {
                Some(d) => {
                    owners.push(owner.as_bytes());
                    events.push(event.as_bytes());
                    received.push(big(d.received_ms));
                    denied.push(d.denied_ms.map(big));
                    recs.push(records::encode(&DeferredRecord::from(d)));
                }
                None => {
                    gone_owners.push(owner.as_bytes());
                    gone_events.push(event.as_bytes());
                }
            }
        }
        if !owners.is_empty() {
            tx.execute(
                "INSERT INTO deferred (owner, event_id, received_ms, denied_ms, record) \
                 SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bigint[], $4::bigint[], $5::bytea[]) \
                 ON CONFLICT (owner, event_id) DO UPDATE SET received_ms = EXCLUDED.received_ms, \
                 denied_ms = EXCLUDED.denied_ms, record = EXCLUDED.record",
                &[&owners, &events, &received, &denied, &recs],
            )?;
        }
        if !gone_owners.is_empty() {
            tx.execute(
                "DELETE FROM deferred d USING unnest($1::bytea[], $2::bytea[]) AS k(o, e) \
                 WHERE d.owner = k.o AND d.event_id = k.e",
                &[&gone_owners, &gone_events],
            )?;
        }
        count_in(tx, deltas)
    }
}
