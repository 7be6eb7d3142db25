//! What enters the inbox: homeserver transactions (with replay detection),
//! sync batches and their position, follow-ups, internal events, used links;
//! and the connector's values.

use std::path::Path;
use std::sync::Arc;

use sled::Transactional;
use sled::transaction::TransactionError;

use crate::store::records::{self, TxnRecord};
use crate::store::{Accepted, FollowUp, Store, StoreError, transaction_digest};

use super::counters::{
    C_FOLLOW_UPS, C_RECEIVED, C_REPLAYS, G_INBOX, K_JOURNAL_APPLIED, K_SYNC_POSITION, K_TXN_HIGH, bump, resize,
};
use super::inbox::inbox_value;
use super::inserter::{Applier, Inserter, journal_len, journal_record, read_journal_record};
use super::{SledStore, backend, read_u64};
use crate::store::journal::{Checkpoint, Journal};

impl SledStore {
    pub(super) fn accept_transaction(
        &self,
        txn_id: &str,
        events: &[&[u8]],
        now_ms: u64,
    ) -> Result<Accepted, StoreError> {
        let digest = records::hex(&transaction_digest(events));
        let _guard = self.intake.lock().unwrap_or_else(|p| {
            // A transaction's write that panicked half way may have left it
            // in sled's memory only, where a retry would find a replay.
            self.fail("an earlier transaction's write panicked".into());
            p.into_inner()
        });
        // Not even a replay is acknowledged after a failed write or sync:
        // the first try may be in sled's memory only.
        self.refuse_if_failed()?;
        // Among those the inserter still holds first: one it stores in the
        // meantime is in sled by the time sled is read.
        let seen = match self.progress.waiting(txn_id) {
            Some(digest) => Some(digest),
            None => match self.txn_by_id.get(txn_id).map_err(|e| self.failed(e))? {
                Some(bytes) => {
                    let TxnRecord::V1 { digest, .. } = records::decode("transaction", &bytes)?;
                    Some(digest)
                }
                None => None,
            },
        };
        if seen.as_deref() == Some(digest.as_str()) {
            self.counters
                .transaction(|c| bump(c, C_REPLAYS, 1))
                .map_err(|e: TransactionError<StoreError>| self.failed_tx(e))?;
            return Ok(Accepted::Replay);
        }
        let reused = seen.is_some();
        let len = journal_len(txn_id, events);
        match (&self.journal, &self.inserter) {
            // Durable once the journal's record is synced (one sync of its
            // own, see `store::journal`); stored in sled after the answer.
            (Some(journal), Some(inserter)) if journal.fits(len) => {
                let lsn = journal.next_lsn();
                let record = journal_record(txn_id, events, now_ms);
                if let Err(e) = journal.append(lsn, &record) {
                    let e = format!("writing the intake journal: {e}");
                    self.fail(e.clone());
                    return Err(backend(e));
                }
                inserter.hand_over(lsn, txn_id, digest, record, &self.failure)?;
            }
            // Too large for the journal: stored and synced the database's
            // way, after what the inserter holds, to keep arrival order.
            _ => {
                self.settle()?;
                self.applier().store_transaction(txn_id, events, now_ms, digest, None)?;
                // In sled's memory now: if it cannot be made durable,
                // nothing more is acknowledged until the database is
                // reopened, or the homeserver's retry would be a replay.
                if let Err(e) = self.durable() {
                    self.fail(e.to_string());
                    return Err(e);
                }
            }
        }
        Ok(if reused { Accepted::ReusedId { events: events.len() } } else { Accepted::New { events: events.len() } })
    }

    /// The trees the intake writes, for the inserter or for one write here.
    pub(super) fn applier(&self) -> Applier {
        Applier {
            db: self.db.clone(),
            txn_by_id: self.txn_by_id.clone(),
            inbox_by_seq: self.inbox_by_seq.clone(),
            counters: self.counters.clone(),
            id_floor: Arc::clone(&self.id_floor),
            failure: self.failure.clone(),
            files: Arc::clone(&self.files),
        }
    }

