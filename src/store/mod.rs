//! Durable state behind one narrow trait: the transaction inbox, the engine's
//! state, the outbox of effects, and what was set aside. `sled_store` is the
//! real one; `pg_store` keeps the same on PostgreSQL; `memory` backs fast
//! tests. All pass the same conformance suite.

pub mod copy;
pub mod durable;
pub mod journal;
mod memory;
mod overlay;
mod pg_store;
#[cfg(test)]
pub(crate) mod pg_test_server;
mod pg_tls;
mod policy_records;
pub mod private;
mod records;
mod records_native;
mod sled_store;
mod tally;

#[cfg(test)]
pub(crate) mod conformance;

pub use memory::MemoryStore;
pub use overlay::Overlay;
pub use pg_store::PgStore;
pub use policy_records::RuleV1;
pub use sled_store::SledStore;

use ruma::{EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::engine::{Decision, Due, Effect, OwnerOverview, OwnerState, Snapshot, Subject};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Backend(String),
    #[error("stored record is corrupt or from an unknown version: {0}")]
    Corrupt(String),
    #[error("the database at {path} is in use by another Gatekeeper process (or could not be locked)")]
    Locked { path: String },
    /// A write refused because this Gatekeeper does not hold the lease
    /// (see [`Lease`]): it stands by, or another took over. Nothing changed.
    #[error("not written: this Gatekeeper does not hold the lease ({0})")]
    NotLeaseHolder(String),
}

/// Active and standby on a database several Gatekeepers can open at once
/// (PostgreSQL): exactly one holds the lease and acts; the others wait.
/// The lease fences the store itself: while it is not held, every write
/// fails with [`StoreError::NotLeaseHolder`] and changes nothing, so a
/// Gatekeeper that lost its lease without knowing it yet (paused, cut off)
/// cannot act on the database behind the new holder's back.
pub trait Lease: Send + Sync {
    /// From now on, writes are refused until [`Lease::try_take`] succeeds.
    fn stand_by(&self);

    /// Tries once, without waiting, to take the lease; once held, the
    /// epoch it is held at (one more than the last holder's). Taking it
    /// fences out every earlier holder.
    fn try_take(&self, holder: &str) -> Result<Option<u64>, StoreError>;

    /// `Err` with the reason once the lease held is lost: its connection
    /// ended, or another Gatekeeper took it over. Then nothing more is
    /// written, and the Gatekeeper must stop acting.
    fn check(&self) -> Result<(), String>;
}

