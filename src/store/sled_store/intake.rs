//! What enters the inbox: homeserver transactions (with replay detection),
//! sync batches and their position, follow-ups, internal events, used links;
//! and the connector's values.

use sled::Transactional;
use sled::transaction::TransactionError;

use crate::store::records::{self, TxnRecord};
use crate::store::{Accepted, FollowUp, Store, StoreError, transaction_digest};

use super::counters::{
    C_FOLLOW_UPS, C_RECEIVED, C_REPLAYS, C_TRANSACTIONS, G_INBOX, K_SYNC_POSITION, K_TXN_HIGH, bump, resize,
};
use super::inbox::{RECORD_EVENTS, inbox_value, transaction_value};
use super::{SledStore, read_u64};

impl SledStore {
    pub(super) fn accept_transaction(
        &self,
        txn_id: &str,
        events: &[&[u8]],
        now_ms: u64,
    ) -> Result<Accepted, StoreError> {
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

    pub(super) fn highest_transaction_number(&self) -> Result<Option<u64>, StoreError> {
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
