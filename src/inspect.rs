//! `gatekeeper inspect`: what is in the database, as JSON, for operators and
//! tests. Opens the store itself, so Gatekeeper must be stopped.

use serde::Serialize;

use crate::store::{FailedEffect, QuarantinedEvent, Stats, Store, StoreError};

#[derive(Debug, Serialize)]
pub struct Report {
    pub stats: Stats,
    pub owners: Vec<OwnerLine>,
    pub quarantined: Vec<QuarantinedEvent>,
    pub failed_effects: Vec<FailedEffect>,
}

#[derive(Debug, Serialize)]
pub struct OwnerLine {
    pub user_id: String,
    pub control_room: String,
    pub since_ms: u64,
}

pub fn report(store: &dyn Store, limit: usize) -> Result<Report, StoreError> {
    Ok(Report {
        stats: store.stats()?,
        owners: store
            .owners()?
            .into_iter()
            .map(|o| OwnerLine {
                user_id: o.user_id.to_string(),
                control_room: o.control_room.to_string(),
                since_ms: o.since_ms,
            })
            .collect(),
        quarantined: store.quarantined(limit)?,
        failed_effects: store.failed_effects(limit)?,
    })
}
