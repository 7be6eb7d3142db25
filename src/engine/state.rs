//! The stored state the engine reads, and the changes to it that the engine
//! decides. The store persists these; the engine never touches storage.

use std::collections::BTreeMap;

use ruma::{OwnedRoomId, OwnedUserId};

/// A user who opted in, and the DM with the bot where they give commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerState {
    pub user_id: OwnedUserId,
    pub control_room: OwnedRoomId,
    pub since_ms: u64,
}

/// What a room is to Gatekeeper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomState {
    /// A user invited the bot to a DM; it becomes their control room once
    /// the bot's join comes back from the homeserver.
    PendingControl {
        inviter: OwnedUserId,
        invited_at_ms: u64,
    },
    /// An owner's control room.
    Control { owner: OwnedUserId },
}

/// The slice of stored state one decision may read: the room the event is
/// in and the owner records of the users it involves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub room: Option<RoomState>,
    pub owners: BTreeMap<OwnedUserId, OwnerState>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateChange {
    PutOwner(OwnerState),
    RemoveOwner(OwnedUserId),
    PutRoom(OwnedRoomId, RoomState),
    RemoveRoom(OwnedRoomId),
}
