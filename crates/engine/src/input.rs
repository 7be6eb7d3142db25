//! What the engine reacts to: homeserver events reduced to the facts a
//! decision needs, with IDs already validated, and the results of
//! Gatekeeper's own look-ups, fed back in as inputs.

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};

use super::state::Media;

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

/// The new content of an edited message (`m.new_content`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    pub original: OwnedEventId,
    pub body: String,
    pub html: Option<String>,
}

/// Which step of holding a room was set aside (see
/// [`Effect::failure_report`](super::Effect::failure_report)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailedStep {
    /// The held room's silence rule.
    Silence,
    /// The owner's join.
    Join,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// An `m.room.member` event: `target` is the state key.
    Member {
        meta: EventMeta,
        target: OwnedUserId,
        membership: Membership,
        is_direct: bool,
        displayname: Option<String>,
        reason: Option<String>,
        /// The room's name, from the invite's stripped state.
        room_name: Option<String>,
        /// The sender's display name, from the invite's stripped state.
        sender_name: Option<String>,
    },
    /// An `m.room.message` event; `replaces` is set for edits.
    Message {
        meta: EventMeta,
        msgtype: String,
        body: String,
        /// Already sanitized to the spec's allowed HTML.
        html: Option<String>,
        media: Option<Media>,
        replaces: Option<Replacement>,
    },
    /// An `m.room.encrypted` event the appservice cannot read.
    Encrypted { meta: EventMeta },
    /// An `m.room.redaction` of `redacts`.
    Redaction { meta: EventMeta, redacts: OwnedEventId },
    /// Result of looking up a user's profile.
    ProfileFetched { user: OwnedUserId, displayname: Option<String> },
    /// Result of reading an owner's two-person rooms at opt-in: `users`
    /// the owner created a room with or wrote to, `strangers` rooms whose
    /// other member the owner never answered.
    ContactsImported { owner: OwnedUserId, users: Vec<OwnedUserId>, strangers: Vec<(OwnedRoomId, OwnedUserId)> },
    /// Result of looking at a held room after joining it.
    RoomInfo { owner: OwnedUserId, room_id: OwnedRoomId, name: Option<String>, members: u32 },
    /// What `Effect::LookUpShared` found for the room `room_id` held for
    /// `owner`: the names of the first shared rooms (`None`: unnamed), how
    /// many in all, and whether all the owner's rooms were looked at.
    SharedRooms { owner: OwnedUserId, room_id: OwnedRoomId, names: Vec<Option<String>>, count: u32, complete: bool },
    /// The etiquette reply was not sent: the room has other members than
    /// the owner and the stranger (`members`, joined or invited), whatever
    /// its invite said. It is a group invitation.
    NotTwoPeople { owner: OwnedUserId, room_id: OwnedRoomId, members: u32 },
    /// Client mode: the connector made (or found) the owner's control room,
    /// which enrols the owner as an invitation to the bot does elsewhere.
    ControlRoomReady { owner: OwnedUserId, room_id: OwnedRoomId },
    /// Housekeeping: time-based changes (expired allows, ended pauses) are due.
    Tick,
    /// Housekeeping: `owner`'s scheduled digest may be due. One owner per
    /// input, so that one decision holds one owner's overview at most.
    OwnerDue { owner: OwnedUserId },
    /// An e-mail could not be delivered, after retries.
    MailFailed { owner: OwnedUserId, to: String, reason: String },
    /// A step in `room_id` was set aside: refused for good, or (`no_answer`)
    /// still failing when the retry bound ran out.
    /// `owner` is whose step it was (`None` in reports queued before they
    /// named one).
    EffectFailed { room_id: OwnedRoomId, owner: Option<OwnedUserId>, step: FailedStep, no_answer: bool, reason: String },
    /// A part of `owner`'s digest was set aside (refused for good, or
    /// unanswered past the retry bound): the items it carried were never
    /// shown, so they go back into the next digest.
    DigestPartFailed { owner: OwnedUserId, messages: Vec<OwnedEventId>, invites: Vec<OwnedRoomId> },
    /// The owner confirmed a one-click link from an e-mail (already checked
    /// for signature, expiry and single use by the web connector).
    LinkUsed { owner: OwnedUserId, action: super::links::LinkAction, subject: Option<super::Subject>, nonce: String },
    /// Gatekeeper's start, and what the homeserver answered to its
    /// Matrix-native effects (reports, the invite filter).
    Native(super::native::NativeInput),
    /// A ban rule state event (`m.policy.rule.*`) in a room: a rule of a
    /// followed list, or nothing.
    PolicyRule { meta: EventMeta, rule: super::policy::RuleEvent },
    /// A policy list was joined and its rules read, for `owner` (`None`:
    /// one of the operator's), or it could not be (`error`).
    ListRead {
        owner: Option<OwnedUserId>,
        asked: String,
        room_id: Option<OwnedRoomId>,
        rules: Vec<super::policy::RuleEvent>,
        error: Option<String>,
        /// When the state was asked for (see `PolicyList::event_ms`).
        read_ms: Option<u64>,
    },
    /// A list `owner` follows (or the operator's) gained a rule since their
    /// pending strangers were last checked: they are checked again against
    /// every list (one owner per input; queued by the timer).
    CheckPending { owner: OwnedUserId },
    /// The operator's ban lists as the configuration names them now (at
    /// every start): one it no longer names stops applying to everyone.
    OperatorLists { names: Vec<String> },
    /// The policy room for `owner`'s blocks was made (`share blocks`).
    ListCreated { owner: OwnedUserId, room_id: OwnedRoomId },
}

