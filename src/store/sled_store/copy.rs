//! `migrate`'s sled side (see `store::copy`): every tree exported as
//! neutral records, and imported into a fresh database in a directory made
//! beside the target, renamed into place once the copy is checked.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use crate::engine::policy::{PolicyList, index_key};
use crate::store::copy::{self, COUNTERS, Kind, Records, Source, Target, u64_value};
use crate::store::policy_records::{ListCountsV1, PolicyListRecord, RULE_TAG, RuleV1, index_entry, rule_key};
use crate::store::records::{self, RoomRecord, pair_key};
use crate::store::{Store, StoreError};

use super::counters::{G_BUILT, G_INBOX, G_OUTBOX, G_OWNERS, K_OUTBOX_HIGH, K_SYNC_POSITION};
use super::{SledStore, read_u64};

/// Where the count of held rooms and kept messages notes it was built.
const KEPT_BUILT: &[u8] = b"built";

/// Inbox entries' first byte, as `inbox::inbox_value` writes it.
const FROM_HOMESERVER: u8 = b'H';
const FROM_LOOKUP: u8 = b'I';

/// The counters key of the offset added to sled's generated IDs (see
/// [`SledStore::id_floor`]).
pub(super) const K_ID_FLOOR: &str = "id_floor";

fn whole(tree: &sled::Tree) -> Result<Records, StoreError> {
    tree.iter().map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(super::backend)).collect()
}

impl Source for SledStore {
    fn export(&mut self, kind: Kind) -> Result<Records, StoreError> {
        self.export_kind(kind)
    }
}

