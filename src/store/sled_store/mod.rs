//! The sled-backed store. Every multi-key change is one sled transaction,
//! so a crash leaves either all of it or none of it.
//!
//! This file: the store, its trees, `open`, the error and durability
//! helpers every part shares, and the `Store` impl, which hands each
//! method to the file whose job it is.

mod commit;
mod copy;
mod counters;
mod housekeeping;
mod inbox;
mod inserter;
mod intake;
mod lookups;
mod migrate;
mod outbox;
mod quarantine;

use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) use copy::SledTarget;
#[cfg(test)]
pub(crate) use copy::tests::trees as raw_trees;

use ruma::UserId;
use sled::Tree;
use sled::transaction::TransactionError;

use super::*;
use crate::engine::{Decision, Due};

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
    files: std::sync::Arc<super::durable::FileSync>,
    /// Stores what the journal synced, after it is acknowledged. Before
    /// the journal, so that it is dropped (and has stored everything
    /// queued) before the journal's last checkpoint is joined.
    inserter: Option<inserter::Inserter>,
    /// How far the inserter is: what reads wait for (see `inserter`).
    progress: Arc<inserter::Progress>,
    /// Makes each transaction durable before it is acknowledged (see
    /// `store::journal`). Set by `open` once what it held is stored again.
    journal: Option<super::journal::Journal>,
    /// Serialises intake so that inbox order is arrival order; sled's own
    /// locking would allow two transactions' events to interleave.
    intake: Mutex<()>,
    /// How many events the quarantine keeps, once counted: its bound is
    /// enforced as each is set aside, without walking the tree each time.
    quarantine_len: Mutex<Option<usize>>,
    /// The first I/O error. sled keeps any it meets while writing its log
    /// and fails every later write with it, so this is for good until the
    /// database is reopened.
    failure: inserter::Failure,
    /// Added to every ID sled generates (outbox IDs, inbox keys): set by
    /// `migrate` past every ID it copied in, as a new database's generator
    /// starts again at zero. Zero for a database that was never copied.
    id_floor: Arc<AtomicU64>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
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
        Self::open_with_journal_segment(path, cache_capacity_mb, super::journal::SEGMENT_BYTES)
    }

    /// As [`SledStore::open`], with the intake journal's segments of
    /// `journal_segment` bytes (tests make it small to see it go round).
    pub fn open_with_journal_segment(
        path: &Path,
        cache_capacity_mb: u64,
        journal_segment: u64,
    ) -> Result<Self, StoreError> {
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
            files: std::sync::Arc::new(
                super::durable::FileSync::open(path)
                    .map_err(|e| backend(format!("syncing the files of {}: {e}", path.display())))?,
            ),
            inserter: None,
            progress: Arc::default(),
            journal: None,
            intake: Mutex::new(()),
            quarantine_len: Mutex::new(None),
            failure: inserter::Failure::default(),
            id_floor: Arc::default(),
            db,
        }
        .with_rooms_by_owner(&rooms_per_room)?
        .with_rules_apart()?
        .with_tallies()?
        .with_id_floor()?
        .with_journal(path, journal_segment)
    }

    fn with_id_floor(self) -> Result<Self, StoreError> {
        let floor = self.counters.get(copy::K_ID_FLOOR).map_err(|e| self.failed(e))?.map_or(0, |v| read_u64(&v));
        self.id_floor.store(floor, Ordering::SeqCst);
        Ok(self)
    }

    fn generate_id(&self) -> Result<u64, StoreError> {
        inserter::generate_id(&self.db, &self.id_floor, &self.failure)
    }

    /// Maps a sled error, keeping the first I/O error: sled fails every
    /// later write with it until the database is reopened.
    fn failed(&self, e: sled::Error) -> StoreError {
        self.failure.sled(e)
    }

    fn failed_tx(&self, e: TransactionError<StoreError>) -> StoreError {
        self.failure.transaction(e)
    }

    /// Returns once every transaction acknowledged so far is stored in
    /// sled (see `inserter`): for reads that must see all of them, and
    /// before an inbox key is taken outside the inserter (`next_seq`).
    fn settle(&self) -> Result<(), StoreError> {
        self.progress.settle(&self.failure)
    }

    /// Flushes, then syncs the files (see [`super::durable`]): what is
    /// written survives a power cut, not only a crash. For what is
    /// acknowledged to someone else (the homeserver, a sync position).
    fn durable(&self) -> Result<(), StoreError> {
        // A sync after a failed one can succeed though the pages it could
        // not write are gone: no acknowledgement rests on it.
        self.refuse_if_failed()?;
        self.db.flush().map_err(|e| self.failed(e))?;
        self.files.sync().map_err(|e| self.sync_failed(e))
    }

    /// After a failed fsync the kernel may have dropped the pages it could
    /// not write: nothing written since can be trusted until the database
    /// is reopened.
    fn sync_failed(&self, e: std::io::Error) -> StoreError {
        self.fail(e.to_string());
        backend(format!("syncing the database files: {e}"))
    }

    /// Keeps the first reason the database cannot be trusted to write:
    /// the watchdog stops Gatekeeper on it.
    fn fail(&self, why: String) {
        self.failure.set(why);
    }

    fn refuse_if_failed(&self) -> Result<(), StoreError> {
        match self.failure.get() {
            Some(e) => Err(backend(format!("the database cannot write any more: {e}"))),
            None => Ok(()),
        }
    }
}

