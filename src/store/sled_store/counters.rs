//! The counters tree's keys, the counts and kept sizes every write moves,
//! and the stats read from them.

use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use crate::store::{Stats, StoreError, tally};

use super::{SledStore, read_u64};

pub(super) const C_TRANSACTIONS: &str = "transactions";
pub(super) const C_REPLAYS: &str = "replayed_transactions";
pub(super) const C_RECEIVED: &str = "events_received";
pub(super) const C_FOLLOW_UPS: &str = "follow_ups";
pub(super) const C_PROCESSED: &str = "events_processed";
pub(super) const C_QUARANTINED: &str = "events_quarantined";
pub(super) const C_EFFECTS_DONE: &str = "effects_done";
pub(super) const C_EFFECTS_FAILED: &str = "effects_failed";
pub(super) const K_OUTBOX_HIGH: &str = "outbox_high_water";
// Sizes kept with every write that changes them, so that /metrics reads
// three keys instead of counting three trees.
pub(super) const G_INBOX: &str = "inbox_len";
pub(super) const G_OUTBOX: &str = "outbox_len";
pub(super) const G_OWNERS: &str = "owners_len";
pub(super) const G_BUILT: &str = "sizes_built";
/// Kept apart from connector values: no connector key can overwrite it.
pub(super) const K_SYNC_POSITION: &str = "sync_position";
pub(super) const K_TXN_HIGH: &str = "highest_transaction_number";
/// The LSN of the last transaction stored through the intake journal,
/// written with it (see `store::journal`).
pub(super) const K_JOURNAL_APPLIED: &str = "journal_applied";

/// Moves a kept size up or down.
pub(super) fn resize(
    t: &TransactionalTree,
    key: &str,
    by: i64,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    if by == 0 {
        return Ok(());
    }
    let now = t.get(key)?.map_or(0, |v| read_u64(&v));
    t.insert(key, &now.saturating_add_signed(by).to_be_bytes())?;
    Ok(())
}

pub(super) fn bump(t: &TransactionalTree, key: &str, by: u64) -> Result<(), ConflictableTransactionError<StoreError>> {
    let old = t.get(key)?.map_or(0, |v| read_u64(&v));
    t.insert(key, &(old + by).to_be_bytes())?;
    Ok(())
}

/// Count changes gathered over one transaction and written once per key:
/// a batch of a hundred captures for one owner moves the owner's counts
/// once, not a hundred times (every write is a tree insert at commit, the
/// largest part of a batch's commit).
#[derive(Default)]
pub(super) struct Counts(std::collections::HashMap<Vec<u8>, i64>);

impl Counts {
    pub(super) fn add(&mut self, deltas: Vec<(tally::Key, i64)>) {
        for (key, delta) in deltas {
            *self.0.entry(key.encode()).or_default() += delta;
        }
    }

    pub(super) fn write(self, t: &TransactionalTree) -> Result<(), ConflictableTransactionError<StoreError>> {
        for (key, delta) in self.0 {
            if delta == 0 {
                continue;
            }
            let now = t.get(&key)?.map(|v| read_u64(&v)).unwrap_or(0);
            t.insert(key, &tally::apply(now, delta).to_be_bytes())?;
        }
        Ok(())
    }
}

impl SledStore {
    pub(super) fn count(&self, key: &tally::Key) -> Result<u64, StoreError> {
        Ok(self.kept_by_key.get(key.encode()).map_err(|e| self.failed(e))?.map(|v| read_u64(&v)).unwrap_or(0))
    }

    pub(super) fn counter(&self, key: &str) -> Result<u64, StoreError> {
        Ok(self.counters.get(key).map_err(|e| self.failed(e))?.map_or(0, |v| read_u64(&v)))
    }

    pub(super) fn stats(&self) -> Result<Stats, StoreError> {
        // Every acknowledged transaction counted; after a failure stopped
        // the inserter, what sled has (the metrics still answer).
        let _ = self.settle();
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Decision, StateChange};
    use crate::store::sled_store::tests::fresh;
    use crate::store::{EffectOutcome, FollowUp, Store};

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
        s.commit(items[0].seq, &crate::store::conformance::sample_decision()).unwrap();
        s.commit(items[0].seq, &crate::store::conformance::sample_decision()).unwrap();
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
}