impl SledStore {
    pub(crate) fn export_kind(&self, kind: Kind) -> Result<Records, StoreError> {
        self.settle()?;
        Ok(match kind {
            Kind::Txns => whole(&self.txn_by_id)?,
            // A transaction stored whole is its events not consumed yet,
            // each under its own sequence number.
            Kind::Inbox => self
                .inbox_batch(usize::MAX)?
                .into_iter()
                .map(|i| {
                    let mut v = vec![if i.internal { FROM_LOOKUP } else { FROM_HOMESERVER }];
                    v.extend_from_slice(&i.raw);
                    (i.seq.to_be_bytes().to_vec(), v)
                })
                .collect(),
            Kind::Outbox => whole(&self.outbox_by_id)?,
            Kind::Owners => whole(&self.owner_by_user)?,
            Kind::Rooms => whole(&self.room_by_id_owner)?,
            Kind::Contacts => whole(&self.contact_by_owner_user)?,
            Kind::Strangers => whole(&self.stranger_by_owner_user)?,
            Kind::Deferred => whole(&self.deferred_by_owner_event)?,
            Kind::KeptCounts => whole(&self.kept_by_key)?.into_iter().filter(|(k, _)| k != KEPT_BUILT).collect(),
            Kind::Waves => whole(&self.wave_by_key)?,
            // The record and the counts kept beside it, as one version-2 record.
            Kind::PolicyLists => self
                .policy_lists()?
                .iter()
                .map(|l| (l.room_id.as_bytes().to_vec(), records::encode(&PolicyListRecord::from(l))))
                .collect(),
            Kind::PolicyRules => self
                .policy_by_room
                .scan_prefix([RULE_TAG])
                .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(|e| self.failed(e)))
                .collect::<Result<_, _>>()?,
            Kind::Quarantine => whole(&self.quarantine_by_seq)?,
            Kind::UsedLinks => whole(&self.used_link_by_nonce)?,
            Kind::FailedEffects => whole(&self.failed_effect_by_id)?,
            Kind::Seen => whole(&self.seen_by_room)?,
            Kind::Connector => whole(&self.connector)?,
            Kind::Counters => {
                let mut out = Vec::new();
                for name in COUNTERS {
                    if let Some(v) = self.counters.get(name).map_err(|e| self.failed(e))? {
                        out.push((name.as_bytes().to_vec(), read_u64(&v).to_be_bytes().to_vec()));
                    }
                }
                out
            }
            Kind::SyncPosition => match self.counters.get(K_SYNC_POSITION).map_err(|e| self.failed(e))? {
                Some(v) => vec![(Vec::new(), v.to_vec())],
                None => Vec::new(),
            },
        })
    }

    /// Writes `records` of `kind` into this (fresh) database, with the
    /// index entries they need.
    pub(crate) fn import_kind(&self, kind: Kind, records: &Records) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let mut extra = sled::Batch::default();
        let tree = match kind {
            Kind::Txns => &self.txn_by_id,
            Kind::Inbox => {
                for (k, v) in records {
                    u64_value(k)?;
                    if !matches!(v.first(), Some(&FROM_HOMESERVER | &FROM_LOOKUP)) {
                        return Err(StoreError::Corrupt("an inbox event without its source".into()));
                    }
                }
                &self.inbox_by_seq
            }
            Kind::Outbox => &self.outbox_by_id,
            Kind::Owners => &self.owner_by_user,
            Kind::Rooms => {
                // Each held room in its owner's index too.
                for (k, v) in records {
                    let (room, _) = copy::split_last(k)?;
                    if let crate::engine::RoomState::Held(h) = records::decode::<RoomRecord>("room", v)?.into() {
                        extra.insert(pair_key(h.owner.as_str(), &String::from_utf8_lossy(room)), &[][..]);
                    }
                }
                &self.room_by_id_owner
            }
            Kind::Contacts => &self.contact_by_owner_user,
            Kind::Strangers => &self.stranger_by_owner_user,
            Kind::Deferred => &self.deferred_by_owner_event,
            Kind::KeptCounts => &self.kept_by_key,
            Kind::Waves => &self.wave_by_key,
            Kind::PolicyLists => {
                // The record without its counts, the counts beside it, and
                // the operator's mark: as a `PutPolicyList` writes them.
                for (k, v) in records {
                    let list: PolicyList = records::decode::<PolicyListRecord>("policy list", v)?.into();
                    if list.room_id.as_bytes() != k.as_slice() {
                        return Err(StoreError::Corrupt("a policy list under another room's key".into()));
                    }
                    let room = list.room_id.as_str();
                    batch.insert(pair_key("l", room), records::encode(&PolicyListRecord::header(&list)));
                    batch.insert(pair_key("c", room), records::encode(&ListCountsV1::from(&list)));
                    if list.operator {
                        batch.insert(pair_key("o", room), &[][..]);
                    }
                }
                return self.policy_by_room.apply_batch(batch).map_err(|e| self.failed(e));
            }
            Kind::PolicyRules => {
                for (k, v) in records {
                    let (room, slot) = copy::rule_key_parts(k)?;
                    let rule: crate::engine::policy::PolicyRule = records::decode::<RuleV1>("policy rule", v)?.into();
                    batch.insert(rule_key(&room, &slot), v.as_slice());
                    batch.insert(index_entry(&room, &index_key(&rule), &slot), &[][..]);
                }
                return self.policy_by_room.apply_batch(batch).map_err(|e| self.failed(e));
            }
            Kind::Quarantine => &self.quarantine_by_seq,
            Kind::UsedLinks => &self.used_link_by_nonce,
            Kind::FailedEffects => &self.failed_effect_by_id,
            Kind::Seen => &self.seen_by_room,
            Kind::Connector => &self.connector,
            Kind::Counters => {
                for (k, v) in records {
                    let name = std::str::from_utf8(k).ok().filter(|n| COUNTERS.contains(n));
                    let name = name.ok_or_else(|| StoreError::Corrupt("an unknown counter".into()))?;
                    batch.insert(name, &u64_value(v)?.to_be_bytes());
                }
                return self.counters.apply_batch(batch).map_err(|e| self.failed(e));
            }
            Kind::SyncPosition => {
                for (_, v) in records {
                    batch.insert(K_SYNC_POSITION, v.as_slice());
                }
                return self.counters.apply_batch(batch).map_err(|e| self.failed(e));
            }
        };
        for (k, v) in records {
            batch.insert(k.as_slice(), v.as_slice());
        }
        tree.apply_batch(batch).map_err(|e| self.failed(e))?;
        self.held_by_owner_room.apply_batch(extra).map_err(|e| self.failed(e))
    }

    /// After every kind: the sizes the counters keep, the kept counts'
    /// mark, and the ID floor, so that every ID sled generates from now on
    /// comes after every one imported (sled's own generator starts again
    /// at zero in a new database). Then everything made durable.
    pub(crate) fn finish_import(&self) -> Result<(), StoreError> {
        let max_key = |tree: &sled::Tree| -> Result<u64, StoreError> {
            Ok(tree.last().map_err(|e| self.failed(e))?.map_or(0, |(k, _)| read_u64(&k)))
        };
        let seqs = max_key(&self.inbox_by_seq)?.max(max_key(&self.quarantine_by_seq)?);
        let ids =
            max_key(&self.outbox_by_id)?.max(max_key(&self.failed_effect_by_id)?).max(self.counter(K_OUTBOX_HIGH)?);
        // Inbox keys are generated IDs shifted (see `inbox::SLOT_BITS`).
        let floor = ids.max(seqs >> super::inbox::SLOT_BITS).saturating_add(1);
        let mut sizes = sled::Batch::default();
        for (key, tree) in
            [(G_INBOX, &self.inbox_by_seq), (G_OUTBOX, &self.outbox_by_id), (G_OWNERS, &self.owner_by_user)]
        {
            sizes.insert(key, &(tree.len() as u64).to_be_bytes());
        }
        sizes.insert(G_BUILT, &[]);
        sizes.insert(K_ID_FLOOR, &floor.to_be_bytes());
        self.counters.apply_batch(sizes).map_err(|e| self.failed(e))?;
        self.kept_by_key.insert(KEPT_BUILT, &[]).map_err(|e| self.failed(e))?;
        self.id_floor.store(floor, Ordering::SeqCst);
        self.durable()
    }
}

