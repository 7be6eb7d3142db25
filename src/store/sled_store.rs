//! The sled-backed store. Every multi-key change is one sled transaction,
//! so a crash leaves either all of it or none of it.

use std::path::Path;
use std::sync::Mutex;

use ruma::{EventId, OwnedUserId, RoomId, UserId};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::{Transactional, Tree};

use super::policy_records::{
    INDEX_TAG, PolicyListRecord, RULE_TAG, RuleV1, index_entry, rule_key, rule_prefix, slot_after,
};
use super::records::{
    self, ContactRecord, DeferredRecord, EffectRecord, FailedEffectRecord, OwnerRecord, QuarantineRecord, RoomRecord,
    SeenRecord, StrangerRecord, TxnRecord, WaveRecordV, pair_key,
};
use super::*;
use crate::engine::policy::{Slot, index_key};
use crate::engine::{
    Contact, Decision, Deferred, Due, Kept, RoomState, StateChange, StrangerState, Subject, WaveKey, WaveRecord,
};

/// Inbox values start with their source, so a homeserver event can never
/// be read as one of our look-up results.
const FROM_HOMESERVER: u8 = b'H';
const FROM_LOOKUP: u8 = b'I';
/// A transaction from the homeserver, stored whole as the intake received
/// it (one write per transaction); split into its events when processed.
const FROM_TRANSACTION: u8 = b'T';

/// Inbox keys leave room for a stored transaction's events: event `i` of
/// the transaction stored under key `k` is inbox item `k + i`. Keys are
/// sled's monotonic IDs shifted by this much (a database from before kept
/// its items under unshifted, smaller IDs: they stay first, in order).
const SLOT_BITS: u32 = 20;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
/// The most events one stored record holds; a longer transaction is
/// stored as several records, in the same write.
const RECORD_EVENTS: usize = 1 << SLOT_BITS;

/// A stored transaction's value: its tag, the number of events, then each
/// event's length and raw bytes.
fn transaction_value(events: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + events.iter().map(|e| e.len() + 4).sum::<usize>());
    v.push(FROM_TRANSACTION);
    v.extend_from_slice(&(events.len() as u32).to_be_bytes());
    for e in events {
        v.extend_from_slice(&(e.len() as u32).to_be_bytes());
        v.extend_from_slice(e);
    }
    v
}

/// The events of a stored transaction's value (as [`transaction_value`]
/// wrote it, tag included).
fn transaction_events(v: &[u8]) -> Result<Vec<&[u8]>, StoreError> {
    let corrupt = corrupt_transaction;
    let take4 = |at: usize| -> Result<usize, StoreError> {
        let b: [u8; 4] = v.get(at..at + 4).and_then(|b| b.try_into().ok()).ok_or_else(corrupt)?;
        Ok(u32::from_be_bytes(b) as usize)
    };
    let count = take4(1)?;
    let mut events = Vec::with_capacity(count.min(RECORD_EVENTS));
    let mut at = 5;
    for _ in 0..count {
        let len = take4(at)?;
        events.push(v.get(at + 4..at + 4 + len).ok_or_else(corrupt)?);
        at += 4 + len;
    }
    Ok(events)
}

fn corrupt_transaction() -> StoreError {
    StoreError::Corrupt("stored transaction".into())
}

/// Event `i` of a stored transaction's value, read without the others.
fn transaction_event(v: &[u8], i: usize) -> Option<&[u8]> {
    let len_at = |at: usize| v.get(at..at + 4).and_then(|b| b.try_into().ok()).map(|b| u32::from_be_bytes(b) as usize);
    let mut at = 5;
    for _ in 0..i {
        at += 4 + len_at(at)?;
    }
    v.get(at + 4..at + 4 + len_at(at)?)
}

/// How many events a stored transaction's value holds.
fn transaction_len(v: &[u8]) -> usize {
    v.get(1..5).and_then(|b| b.try_into().ok()).map_or(0, |b| u32::from_be_bytes(b) as usize)
}

fn is_transaction(v: &[u8]) -> bool {
    v.first() == Some(&FROM_TRANSACTION)
}

