//! `gatekeeper inspect`: what is in the database, as JSON, for operators and
//! tests. Opens the store itself, so Gatekeeper must be stopped.

use serde::Serialize;

use crate::engine::Contact;
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
    pub held_rooms: usize,
    pub captured_messages: usize,
    pub replied_rooms: usize,
    /// Held DMs whose reply the hourly cap held back, still owed.
    pub owed_replies: usize,
    /// Held rooms of senders who are part of a wave.
    pub wave_rooms: usize,
    pub allowed: usize,
    pub blocked: usize,
}

pub fn report(store: &dyn Store, limit: usize) -> Result<Report, StoreError> {
    let mut owners = Vec::new();
    for o in store.owners()? {
        let overview = store.overview(&o.user_id)?;
        let count = |allowed: bool| {
            overview.contacts.values().filter(|c| matches!(c, Contact::Allowed { .. }) == allowed).count()
        };
        owners.push(OwnerLine {
            user_id: o.user_id.to_string(),
            control_room: o.control_room.to_string(),
            since_ms: o.since_ms,
            held_rooms: overview.held.len(),
            captured_messages: overview.deferred.len(),
            replied_rooms: overview.held.values().filter(|h| h.replied).count(),
            owed_replies: overview.held.values().filter(|h| h.reply_owed_ms.is_some()).count(),
            wave_rooms: overview.held.values().filter(|h| h.wave.is_some()).count(),
            allowed: count(true),
            blocked: count(false),
        });
    }
    Ok(Report {
        stats: store.stats()?,
        owners,
        quarantined: store.quarantined(limit)?,
        failed_effects: store.failed_effects(limit)?,
    })
}