/// Each method is done by the inherent one of the same name, in the file
/// whose job it is (see the module list above).
impl Store for SledStore {
    fn accept_transaction(&self, txn_id: &str, events: &[&[u8]], now_ms: u64) -> Result<Accepted, StoreError> {
        self.accept_transaction(txn_id, events, now_ms)
    }
    fn highest_transaction_number(&self) -> Result<Option<u64>, StoreError> {
        self.highest_transaction_number()
    }
    fn accept_sync(&self, since: Option<&str>, next_batch: &str, events: &[&[u8]]) -> Result<bool, StoreError> {
        self.accept_sync(since, next_batch, events)
    }
    fn sync_position(&self) -> Result<Option<String>, StoreError> {
        self.sync_position()
    }
    fn reset_sync_position(&self) -> Result<(), StoreError> {
        self.reset_sync_position()
    }
    fn connector_value(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.connector_value(key)
    }
    fn set_connector_value(&self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        self.set_connector_value(key, value)
    }
    fn connector_values(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.connector_values(prefix)
    }
    fn inbox_batch_within(&self, limit: usize, max_bytes: usize) -> Result<Vec<InboxItem>, StoreError> {
        self.inbox_batch_within(limit, max_bytes)
    }
    fn overview(&self, owner: &UserId) -> Result<OwnerOverview, StoreError> {
        self.overview(owner)
    }
    fn commit_batch_seen(&self, decided: &[(u64, &Decision)], empty: &[u64], seen: &[Seen]) -> Result<(), StoreError> {
        self.commit_batch_seen(decided, empty, seen)
    }
    fn seen_rooms(&self) -> Result<Vec<(ruma::OwnedRoomId, Vec<ruma::OwnedEventId>)>, StoreError> {
        self.seen_rooms()
    }
    fn push_follow_ups(&self, follow_ups: &[FollowUp]) -> Result<(), StoreError> {
        self.push_follow_ups(follow_ups)
    }
    fn quarantine(&self, seq: u64, reason: &str, now_ms: u64) -> Result<(), StoreError> {
        self.quarantine(seq, reason, now_ms)
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(|e| self.failed(e))?;
        self.files.sync_blobs().map_err(|e| self.sync_failed(e))
    }
    fn failure(&self) -> Option<String> {
        self.failure.get()
    }
    fn outbox_after(&self, after: u64, up_to: u64, limit: usize, mail: bool) -> Result<Vec<OutboxItem>, StoreError> {
        self.outbox_after(after, up_to, limit, mail)
    }
    fn outbox_high_water(&self) -> Result<u64, StoreError> {
        self.outbox_high_water()
    }
    fn finish_effects(
        &self,
        finished: &[(u64, EffectOutcome)],
        follow_ups: &[FollowUp],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.finish_effects(finished, follow_ups, now_ms)
    }
    fn stats(&self) -> Result<Stats, StoreError> {
        self.stats()
    }
    fn prune_quarantine(&self, before_ms: u64, keep: usize) -> Result<usize, StoreError> {
        self.prune_quarantine(before_ms, keep)
    }
    fn quarantined(&self, limit: usize) -> Result<Vec<QuarantinedEvent>, StoreError> {
        self.quarantined(limit)
    }
    fn failed_effects(&self, limit: usize) -> Result<Vec<FailedEffect>, StoreError> {
        self.failed_effects(limit)
    }
    fn policy_lists(&self) -> Result<Vec<crate::engine::policy::PolicyList>, StoreError> {
        self.policy_lists()
    }
    fn owners(&self) -> Result<Vec<OwnerState>, StoreError> {
        self.owners()
    }
    fn due(&self, now_ms: u64) -> Result<Due, StoreError> {
        self.due(now_ms)
    }
    fn use_link(&self, nonce: &str, expires_ms: u64, raw: &[u8]) -> Result<bool, StoreError> {
        self.use_link(nonce, expires_ms, raw)
    }
    fn push_internal(&self, raw: &[u8]) -> Result<(), StoreError> {
        self.push_internal(raw)
    }
    fn prune_deferred(&self, owner: &UserId, before_ms: u64, denied_before_ms: u64) -> Result<usize, StoreError> {
        self.prune_deferred(owner, before_ms, denied_before_ms)
    }
    fn prune_waves(&self, now_ms: u64) -> Result<usize, StoreError> {
        self.prune_waves(now_ms)
    }
    fn wave_records(&self) -> Result<usize, StoreError> {
        self.wave_records()
    }
    fn prune_transactions(&self, before_ms: u64) -> Result<usize, StoreError> {
        self.prune_transactions(before_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn fresh() -> (SledStore, tempfile::TempDir) {
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
