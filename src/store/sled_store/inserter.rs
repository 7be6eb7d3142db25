//! Stores journalled transactions in sled, in the journal's order, on a
//! thread of its own, so that the acknowledgement waits for the journal's
//! sync only (see `store::journal`).
//!
//! sled's insert is cheap at the median but slow in its tail: about one in
//! ten writes a full I/O buffer of its log inline (1–2 ms). Once a record
//! is synced in the journal it survives a power cut, and opening the store
//! applies whatever sled lacks; so the homeserver is answered then, and the
//! insert follows. Reads that must see every acknowledged transaction (the
//! processor's inbox, the counters) first wait for the inserter to catch up
//! (`settle`), which it does within one insert; a replay is recognised
//! among the transactions still waiting as well as in sled.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use sled::Transactional;
use sled::Tree;
use sled::transaction::TransactionError;

use crate::store::StoreError;
use crate::store::records::{self, TxnRecord};

use super::counters::{C_RECEIVED, C_TRANSACTIONS, G_INBOX, K_JOURNAL_APPLIED, K_TXN_HIGH, bump, resize};
use super::inbox::{RECORD_EVENTS, transaction_events, transaction_value};
use super::{backend, read_u64};

/// Transactions acknowledged and not yet stored, at most: the intake waits
/// when the inserter is this far behind, so their memory is bounded (8 MiB
/// each at worst, the journal's segment).
const QUEUE: usize = 8;

/// What stores a transaction in sled: the few trees the intake writes, so
/// that the inserter's thread holds them without the whole store.
pub(super) struct Applier {
    pub(super) db: sled::Db,
    pub(super) txn_by_id: Tree,
    pub(super) inbox_by_seq: Tree,
    pub(super) counters: Tree,
    pub(super) id_floor: Arc<AtomicU64>,
    pub(super) failure: Failure,
    pub(super) files: Arc<crate::store::durable::FileSync>,
}

/// The first reason the database cannot be trusted to write (see
/// `SledStore::fail`), shared by the store and the threads that write it.
#[derive(Clone, Default)]
pub(super) struct Failure(Arc<Mutex<Option<String>>>);

impl Failure {
    pub(super) fn set(&self, why: String) {
        self.lock().get_or_insert(why);
    }

    pub(super) fn get(&self) -> Option<String> {
        self.lock().clone()
    }

    /// Maps a sled error, keeping it if it is an I/O error: sled fails
    /// every later write with it until the database is reopened.
    pub(super) fn sled(&self, e: sled::Error) -> StoreError {
        if let sled::Error::Io(io) = &e {
            self.set(io.to_string());
        }
        backend(e)
    }

    pub(super) fn transaction(&self, e: TransactionError<StoreError>) -> StoreError {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => self.sled(e),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A new ID, after every one in use: sled's generator (monotonic) plus the
/// floor a migration set.
pub(super) fn generate_id(db: &sled::Db, floor: &AtomicU64, failure: &Failure) -> Result<u64, StoreError> {
    let id = db.generate_id().map_err(|e| failure.sled(e))?;
    id.checked_add(floor.load(Ordering::Relaxed))
        .ok_or_else(|| StoreError::Corrupt(format!("generated ID {id} out of range")))
}

impl Applier {
    /// A transaction's events into the inbox, its ID with them, in one
    /// atomic write (not synced), with the journal's LSN if it is
    /// journalled.
    pub(super) fn store_transaction(
        &self,
        txn_id: &str,
        events: &[&[u8]],
        now_ms: u64,
        digest: String,
        lsn: Option<u64>,
    ) -> Result<(), StoreError> {
        // The transaction whole, as one record (several only past
        // `RECORD_EVENTS` events), its ID with it. It is split into events
        // when processed.
        let records: Vec<Vec<u8>> = events.chunks(RECORD_EVENTS).map(transaction_value).collect();
        // IDs are taken before the transaction so a conflict retry reuses them.
        let seqs = (0..records.len())
            .map(|_| super::inbox::seq_of_id(generate_id(&self.db, &self.id_floor, &self.failure)?))
            .collect::<Result<Vec<u64>, StoreError>>()?;
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
                if let Some(lsn) = lsn {
                    counters.insert(K_JOURNAL_APPLIED, &lsn.to_be_bytes())?;
                }
                Ok(())
            })
            .map_err(|e| self.failure.transaction(e))
    }

