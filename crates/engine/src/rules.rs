//! The push rules Gatekeeper manages for an owner, and their IDs. Rule IDs
//! are derived from what they cover, so adding one twice replaces it and
//! removing one needs no stored bookkeeping.

use ruma::UserId;
use sha2::{Digest, Sha256};

use super::action::{Match, PushRule, RuleActions};
use super::subject::Subject;

/// Silences every invite to the owner; allowed senders have rules above it.
/// Every rule Gatekeeper sets starts with this; no other rule may.
pub const PREFIX: &str = "gk.";
pub const HOLD_INVITES: &str = "gk.hold.invites";

fn short_hash(s: &str) -> String {
    Sha256::digest(s.as_bytes())[..10].iter().map(|b| format!("{b:02x}")).collect()
}

fn invite_to(owner: &UserId) -> Vec<Match> {
    vec![
        Match::new("type", "m.room.member"),
        Match::new("content.membership", "invite"),
        Match::new("state_key", owner.as_str()),
    ]
}

pub fn hold_invites(owner: &UserId) -> PushRule {
    PushRule { rule_id: HOLD_INVITES.into(), conditions: invite_to(owner), actions: RuleActions::Silent, before: None }
}

pub fn allow_id(subject: &Subject) -> String {
    format!("gk.allow.{}", short_hash(&subject.to_string()))
}

/// Lets an allowed sender's (or server's) invites ring as they did before.
pub fn allow(owner: &UserId, subject: &Subject) -> PushRule {
    let mut conditions = invite_to(owner);
    conditions.push(Match::new("sender", &subject.sender_pattern()));
    PushRule { rule_id: allow_id(subject), conditions, actions: RuleActions::Ring, before: Some(HOLD_INVITES.into()) }
}

/// How every held room's silence rule ID starts.
pub const HELD_PREFIX: &str = "gk.held.";

pub fn held_room_id(room: &str) -> String {
    format!("{HELD_PREFIX}{}", short_hash(room))
}

/// Silences everything in a held room, mentions included: an override rule
/// on `room_id` (a room rule would still let mentions through).
pub fn held_room(room: &str) -> PushRule {
    PushRule {
        rule_id: held_room_id(room),
        conditions: vec![Match::new("room_id", room)],
        actions: RuleActions::Silent,
        before: None,
    }
}

pub const CONTROL: &str = "gk.control";

/// How Gatekeeper's own messages in the control room notify the owner.
pub fn control_room(room: &str, bot: &UserId, notify: super::state::Notify) -> PushRule {
    use super::state::Notify;
    PushRule {
        rule_id: CONTROL.into(),
        // Messages only: the bot's state events there (the commands it
        // publishes, MSC4332) are no news to the owner.
        conditions: vec![
            Match::new("room_id", room),
            Match::new("sender", bot.as_str()),
            Match::new("type", "m.room.message"),
        ],
        actions: match notify {
            Notify::Quiet => RuleActions::Quiet,
            Notify::Sound => RuleActions::Ring,
            Notify::Off => RuleActions::Silent,
        },
        before: None,
    }
}

pub const URGENT: &str = "gk.urgent";

/// The content key (and value) an urgent notice is marked with; no dots, so
/// that no push rule key escaping is needed to match it.
pub const URGENT_KEY: &str = "gatekeeper_urgent";
pub const URGENT_VALUE: &str = "yes";

/// Urgent notices in the control room ring, whatever `notify` says: above
/// [`CONTROL`], matching only Gatekeeper's own notices marked urgent.
pub fn urgent(room: &str, bot: &UserId) -> PushRule {
    PushRule {
        rule_id: URGENT.into(),
        conditions: vec![
            Match::new("room_id", room),
            Match::new("sender", bot.as_str()),
            Match::new(&format!("content.{URGENT_KEY}"), URGENT_VALUE),
        ],
        actions: RuleActions::Ring,
        before: Some(CONTROL.into()),
    }
}