/// Which events of a stored transaction were consumed: one bit each.
fn consumed(done: Option<&[u8]>, i: usize) -> bool {
    done.and_then(|d| d.get(i / 8)).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

fn inbox_value(internal: bool, raw: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(raw.len() + 1);
    v.push(if internal { FROM_LOOKUP } else { FROM_HOMESERVER });
    v.extend_from_slice(raw);
    v
}

fn inbox_item(seq: u64, v: &[u8]) -> InboxItem {
    match v.split_first() {
        Some((&FROM_LOOKUP, raw)) => InboxItem { seq, internal: true, raw: raw.to_vec() },
        Some((_, raw)) => InboxItem { seq, internal: false, raw: raw.to_vec() },
        None => InboxItem { seq, internal: false, raw: Vec::new() },
    }
}

const C_TRANSACTIONS: &str = "transactions";
const C_REPLAYS: &str = "replayed_transactions";
const C_RECEIVED: &str = "events_received";
const C_FOLLOW_UPS: &str = "follow_ups";
const C_PROCESSED: &str = "events_processed";
const C_QUARANTINED: &str = "events_quarantined";
const C_EFFECTS_DONE: &str = "effects_done";
const C_EFFECTS_FAILED: &str = "effects_failed";
const K_OUTBOX_HIGH: &str = "outbox_high_water";
// Sizes kept with every write that changes them, so that /metrics reads
// three keys instead of counting three trees.
const G_INBOX: &str = "inbox_len";
const G_OUTBOX: &str = "outbox_len";
const G_OWNERS: &str = "owners_len";
const G_BUILT: &str = "sizes_built";
/// Kept apart from connector values: no connector key can overwrite it.
const K_SYNC_POSITION: &str = "sync_position";
const K_TXN_HIGH: &str = "highest_transaction_number";

pub struct SledStore {
    db: sled::Db,
    txn_by_id: Tree,
    inbox_by_seq: Tree,
    outbox_by_id: Tree,
    owner_by_user: Tree,
    /// Each owner's record of a room (`room \0 owner`): a room may be held
    /// for several owners, each on their own.
    room_by_id_owner: Tree,
    contact_by_owner_user: Tree,
    stranger_by_owner_user: Tree,
    deferred_by_owner_event: Tree,
    /// Wave records, by `records::wave_key`.
    wave_by_key: Tree,
    /// Followed ban lists: `l\0room` the list (`policy_records`), and
    /// `o\0room` (empty) for each of the operator's, so they are found
    /// without reading every list.
    policy_by_room: Tree,
    quarantine_by_seq: Tree,
    used_link_by_nonce: Tree,
    failed_effect_by_id: Tree,
    counters: Tree,
    connector: Tree,
    /// Counts of held rooms and kept messages (see `tally`).
    kept_by_key: Tree,
    /// Each owner's held rooms (`owner \0 room`), so that an owner's
    /// overview reads their rooms and no one else's.
    held_by_owner_room: Tree,
    /// The events consumed last from each tracked room (see `Seen`).
    seen_by_room: Tree,
    /// For each stored transaction partly consumed, which of its events
    /// are (a bitmap), by the transaction's inbox key.
    inbox_done: Tree,
    /// The files behind `db`, synced before anything is acknowledged.
    files: super::durable::FileSync,
    /// Serialises intake so that inbox order is arrival order; sled's own
    /// locking would allow two transactions' events to interleave.
    intake: Mutex<()>,
    /// How many events the quarantine keeps, once counted: its bound is
    /// enforced as each is set aside, without walking the tree each time.
    quarantine_len: Mutex<Option<usize>>,
    /// The first I/O error. sled keeps any it meets while writing its log
    /// and fails every later write with it, so this is for good until the
    /// database is reopened.
    failure: Mutex<Option<String>>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Moves a kept size up or down.
fn resize(t: &TransactionalTree, key: &str, by: i64) -> Result<(), ConflictableTransactionError<StoreError>> {
    if by == 0 {
        return Ok(());
    }
    let now = t.get(key)?.map_or(0, |v| read_u64(&v));
    t.insert(key, &now.saturating_add_signed(by).to_be_bytes())?;
    Ok(())
}

fn bump(t: &TransactionalTree, key: &str, by: u64) -> Result<(), ConflictableTransactionError<StoreError>> {
    let old = t.get(key)?.map_or(0, |v| read_u64(&v));
    t.insert(key, &(old + by).to_be_bytes())?;
    Ok(())
}

fn read_u64(v: &[u8]) -> u64 {
    v.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

fn seq_of(key: &[u8]) -> u64 {
    read_u64(key)
}

const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// sled reports a held lock as a generic I/O error with this wording.
fn is_lock_conflict(e: &sled::Error) -> bool {
    match e {
        sled::Error::Io(io) => {
            io.kind() == std::io::ErrorKind::WouldBlock
                || io.raw_os_error() == Some(11)
                || io.to_string().contains("could not acquire lock")
        }
        _ => false,
    }
}

impl SledStore {
    pub fn open(path: &Path, cache_capacity_mb: u64) -> Result<Self, StoreError> {
        // A database just dropped in this process can still be locked for a
        // moment by sled's background I/O threads; another process holding
        // it keeps it for good. So a lock is waited on briefly, then reported.
        let give_up = std::time::Instant::now() + LOCK_WAIT;
        // Readable by Gatekeeper's user only, whatever the umask: before the
        // open (the directory), and after it (the files sled made).
        let private = |what: &str| {
            super::private::make_private(path)
                .map_err(|e| backend(format!("making {} private ({what}): {e}", path.display())))
        };
        private("before opening")?;
        let db = loop {
            match sled::Config::new().path(path).cache_capacity(cache_capacity_mb * 1024 * 1024).open() {
                Ok(db) => break db,
                Err(e) if is_lock_conflict(&e) => {
                    if std::time::Instant::now() >= give_up {
                        return Err(StoreError::Locked { path: path.display().to_string() });
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(other) => return Err(backend(format!("opening {}: {other}", path.display()))),
            }
        };
        let tree = |name: &str| db.open_tree(name).map_err(backend);
        let rooms_per_room = tree("room_by_id")?;
        private("after opening")?;
        Self {
            txn_by_id: tree("txn_by_id")?,
            inbox_by_seq: tree("inbox_by_seq")?,
            outbox_by_id: tree("outbox_by_id")?,
            owner_by_user: tree("owner_by_user")?,
            room_by_id_owner: tree("room_by_id_owner")?,
            contact_by_owner_user: tree("contact_by_owner_user")?,
            stranger_by_owner_user: tree("stranger_by_owner_user")?,
            deferred_by_owner_event: tree("deferred_by_owner_event")?,
            wave_by_key: tree("wave_by_key")?,
            policy_by_room: tree("policy_by_room")?,
            quarantine_by_seq: tree("quarantine_by_seq")?,
            used_link_by_nonce: tree("used_link_by_nonce")?,
            failed_effect_by_id: tree("failed_effect_by_id")?,
            counters: tree("counters")?,
            connector: tree("connector")?,
            kept_by_key: tree("kept_by_key")?,
            held_by_owner_room: tree("held_by_owner_room")?,
            seen_by_room: tree("seen_by_room")?,
            inbox_done: tree("inbox_done")?,
            files: super::durable::FileSync::open(path)
                .map_err(|e| backend(format!("syncing the files of {}: {e}", path.display())))?,
            intake: Mutex::new(()),
            quarantine_len: Mutex::new(None),
            failure: Mutex::new(None),
            db,
        }
        .with_rooms_by_owner(&rooms_per_room)?
        .with_rules_apart()?
        .with_tallies()
    }

    /// Moves rooms from the tree that kept one record per room (before a
    /// room could be held for several owners) to one record per room and
    /// owner. Copies, then clears: a crash in between copies again.
    fn with_rooms_by_owner(self, old: &Tree) -> Result<Self, StoreError> {
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
    fn with_rules_apart(self) -> Result<Self, StoreError> {
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
            batch.insert(k, records::encode(&PolicyListRecord::from(&list)));
            moved += 1;
        }
        if moved > 0 {
            self.policy_by_room.apply_batch(batch).map_err(|e| self.failed(e))?;
            self.policy_by_room.flush().map_err(|e| self.failed(e))?;
            tracing::info!(lists = moved, "ban lists' rules moved to records of their own");
        }
        Ok(self)
    }

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

    /// Counts what is kept, and indexes held rooms by owner, once for a
    /// database written before these were: from then on every write keeps them.
    fn with_tallies(self) -> Result<Self, StoreError> {
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

    fn count(&self, key: &tally::Key) -> Result<u64, StoreError> {
        Ok(self.kept_by_key.get(key.encode()).map_err(|e| self.failed(e))?.map(|v| read_u64(&v)).unwrap_or(0))
    }

    /// Maps a sled error, keeping the first I/O error: sled fails every
    /// later write with it until the database is reopened.
    fn failed(&self, e: sled::Error) -> StoreError {
        if let sled::Error::Io(io) = &e {
            self.failure.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(|| io.to_string());
        }
        backend(e)
    }

    fn failed_tx(&self, e: TransactionError<StoreError>) -> StoreError {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => self.failed(e),
        }
    }

    fn counter(&self, key: &str) -> Result<u64, StoreError> {
        Ok(self.counters.get(key).map_err(|e| self.failed(e))?.map_or(0, |v| read_u64(&v)))
    }

    /// A new inbox key, after every one in use (see [`SLOT_BITS`]).
    fn next_seq(&self) -> Result<u64, StoreError> {
        let id = self.db.generate_id().map_err(|e| self.failed(e))?;
        id.checked_mul(1 << SLOT_BITS).ok_or_else(|| StoreError::Corrupt(format!("inbox ID {id} out of range")))
    }

    fn next_seqs(&self, n: usize) -> Result<Vec<u64>, StoreError> {
        (0..n).map(|_| self.next_seq()).collect()
    }

    /// Flushes, then syncs the files (see [`super::durable`]): what is
    /// written survives a power cut, not only a crash. For what is
    /// acknowledged to someone else (the homeserver, a sync position).
    fn durable(&self) -> Result<(), StoreError> {
        self.flush()?;
        self.files.sync().map_err(|e| {
            // After a failed fsync the kernel may have dropped the pages it
            // could not write: nothing written since can be trusted until
            // the database is reopened.
            self.failure.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(|| e.to_string());
            backend(format!("syncing the database files: {e}"))
        })
    }

    /// How many events wait in the inbox, counted by reading it (the kept
    /// size, `inbox_len`, must say the same).
    #[cfg(test)]
    fn inbox_events(&self) -> u64 {
        self.inbox_batch(usize::MAX).unwrap().len() as u64
    }
}

/// Consumes inbox items inside one sled transaction: plain entries, and
/// events of stored transactions, whose consumed events are noted in
/// `inbox_done` and which go once their last event does. [`Taker::finish`]
/// writes what was noted.
struct Taker<'t> {
    inbox: &'t TransactionalTree,
    done: &'t TransactionalTree,
    /// Per stored transaction touched: its value and its consumed bitmap.
    records: std::collections::HashMap<u64, (sled::IVec, Vec<u8>)>,
}

impl<'t> Taker<'t> {
    fn new(inbox: &'t TransactionalTree, done: &'t TransactionalTree) -> Self {
        Taker { inbox, done, records: Default::default() }
    }

    /// Consumes item `seq`; `false` if it was consumed before.
    fn consume(&mut self, seq: u64) -> Result<bool, ConflictableTransactionError<StoreError>> {
        Ok(self.take_as(seq, false)?.is_some())
    }

    /// Consumes item `seq`: its source and raw bytes, or `None` if it was
    /// consumed before.
    fn take(&mut self, seq: u64) -> Result<Option<InboxItem>, ConflictableTransactionError<StoreError>> {
        self.take_as(seq, true)
    }

    /// [`Taker::take`], reading the event's bytes only if `raw`.
    fn take_as(&mut self, seq: u64, raw: bool) -> Result<Option<InboxItem>, ConflictableTransactionError<StoreError>> {
        let key = seq.to_be_bytes();
        let (base, i) = match self.inbox.get(key)? {
            Some(v) if !is_transaction(&v) => {
                self.inbox.remove(&key)?;
                return Ok(Some(inbox_item(seq, &v)));
            }
            Some(_) => (seq, 0),
            None if seq & SLOT_MASK == 0 => return Ok(None),
            None => (seq & !SLOT_MASK, (seq & SLOT_MASK) as usize),
        };
        let (value, done) = match self.records.entry(base) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let Some(value) = self.inbox.get(base.to_be_bytes())?.filter(|v| is_transaction(v)) else {
                    return Ok(None);
                };
                let done = self.done.get(base.to_be_bytes())?.map(|d| d.to_vec()).unwrap_or_default();
                v.insert((value, done))
            }
        };
        let len = transaction_len(value);
        if i >= len || consumed(Some(done), i) {
            return Ok(None);
        }
        done.resize(len.div_ceil(8), 0);
        done[i / 8] |= 1 << (i % 8);
        let raw = if raw {
            transaction_event(value, i).ok_or(ConflictableTransactionError::Abort(corrupt_transaction()))?.to_vec()
        } else {
            Vec::new()
        };
        Ok(Some(InboxItem { seq, internal: false, raw }))
    }

    /// Writes which events of each stored transaction touched are
    /// consumed; a transaction whose events all are goes.
    fn finish(self) -> Result<(), ConflictableTransactionError<StoreError>> {
        for (base, (value, done)) in self.records {
            let key = base.to_be_bytes();
            if (0..transaction_len(&value)).all(|i| consumed(Some(&done), i)) {
                self.inbox.remove(&key)?;
                self.done.remove(&key)?;
            } else if !done.is_empty() {
                self.done.insert(&key, done)?;
            }
        }
        Ok(())
    }
}

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
            Some(b) => Ok(Some(records::decode::<PolicyListRecord>("policy list", &b)?.into())),
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

/// Applies count changes inside a transaction.
fn count_in(
    t: &TransactionalTree,
    deltas: Vec<(tally::Key, i64)>,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    for (key, delta) in deltas {
        let key = key.encode();
        let now = t.get(&key)?.map(|v| read_u64(&v)).unwrap_or(0);
        t.insert(key, &tally::apply(now, delta).to_be_bytes())?;
    }
    Ok(())
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

impl Store for SledStore {
    fn accept_transaction(&self, txn_id: &str, events: &[&[u8]], now_ms: u64) -> Result<Accepted, StoreError> {
        let digest = records::hex(&transaction_digest(events));
        let _guard = self.intake.lock().unwrap_or_else(|p| p.into_inner());
        let reused = match self.txn_by_id.get(txn_id).map_err(|e| self.failed(e))? {
            Some(bytes) => {
                let TxnRecord::V1 { digest: seen, .. } = records::decode("transaction", &bytes)?;
                if seen == digest {
                    self.counters
                        .transaction(|c| bump(c, C_REPLAYS, 1))
                        .map_err(|e: TransactionError<StoreError>| self.failed_tx(e))?;
                    return Ok(Accepted::Replay);
                }
                true
            }
            None => false,
        };
        // The transaction whole, as one record (several only past
        // `RECORD_EVENTS` events), its ID with it: one write, then one
        // sync. It is split into events when processed.
        let records: Vec<Vec<u8>> = events.chunks(RECORD_EVENTS).map(transaction_value).collect();
        // IDs are taken before the transaction so a conflict retry reuses them.
        let seqs = self.next_seqs(records.len())?;
        let record = records::encode(&TxnRecord::V1 { at_ms: now_ms, digest, events: events.len() });
        (&self.txn_by_id, &self.inbox_by_seq, &self.counters)
            .transaction(|(txns, inbox, counters)| {
                txns.insert(txn_id.as_bytes(), record.as_slice())?;
                for (seq, value) in seqs.iter().zip(&records) {
                    inbox.insert(&seq.to_be_bytes(), value.as_slice())?;
                }
                bump(counters, C_TRANSACTIONS, 1)?;
                bump(counters, C_RECEIVED, events.len() as u64)?;
                resize(counters, G_INBOX, events.len() as i64)?;
                if let Ok(n) = txn_id.parse::<u64>() {
                    let high = counters.get(K_TXN_HIGH)?.map(|v| read_u64(&v));
                    if high.is_none_or(|h| n > h) {
                        counters.insert(K_TXN_HIGH, &n.to_be_bytes())?;
                    }
                }
                Ok(())
            })
            .map_err(|e| self.failed_tx(e))?;
        self.durable()?;
        Ok(if reused { Accepted::ReusedId { events: events.len() } } else { Accepted::New { events: events.len() } })
    }

    fn highest_transaction_number(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.counters.get(K_TXN_HIGH).map_err(|e| self.failed(e))?.map(|v| read_u64(&v)))
    }

    fn accept_sync(&self, since: Option<&str>, next_batch: &str, events: &[&[u8]]) -> Result<bool, StoreError> {
        let _guard = self.intake.lock().unwrap_or_else(|p| p.into_inner());
        let seqs = self.next_seqs(events.len())?;
        let stored = (&self.counters, &self.inbox_by_seq)
            .transaction(|(counters, inbox)| {
                let now = counters.get(K_SYNC_POSITION)?;
                if now.as_deref() != since.map(str::as_bytes) {
                    return Ok(false);
                }
                counters.insert(K_SYNC_POSITION, next_batch.as_bytes())?;
                for (seq, raw) in seqs.iter().zip(events) {
                    inbox.insert(&seq.to_be_bytes(), inbox_value(false, raw))?;
                }
                bump(counters, C_RECEIVED, events.len() as u64)?;
                resize(counters, G_INBOX, events.len() as i64)?;
                Ok(true)
            })
            .map_err(|e| self.failed_tx(e))?;
        // The position is acknowledged to the homeserver by the next sync.
        self.durable()?;
        Ok(stored)
    }

    fn sync_position(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .counters
            .get(K_SYNC_POSITION)
            .map_err(|e| self.failed(e))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn reset_sync_position(&self) -> Result<(), StoreError> {
        self.counters.remove(K_SYNC_POSITION).map_err(|e| self.failed(e))?;
        self.durable()
    }

    fn connector_value(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.connector.get(key).map_err(|e| self.failed(e))?.map(|v| v.to_vec()))
    }

    fn set_connector_value(&self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        match value {
            Some(v) => self.connector.insert(key, v).map(drop),
            None => self.connector.remove(key).map(drop),
        }
        .map_err(|e| self.failed(e))?;
        self.flush()
    }

    fn connector_values(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.connector
            .scan_prefix(prefix)
            .map(|r| r.map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v.to_vec())).map_err(|e| self.failed(e)))
            .collect()
    }

    fn inbox_batch(&self, limit: usize) -> Result<Vec<InboxItem>, StoreError> {
        let mut out = Vec::new();
        for entry in self.inbox_by_seq.iter() {
            if out.len() >= limit {
                break;
            }
            let (k, v) = entry.map_err(|e| self.failed(e))?;
            let seq = seq_of(&k);
            if !is_transaction(&v) {
                out.push(inbox_item(seq, &v));
                continue;
            }
            // A stored transaction: its events not consumed yet.
            let done = self.inbox_done.get(&k).map_err(|e| self.failed(e))?;
            for (i, raw) in transaction_events(&v)?.into_iter().enumerate() {
                if out.len() >= limit {
                    break;
                }
                if !consumed(done.as_deref(), i) {
                    out.push(InboxItem { seq: seq + i as u64, internal: false, raw: raw.to_vec() });
                }
            }
        }
        Ok(out)
    }

    fn overview(&self, owner: &UserId) -> Result<OwnerOverview, StoreError> {
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

    fn commit_batch_seen(&self, decided: &[(u64, &Decision)], empty: &[u64], seen: &[Seen]) -> Result<(), StoreError> {
        let effect_ids: Vec<Vec<u64>> = decided
            .iter()
            .map(|(_, d)| d.effects.iter().map(|_| self.db.generate_id().map_err(|e| self.failed(e))).collect())
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
                                    count_in(kept, tally::room(before.as_ref(), Some(st)))?;
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
                                    count_in(kept, tally::room(before.as_ref(), None))?;
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
                                    count_in(kept, tally::message(before.as_ref(), Some(d)))?;
                                    written.push((2, key));
                                }
                                StateChange::RemoveDeferred { owner, event_id } => {
                                    let before = deferred.remove(pair_key(owner.as_str(), event_id.as_str()))?;
                                    let before = decoded::<DeferredRecord, Deferred>("deferred", before)?;
                                    count_in(kept, tally::message(before.as_ref(), None))?;
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
                                                count_in(kept, tally::message(before.as_ref(), None))?;
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
                                    policy
                                        .insert(pair_key("l", room), records::encode(&PolicyListRecord::from(list)))?;
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
                        super::remember(list, &s.event);
                    }
                    for (room, list) in &lists {
                        seen_rooms.insert(room.as_bytes(), records::encode(&SeenRecord::from(list.as_slice())))?;
                    }
                    Ok(())
                },
            )
            .map_err(|e| self.failed_tx(e))
    }

    fn seen_rooms(&self) -> Result<Vec<(ruma::OwnedRoomId, Vec<ruma::OwnedEventId>)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.seen_by_room.iter() {
            let (k, v) = entry.map_err(|e| self.failed(e))?;
            let room = ruma::OwnedRoomId::try_from(String::from_utf8_lossy(&k).into_owned())
                .map_err(|e| StoreError::Corrupt(format!("seen key: {e}")))?;
            out.push((room, records::decode::<SeenRecord>("seen", &v)?.into()));
        }
        Ok(out)
    }

    fn push_follow_ups(&self, follow_ups: &[FollowUp]) -> Result<(), StoreError> {
        if follow_ups.is_empty() {
            return Ok(());
        }
        let seqs = self.next_seqs(follow_ups.len())?;
        (&self.inbox_by_seq, &self.counters)
            .transaction(|(inbox, counters)| {
                for (seq, f) in seqs.iter().zip(follow_ups) {
                    inbox.insert(&seq.to_be_bytes(), inbox_value(f.internal, &f.raw))?;
                }
                bump(counters, C_FOLLOW_UPS, follow_ups.len() as u64)?;
                resize(counters, G_INBOX, follow_ups.len() as i64)?;
                Ok(())
            })
            .map_err(|e| self.failed_tx(e))?;
        self.flush()
    }

    fn quarantine(&self, seq: u64, reason: &str, now_ms: u64) -> Result<(), StoreError> {
        let mut kept = self.quarantine_len.lock().unwrap_or_else(|p| p.into_inner());
        let before = match *kept {
            Some(n) => n,
            // Counted once per start (sled counts by walking the tree).
            None => self.quarantine_by_seq.len(),
        };
        let added = (&self.inbox_by_seq, &self.quarantine_by_seq, &self.counters, &self.inbox_done)
            .transaction(|(inbox, quarantine, counters, done)| {
                let mut taker = Taker::new(inbox, done);
                let Some(InboxItem { raw, .. }) = taker.take(seq)? else {
                    return Ok(0);
                };
                taker.finish()?;
                let record = QuarantineRecord::V1 {
                    at_ms: now_ms,
                    reason: reason.to_owned(),
                    raw: super::quarantined_raw(&raw),
                };
                quarantine.insert(&seq.to_be_bytes(), records::encode(&record))?;
                bump(counters, C_QUARANTINED, 1)?;
                resize(counters, G_INBOX, -1)?;
                Ok(1)
            })
            .map_err(|e| self.failed_tx(e))?;
        // Beyond the bound the oldest go at once (keys are inbox sequence
        // numbers: oldest first). A crash in between leaves one too many,
        // dropped by the next call.
        let mut now_kept = before + added;
        while now_kept > super::QUARANTINE_KEEP {
            if self.quarantine_by_seq.pop_min().map_err(|e| self.failed(e))?.is_none() {
                break;
            }
            now_kept -= 1;
        }
        *kept = Some(now_kept);
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(|e| self.failed(e))
    }

    fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn outbox_after(&self, after: u64, up_to: u64, limit: usize, mail: bool) -> Result<Vec<OutboxItem>, StoreError> {
        let mut out = Vec::new();
        if after >= up_to {
            return Ok(out);
        }
        for entry in self.outbox_by_id.range((after + 1).to_be_bytes()..=up_to.to_be_bytes()) {
            if out.len() == limit {
                break;
            }
            let (k, v) = entry.map_err(|e| self.failed(e))?;
            let EffectRecord::V1(record) = records::decode("effect", &v)?;
            let effect: Effect = record.into();
            if effect.is_mail() == mail {
                out.push(OutboxItem { id: seq_of(&k), effect });
            }
        }
        Ok(out)
    }

    fn outbox_high_water(&self) -> Result<u64, StoreError> {
        self.counter(K_OUTBOX_HIGH)
    }

    fn finish_effects(
        &self,
        finished: &[(u64, EffectOutcome)],
        follow_ups: &[FollowUp],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let Some((first, _)) = finished.first() else { return Ok(()) };
        let seqs = self.next_seqs(follow_ups.len())?;
        (&self.outbox_by_id, &self.failed_effect_by_id, &self.counters, &self.inbox_by_seq)
            .transaction(|(outbox, failed, counters, inbox)| {
                if outbox.get(first.to_be_bytes())?.is_none() {
                    return Ok(());
                }
                for (seq, f) in seqs.iter().zip(follow_ups) {
                    inbox.insert(&seq.to_be_bytes(), inbox_value(f.internal, &f.raw))?;
                }
                bump(counters, C_FOLLOW_UPS, follow_ups.len() as u64)?;
                resize(counters, G_INBOX, follow_ups.len() as i64)?;
                for (id, outcome) in finished {
                    let Some(bytes) = outbox.remove(&id.to_be_bytes())? else { continue };
                    resize(counters, G_OUTBOX, -1)?;
                    match outcome {
                        EffectOutcome::Done => bump(counters, C_EFFECTS_DONE, 1)?,
                        EffectOutcome::Failed(reason) => {
                            let EffectRecord::V1(effect) =
                                records::decode("effect", &bytes).map_err(ConflictableTransactionError::Abort)?;
                            let record = FailedEffectRecord::V1 { at_ms: now_ms, reason: reason.clone(), effect };
                            failed.insert(&id.to_be_bytes(), records::encode(&record))?;
                            bump(counters, C_EFFECTS_FAILED, 1)?;
                        }
                    }
                }
                Ok(())
            })
            .map_err(|e| self.failed_tx(e))?;
        self.flush()
    }

    fn stats(&self) -> Result<Stats, StoreError> {
        Ok(Stats {
            transactions: self.counter(C_TRANSACTIONS)?,
            replayed_transactions: self.counter(C_REPLAYS)?,
            events_received: self.counter(C_RECEIVED)?,
            follow_ups: self.counter(C_FOLLOW_UPS)?,
            events_processed: self.counter(C_PROCESSED)?,
            events_quarantined: self.counter(C_QUARANTINED)?,
            effects_done: self.counter(C_EFFECTS_DONE)?,
            effects_failed: self.counter(C_EFFECTS_FAILED)?,
            inbox_pending: self.counter(G_INBOX)?,
            outbox_pending: self.counter(G_OUTBOX)?,
            owners: self.counter(G_OWNERS)?,
            deferred_messages: self.count(&tally::Key { what: tally::What::Messages, owner: None, with: None })?,
        })
    }

    fn prune_quarantine(&self, before_ms: u64, keep: usize) -> Result<usize, StoreError> {
        let mut kept = self.quarantine_len.lock().unwrap_or_else(|p| p.into_inner());
        // Counted again after pruning.
        *kept = None;
        let mut excess = self.quarantine_by_seq.len().saturating_sub(keep);
        let mut removed = 0;
        // Oldest first (keys are inbox sequence numbers).
        for entry in self.quarantine_by_seq.iter() {
            let (k, v) = entry.map_err(|e| self.failed(e))?;
            let QuarantineRecord::V1 { at_ms, .. } = records::decode("quarantine", &v)?;
            if excess == 0 && at_ms >= before_ms {
                continue;
            }
            self.quarantine_by_seq.remove(k).map_err(|e| self.failed(e))?;
            excess = excess.saturating_sub(1);
            removed += 1;
        }
        Ok(removed)
    }

    fn quarantined(&self, limit: usize) -> Result<Vec<QuarantinedEvent>, StoreError> {
        let mut out = Vec::new();
        for entry in self.quarantine_by_seq.iter().take(limit) {
            let (k, v) = entry.map_err(|e| self.failed(e))?;
            let QuarantineRecord::V1 { at_ms, reason, raw } = records::decode("quarantine", &v)?;
            out.push(QuarantinedEvent { seq: seq_of(&k), at_ms, reason, raw });
        }
        Ok(out)
    }

    fn failed_effects(&self, limit: usize) -> Result<Vec<FailedEffect>, StoreError> {
        let mut out = Vec::new();
        for entry in self.failed_effect_by_id.iter().take(limit) {
            let (k, v) = entry.map_err(|e| self.failed(e))?;
            let FailedEffectRecord::V1 { at_ms, reason, effect } = records::decode("failed effect", &v)?;
            out.push(FailedEffect { id: seq_of(&k), at_ms, reason, effect: records::effect_summary(&effect.into()) });
        }
        Ok(out)
    }

    fn policy_lists(&self) -> Result<Vec<crate::engine::policy::PolicyList>, StoreError> {
        self.policy_by_room
            .scan_prefix(pair_key("l", ""))
            .values()
            .map(|v| Ok(records::decode::<PolicyListRecord>("policy list", &v.map_err(|e| self.failed(e))?)?.into()))
            .collect()
    }

    fn owners(&self) -> Result<Vec<OwnerState>, StoreError> {
        self.owner_by_user
            .iter()
            .map(|r| {
                r.map_err(|e| self.failed(e)).and_then(|(_, v)| Ok(records::decode::<OwnerRecord>("owner", &v)?.into()))
            })
            .collect()
    }

    fn due(&self, now_ms: u64) -> Result<Due, StoreError> {
        // A scan: expiring allows and pauses are rare, and this runs every
        // housekeeping interval, not per event.
        let mut due = Due::default();
        for entry in self.contact_by_owner_user.iter() {
            let (k, v) = entry.map_err(|e| self.failed(e))?;
            if let Contact::Allowed { until_ms: Some(until), .. } =
                records::decode::<ContactRecord>("contact", &v)?.into()
                && until <= now_ms
            {
                let key = String::from_utf8_lossy(&k).into_owned();
                let Some((owner, subject)) = key.split_once('\0') else { continue };
                let owner =
                    OwnedUserId::try_from(owner).map_err(|e| StoreError::Corrupt(format!("contact key: {e}")))?;
                let subject: Subject = subject.parse().map_err(|e| StoreError::Corrupt(format!("contact key: {e}")))?;
                due.expired.push((owner, subject));
            }
        }
        for entry in self.owner_by_user.iter() {
            let (_, v) = entry.map_err(|e| self.failed(e))?;
            let owner: OwnerState = records::decode::<OwnerRecord>("owner", &v)?.into();
            if owner.paused_until_ms.is_some_and(|u| u <= now_ms) {
                due.unpause.push(owner);
            }
        }
        Ok(due)
    }

    fn use_link(&self, nonce: &str, expires_ms: u64, raw: &[u8]) -> Result<bool, StoreError> {
        let seq = self.next_seq()?;
        let used = (&self.used_link_by_nonce, &self.inbox_by_seq, &self.counters)
            .transaction(|(links, inbox, counters)| {
                if links.get(nonce.as_bytes())?.is_some() {
                    return Ok(false);
                }
                links.insert(nonce.as_bytes(), &expires_ms.to_be_bytes())?;
                inbox.insert(&seq.to_be_bytes(), inbox_value(true, raw))?;
                resize(counters, G_INBOX, 1)?;
                Ok(true)
            })
            .map_err(|e| self.failed_tx(e))?;
        // The page that confirms it is an acknowledgement too.
        self.durable()?;
        Ok(used)
    }

    fn push_internal(&self, raw: &[u8]) -> Result<(), StoreError> {
        let seq = self.next_seq()?;
        (&self.inbox_by_seq, &self.counters)
            .transaction(|(inbox, counters)| {
                inbox.insert(&seq.to_be_bytes(), inbox_value(true, raw))?;
                resize(counters, G_INBOX, 1)
            })
            .map_err(|e| self.failed_tx(e))?;
        self.flush()
    }

    fn prune_deferred(&self, owner: &UserId, before_ms: u64, denied_before_ms: u64) -> Result<usize, StoreError> {
        let mut removed = 0;
        for entry in self.deferred_by_owner_event.scan_prefix(records::owner_prefix(owner.as_str())) {
            let (k, v) = entry.map_err(|e| self.failed(e))?;
            let d: Deferred = records::decode::<DeferredRecord>("deferred", &v)?.into();
            if d.received_ms >= before_ms && d.denied_ms.is_none_or(|t| t >= denied_before_ms) {
                continue;
            }
            // Only if unchanged, so a concurrent edit of the same message
            // wins; the counts change in the same write.
            let gone = (&self.deferred_by_owner_event, &self.kept_by_key)
                .transaction(|(deferred, kept)| {
                    if deferred.get(&k)?.as_ref() != Some(&v) {
                        return Ok(false);
                    }
                    deferred.remove(&k)?;
                    count_in(kept, tally::message(Some(&d), None))?;
                    Ok(true)
                })
                .map_err(|e| self.failed_tx(e))?;
            removed += usize::from(gone);
        }
        Ok(removed)
    }

    fn prune_waves(&self, now_ms: u64) -> Result<usize, StoreError> {
        let mut removed = 0;
        for entry in self.wave_by_key.iter() {
            let (k, v) = entry.map_err(|e| self.failed(e))?;
            let w: WaveRecord = records::decode::<WaveRecordV>("wave", &v)?.into();
            // Compare-and-swap so an invite noted meanwhile keeps its record.
            if w.expires_ms <= now_ms
                && self.wave_by_key.compare_and_swap(&k, Some(&v), None::<&[u8]>).map_err(|e| self.failed(e))?.is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn wave_records(&self) -> Result<usize, StoreError> {
        Ok(self.wave_by_key.len())
    }

    fn prune_transactions(&self, before_ms: u64) -> Result<usize, StoreError> {
        let mut removed = 0;
        for entry in self.txn_by_id.iter() {
            let (k, v) = entry.map_err(|e| self.failed(e))?;
            let TxnRecord::V1 { at_ms, .. } = records::decode("transaction", &v)?;
            if at_ms < before_ms {
                self.txn_by_id.remove(k).map_err(|e| self.failed(e))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> (SledStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("db"), 4).unwrap();
        (store, dir)
    }

    crate::store_conformance!(fresh);

    #[cfg(unix)]
    #[test]
    fn the_database_is_readable_by_its_user_only_whatever_the_umask() {
        use crate::store::private::tests::{open_entries, under_umask_022};
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        under_umask_022(|| {
            let s = SledStore::open(&path, 4).unwrap();
            s.accept_transaction("t1", &[br#"{"event_id":"$a","body":"a stranger's words"}"#], 1).unwrap();
            s.flush().unwrap();
        });
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o700);
        assert!(std::fs::read_dir(&path).unwrap().count() > 0);
        assert_eq!(open_entries(&path), Vec::<(String, u32)>::new());
        // A database made before this (or by hand) is made private when opened.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(path.join("db"), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(!open_entries(&path).is_empty());
        drop(under_umask_022(|| SledStore::open(&path, 4).unwrap()));
        assert_eq!(open_entries(&path), Vec::<(String, u32)>::new());
    }

    #[test]
    fn everything_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let s = SledStore::open(&path, 4).unwrap();
            s.accept_transaction("t1", &[br#"{"event_id":"$a"}"#, br#"{"event_id":"$b"}"#], 1).unwrap();
            let first = s.inbox_batch(1).unwrap().remove(0);
            s.commit(first.seq, &super::super::conformance::sample_decision()).unwrap();
            s.flush().unwrap();
        }
        let s = SledStore::open(&path, 4).unwrap();
        assert_eq!(
            s.accept_transaction("t1", &[br#"{"event_id":"$a"}"#, br#"{"event_id":"$b"}"#], 2).unwrap(),
            Accepted::Replay
        );
        assert_eq!(s.inbox_batch(10).unwrap().len(), 1);
        assert_eq!(s.outbox_batch(u64::MAX, 10, false).unwrap().len(), 2);
        assert_eq!(s.owners().unwrap().len(), 1);
        assert!(s.outbox_high_water().unwrap() > 0);
    }

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

    /// The sizes /metrics reads are kept by the writes; they must say what
    /// counting the trees says, through every way in and out.
    #[test]
    fn kept_sizes_match_the_trees() {
        let (s, _dir) = fresh();
        let check = |s: &SledStore| {
            let st = s.stats().unwrap();
            assert_eq!(
                (st.inbox_pending, st.outbox_pending, st.owners),
                (s.inbox_events(), s.outbox_by_id.len() as u64, s.owner_by_user.len() as u64)
            );
        };
        s.accept_transaction("t1", &[b"{}", b"{}", b"{}"], 1).unwrap();
        check(&s);
        let items = s.inbox_batch(10).unwrap();
        s.commit(items[0].seq, &super::super::conformance::sample_decision()).unwrap();
        s.commit(items[0].seq, &super::super::conformance::sample_decision()).unwrap();
        check(&s);
        s.quarantine(items[1].seq, "bad", 1).unwrap();
        s.commit_empty(&[items[2].seq]).unwrap();
        check(&s);
        let out = s.outbox_batch(u64::MAX, 10, false).unwrap();
        let follow = FollowUp { internal: true, raw: b"{}".to_vec() };
        s.finish_effect(out[0].id, &EffectOutcome::Done, std::slice::from_ref(&follow), 2).unwrap();
        s.finish_effect(out[1].id, &EffectOutcome::Failed("no".into()), &[], 2).unwrap();
        check(&s);
        s.push_internal(b"{}").unwrap();
        s.push_follow_ups(&[follow.clone(), follow]).unwrap();
        s.use_link("n", 5, b"{}").unwrap();
        s.use_link("n", 5, b"{}").unwrap();
        s.accept_sync(None, "s1", &[b"{}"]).unwrap();
        check(&s);
        let owner = ruma::owned_user_id!("@alice:example.org");
        let remove = Decision { changes: vec![StateChange::RemoveOwner(owner)], effects: vec![], outcomes: vec![] };
        let seq = s.inbox_batch(1).unwrap()[0].seq;
        s.commit(seq, &remove).unwrap();
        check(&s);
    }

    /// The intake writes a transaction as one record, whatever its number
    /// of events; processing consumes it event by event (in any order, some
    /// set aside), across a restart, and the record goes with its last event.
    #[test]
    fn a_transaction_is_one_record_until_its_last_event_is_consumed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let events: Vec<Vec<u8>> = (0..100).map(|i| format!(r#"{{"event_id":"$e{i}"}}"#).into_bytes()).collect();
        let refs: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
        {
            let s = SledStore::open(&path, 4).unwrap();
            s.accept_transaction("t1", &refs, 1).unwrap();
            assert_eq!(s.inbox_by_seq.len(), 1, "one record for the whole transaction");
            let items = s.inbox_batch(40).unwrap();
            assert_eq!(items.iter().map(|i| i.raw.as_slice()).collect::<Vec<_>>(), refs[..40]);
            s.commit_empty(&items.iter().map(|i| i.seq).collect::<Vec<_>>()).unwrap();
            s.flush().unwrap();
        }
        let s = SledStore::open(&path, 4).unwrap();
        let items = s.inbox_batch(100).unwrap();
        assert_eq!(items.iter().map(|i| i.raw.as_slice()).collect::<Vec<_>>(), refs[40..]);
        assert_eq!(s.stats().unwrap().inbox_pending, 60);
        // The last first, one set aside, then the rest; none twice.
        s.commit_empty(&[items[59].seq]).unwrap();
        s.quarantine(items[0].seq, "bad", 2).unwrap();
        s.quarantine(items[0].seq, "bad", 2).unwrap();
        s.commit(items[1].seq, &super::super::conformance::sample_decision()).unwrap();
        assert_eq!(s.inbox_batch(100).unwrap().len(), 57);
        assert_eq!(s.quarantined(10).unwrap()[0].raw.as_bytes(), refs[40]);
        s.commit_empty(&items.iter().map(|i| i.seq).collect::<Vec<_>>()).unwrap();
        assert_eq!((s.inbox_by_seq.len(), s.inbox_done.len()), (0, 0));
        let st = s.stats().unwrap();
        assert_eq!((st.inbox_pending, st.events_processed, st.events_quarantined), (0, 99, 1));
    }

    /// Items a database kept from before transactions were stored whole
    /// (under sled's plain IDs) come first, and are consumed as before.
    #[test]
    fn inbox_items_from_an_older_database_come_first() {
        let (s, _dir) = fresh();
        let old = s.db.generate_id().unwrap();
        s.inbox_by_seq.insert(old.to_be_bytes(), inbox_value(false, b"{\"event_id\":\"$old\"}")).unwrap();
        s.accept_transaction("t1", &[b"{\"event_id\":\"$new\"}"], 1).unwrap();
        let items = s.inbox_batch(10).unwrap();
        assert_eq!(
            items.iter().map(|i| i.raw.as_slice()).collect::<Vec<_>>(),
            [&br#"{"event_id":"$old"}"#[..], br#"{"event_id":"$new"}"#]
        );
        s.commit_empty(&[items[0].seq]).unwrap();
        assert_eq!(s.inbox_batch(10).unwrap().len(), 1);
        s.commit_empty(&[items[1].seq]).unwrap();
        assert_eq!(s.inbox_by_seq.len(), 0);
    }

    #[test]
    fn a_second_process_gets_a_clear_locked_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let _first = SledStore::open(&path, 4).unwrap();
        match SledStore::open(&path, 4) {
            Err(e) => assert!(matches!(e, StoreError::Locked { .. }), "{e}"),
            Ok(_) => panic!("second open of a locked database succeeded"),
        }
    }
}
