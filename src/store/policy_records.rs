//! Stored forms of shared ban lists (see `engine::policy`): a list, kept
//! once for everyone who follows it, and what an owner's record keeps of
//! the lists they follow. Versioned, apart from the engine's types.

use std::collections::BTreeSet;

use ruma::{OwnedRoomId, OwnedUserId};
use serde::{Deserialize, Serialize};

use crate::engine::policy::{PolicyList, PolicyRule, RuleKind, Slot, is_glob};
use crate::engine::{OwnerState, Tally};

/// One rule as kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleV1 {
    pub kind: String,
    pub entity: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub takedown: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl From<&PolicyRule> for RuleV1 {
    fn from(r: &PolicyRule) -> Self {
        RuleV1 {
            kind: r.kind.as_str().to_owned(),
            entity: r.entity.clone(),
            takedown: r.takedown,
            reason: r.reason.clone(),
        }
    }
}

impl From<RuleV1> for PolicyRule {
    fn from(r: RuleV1) -> Self {
        // A kind no longer known reads as a user rule's glob that matches
        // nobody's ID (`!…` is never a user ID): kept, inert.
        match RuleKind::parse(&r.kind) {
            Some(kind) => PolicyRule { kind, entity: r.entity, takedown: r.takedown, reason: r.reason },
            None => PolicyRule {
                kind: RuleKind::User,
                entity: format!("!{}", r.entity),
                takedown: r.takedown,
                reason: r.reason,
            },
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "v")]
pub enum PolicyListRecord {
    /// Rules inside the list's record: read whole for every invitation,
    /// written whole for every rule. Moved out on opening (see
    /// [`PolicyListRecord::rules_inside`]).
    #[serde(rename = "1")]
    V1 {
        room_id: OwnedRoomId,
        name: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        operator: bool,
        followers: BTreeSet<OwnedUserId>,
        /// `(event type, state key, rule)`.
        rules: Vec<(String, String, RuleV1)>,
        #[serde(default)]
        ignored: u32,
    },
    /// The list alone; each rule is a record of its own (see [`rule_key`]).
    #[serde(rename = "2")]
    V2 {
        room_id: OwnedRoomId,
        name: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        operator: bool,
        followers: BTreeSet<OwnedUserId>,
        kept: u32,
        globs: u32,
        ignored: u32,
        changed_ms: u64,
        #[serde(default)]
        event_ms: u64,
    },
    /// The list without its counts, which change with every rule and are
    /// kept apart ([`ListCountsV1`]): a rule event then writes a few bytes,
    /// not the whole set of followers (a thousand owners may follow one list).
    #[serde(rename = "3")]
    V3 {
        room_id: OwnedRoomId,
        name: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        operator: bool,
        followers: BTreeSet<OwnedUserId>,
    },
}

/// A list's counts, beside a version-3 record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListCountsV1 {
    pub kept: u32,
    pub globs: u32,
    pub ignored: u32,
    pub changed_ms: u64,
    #[serde(default)]
    pub event_ms: u64,
}

impl From<&PolicyList> for ListCountsV1 {
    fn from(l: &PolicyList) -> Self {
        ListCountsV1 {
            kept: l.kept,
            globs: l.globs,
            ignored: l.ignored,
            changed_ms: l.changed_ms,
            event_ms: l.event_ms,
        }
    }
}

impl PolicyListRecord {
    /// The record without counts (version 3), to keep beside [`ListCountsV1`].
    pub fn header(l: &PolicyList) -> Self {
        PolicyListRecord::V3 {
            room_id: l.room_id.clone(),
            name: l.name.clone(),
            operator: l.operator,
            followers: l.followers.clone(),
        }
    }

    /// The list this record and, for version 3, the counts kept beside it make.
    pub fn with_counts(self, counts: Option<ListCountsV1>) -> PolicyList {
        let versioned = matches!(self, PolicyListRecord::V3 { .. });
        let list: PolicyList = self.into();
        match (versioned, counts) {
            (true, Some(c)) => PolicyList {
                kept: c.kept,
                globs: c.globs,
                ignored: c.ignored,
                changed_ms: c.changed_ms,
                event_ms: c.event_ms,
                ..list
            },
            _ => list,
        }
    }
}

impl PolicyListRecord {
    /// A version-1 record's rules, to be kept apart: `None` for a record
    /// of today's shape.
    pub fn rules_inside(&self) -> Option<Vec<(Slot, PolicyRule)>> {
        match self {
            PolicyListRecord::V1 { rules, .. } => {
                Some(rules.iter().map(|(t, k, r)| ((t.clone(), k.clone()), r.clone().into())).collect())
            }
            PolicyListRecord::V2 { .. } | PolicyListRecord::V3 { .. } => None,
        }
    }
}