/// How the intake's write of a transaction went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Stored and flushed; `events` were added to the inbox.
    New { events: usize },
    /// Seen before with the same events: nothing stored.
    Replay,
    /// The ID was seen before with other events (the homeserver's database
    /// was reset, typically): stored as new, so that nothing is lost.
    ReusedId { events: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxItem {
    pub seq: u64,
    /// From Gatekeeper's own look-ups, not from the homeserver: only these
    /// may carry look-up results.
    pub internal: bool,
    pub raw: Vec<u8>,
}

/// Something an effect learned, to go back through the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUp {
    pub internal: bool,
    pub raw: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub id: u64,
    pub effect: Effect,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EffectOutcome {
    Done,
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantinedEvent {
    pub seq: u64,
    pub at_ms: u64,
    pub reason: String,
    pub raw: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedEffect {
    pub id: u64,
    pub at_ms: u64,
    pub reason: String,
    pub effect: String,
}

/// Counts for operators and tests; pending counts are what is stored now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub transactions: u64,
    pub replayed_transactions: u64,
    pub events_received: u64,
    /// Inputs that effects fed back (look-up results, backfilled events).
    pub follow_ups: u64,
    pub events_processed: u64,
    pub events_quarantined: u64,
    pub effects_done: u64,
    pub effects_failed: u64,
    pub inbox_pending: u64,
    pub outbox_pending: u64,
    pub owners: u64,
    pub deferred_messages: u64,
}

pub trait Store: Lookups + Send + Sync + 'static {
    /// Stores a transaction's events in the inbox and makes them durable,
    /// unless this transaction was already accepted. Returns only once the
    /// events survive a crash and a power cut (sled: one record for the
    /// whole transaction, in one write, then the files synced).
    fn accept_transaction(&self, txn_id: &str, events: &[&[u8]], now_ms: u64) -> Result<Accepted, StoreError>;

    /// The highest numeric transaction ID accepted so far (Synapse numbers
    /// its transactions 1, 2, 3 …), recorded in the same write as the
    /// transaction, so that a gap can be noticed across restarts.
    fn highest_transaction_number(&self) -> Result<Option<u64>, StoreError>;

    /// Client mode: stores one sync response's events in the inbox and the
    /// sync position they lead to, in one durable write, so that a crash
    /// keeps both or neither. Stores nothing and returns `false` unless
    /// `since` is the position stored now (`None` before the first).
    fn accept_sync(&self, since: Option<&str>, next_batch: &str, events: &[&[u8]]) -> Result<bool, StoreError>;

    /// The position the last [`accept_sync`] stored.
    ///
    /// [`accept_sync`]: Store::accept_sync
    fn sync_position(&self) -> Result<Option<String>, StoreError>;

    /// Forgets the sync position (a new device starts from its own first
    /// sync), durably.
    fn reset_sync_position(&self) -> Result<(), StoreError>;

    /// Small values a connector keeps for itself (client mode: its control
    /// room, events waiting for their keys).
    fn connector_value(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Sets (or with `None` removes) a connector value, durably.
    fn set_connector_value(&self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError>;

    /// The connector values whose keys start with `prefix`, in key order.
    fn connector_values(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// The oldest inbox events, in arrival order: at most `limit`, and no
    /// more once they hold `max_bytes` (the one that reaches it is read, so
    /// one always is), so that a batch of large events is smaller.
    fn inbox_batch_within(&self, limit: usize, max_bytes: usize) -> Result<Vec<InboxItem>, StoreError>;

    /// The oldest inbox events, in arrival order.
    fn inbox_batch(&self, limit: usize) -> Result<Vec<InboxItem>, StoreError> {
        self.inbox_batch_within(limit, usize::MAX)
    }

    /// The state a decision may read: the room, the owner records of `users`
    /// and of the room's owner, the contact and stranger entries between
    /// those owners and `users`, and the captured message `related` (for
    /// edits and redactions). `overview` is left empty.
    fn snapshot(
        &self,
        room: Option<&RoomId>,
        users: &[OwnedUserId],
        related: Option<&EventId>,
    ) -> Result<Snapshot, StoreError> {
        assemble_snapshot(self, room, users, related)
    }

    /// Everything kept for one owner: contacts, held rooms, captured messages.
    fn overview(&self, owner: &ruma::UserId) -> Result<OwnerOverview, StoreError>;

    /// Atomically, for a whole batch: applies each decision's state changes
    /// in order, appends its effects to the outbox, and removes its inbox
    /// item; removes the inbox items in `empty`, whose decisions were empty
    /// (most of a homeserver's traffic concerns nobody Gatekeeper protects).
    /// A decision whose inbox item is gone was committed before and is
    /// skipped, so that its effects are never queued twice. Durable after
    /// [`flush`].
    ///
    /// [`flush`]: Store::flush
    fn commit_batch(&self, decided: &[(u64, &Decision)], empty: &[u64]) -> Result<(), StoreError> {
        self.commit_batch_seen(decided, empty, &[])
    }

    /// [`commit_batch`](Store::commit_batch) that also remembers, in the
    /// same write, the events of tracked rooms it consumes (see
    /// [`Lookups::seen_events`]): each [`Seen`] whose inbox item this write
    /// removes is added to its room's list, in the order given. A room
    /// removed by the batch forgets its list.
    fn commit_batch_seen(&self, decided: &[(u64, &Decision)], empty: &[u64], seen: &[Seen]) -> Result<(), StoreError>;

    /// Every tracked room's list of events consumed last (see
    /// [`Lookups::seen_events`]), for the start-up read forward.
    fn seen_rooms(&self) -> Result<Vec<(OwnedRoomId, Vec<OwnedEventId>)>, StoreError>;

    /// Queues events read from the homeserver outside a transaction or an
    /// effect (the start-up read forward), durably, in order.
    fn push_follow_ups(&self, follow_ups: &[FollowUp]) -> Result<(), StoreError>;

    /// [`commit_batch`](Store::commit_batch) for one decision.
    fn commit(&self, seq: u64, decision: &Decision) -> Result<(), StoreError> {
        self.commit_batch(&[(seq, decision)], &[])
    }

    /// [`commit_batch`](Store::commit_batch) for empty decisions only.
    fn commit_empty(&self, seqs: &[u64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.commit_batch(&[], seqs)
    }

    /// Atomically moves inbox item `seq` aside with the reason it could not
    /// be handled, keeping at most [`QUARANTINE_RAW_BYTES`] of it. At most
    /// [`QUARANTINE_KEEP`] events are kept: beyond it the oldest go, right
    /// away, not at the next pruning (a flood cannot grow the quarantine).
    fn quarantine(&self, seq: u64, reason: &str, now_ms: u64) -> Result<(), StoreError>;

    /// Forgets quarantined events set aside before `before_ms`, and the
    /// oldest beyond the newest `keep`. Returns how many went.
    fn prune_quarantine(&self, before_ms: u64, keep: usize) -> Result<usize, StoreError>;

    /// Makes every earlier write survive a crash (`kill -9`). What is
    /// acknowledged to someone else (a transaction, a sync position) is
    /// also synced to stable storage by the write that stores it.
    fn flush(&self) -> Result<(), StoreError>;

    /// Why the database cannot write any more until it is reopened, once
    /// that has happened (sled keeps an I/O error, a full disk above all,
    /// until then). Gatekeeper then stops, so that its service manager
    /// starts it again: reopening recovers everything made durable.
    fn failure(&self) -> Option<String> {
        None
    }

    /// Write transactions that failed in a row, and why the database is
    /// failing writes once that is more than a blip: a server that still
    /// answers reads but refuses writes (a full disk, a revoked INSERT).
    /// Not ready then, but not stopped: a restart, or a standby taking
    /// over on the same database, would meet the same refusal. `None` where
    /// the store has no such count (sled's failures are [`Store::failure`]).
    fn writes_failing(&self) -> Option<(u32, Option<String>)> {
        None
    }

    /// The lease, on a database several Gatekeepers may share; `None` where
    /// only one process can open the database at all (sled locks its
    /// files; memory is the process's own).
    fn lease(&self) -> Option<&dyn Lease> {
        None
    }

    /// The oldest pending effects with `id <= up_to`, in order, of one
    /// executor: e-mail (`mail`) or everything else.
    fn outbox_batch(&self, up_to: u64, limit: usize, mail: bool) -> Result<Vec<OutboxItem>, StoreError> {
        self.outbox_after(0, up_to, limit, mail)
    }

    /// [`outbox_batch`](Store::outbox_batch) past `after`: what an executor
    /// has not read yet while it still works on what it has.
    fn outbox_after(&self, after: u64, up_to: u64, limit: usize, mail: bool) -> Result<Vec<OutboxItem>, StoreError>;

    /// The highest outbox ID in use (0 when none ever was).
    fn outbox_high_water(&self) -> Result<u64, StoreError>;

    /// Removes a carried-out (or permanently failed) effect and queues what
    /// it learned, atomically and durably.
    fn finish_effect(
        &self,
        id: u64,
        outcome: &EffectOutcome,
        follow_ups: &[FollowUp],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.finish_effects(&[(id, outcome.clone())], follow_ups, now_ms)
    }

    /// [`finish_effect`](Store::finish_effect) for an effect (the first)
    /// and others that stand or fall with it (a held room's join when its
    /// silence failed), in one atomic, durable write. A finish whose first
    /// effect is gone (finished before) changes nothing.
    fn finish_effects(
        &self,
        finished: &[(u64, EffectOutcome)],
        follow_ups: &[FollowUp],
        now_ms: u64,
    ) -> Result<(), StoreError>;

    fn stats(&self) -> Result<Stats, StoreError>;
    fn quarantined(&self, limit: usize) -> Result<Vec<QuarantinedEvent>, StoreError>;
    fn failed_effects(&self, limit: usize) -> Result<Vec<FailedEffect>, StoreError>;
    fn owners(&self) -> Result<Vec<OwnerState>, StoreError>;
    /// Every followed policy list's record (without rules): for the timer's
    /// pending checks and the periodic re-reads.
    fn policy_lists(&self) -> Result<Vec<crate::engine::policy::PolicyList>, StoreError>;

    /// Forgets accepted transaction IDs older than `before_ms`; the
    /// homeserver never resends a transaction it saw acknowledged.
    fn prune_transactions(&self, before_ms: u64) -> Result<usize, StoreError>;

    /// Allow entries past their end and pauses that have ended, as of `now_ms`.
    fn due(&self, now_ms: u64) -> Result<Due, StoreError>;

    /// Queues an input of Gatekeeper's own (a housekeeping tick), durably.
    fn push_internal(&self, raw: &[u8]) -> Result<(), StoreError>;

    /// Marks a one-click link as used and queues what it asks for, in one
    /// durable write. `false` (and nothing queued) if it was used before.
    fn use_link(&self, nonce: &str, expires_ms: u64, raw: &[u8]) -> Result<bool, StoreError>;

    /// Drops `owner`'s captured messages received before `before_ms` (their
    /// retention period), by Gatekeeper's clock, not the sender's, and
    /// those denied before `denied_before_ms` (kept a day for `undo`).
    /// Returns how many went.
    fn prune_deferred(&self, owner: &ruma::UserId, before_ms: u64, denied_before_ms: u64) -> Result<usize, StoreError>;

    /// Forgets wave records that say nothing any more (past their
    /// `expires_ms`). Returns how many went.
    fn prune_waves(&self, now_ms: u64) -> Result<usize, StoreError>;

    /// How many wave records are kept now.
    fn wave_records(&self) -> Result<usize, StoreError>;
}

/// How many quarantined events are kept at most, newest first: enforced
/// as each is set aside (the hourly pruning also drops the old ones).
pub const QUARANTINE_KEEP: usize = 10_000;

/// How much of a quarantined event is kept: enough to see what it was,
/// bounded whatever a sender makes the homeserver deliver.
pub const QUARANTINE_RAW_BYTES: usize = 16 * 1024;

/// A quarantined event's raw bytes as kept: lossy UTF-8, cut at a
/// character boundary to [`QUARANTINE_RAW_BYTES`], with a note when cut.
pub fn quarantined_raw(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    if text.len() <= QUARANTINE_RAW_BYTES {
        return text.into_owned();
    }
    let mut end = QUARANTINE_RAW_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], raw.len())
}

/// Opens the configured database and says in the log what it holds.
pub fn open(database: &crate::config::DatabaseConfig) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    use anyhow::Context;
    let selected = database.selected().map_err(anyhow::Error::msg)?;
    // Which store, in the log: an operator moving to PostgreSQL sees it took.
    let kind = match selected {
        crate::config::Database::Sled(_) => "sled",
        crate::config::Database::Postgres { .. } => "PostgreSQL",
    };
    let store: std::sync::Arc<dyn Store> = match selected {
        crate::config::Database::Sled(path) => std::sync::Arc::new(
            SledStore::open(&path, database.cache_capacity_mb)
                .with_context(|| format!("opening the database at {}", path.display()))?,
        ),
        crate::config::Database::Postgres { url, password, ca_file } => std::sync::Arc::new(
            PgStore::open_with(url.expose(), password.as_ref().map(|p| p.expose()), ca_file.as_deref())
                .context("opening the PostgreSQL database (database.url)")?,
        ),
    };
    let stats = store.stats()?;
    tracing::info!(
        inbox_pending = stats.inbox_pending,
        outbox_pending = stats.outbox_pending,
        owners = stats.owners,
        store = kind,
        "database open"
    );
    Ok(store)
}

/// Identifies a transaction's content independently of fields the
/// homeserver recomputes per attempt (`unsigned.age`): the event IDs, or the
/// raw bytes of an event that has none.
pub fn transaction_digest(events: &[&[u8]]) -> [u8; 32] {
    #[derive(serde::Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        event_id: Option<&'a str>,
    }
    let mut h = Sha256::new();
    for raw in events {
        match serde_json::from_slice::<Id<'_>>(raw) {
            Ok(Id { event_id: Some(id) }) => h.update(id.as_bytes()),
            _ => h.update(raw),
        }
        h.update([0]);
    }
    h.finalize().into()
}