    /// A journal record stored in sled, and the blobs sled made for it
    /// synced: sled's own flusher may sync the log that points to them
    /// first (see `FileSync::sync_blobs`).
    fn apply(&self, queued: &Queued) -> Result<(), StoreError> {
        let (txn_id, events, now_ms) = read_journal_record(&queued.record)?;
        self.store_transaction(txn_id, &events, now_ms, queued.digest.clone(), Some(queued.lsn))?;
        self.files.sync_blobs().map_err(|e| {
            self.failure.set(e.to_string());
            backend(format!("syncing the database's blobs: {e}"))
        })
    }
}

/// A transaction synced in the journal, to store in sled.
struct Queued {
    lsn: u64,
    txn_id: String,
    digest: String,
    record: Vec<u8>,
}

/// How far the inserter is, shared with the intake and the checkpoint.
#[derive(Default)]
pub(super) struct Progress {
    state: Mutex<State>,
    changed: Condvar,
    /// Held by a test to keep the inserter behind the journal.
    #[cfg(test)]
    pub(super) gate: Mutex<()>,
}

#[derive(Default)]
struct State {
    /// The last LSN handed to the inserter.
    queued: u64,
    /// The last LSN stored in sled.
    applied: u64,
    /// The transactions handed over and not yet stored: their digest and
    /// LSN, by transaction ID.
    waiting: HashMap<String, (String, u64)>,
}

impl Progress {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Everything up to `lsn` is in sled (stored again on open).
    pub(super) fn start_at(&self, lsn: u64) {
        let mut state = self.state();
        state.queued = lsn;
        state.applied = lsn;
    }

    /// The digest of a transaction with this ID still waiting to be stored.
    pub(super) fn waiting(&self, txn_id: &str) -> Option<String> {
        self.state().waiting.get(txn_id).map(|(digest, _)| digest.clone())
    }

    /// Returns once everything up to `lsn` is stored in sled, or with the
    /// error that stopped the inserter.
    pub(super) fn wait_for(&self, lsn: u64, failure: &Failure) -> Result<(), StoreError> {
        let mut state = self.state();
        loop {
            if state.applied >= lsn {
                return Ok(());
            }
            if let Some(e) = failure.get() {
                return Err(backend(format!("the database cannot write any more: {e}")));
            }
            // The failure is kept under another lock: its setter notifies,
            // and the timeout covers a notification missed between the two.
            state = self.changed.wait_timeout(state, Duration::from_millis(50)).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Returns once every transaction acknowledged so far is in sled.
    pub(super) fn settle(&self, failure: &Failure) -> Result<(), StoreError> {
        let queued = self.state().queued;
        self.wait_for(queued, failure)
    }

    fn stored(&self, lsn: u64, txn_id: &str) {
        let mut state = self.state();
        state.applied = lsn;
        // A reused ID may wait twice: only its own entry goes.
        if state.waiting.get(txn_id).is_some_and(|(_, at)| *at == lsn) {
            state.waiting.remove(txn_id);
        }
        self.changed.notify_all();
    }

    fn wake_all(&self) {
        let _state = self.state();
        self.changed.notify_all();
    }
}

/// The thread that stores what the journal synced. Dropping it stores what
/// is still queued, then joins the thread.
pub(super) struct Inserter {
    queue: Option<SyncSender<Queued>>,
    thread: Option<std::thread::JoinHandle<()>>,
    progress: Arc<Progress>,
}

impl Inserter {
    pub(super) fn start(applier: Applier, progress: Arc<Progress>) -> Result<Self, StoreError> {
        let (queue, received) = sync_channel(QUEUE);
        let shared = Arc::clone(&progress);
        let thread = std::thread::Builder::new()
            .name("intake-inserter".into())
            .spawn(move || insert(&applier, &shared, received))
            .map_err(|e| backend(format!("starting the intake's inserter: {e}")))?;
        Ok(Inserter { queue: Some(queue), thread: Some(thread), progress })
    }

    /// Hands a transaction synced in the journal to the inserter. The
    /// caller serialises this with the journal's appends (the intake
    /// lock), so LSNs arrive in order.
    pub(super) fn hand_over(
        &self,
        lsn: u64,
        txn_id: &str,
        digest: String,
        record: Vec<u8>,
        failure: &Failure,
    ) -> Result<(), StoreError> {
        {
            let mut state = self.progress.state();
            state.waiting.insert(txn_id.to_owned(), (digest.clone(), lsn));
            state.queued = lsn;
        }
        let txn_id = txn_id.to_owned();
        let sent = self.queue.as_ref().map(|q| q.send(Queued { lsn, txn_id, digest, record }));
        if let Some(Ok(())) = sent {
            return Ok(());
        }
        // The thread ended on an error it recorded (or panicked): the record
        // is in the journal, and the next open stores it.
        let why = failure.get().unwrap_or_else(|| "the intake's inserter stopped".into());
        failure.set(why.clone());
        self.progress.wake_all();
        Err(backend(format!("the database cannot write any more: {why}")))
    }
}

impl Drop for Inserter {
    fn drop(&mut self) {
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            // A panic in it was caught already (`insert`).
            let _ = thread.join();
        }
    }
}

/// The inserter's loop: in LSN order, until the intake lets go of the
/// queue, or the first failure (after which nothing more is stored: the
/// store stops, and the next open applies the journal).
fn insert(applier: &Applier, progress: &Progress, received: Receiver<Queued>) {
    while let Ok(queued) = received.recv() {
        #[cfg(test)]
        let _gate = progress.gate.lock().unwrap_or_else(|p| p.into_inner());
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| applier.apply(&queued)))
            .unwrap_or_else(|_| Err(backend("storing a transaction panicked")));
        match result {
            Ok(()) => progress.stored(queued.lsn, &queued.txn_id),
            Err(e) => {
                tracing::error!(lsn = queued.lsn, error = %e, "could not store a journalled transaction");
                applier.failure.set(format!("storing a journalled transaction: {e}"));
                progress.wake_all();
                return;
            }
        }
    }
}