/// A sled database being made by `migrate`: written in `<target>.migrating`
/// and renamed to the target once checked, so that a failed or interrupted
/// copy never leaves a database where Gatekeeper would open it.
pub struct SledTarget {
    path: PathBuf,
    staging: PathBuf,
    store: Option<SledStore>,
}

impl SledTarget {
    pub fn new(path: &Path) -> Result<Self, StoreError> {
        let mut staging = path.as_os_str().to_owned();
        staging.push(".migrating");
        Ok(SledTarget { path: path.to_path_buf(), staging: PathBuf::from(staging), store: None })
    }

    fn store(&self) -> Result<&SledStore, StoreError> {
        self.store.as_ref().ok_or_else(|| StoreError::Backend("the copy has not begun".into()))
    }
}

fn is_empty_dir(path: &Path) -> bool {
    std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_none())
}

impl Source for SledTarget {
    fn export(&mut self, kind: Kind) -> Result<Records, StoreError> {
        self.store()?.export_kind(kind)
    }
}

impl Target for SledTarget {
    fn begin(&mut self) -> Result<(), StoreError> {
        if self.path.exists() && !is_empty_dir(&self.path) {
            return Err(StoreError::Backend(
                "is not empty: migrate copies into a new database only (give a directory that does not exist)".into(),
            ));
        }
        // Left by an interrupted copy: never opened by Gatekeeper (only
        // the target's own name is), so it is made again.
        if self.staging.exists() {
            std::fs::remove_dir_all(&self.staging)
                .map_err(|e| StoreError::Backend(format!("removing {}: {e}", self.staging.display())))?;
        }
        self.store = Some(SledStore::open(&self.staging, 64)?);
        Ok(())
    }

    fn import(&mut self, kind: Kind, records: &Records) -> Result<(), StoreError> {
        self.store()?.import_kind(kind, records)
    }

    fn finish(&mut self) -> Result<(), StoreError> {
        self.store()?.finish_import()
    }

    fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        let store = self.store.take().ok_or_else(|| StoreError::Backend("the copy has not begun".into()))?;
        store.flush()?;
        drop(store);
        if self.path.exists() {
            // Empty (checked at the start): replaced by the copy.
            std::fs::remove_dir(&self.path)
                .map_err(|e| StoreError::Backend(format!("replacing the empty {}: {e}", self.path.display())))?;
        }
        std::fs::rename(&self.staging, &self.path).map_err(|e| {
            StoreError::Backend(format!("renaming {} to {}: {e}", self.staging.display(), self.path.display()))
        })?;
        // The rename itself durable: the parent directory synced.
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(|e| StoreError::Backend(format!("syncing {}: {e}", parent.display())))?;
        }
        Ok(())
    }
}

impl Drop for SledTarget {
    fn drop(&mut self) {
        // Not committed: nothing is left behind.
        if let Some(store) = self.store.take() {
            drop(store);
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    impl SledStore {
        /// Writes a record as it is, past every check (a corrupt one).
        pub(crate) fn insert_raw_for_tests(&self, tree: &str, key: &[u8], value: &[u8]) {
            self.db.open_tree(tree).unwrap().insert(key, value).unwrap();
            self.flush().unwrap();
        }
    }

    /// Every tree sled keeps, as `(name, content)`, for comparing two
    /// databases whole.
    pub(crate) fn trees(s: &SledStore) -> Vec<(String, Records)> {
        s.db.tree_names()
            .into_iter()
            .map(|name| {
                let tree = s.db.open_tree(&name).unwrap();
                (String::from_utf8_lossy(&name).into_owned(), whole(&tree).unwrap())
            })
            .collect()
    }
}