/// A stranger entry an overview includes: one with something counted,
/// not kept, for commands and digests to report. The rest only pace replies.
pub fn counts_something(st: &crate::engine::StrangerState) -> bool {
    st.invites_not_held.total > 0 || st.messages_not_kept.total > 0
}

/// Point look-ups a backend provides, from which [`assemble_snapshot`]
/// builds the same snapshot for every backend (and for an [`Overlay`]).
pub trait Lookups {
    /// Every owner's record of `room` (at most one each), ordered by owner.
    fn rooms(&self, room: &RoomId) -> Result<Vec<crate::engine::RoomState>, StoreError>;
    fn owner(&self, user: &ruma::UserId) -> Result<Option<OwnerState>, StoreError>;
    fn contact(&self, owner: &ruma::UserId, subject: &Subject) -> Result<Option<crate::engine::Contact>, StoreError>;
    fn stranger(
        &self,
        owner: &ruma::UserId,
        user: &ruma::UserId,
    ) -> Result<Option<crate::engine::StrangerState>, StoreError>;
    fn deferred(&self, owner: &ruma::UserId, event: &EventId) -> Result<Option<crate::engine::Deferred>, StoreError>;
    /// What is kept for `owner` (held rooms, messages), or for `with` with them.
    fn kept(&self, owner: &ruma::UserId, with: Option<&ruma::UserId>) -> Result<crate::engine::Kept, StoreError>;
    /// A sender's or a server's recent invitations, expired or not.
    fn wave(&self, key: &crate::engine::WaveKey) -> Result<Option<crate::engine::WaveRecord>, StoreError>;