/// A journal record's length, before it is encoded.
pub(super) fn journal_len(txn_id: &str, events: &[&[u8]]) -> usize {
    8 + 4 + txn_id.len() + 5 + events.iter().map(|e| 4 + e.len()).sum::<usize>()
}

/// A transaction as the journal keeps it: when it came, its ID, and its
/// events as the inbox stores them.
pub(super) fn journal_record(txn_id: &str, events: &[&[u8]], now_ms: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(journal_len(txn_id, events));
    v.extend_from_slice(&now_ms.to_be_bytes());
    v.extend_from_slice(&(txn_id.len() as u32).to_be_bytes());
    v.extend_from_slice(txn_id.as_bytes());
    v.extend_from_slice(&transaction_value(events));
    v
}

pub(super) fn read_journal_record(v: &[u8]) -> Result<(&str, Vec<&[u8]>, u64), StoreError> {
    let corrupt = || StoreError::Corrupt("intake journal record".into());
    let now_ms = u64::from_be_bytes(v.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(corrupt)?);
    let id_len = u32::from_be_bytes(v.get(8..12).and_then(|b| b.try_into().ok()).ok_or_else(corrupt)?) as usize;
    let id = v.get(12..12 + id_len).and_then(|b| std::str::from_utf8(b).ok()).ok_or_else(corrupt)?;
    let events = transaction_events(v.get(12 + id_len..).ok_or_else(corrupt)?)?;
    Ok((id, events, now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sled_store::tests::fresh;

    #[test]
    fn an_inserter_that_cannot_store_stops_the_store_and_wakes_who_waits() {
        let (store, _dir) = fresh();
        let progress = Arc::new(Progress::default());
        let inserter = Inserter::start(store.applier(), Arc::clone(&progress)).unwrap();
        inserter.hand_over(1, "t", "digest".into(), b"not a record".to_vec(), &store.failure).unwrap();
        let err = progress.wait_for(1, &store.failure).unwrap_err();
        assert!(err.to_string().contains("cannot write any more"), "{err}");
        assert!(store.failure.get().unwrap().contains("storing a journalled transaction"));
        assert!(progress.waiting("t").is_some(), "what was not stored is still waiting");
        drop(inserter);
    }
}
