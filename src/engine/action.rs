//! What the engine asks the outside world to do. Connectors carry these out
//! through the client-server API; each is safe to repeat.

use ruma::{OwnedRoomId, OwnedUserId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Join a room as `as_user` (joining twice is harmless).
    Join {
        as_user: OwnedUserId,
        room_id: OwnedRoomId,
    },
    /// Leave a room, or reject an invite, as `as_user`.
    Leave {
        as_user: OwnedUserId,
        room_id: OwnedRoomId,
        reason: Option<String>,
    },
    /// Send an `m.notice`. `txn_id` is derived from the triggering event, so
    /// a retry after a crash is recognised by the homeserver as the same send.
    SendNotice {
        as_user: OwnedUserId,
        room_id: OwnedRoomId,
        txn_id: String,
        body: String,
        html: String,
    },
}