    /// The events of a tracked room consumed last (at most
    /// [`SEEN_PER_ROOM`], oldest first): an event among them was decided
    /// already, whether it comes again from the homeserver or from a read.
    fn seen_events(&self, room: &RoomId) -> Result<Vec<OwnedEventId>, StoreError>;

    /// Whether anyone keeps a record of `room` (held, control, pending):
    /// asked of every event, so a layered store answers without a copy.
    fn tracks(&self, room: &RoomId) -> Result<bool, StoreError> {
        Ok(!self.rooms(room)?.is_empty())
    }

    /// Whether `event` is among [`seen_events`](Self::seen_events) of `room`.
    fn has_seen(&self, room: &RoomId, event: &EventId) -> Result<bool, StoreError> {
        Ok(self.seen_events(room)?.iter().any(|e| e == event))
    }

    /// Whether a batch read costs less than its point reads (a store across
    /// a network): only then does the processor ask for a batch's keys
    /// ahead, so that an embedded store reads exactly as it did.
    fn reads_in_batches(&self) -> bool {
        false
    }

    /// Batch reads: what a whole batch of events will look up, asked at
    /// once (on PostgreSQL one statement per kind instead of a round trip
    /// per key). Each answers one entry per key asked, in the order asked
    /// (a key asked twice is answered twice), as the point read would.
    /// The defaults loop over the point reads: for an embedded store a
    /// point read costs no more than a batch's share.
    fn rooms_of(&self, rooms: &[OwnedRoomId]) -> Result<Vec<Vec<crate::engine::RoomState>>, StoreError> {
        rooms.iter().map(|r| self.rooms(r)).collect()
    }
    fn owners_of(&self, users: &[OwnedUserId]) -> Result<Vec<Option<OwnerState>>, StoreError> {
        users.iter().map(|u| self.owner(u)).collect()
    }
    fn contacts_of(&self, keys: &[(OwnedUserId, Subject)]) -> Result<Vec<Option<crate::engine::Contact>>, StoreError> {
        keys.iter().map(|(o, s)| self.contact(o, s)).collect()
    }
    fn strangers_of(
        &self,
        keys: &[(OwnedUserId, OwnedUserId)],
    ) -> Result<Vec<Option<crate::engine::StrangerState>>, StoreError> {
        keys.iter().map(|(o, u)| self.stranger(o, u)).collect()
    }
    fn kept_of(&self, keys: &[(OwnedUserId, Option<OwnedUserId>)]) -> Result<Vec<crate::engine::Kept>, StoreError> {
        keys.iter().map(|(o, w)| self.kept(o, w.as_deref())).collect()
    }
    fn waves_of(&self, keys: &[crate::engine::WaveKey]) -> Result<Vec<Option<crate::engine::WaveRecord>>, StoreError> {
        keys.iter().map(|k| self.wave(k)).collect()
    }
    fn seen_events_of(&self, rooms: &[OwnedRoomId]) -> Result<Vec<Vec<OwnedEventId>>, StoreError> {
        rooms.iter().map(|r| self.seen_events(r)).collect()
    }

