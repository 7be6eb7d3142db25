//! Stored forms of shared ban lists (see `engine::policy`): a list, kept
//! once for everyone who follows it, and what an owner's record keeps of
//! the lists they follow. Versioned, apart from the engine's types.

use std::collections::{BTreeMap, BTreeSet};

use ruma::{OwnedRoomId, OwnedUserId};
use serde::{Deserialize, Serialize};

use crate::engine::policy::{PolicyList, PolicyRule, RuleKind};
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
}

impl From<&PolicyList> for PolicyListRecord {
    fn from(l: &PolicyList) -> Self {
        PolicyListRecord::V1 {
            room_id: l.room_id.clone(),
            name: l.name.clone(),
            operator: l.operator,
            followers: l.followers.clone(),
            rules: l.rules.iter().map(|((t, k), r)| (t.clone(), k.clone(), r.into())).collect(),
            ignored: l.ignored,
        }
    }
}

impl From<PolicyListRecord> for PolicyList {
    fn from(r: PolicyListRecord) -> Self {
        let PolicyListRecord::V1 { room_id, name, operator, followers, rules, ignored } = r;
        let rules: BTreeMap<(String, String), PolicyRule> =
            rules.into_iter().map(|(t, k, r)| ((t, k), r.into())).collect();
        PolicyList { room_id, name, operator, followers, rules, ignored }
    }
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
            ..self
        }
    }
}
