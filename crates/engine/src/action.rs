//! What the engine asks the outside world to do. Connectors carry these out
//! through the client-server API; each is safe to repeat.

use ruma::{OwnedRoomId, OwnedUserId};

impl Effect {
    /// E-mail goes out on its own lane, so that a slow or failing mail
    /// server never holds back anything on Matrix.
    pub fn is_mail(&self) -> bool {
        matches!(self, Effect::SendEmail { .. })
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
        }
    }
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
    /// triggering event, so a retry after a crash is the same send.
    SendNotice { as_user: OwnedUserId, room_id: OwnedRoomId, txn_id: String, body: String, html: String },
    /// Create or replace an owner's push rule.
    PutPushRule { owner: OwnedUserId, rule: PushRule },
    /// Switch an owner's push rule off or on, keeping its place in the order.
    EnablePushRule { owner: OwnedUserId, rule_id: String, enabled: bool },
    /// Remove an owner's push rule (absent already is fine).
    DeletePushRule { owner: OwnedUserId, rule_id: String },
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
}
