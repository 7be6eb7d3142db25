//! What the engine reacts to: homeserver events reduced to the facts a
//! decision needs, with IDs already validated.

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};

/// Where and when an event happened, and who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMeta {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    /// `origin_server_ts`, milliseconds since the Unix epoch.
    pub ts_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    Invite,
    Join,
    Leave,
    Ban,
    Knock,
    Other(String),
}

impl Membership {
    pub fn parse(s: &str) -> Self {
        match s {
            "invite" => Self::Invite,
            "join" => Self::Join,
            "leave" => Self::Leave,
            "ban" => Self::Ban,
            "knock" => Self::Knock,
            other => Self::Other(other.to_owned()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// An `m.room.member` event: `target` is the state key.
    Member {
        meta: EventMeta,
        target: OwnedUserId,
        membership: Membership,
        is_direct: bool,
    },
    /// An `m.room.message` event.
    Message {
        meta: EventMeta,
        msgtype: String,
        body: String,
    },
}

impl Input {
    pub fn meta(&self) -> &EventMeta {
        match self {
            Input::Member { meta, .. } | Input::Message { meta, .. } => meta,
        }
    }

    /// The users whose stored state a decision about this input may read.
    pub fn users(&self) -> Vec<OwnedUserId> {
        match self {
            Input::Member { meta, target, .. } if *target != meta.sender => {
                vec![meta.sender.clone(), target.clone()]
            }
            other => vec![other.meta().sender.clone()],
        }
    }
}
