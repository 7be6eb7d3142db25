//! Stored forms of what the Matrix-native defences keep (see
//! `engine::native`): their effects in the outbox, and what the owner's
//! record remembers of their invite filter. Versioned with the records
//! that hold them (`records.rs`), kept apart from the engine's types.

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use serde::{Deserialize, Serialize};

use crate::engine::Subject;
use crate::engine::native::{InviteFilter, NativeEffect};

/// Subjects in their command form; one that no longer parses is dropped.
fn subjects(v: &[String]) -> Vec<Subject> {
    v.iter().filter_map(|s| s.parse().ok()).collect()
}

fn strings<'a>(v: impl IntoIterator<Item = &'a Subject>) -> Vec<String> {
    v.into_iter().map(ToString::to_string).collect()
}

/// [`NativeEffect`], inside `EffectRecordV1::Native`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "native", rename_all = "snake_case")]
pub enum NativeEffectV1 {
    PutState {
        as_user: OwnedUserId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grant_as: Option<OwnedUserId>,
        room_id: OwnedRoomId,
        event_type: String,
        state_key: String,
        content: String,
    },
    Report {
        owner: OwnedUserId,
        user: OwnedUserId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event: Option<(OwnedRoomId, OwnedEventId)>,
        reason: String,
        seed: String,
    },
    ReadInviteFilter {
        owner: OwnedUserId,
    },
    EditInviteFilter {
        owner: OwnedUserId,
        add: Vec<String>,
        remove: Vec<String>,
    },
}

impl From<NativeEffect> for NativeEffectV1 {
    fn from(e: NativeEffect) -> Self {
        match e {
            NativeEffect::PutState { as_user, grant_as, room_id, event_type, state_key, content } => {
                NativeEffectV1::PutState { as_user, grant_as, room_id, event_type, state_key, content }
            }
            NativeEffect::Report { owner, user, event, reason, seed } => {
                NativeEffectV1::Report { owner, user, event, reason, seed }
            }
            NativeEffect::ReadInviteFilter { owner } => NativeEffectV1::ReadInviteFilter { owner },
            NativeEffect::EditInviteFilter { owner, add, remove } => {
                NativeEffectV1::EditInviteFilter { owner, add: strings(&add), remove: strings(&remove) }
            }
        }
    }
}

impl From<NativeEffectV1> for NativeEffect {
    fn from(r: NativeEffectV1) -> Self {
        match r {
            NativeEffectV1::PutState { as_user, grant_as, room_id, event_type, state_key, content } => {
                NativeEffect::PutState { as_user, grant_as, room_id, event_type, state_key, content }
            }
            NativeEffectV1::Report { owner, user, event, reason, seed } => {
                NativeEffect::Report { owner, user, event, reason, seed }
            }
            NativeEffectV1::ReadInviteFilter { owner } => NativeEffect::ReadInviteFilter { owner },
            NativeEffectV1::EditInviteFilter { owner, add, remove } => {
                NativeEffect::EditInviteFilter { owner, add: subjects(&add), remove: subjects(&remove) }
            }
        }
    }
}

pub fn summary(e: &NativeEffect) -> String {
    match e {
        NativeEffect::PutState { as_user, room_id, event_type, .. } => {
            format!("state {event_type} in {room_id} as {as_user}")
        }
        NativeEffect::Report { owner, user, .. } => format!("report of {user} by {owner}"),
        NativeEffect::ReadInviteFilter { owner } => format!("read the invite filter of {owner}"),
        NativeEffect::EditInviteFilter { owner, .. } => format!("edit the invite filter of {owner}"),
    }
}

/// [`InviteFilter`] on the owner's record.
#[derive(Serialize, Deserialize)]
pub struct InviteFilterV1 {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    hand: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    blocks_all: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    stable: bool,
}

impl From<&InviteFilter> for InviteFilterV1 {
    fn from(f: &InviteFilter) -> Self {
        InviteFilterV1 { hand: strings(&f.hand), blocks_all: f.blocks_all, stable: f.stable }
    }
}

impl From<InviteFilterV1> for InviteFilter {
    fn from(r: InviteFilterV1) -> Self {
        InviteFilter { hand: subjects(&r.hand).into_iter().collect(), blocks_all: r.blocks_all, stable: r.stable }
    }
}