impl From<&PolicyList> for PolicyListRecord {
    fn from(l: &PolicyList) -> Self {
        PolicyListRecord::V2 {
            room_id: l.room_id.clone(),
            name: l.name.clone(),
            operator: l.operator,
            followers: l.followers.clone(),
            kept: l.kept,
            globs: l.globs,
            ignored: l.ignored,
            changed_ms: l.changed_ms,
            event_ms: l.event_ms,
        }
    }
}

impl From<PolicyListRecord> for PolicyList {
    fn from(r: PolicyListRecord) -> Self {
        let (room_id, name, operator, followers, kept, globs, ignored, changed_ms, event_ms) = match r {
            PolicyListRecord::V1 { room_id, name, operator, followers, rules, ignored } => {
                let globs = rules.iter().filter(|(_, _, r)| is_glob(&r.entity)).count() as u32;
                // Changed "at 1": every follower is checked once against it.
                (room_id, name, operator, followers, rules.len() as u32, globs, ignored, 1, 0)
            }
            PolicyListRecord::V2 { room_id, name, operator, followers, kept, globs, ignored, changed_ms, event_ms } => {
                (room_id, name, operator, followers, kept, globs, ignored, changed_ms, event_ms)
            }
            // Its counts are kept apart: see `with_counts`.
            PolicyListRecord::V3 { room_id, name, operator, followers } => {
                (room_id, name, operator, followers, 0, 0, 0, 0, 0)
            }
        };
        PolicyList { operator, followers, kept, globs, ignored, changed_ms, event_ms, ..PolicyList::new(room_id, name) }
    }
}

/// Appends `part` with its length first, so that no part's content can run
/// into the next one's (a state key is anything a list's moderators chose).
fn push_part(key: &mut Vec<u8>, part: &str) {
    let len = u16::try_from(part.len()).unwrap_or(u16::MAX);
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(&part.as_bytes()[..usize::from(len)]);
}

/// The tags of rule records and of their index entries in the policy tree
/// (lists' own records are `l\0room`, so no key of one kind starts
/// another's).
pub const RULE_TAG: u8 = b'R';
pub const INDEX_TAG: u8 = b'X';

/// Where rules (`RULE_TAG`) or index entries (`INDEX_TAG`) start: `parts`
/// after the list's room.
pub fn rule_prefix(tag: u8, room: &str, parts: &[&str]) -> Vec<u8> {
    let mut key = vec![tag];
    push_part(&mut key, room);
    for part in parts {
        push_part(&mut key, part);
    }
    key
}

/// A rule's record: the list's room, then its slot.
pub fn rule_key(room: &str, slot: &Slot) -> Vec<u8> {
    rule_prefix(RULE_TAG, room, &[&slot.0, &slot.1])
}

/// A rule's index entry: the list's room, its index key, then its slot.
pub fn index_entry(room: &str, key: &str, slot: &Slot) -> Vec<u8> {
    rule_prefix(INDEX_TAG, room, &[key, &slot.0, &slot.1])
}

/// The slot at the end of a key, after `prefix`: two parts.
pub fn slot_after(key: &[u8], prefix: usize) -> Option<Slot> {
    let mut rest = key.get(prefix..)?;
    let mut part = || -> Option<String> {
        let len = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
        let text = std::str::from_utf8(rest.get(2..2 + len)?).ok()?.to_owned();
        rest = &rest[2 + len..];
        Some(text)
    };
    let slot = (part()?, part()?);
    rest.is_empty().then_some(slot)
}

/// What an owner's record keeps of ban lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerPolicyV1 {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    lists: Vec<OwnedRoomId>,
    #[serde(default)]
    banned: (u32, u32),
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    recent: Vec<(OwnedUserId, u64)>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    ignore: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shared: Option<OwnedRoomId>,
    #[serde(default, skip_serializing_if = "is_zero")]
    checked: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    check_from: Option<(OwnedRoomId, u64)>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl OwnerPolicyV1 {
    /// `None` when there is nothing to keep, so records stay as they were.
    pub fn of(o: &OwnerState) -> Option<Self> {
        let p = OwnerPolicyV1 {
            lists: o.policy_lists.clone(),
            banned: (o.banned.total, o.banned.reported),
            recent: o.banned_recent.clone(),
            ignore: o.banned_ignore,
            shared: o.shared_list.clone(),
            checked: o.lists_checked_ms,
            check_from: o.lists_check_from.clone(),
        };
        (p != OwnerPolicyV1::default()).then_some(p)
    }
}

/// Reads what [`OwnerPolicyV1`] kept into an owner's state.
pub trait WithPolicy {
    fn with_policy(self, p: Option<OwnerPolicyV1>) -> Self;
}

impl WithPolicy for OwnerState {
    fn with_policy(self, p: Option<OwnerPolicyV1>) -> Self {
        let Some(p) = p else { return self };
        OwnerState {
            policy_lists: p.lists,
            banned: Tally { total: p.banned.0, reported: p.banned.1 },
            banned_recent: p.recent,
            banned_ignore: p.ignore,
            shared_list: p.shared,
            lists_checked_ms: p.checked,
            lists_check_from: p.check_from,
            ..self
        }
    }
}
