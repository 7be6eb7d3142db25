//! The quarantine: inbox items set aside, bounded, listed and pruned.

use sled::Transactional;

use crate::store::records::{self, QuarantineRecord};
use crate::store::{InboxItem, QuarantinedEvent, StoreError};

use super::counters::{C_QUARANTINED, G_INBOX, bump, resize};
use super::inbox::Taker;
use super::{SledStore, seq_of};

impl SledStore {
    pub(super) fn quarantine(&self, seq: u64, reason: &str, now_ms: u64) -> Result<(), StoreError> {
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
                    raw: crate::store::quarantined_raw(&raw),
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
        while now_kept > crate::store::QUARANTINE_KEEP {
            if self.quarantine_by_seq.pop_min().map_err(|e| self.failed(e))?.is_none() {
                break;
            }
            now_kept -= 1;
        }
        *kept = Some(now_kept);
        Ok(())
    }

    pub(super) fn prune_quarantine(&self, before_ms: u64, keep: usize) -> Result<usize, StoreError> {
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

    pub(super) fn quarantined(&self, limit: usize) -> Result<Vec<QuarantinedEvent>, StoreError> {
        let mut out = Vec::new();
        for entry in self.quarantine_by_seq.iter().take(limit) {
            let (k, v) = entry.map_err(|e| self.failed(e))?;
            let QuarantineRecord::V1 { at_ms, reason, raw } = records::decode("quarantine", &v)?;
            out.push(QuarantinedEvent { seq: seq_of(&k), at_ms, reason, raw });
        }
        Ok(out)
    }
}