    /// A followed policy list's record (ban list), kept once whoever
    /// follows it, without its rules. (Defaults to none for look-ups that
    /// only wrap the others in tests.)
    fn policy_list(&self, _room: &RoomId) -> Result<Option<crate::engine::policy::PolicyList>, StoreError> {
        Ok(None)
    }

    /// The rules of a list that `read` asks for, by slot.
    fn policy_rules(
        &self,
        _room: &RoomId,
        _read: &crate::engine::policy::RulesRead,
    ) -> Result<Vec<(crate::engine::policy::Slot, crate::engine::policy::PolicyRule)>, StoreError> {
        Ok(Vec::new())
    }

    /// The policy lists the operator's configuration has every owner follow.
    fn operator_lists(&self) -> Result<Vec<OwnedRoomId>, StoreError> {
        Ok(Vec::new())
    }
}

/// Whether `read` asks for the rule in `slot`: the reference every store
/// answers alike.
pub fn reads_rule(
    read: &crate::engine::policy::RulesRead,
    slot: &crate::engine::policy::Slot,
    rule: &crate::engine::policy::PolicyRule,
) -> bool {
    use crate::engine::policy::RulesRead;
    match read {
        RulesRead::None => false,
        RulesRead::Slot(s) => s == slot,
        RulesRead::Naming(keys) => keys.contains(&crate::engine::policy::index_key(rule)),
        RulesRead::All => true,
    }
}

