//! The stored forms of state, versioned apart from the engine's types so
//! that the engine can change without silently misreading old databases.

use ruma::{OwnedRoomId, OwnedUserId};
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::engine::{Effect, OwnerState, RoomState};

#[derive(Serialize, Deserialize)]
#[serde(tag = "v")]
pub enum OwnerRecord {
    #[serde(rename = "1")]
    V1 {
        user_id: OwnedUserId,
        control_room: OwnedRoomId,
        since_ms: u64,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "v")]
pub enum RoomRecord {
    #[serde(rename = "1")]
    V1(RoomRecordV1),
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RoomRecordV1 {
    PendingControl {
        inviter: OwnedUserId,
        invited_at_ms: u64,
    },
    Control {
        owner: OwnedUserId,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "v")]
pub enum EffectRecord {
    #[serde(rename = "1")]
    V1(EffectRecordV1),
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EffectRecordV1 {
    Join {
        as_user: OwnedUserId,
        room_id: OwnedRoomId,
    },
    Leave {
        as_user: OwnedUserId,
        room_id: OwnedRoomId,
        reason: Option<String>,
    },
    SendNotice {
        as_user: OwnedUserId,
        room_id: OwnedRoomId,
        txn_id: String,
        body: String,
        html: String,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "v")]
pub enum TxnRecord {
    #[serde(rename = "1")]
    V1 {
        at_ms: u64,
        digest: String,
        events: usize,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "v")]
pub enum QuarantineRecord {
    #[serde(rename = "1")]
    V1 {
        at_ms: u64,
        reason: String,
        raw: String,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "v")]
pub enum FailedEffectRecord {
    #[serde(rename = "1")]
    V1 {
        at_ms: u64,
        reason: String,
        effect: EffectRecordV1,
    },
}

pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    // Records hold only strings and integers: serialization cannot fail.
    serde_json::to_vec(record).expect("record serializes")
}

pub fn decode<T: for<'de> Deserialize<'de>>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

impl From<&OwnerState> for OwnerRecord {
    fn from(o: &OwnerState) -> Self {
        OwnerRecord::V1 {
            user_id: o.user_id.clone(),
            control_room: o.control_room.clone(),
            since_ms: o.since_ms,
        }
    }
}

impl From<OwnerRecord> for OwnerState {
    fn from(r: OwnerRecord) -> Self {
        match r {
            OwnerRecord::V1 {
                user_id,
                control_room,
                since_ms,
            } => OwnerState {
                user_id,
                control_room,
                since_ms,
            },
        }
    }
}

impl From<&RoomState> for RoomRecord {
    fn from(s: &RoomState) -> Self {
        RoomRecord::V1(match s {
            RoomState::PendingControl {
                inviter,
                invited_at_ms,
            } => RoomRecordV1::PendingControl {
                inviter: inviter.clone(),
                invited_at_ms: *invited_at_ms,
            },
            RoomState::Control { owner } => RoomRecordV1::Control {
                owner: owner.clone(),
            },
        })
    }
}

impl From<RoomRecord> for RoomState {
    fn from(r: RoomRecord) -> Self {
        match r {
            RoomRecord::V1(RoomRecordV1::PendingControl {
                inviter,
                invited_at_ms,
            }) => RoomState::PendingControl {
                inviter,
                invited_at_ms,
            },
            RoomRecord::V1(RoomRecordV1::Control { owner }) => RoomState::Control { owner },
        }
    }
}

impl From<&Effect> for EffectRecordV1 {
    fn from(e: &Effect) -> Self {
        match e.clone() {
            Effect::Join { as_user, room_id } => EffectRecordV1::Join { as_user, room_id },
            Effect::Leave {
                as_user,
                room_id,
                reason,
            } => EffectRecordV1::Leave {
                as_user,
                room_id,
                reason,
            },
            Effect::SendNotice {
                as_user,
                room_id,
                txn_id,
                body,
                html,
            } => EffectRecordV1::SendNotice {
                as_user,
                room_id,
                txn_id,
                body,
                html,
            },
        }
    }
}

impl From<EffectRecordV1> for Effect {
    fn from(r: EffectRecordV1) -> Self {
        match r {
            EffectRecordV1::Join { as_user, room_id } => Effect::Join { as_user, room_id },
            EffectRecordV1::Leave {
                as_user,
                room_id,
                reason,
            } => Effect::Leave {
                as_user,
                room_id,
                reason,
            },
            EffectRecordV1::SendNotice {
                as_user,
                room_id,
                txn_id,
                body,
                html,
            } => Effect::SendNotice {
                as_user,
                room_id,
                txn_id,
                body,
                html,
            },
        }
    }
}

pub fn effect_summary(e: &Effect) -> String {
    match e {
        Effect::Join { as_user, room_id } => format!("join {room_id} as {as_user}"),
        Effect::Leave {
            as_user, room_id, ..
        } => format!("leave {room_id} as {as_user}"),
        Effect::SendNotice {
            as_user,
            room_id,
            txn_id,
            ..
        } => format!("notice {txn_id} in {room_id} as {as_user}"),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
