//! The outbox of effects: read in order, finished (done or set aside as
//! failed, with their follow-ups), and its high-water mark.

use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use crate::store::records::{self, EffectRecord, FailedEffectRecord};
use crate::store::{Effect, EffectOutcome, FailedEffect, FollowUp, OutboxItem, Store, StoreError};

use super::counters::{C_EFFECTS_DONE, C_EFFECTS_FAILED, C_FOLLOW_UPS, G_INBOX, G_OUTBOX, K_OUTBOX_HIGH, bump, resize};
use super::inbox::inbox_value;
use super::{SledStore, seq_of};

impl SledStore {
    pub(super) fn outbox_after(
        &self,
        after: u64,
        up_to: u64,
        limit: usize,
        mail: bool,
    ) -> Result<Vec<OutboxItem>, StoreError> {
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

    pub(super) fn outbox_high_water(&self) -> Result<u64, StoreError> {
        self.counter(K_OUTBOX_HIGH)
    }

    pub(super) fn finish_effects(
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

    pub(super) fn failed_effects(&self, limit: usize) -> Result<Vec<FailedEffect>, StoreError> {
        let mut out = Vec::new();
        for entry in self.failed_effect_by_id.iter().take(limit) {
            let (k, v) = entry.map_err(|e| self.failed(e))?;
            let FailedEffectRecord::V1 { at_ms, reason, effect } = records::decode("failed effect", &v)?;
            out.push(FailedEffect { id: seq_of(&k), at_ms, reason, effect: records::effect_summary(&effect.into()) });
        }
        Ok(out)
    }
}