/// The policy lists `read` names, into the snapshot, each with the rules
/// it asks for.
pub fn read_policy(
    l: &(impl Lookups + ?Sized),
    read: &crate::engine::PolicyRead,
    snapshot: &mut Snapshot,
) -> Result<(), StoreError> {
    let operator = if read.operator { l.operator_lists()? } else { Vec::new() };
    for room in read.lists.iter().chain(&operator) {
        if !snapshot.policy.contains_key(room)
            && let Some(mut list) = l.policy_list(room)?
        {
            if read.changed_after.is_none_or(|after| list.changed_ms > after) {
                list.rules = l.policy_rules(room, &read.rules)?.into_iter().collect();
            }
            snapshot.policy.insert(room.clone(), list);
        }
    }
    Ok(())
}

/// The wave records of `sender` (see [`crate::engine::Reads::waves`]), for
/// the snapshot of an invite or a message.
pub fn read_waves(
    l: &(impl Lookups + ?Sized),
    sender: &ruma::UserId,
) -> Result<std::collections::BTreeMap<crate::engine::WaveKey, crate::engine::WaveRecord>, StoreError> {
    let mut waves = std::collections::BTreeMap::new();
    for key in crate::engine::waves::keys(sender) {
        if let Some(r) = l.wave(&key)? {
            waves.insert(key, r);
        }
    }
    Ok(waves)
}

/// How many of the events consumed last from one tracked room are
/// remembered: what the read forward (`appservice::catch_up`) starts from
/// and what the processor skips. The window moves on with each event
/// consumed, so the read itself leaves out what was remembered when it
/// was planned and when it queues; what it queues can still be decided
/// twice only if this many other events of the room are consumed between
/// the two, which its wait for an empty inbox makes unlikely.
pub const SEEN_PER_ROOM: usize = 32;

/// An event of a tracked room (held, control) consumed from the inbox by
/// the write that removes inbox item `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub seq: u64,
    pub room: OwnedRoomId,
    pub event: OwnedEventId,
}

/// Adds `event` to a room's list of events consumed last: once, newest
/// last, at most [`SEEN_PER_ROOM`] kept.
pub fn remember(list: &mut Vec<OwnedEventId>, event: &EventId) {
    if list.iter().any(|e| e == event) {
        return;
    }
    list.push(event.to_owned());
    if list.len() > SEEN_PER_ROOM {
        list.drain(..list.len() - SEEN_PER_ROOM);
    }
}

pub fn assemble_snapshot(
    l: &(impl Lookups + ?Sized),
    room: Option<&RoomId>,
    users: &[OwnedUserId],
    related: Option<&EventId>,
) -> Result<Snapshot, StoreError> {
    let mut snap = Snapshot::default();
    if let Some(room) = room {
        snap.rooms = l.rooms(room)?;
    }
    let room_owners: Vec<OwnedUserId> = snap.rooms.iter().map(|r| r.owner().clone()).collect();
    for user in users.iter().chain(room_owners.iter()) {
        if !snap.owners.contains_key(user)
            && let Some(o) = l.owner(user)?
        {
            snap.owners.insert(user.clone(), o);
        }
    }
    let owners: Vec<OwnedUserId> = snap.owners.keys().cloned().collect();
    for owner in &owners {
        snap.kept.insert(owner.clone(), l.kept(owner, None)?);
        for user in users.iter().filter(|u| *u != owner) {
            snap.kept_with.insert((owner.clone(), user.clone()), l.kept(owner, Some(user))?);
            for subject in [Subject::User(user.clone()), Subject::Server(user.server_name().to_owned())] {
                if let Some(c) = l.contact(owner, &subject)? {
                    snap.contacts.insert((owner.clone(), subject), c);
                }
            }
            if let Some(s) = l.stranger(owner, user)? {
                snap.strangers.insert((owner.clone(), user.clone()), s);
            }
        }
        if let Some(event) = related
            && let Some(d) = l.deferred(owner, event)?
        {
            snap.related.push(d);
        }
    }
    Ok(snap)
}
