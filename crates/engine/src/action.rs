//! What the engine asks the outside world to do. Connectors carry these out
//! through the client-server API; each is safe to repeat.

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};

use super::input::FailedStep;

/// Effects that must keep their order share a lane; lanes never wait for
/// each other, so a room whose server never answers holds up only itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    /// Everything done in or to one room: a held room's silence, join, tag
    /// and history in that order; a control room's answers in order.
    Room(OwnedRoomId),
    /// What concerns an owner's whole account (push rules other than a held
    /// room's silence, contacts, their profile), whichever room it came from.
    Owner(OwnedUserId),
    /// E-mail: its own executor, so that a slow mail server never holds
    /// back anything on Matrix.
    Mail,
    /// Joining and reading one policy list, named as it was asked for.
    List(String),
}

impl Effect {
    /// E-mail goes out on its own lane, so that a slow or failing mail
    /// server never holds back anything on Matrix.
    pub fn is_mail(&self) -> bool {
        matches!(self, Effect::SendEmail { .. })
    }

    /// The lane this effect keeps its order in.
    pub fn lane(&self) -> Lane {
        match self {
            Effect::Join { room_id, .. }
            | Effect::Leave { room_id, .. }
            | Effect::SendNotice { room_id, .. }
            | Effect::SetTag { room_id, .. }
            | Effect::Backfill { room_id, .. }
            | Effect::DeletePushRule { room: Some(room_id), .. } => Lane::Room(room_id.clone()),
            Effect::PutPushRule { owner, .. } => {
                self.silenced_room().map_or_else(|| Lane::Owner(owner.clone()), Lane::Room)
            }
            Effect::DeletePushRule { owner, room: None, .. }
            | Effect::EnablePushRule { owner, .. }
            | Effect::ImportContacts { owner } => Lane::Owner(owner.clone()),
            // The held room's lane, after its history: a flood of new
            // senders' look-ups never holds up the owner's own decisions.
            Effect::LookUpShared { room_id, .. } => Lane::Room(room_id.clone()),
            Effect::FetchProfile { user } => Lane::Owner(user.clone()),
            // A list is joined and read in its own lane: a list whose
            // server never answers holds up nothing else.
            Effect::FollowList { target, .. } => Lane::List(target.clone()),
            Effect::CheckPending { owner, .. } | Effect::CreateList { owner, .. } => Lane::Owner(owner.clone()),
            // A shared list's rules in order, in the list's own lane.
            Effect::PutPolicyRule { room_id, .. } => Lane::Room(room_id.clone()),
            Effect::SendEmail { .. } => Lane::Mail,
            Effect::Native(native) => native.lane(),
        }
    }

    /// The held room this effect silences, if it is a held room's silence:
    /// the join that follows it in the room's lane must not happen without it.
    pub fn silenced_room(&self) -> Option<OwnedRoomId> {
        let Effect::PutPushRule { rule, .. } = self else { return None };
        if !rule.rule_id.starts_with(super::rules::HELD_PREFIX) {
            return None;
        }
        let room = rule.conditions.iter().find(|m| m.key == "room_id")?;
        room.pattern.as_str().try_into().ok()
    }

    /// Whether this effect must not happen in a room whose silence failed:
    /// it would bring the room to the owner (the join) or only makes sense
    /// once they are in it (the tag, reading its history).
    pub fn needs_silence(&self) -> bool {
        matches!(self, Effect::Join { .. } | Effect::Backfill { .. } | Effect::SetTag { present: true, .. })
    }

    /// What the engine wants to hear when this effect is set aside (refused
    /// for good, or not answered within the retry bound): the room and the
    /// step, for the rules that react to it. `None`: nothing depends on it.
    pub fn failure_report(&self) -> Option<(OwnedRoomId, OwnedUserId, FailedStep)> {
        match self {
            Effect::Join { room_id, as_user } => Some((room_id.clone(), as_user.clone(), FailedStep::Join)),
            Effect::PutPushRule { owner, .. } => {
                self.silenced_room().map(|room| (room, owner.clone(), FailedStep::Silence))
            }
            _ => None,
        }
    }

