//! Housekeeping: what is due (expired allows, ended pauses) and the
//! pruning of deferred messages, waves and transaction IDs.

use ruma::{OwnedUserId, UserId};
use sled::Transactional;

use crate::engine::{Contact, Deferred, Due, Subject, WaveRecord};
use crate::store::records::{self, ContactRecord, DeferredRecord, OwnerRecord, TxnRecord, WaveRecordV};
use crate::store::{OwnerState, StoreError, tally};

use super::SledStore;
use super::counters::Counts;

impl SledStore {
    pub(super) fn due(&self, now_ms: u64) -> Result<Due, StoreError> {
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

    pub(super) fn prune_deferred(
        &self,
        owner: &UserId,
        before_ms: u64,
        denied_before_ms: u64,
    ) -> Result<usize, StoreError> {
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
                    let mut counts = Counts::default();
                    counts.add(tally::message(Some(&d), None));
                    counts.write(kept)?;
                    Ok(true)
                })
                .map_err(|e| self.failed_tx(e))?;
            removed += usize::from(gone);
        }
        Ok(removed)
    }

    pub(super) fn prune_waves(&self, now_ms: u64) -> Result<usize, StoreError> {
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

    pub(super) fn wave_records(&self) -> Result<usize, StoreError> {
        Ok(self.wave_by_key.len())
    }

    pub(super) fn prune_transactions(&self, before_ms: u64) -> Result<usize, StoreError> {
        self.settle()?;
        let mut removed = 0;
        for entry in self.txn_by_id.iter() {
            let (k, v) = entry.map_err(|e| self.failed(e))?;
            let TxnRecord::V1 { at_ms, .. } = records::decode("transaction", &v)?;
            // Unless the inserter stored the ID again in the meantime (a
            // reused one): its new record is kept.
            if at_ms < before_ms {
                let gone = self.txn_by_id.compare_and_swap(k, Some(v), None::<&[u8]>).map_err(|e| self.failed(e))?;
                removed += usize::from(gone.is_ok());
            }
        }
        Ok(removed)
    }
}
