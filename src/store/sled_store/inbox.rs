//! The inbox as stored: how events and whole transactions are laid out
//! under their keys, read in order, and consumed inside a write.

use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use crate::store::{InboxItem, StoreError};

use super::{SledStore, seq_of};

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
pub(super) const SLOT_BITS: u32 = 20;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
/// The most events one stored record holds; a longer transaction is
/// stored as several records, in the same write.
pub(super) const RECORD_EVENTS: usize = 1 << SLOT_BITS;

/// A stored transaction's value: its tag, the number of events, then each
/// event's length and raw bytes.
pub(super) fn transaction_value(events: &[&[u8]]) -> Vec<u8> {
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
pub(super) fn transaction_events(v: &[u8]) -> Result<Vec<&[u8]>, StoreError> {
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

pub(super) fn inbox_value(internal: bool, raw: &[u8]) -> Vec<u8> {
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

/// The inbox key of a generated ID (see [`SLOT_BITS`]).
pub(super) fn seq_of_id(id: u64) -> Result<u64, StoreError> {
    id.checked_mul(1 << SLOT_BITS).ok_or_else(|| StoreError::Corrupt(format!("inbox ID {id} out of range")))
}

impl SledStore {
    /// A new inbox key, after every one in use, and after those of every
    /// transaction acknowledged so far: the inserter's are taken first
    /// (see `settle`), so the inbox's order is the order things arrived in.
    pub(super) fn next_seq(&self) -> Result<u64, StoreError> {
        self.settle()?;
        seq_of_id(self.generate_id()?)
    }

    pub(super) fn next_seqs(&self, n: usize) -> Result<Vec<u64>, StoreError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        self.settle()?;
        (0..n).map(|_| seq_of_id(self.generate_id()?)).collect()
    }

    /// How many events wait in the inbox, counted by reading it (the kept
    /// size, `inbox_len`, must say the same).
    #[cfg(test)]
    pub(super) fn inbox_events(&self) -> u64 {
        self.inbox_batch_within(usize::MAX, usize::MAX).unwrap().len() as u64
    }

    pub(super) fn inbox_batch_within(&self, limit: usize, max_bytes: usize) -> Result<Vec<InboxItem>, StoreError> {
        self.settle()?;
        let mut out = Vec::new();
        let mut bytes = 0;
        let full = |out: &Vec<InboxItem>, bytes: usize| out.len() >= limit || bytes >= max_bytes;
        for entry in self.inbox_by_seq.iter() {
            if full(&out, bytes) {
                break;
            }
            let (k, v) = entry.map_err(|e| self.failed(e))?;
            let seq = seq_of(&k);
            if !is_transaction(&v) {
                let item = inbox_item(seq, &v);
                bytes += item.raw.len();
                out.push(item);
                continue;
            }
            // A stored transaction: its events not consumed yet.
            let done = self.inbox_done.get(&k).map_err(|e| self.failed(e))?;
            for (i, raw) in transaction_events(&v)?.into_iter().enumerate() {
                if full(&out, bytes) {
                    break;
                }
                if !consumed(done.as_deref(), i) {
                    bytes += raw.len();
                    out.push(InboxItem { seq: seq + i as u64, internal: false, raw: raw.to_vec() });
                }
            }
        }
        Ok(out)
    }
}

/// Consumes inbox items inside one sled transaction: plain entries, and
/// events of stored transactions, whose consumed events are noted in
/// `inbox_done` and which go once their last event does. [`Taker::finish`]
/// writes what was noted.
pub(super) struct Taker<'t> {
    inbox: &'t TransactionalTree,
    done: &'t TransactionalTree,
    /// Per stored transaction touched: its value and its consumed bitmap.
    records: std::collections::HashMap<u64, (sled::IVec, Vec<u8>)>,
}

impl<'t> Taker<'t> {
    pub(super) fn new(inbox: &'t TransactionalTree, done: &'t TransactionalTree) -> Self {
        Taker { inbox, done, records: Default::default() }
    }

    /// Consumes item `seq`; `false` if it was consumed before.
    pub(super) fn consume(&mut self, seq: u64) -> Result<bool, ConflictableTransactionError<StoreError>> {
        Ok(self.take_as(seq, false)?.is_some())
    }

    /// Consumes item `seq`: its source and raw bytes, or `None` if it was
    /// consumed before.
    pub(super) fn take(&mut self, seq: u64) -> Result<Option<InboxItem>, ConflictableTransactionError<StoreError>> {
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
    pub(super) fn finish(self) -> Result<(), ConflictableTransactionError<StoreError>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::sled_store::tests::fresh;

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
            s.settle().unwrap();
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
        s.commit(items[1].seq, &crate::store::conformance::sample_decision()).unwrap();
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
}