    /// The user on whose account this effect acts, or as whom (`None`:
    /// Gatekeeper's own look-up of a profile, and mail).
    pub fn acts_for(&self) -> Option<&OwnedUserId> {
        match self {
            Effect::Join { as_user, .. } | Effect::Leave { as_user, .. } | Effect::SendNotice { as_user, .. } => {
                Some(as_user)
            }
            Effect::PutPushRule { owner, .. }
            | Effect::EnablePushRule { owner, .. }
            | Effect::DeletePushRule { owner, .. }
            | Effect::SetTag { owner, .. }
            | Effect::ImportContacts { owner }
            | Effect::LookUpShared { owner, .. }
            | Effect::Backfill { owner, .. }
            | Effect::CheckPending { owner, .. } => Some(owner),
            Effect::Native(native) => Some(native.acts_for()),
            Effect::FollowList { as_user, .. }
            | Effect::CreateList { as_user, .. }
            | Effect::PutPolicyRule { as_user, .. } => Some(as_user),
            Effect::FetchProfile { .. } | Effect::SendEmail { .. } => None,
        }
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Effect::Join { .. } => "join",
            Effect::Leave { .. } => "leave",
            Effect::SendNotice { .. } => "notice",
            Effect::PutPushRule { .. } => "put_push_rule",
            Effect::EnablePushRule { .. } => "enable_push_rule",
            Effect::DeletePushRule { .. } => "delete_push_rule",
            Effect::SetTag { .. } => "set_tag",
            Effect::SendEmail { .. } => "email",
            Effect::FetchProfile { .. } => "fetch_profile",
            Effect::ImportContacts { .. } => "import_contacts",
            Effect::Backfill { .. } => "backfill",
            Effect::LookUpShared { .. } => "shared_rooms",
            Effect::Native(native) => native.kind(),
            Effect::FollowList { .. } => "follow_list",
            Effect::CheckPending { .. } => "check_pending",
            Effect::CreateList { .. } => "create_list",
            Effect::PutPolicyRule { .. } => "put_policy_rule",
        }
    }
}

/// The items one part of an owner's digest carries (shows, or counts in
/// "… and 15 more"). They are marked digested in the commit that queues the
/// part; if its send is set aside, the engine hears of it
/// (`Input::DigestPartFailed`) and marks them back, so the next digest
/// carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestPart {
    pub owner: OwnedUserId,
    pub messages: Vec<OwnedEventId>,
    pub invites: Vec<OwnedRoomId>,
}

/// An `event_match` condition of a push rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub key: String,
    pub pattern: String,
}