impl Input {
    pub fn meta(&self) -> Option<&EventMeta> {
        match self {
            Input::Member { meta, .. }
            | Input::Message { meta, .. }
            | Input::Encrypted { meta }
            | Input::Redaction { meta, .. }
            | Input::PolicyRule { meta, .. } => Some(meta),
            _ => None,
        }
    }

    pub fn room_id(&self) -> Option<&OwnedRoomId> {
        match self {
            Input::RoomInfo { room_id, .. }
            | Input::SharedRooms { room_id, .. }
            | Input::NotTwoPeople { room_id, .. }
            | Input::ControlRoomReady { room_id, .. }
            | Input::EffectFailed { room_id, .. } => Some(room_id),
            other => other.meta().map(|m| &m.room_id),
        }
    }

    /// The users whose stored state a decision about this input may read.
    pub fn users(&self) -> Vec<OwnedUserId> {
        match self {
            Input::Member { meta, target, .. } if *target != meta.sender => {
                vec![meta.sender.clone(), target.clone()]
            }
            Input::ProfileFetched { user, .. } => vec![user.clone()],
            Input::ContactsImported { owner, users, strangers } => {
                std::iter::once(owner).chain(users).chain(strangers.iter().map(|(_, u)| u)).cloned().collect()
            }
            Input::RoomInfo { owner, .. }
            | Input::SharedRooms { owner, .. }
            | Input::NotTwoPeople { owner, .. }
            | Input::MailFailed { owner, .. }
            | Input::LinkUsed { owner, .. }
            | Input::DigestPartFailed { owner, .. }
            | Input::ControlRoomReady { owner, .. }
            | Input::CheckPending { owner, .. }
            | Input::ListCreated { owner, .. } => {
                vec![owner.clone()]
            }
            Input::Native(native) => vec![native.owner().clone()],
            Input::ListRead { owner, .. } => owner.iter().cloned().collect(),
            // Whoever sent a rule is nobody Gatekeeper keeps anything of.
            Input::PolicyRule { .. } => Vec::new(),
            other => other.meta().map(|m| vec![m.sender.clone()]).unwrap_or_default(),
        }
    }

    /// The captured message a decision must see: the one an edit or
    /// redaction refers to, or for a new message the event itself (a
    /// message delivered twice, by the homeserver and a backfill, is one).
    pub fn related_event(&self) -> Option<&OwnedEventId> {
        match self {
            Input::Message { replaces: Some(r), .. } => Some(&r.original),
            Input::Message { meta, .. } | Input::Encrypted { meta } => Some(&meta.event_id),
            Input::Redaction { redacts, .. } => Some(redacts),
            _ => None,
        }
    }
}