    /// Opens the intake journal beside the database and stores again what
    /// it holds that the database lost (a power cut takes what sled had
    /// not synced itself), makes all of it durable, and starts the
    /// inserter.
    pub(super) fn with_journal(mut self, path: &Path, segment_bytes: u64) -> Result<Self, StoreError> {
        let applied = self.counters.get(K_JOURNAL_APPLIED).map_err(|e| self.failed(e))?.map_or(0, |v| read_u64(&v));
        let (db, files, failure, progress) =
            (self.db.clone(), Arc::clone(&self.files), self.failure.clone(), Arc::clone(&self.progress));
        let checkpoint: Checkpoint = Box::new(move |lsn| {
            let result = progress.wait_for(lsn, &failure).map_err(std::io::Error::other).and_then(|()| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| files.flush_and_sync(&db)))
                    .unwrap_or_else(|_| Err(std::io::Error::other("the checkpoint panicked")))
            });
            if let Err(e) = &result {
                // As `durable`: the store stops (the watchdog sees it)
                // rather than trust a later sync of the same files.
                failure.set(e.to_string());
            }
            result
        });
        let (journal, pending) = Journal::open(path, segment_bytes, applied, checkpoint)
            .map_err(|e| backend(format!("opening the intake journal in {}: {e}", path.display())))?;
        let applier = self.applier();
        for record in &pending {
            let (txn_id, events, now_ms) = read_journal_record(&record.payload)?;
            let digest = records::hex(&transaction_digest(&events));
            applier.store_transaction(txn_id, &events, now_ms, digest, Some(record.lsn))?;
        }
        // Past every number the journal will not use (see `Journal::open`),
        // so that a later power cut replays from where the journal goes on.
        let last = journal.next_lsn() - 1;
        if last > applied {
            self.counters.insert(K_JOURNAL_APPLIED, &last.to_be_bytes()).map_err(|e| self.failed(e))?;
            self.durable()?;
        }
        if !pending.is_empty() {
            tracing::info!(
                transactions = pending.len(),
                "stored again from the intake journal what the database had lost"
            );
        }
        journal.all_durable();
        self.progress.start_at(last);
        self.inserter = Some(Inserter::start(applier, Arc::clone(&self.progress))?);
        self.journal = Some(journal);
        Ok(self)
    }

    pub(super) fn highest_transaction_number(&self) -> Result<Option<u64>, StoreError> {
        self.settle()?;
        Ok(self.counters.get(K_TXN_HIGH).map_err(|e| self.failed(e))?.map(|v| read_u64(&v)))
    }

    pub(super) fn accept_sync(
        &self,
        since: Option<&str>,
        next_batch: &str,
        events: &[&[u8]],
    ) -> Result<bool, StoreError> {
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

    pub(super) fn sync_position(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .counters
            .get(K_SYNC_POSITION)
            .map_err(|e| self.failed(e))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub(super) fn reset_sync_position(&self) -> Result<(), StoreError> {
        self.counters.remove(K_SYNC_POSITION).map_err(|e| self.failed(e))?;
        self.durable()
    }

    pub(super) fn connector_value(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.connector.get(key).map_err(|e| self.failed(e))?.map(|v| v.to_vec()))
    }

    pub(super) fn set_connector_value(&self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        match value {
            Some(v) => self.connector.insert(key, v).map(drop),
            None => self.connector.remove(key).map(drop),
        }
        .map_err(|e| self.failed(e))?;
        self.flush()
    }

    pub(super) fn connector_values(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.connector
            .scan_prefix(prefix)
            .map(|r| r.map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v.to_vec())).map_err(|e| self.failed(e)))
            .collect()
    }

    pub(super) fn push_follow_ups(&self, follow_ups: &[FollowUp]) -> Result<(), StoreError> {
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

    pub(super) fn use_link(&self, nonce: &str, expires_ms: u64, raw: &[u8]) -> Result<bool, StoreError> {
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

    pub(super) fn push_internal(&self, raw: &[u8]) -> Result<(), StoreError> {
        let seq = self.next_seq()?;
        (&self.inbox_by_seq, &self.counters)
            .transaction(|(inbox, counters)| {
                inbox.insert(&seq.to_be_bytes(), inbox_value(true, raw))?;
                resize(counters, G_INBOX, 1)
            })
            .map_err(|e| self.failed_tx(e))?;
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn event(i: usize) -> String {
        format!(
            r#"{{"event_id":"$e{i}","type":"m.room.message","room_id":"!r:x","sender":"@s:x","content":{{"body":"{i}"}}}}"#
        )
    }

    fn accept(store: &SledStore, txns: std::ops::Range<usize>) {
        for i in txns {
            let e = event(i);
            let got = store.accept_transaction(&i.to_string(), &[e.as_bytes()], i as u64).unwrap();
            assert_eq!(got, Accepted::New { events: 1 });
        }
    }

    fn inbox(store: &SledStore) -> Vec<String> {
        let items = store.inbox_batch_within(usize::MAX, usize::MAX).unwrap();
        items.into_iter().map(|i| String::from_utf8(i.raw).unwrap()).collect()
    }

    /// sled's own files, apart from the journal's.
    fn sled_files(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if !path.file_name().unwrap().to_string_lossy().starts_with("journal.") {
                out.push(path);
            }
        }
        out
    }

    fn copy_tree(from: &Path, to: &Path) {
        if from.is_dir() {
            std::fs::create_dir_all(to).unwrap();
            for entry in std::fs::read_dir(from).unwrap() {
                let entry = entry.unwrap();
                copy_tree(&entry.path(), &to.join(entry.file_name()));
            }
        } else {
            std::fs::copy(from, to).unwrap();
        }
    }

    /// What sled had synced when the power went: its files as they were
    /// at `saved`, with the journal as it is now.
    fn power_cut(db: &Path, saved: &Path) {
        for path in sled_files(db) {
            if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) }.unwrap();
        }
        for path in sled_files(saved) {
            copy_tree(&path, &db.join(path.file_name().unwrap()));
        }
    }

    fn save(db: &Path, saved: &Path) {
        std::fs::create_dir_all(saved).unwrap();
        for path in sled_files(db) {
            copy_tree(&path, &saved.join(path.file_name().unwrap()));
        }
    }

    #[test]
    fn what_a_power_cut_took_from_sled_is_stored_again_from_the_journal_once() {
        let dir = tempfile::tempdir().unwrap();
        let (db, saved) = (dir.path().join("db"), dir.path().join("saved"));
        accept(&SledStore::open(&db, 4).unwrap(), 0..3);
        save(&db, &saved);
        // Acknowledged through the journal alone; sled's log never synced.
        accept(&SledStore::open(&db, 4).unwrap(), 3..10);
        power_cut(&db, &saved);
        let store = SledStore::open(&db, 4).unwrap();
        assert_eq!(inbox(&store), (0..10).map(event).collect::<Vec<_>>());
        assert_eq!(store.highest_transaction_number().unwrap(), Some(9));
        // Applied once: the homeserver's retry of one is a replay, and
        // opening again applies nothing twice.
        let e = event(7);
        assert_eq!(store.accept_transaction("7", &[e.as_bytes()], 7).unwrap(), Accepted::Replay);
        drop(store);
        let store = SledStore::open(&db, 4).unwrap();
        assert_eq!(inbox(&store).len(), 10);
        accept(&store, 10..11);
        assert_eq!(inbox(&store).len(), 11);
    }

    #[test]
    fn a_power_cut_after_the_journal_went_round_loses_nothing() {
        const SEGMENT: u64 = 4096;
        let dir = tempfile::tempdir().unwrap();
        let (db, saved) = (dir.path().join("db"), dir.path().join("saved"));
        // Round and round: checkpoints let the segments be written over.
        accept(&SledStore::open_with_journal_segment(&db, 4, SEGMENT).unwrap(), 0..100);
        save(&db, &saved);
        // Past the first segment's end, into the second: the checkpoint of
        // the first may finish, but nothing is written over yet.
        let per_segment = SEGMENT as usize / journal_len("100", &[event(100).as_bytes()]);
        let end = 100 + per_segment + per_segment / 2;
        accept(&SledStore::open_with_journal_segment(&db, 4, SEGMENT).unwrap(), 100..end);
        power_cut(&db, &saved);
        let store = SledStore::open_with_journal_segment(&db, 4, SEGMENT).unwrap();
        assert_eq!(inbox(&store), (0..end).map(event).collect::<Vec<_>>());
    }

    #[test]
    fn what_the_inserter_still_holds_is_a_replay_and_every_read_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("db"), 4).unwrap();
        let gate = store.progress.gate.lock().unwrap();
        accept(&store, 0..2);
        // Acknowledged, not in sled yet: the homeserver's retry is a
        // replay, and the same ID with other events is new.
        let (first, other) = (event(0), event(9));
        assert_eq!(store.accept_transaction("0", &[first.as_bytes()], 0).unwrap(), Accepted::Replay);
        assert_eq!(store.accept_transaction("1", &[other.as_bytes()], 1).unwrap(), Accepted::ReusedId { events: 1 });
        std::thread::scope(|s| {
            let reader = s.spawn(|| inbox(&store));
            std::thread::sleep(std::time::Duration::from_millis(100));
            assert!(!reader.is_finished(), "a read did not wait for what was acknowledged");
            drop(gate);
            assert_eq!(reader.join().unwrap(), [event(0), event(1), event(9)]);
        });
        let stats = store.stats().unwrap();
        assert_eq!((stats.transactions, stats.replayed_transactions, stats.events_received), (3, 1, 3));
    }

    #[test]
    fn what_comes_after_an_acknowledged_transaction_comes_after_it_in_the_inbox() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("db"), 4).unwrap();
        let gate = store.progress.gate.lock().unwrap();
        accept(&store, 0..1);
        std::thread::scope(|s| {
            let internal = s.spawn(|| store.push_internal(br#"{"tick":1}"#).unwrap());
            std::thread::sleep(std::time::Duration::from_millis(100));
            drop(gate);
            internal.join().unwrap();
        });
        assert_eq!(inbox(&store), [event(0), r#"{"tick":1}"#.to_owned()]);
    }

    #[test]
    fn after_a_failed_write_not_even_a_replay_is_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("db"), 4).unwrap();
        accept(&store, 0..1);
        store.failure.set("EIO".into());
        let e = event(0);
        let err = store.accept_transaction("0", &[e.as_bytes()], 0).unwrap_err();
        assert!(err.to_string().contains("cannot write any more"), "{err}");
        let e = event(1);
        assert!(store.accept_transaction("1", &[e.as_bytes()], 1).is_err());
    }

    #[test]
    fn after_a_gap_in_the_journal_every_record_is_applied_again_once() {
        const SEGMENT: u64 = 4096;
        let dir = tempfile::tempdir().unwrap();
        let (db, saved) = (dir.path().join("db"), dir.path().join("saved"));
        let open = || SledStore::open_with_journal_segment(&db, 4, SEGMENT).unwrap();
        drop(open());
        save(&db, &saved);
        let per_segment = SEGMENT as usize / journal_len("100", &[event(100).as_bytes()]);
        accept(&open(), 0..per_segment + 2);
        // The journal's first segment damaged in its third record, and
        // sled's files as before any of it: what follows the gap is lost.
        let journal = db.join("journal.0");
        let mut bytes = std::fs::read(&journal).unwrap();
        bytes[2 * (20 + journal_len("0", &[event(0).as_bytes()])) + 20] ^= 0xff;
        std::fs::write(&journal, &bytes).unwrap();
        power_cut(&db, &saved);
        let store = open();
        // The two before the gap, then those after it (in the second
        // segment): acknowledged, so kept, in order.
        let kept = inbox(&store);
        assert_eq!(kept[..2], [event(0), event(1)]);
        assert!(kept.len() > 2 && kept.last() == Some(&event(per_segment + 1)), "{kept:?}");
        drop(store);
        // Later records are numbered past the gap, and a later power cut
        // applies them again from there.
        let saved = dir.path().join("saved again");
        save(&db, &saved);
        let end = per_segment + 6;
        accept(&open(), per_segment + 2..end);
        power_cut(&db, &saved);
        let got = inbox(&open());
        let want: Vec<String> = kept.into_iter().chain((per_segment + 2..end).map(event)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_transaction_too_large_for_the_journal_is_kept_all_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        let store = SledStore::open_with_journal_segment(&db, 4, 1024).unwrap();
        let large = "x".repeat(2000);
        assert_eq!(store.accept_transaction("big", &[large.as_bytes()], 1).unwrap(), Accepted::New { events: 1 });
        accept(&store, 0..3);
        drop(store);
        let store = SledStore::open_with_journal_segment(&db, 4, 1024).unwrap();
        assert_eq!(inbox(&store).len(), 4);
    }

    #[test]
    fn journal_records_read_back_as_written() {
        let events = [event(1), event(2)];
        let raw: Vec<&[u8]> = events.iter().map(|e| e.as_bytes()).collect();
        let record = journal_record("txn-1", &raw, 42);
        assert_eq!(record.len(), journal_len("txn-1", &raw));
        let (id, back, at) = read_journal_record(&record).unwrap();
        assert_eq!((id, back, at), ("txn-1", raw.clone(), 42));
        assert!(read_journal_record(&record[..record.len() - 1]).is_err());
        assert!(read_journal_record(&record[..10]).is_err());
    }
}