impl Match {
    pub fn new(key: &str, pattern: &str) -> Self {
        Self { key: key.to_owned(), pattern: pattern.to_owned() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleActions {
    /// No actions: matching events never notify.
    Silent,
    /// Notify without a sound: counted, shown, not rung.
    Quiet,
    /// Notify with the default sound, as an invite normally does.
    Ring,
}

/// An owner-scoped `override` push rule that Gatekeeper manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRule {
    pub rule_id: String,
    pub conditions: Vec<Match>,
    pub actions: RuleActions,
    /// Insert just before this rule (so it takes precedence over it).
    pub before: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Join a room as `as_user` (joining twice is harmless).
    Join { as_user: OwnedUserId, room_id: OwnedRoomId },
    /// Leave a room, or reject an invite, as `as_user`.
    Leave { as_user: OwnedUserId, room_id: OwnedRoomId, reason: Option<String> },
    /// Send an `m.notice` without mentions. `txn_id` is derived from the
    /// triggering event, so a retry after a crash is the same send. A
    /// digest's part says which items it carries (`digest`): they are marked
    /// digested when it is queued, and marked back if it is set aside.
    SendNotice {
        as_user: OwnedUserId,
        room_id: OwnedRoomId,
        txn_id: String,
        body: String,
        html: String,
        digest: Option<Box<DigestPart>>,
        /// Send only if the room's members (joined or invited) are exactly
        /// `as_user` and this user, checked just before sending; otherwise
        /// not sent, and `Input::NotTwoPeople` says so. For the etiquette
        /// reply: `is_direct` is the stranger's claim, and the reply speaks
        /// for the owner.
        only_with: Option<OwnedUserId>,
        /// An urgent message for the owner: sent marked
        /// ([`crate::rules::URGENT_KEY`]) so that the owner's urgent push
        /// rule rings for it, whatever the control room's `notify` says.
        urgent: bool,
    },
    /// Create or replace an owner's push rule.
    PutPushRule { owner: OwnedUserId, rule: PushRule },
    /// Switch an owner's push rule off or on, keeping its place in the order.
    EnablePushRule { owner: OwnedUserId, rule_id: String, enabled: bool },
    /// Remove an owner's push rule (absent already is fine). `room` is set
    /// for a held room's silence, so that its removal keeps its place in
    /// that room's lane (after the silence itself, however long that took).
    DeletePushRule { owner: OwnedUserId, rule_id: String, room: Option<OwnedRoomId> },
    /// Add or remove a room tag such as `m.lowpriority` for an owner.
    SetTag { owner: OwnedUserId, room_id: OwnedRoomId, tag: String, present: bool },
    /// Send an e-mail (multipart plain + HTML, marked auto-generated). Only
    /// ever to an address the owner verified, or to verify one.
    SendEmail {
        owner: OwnedUserId,
        to: String,
        subject: String,
        text: String,
        html: String,
        message_id: String,
        /// One-click unsubscribe URL (`List-Unsubscribe`), when links are on.
        unsubscribe: Option<String>,
    },
    /// Look up a user's display name; answered with `Input::ProfileFetched`.
    FetchProfile { user: OwnedUserId },
    /// Read an owner's existing direct chats; answered with
    /// `Input::ContactsImported`.
    ImportContacts { owner: OwnedUserId },
    /// Read a held room's history as its owner (messages sent before the
    /// join) and its size; answered with those events and `Input::RoomInfo`.
    Backfill { owner: OwnedUserId, room_id: OwnedRoomId },
    /// Find the rooms `user` shares with `owner` (Gatekeeper's held rooms
    /// apart), as the owner, for the card of the room `room_id` held for
    /// them; answered with `Input::SharedRooms`. Bounded: one look-up per
    /// sender when first held, none while the owner has many rooms held (a
    /// flood), a bounded number of the owner's rooms read.
    LookUpShared { owner: OwnedUserId, user: OwnedUserId, room_id: OwnedRoomId },
    /// The homeserver's own defences: see [`crate::native`].
    Native(crate::native::NativeEffect),
    /// Join a policy list (`target`: an alias or a room ID) as `as_user`
    /// (the bot; in client mode the owner's own account) and read its
    /// rules; answered with `Input::ListRead` for `owner` (`None`: the
    /// operator's list), also when it cannot be joined.
    FollowList { as_user: OwnedUserId, owner: Option<OwnedUserId>, target: String },
    /// Nothing to do outside: answered at once with `Input::CheckPending`.
    /// Decisions no longer make it (the timer queues pending checks); it is
    /// kept so that one an older version left in the outbox is still done.
    CheckPending { owner: OwnedUserId },
    /// Make a policy room for `owner`'s blocks (`share blocks`) as
    /// `as_user`: public, so anyone may join and read it (the owner is
    /// invited when it is the bot's); answered with `Input::ListCreated`.
    CreateList { as_user: OwnedUserId, owner: OwnedUserId },
    /// Publish (`entity` banned, with `reason`) or withdraw (`present`
    /// false: empty content) one rule of a shared list, as `as_user`, in
    /// the slot `rule:<entity>`, so the same subject always has one slot.
    PutPolicyRule {
        as_user: OwnedUserId,
        room_id: OwnedRoomId,
        kind: super::policy::RuleKind,
        entity: String,
        reason: Option<String>,
        present: bool,
    },
}
