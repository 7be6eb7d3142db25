//! Shared ban lists: Matrix moderation policy rooms (`m.policy.rule.*`
//! state events) that owners follow. A policy room is controlled by
//! whoever has power there, possibly someone hostile, so everything read
//! from one is bounded: rules per list, lists per owner, the length of an
//! entity, a state key and a reason; and a glob is matched without
//! backtracking blow-up. Rules are kept once per list, however many owners
//! follow it; the connectors only turn state events into inputs.

use std::collections::{BTreeMap, BTreeSet};

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};

use super::*;

/// Rules kept per list; further ones are counted, not kept.
pub const MAX_RULES_PER_LIST: usize = 10_000;
/// Lists an owner may follow (the operator's come on top).
pub const MAX_LISTS_PER_OWNER: usize = 20;
/// Bytes of a rule's entity and state key: a user ID is at most 255.
pub const MAX_ENTITY: usize = 255;
/// A rule's entity needs at least this many characters that are not
/// wildcards or separators (`*:*`, `@*:*` and `*` ban everyone).
pub const MIN_LITERAL: usize = 2;
/// Bytes of a rule's reason kept (cut at a character boundary).
pub const MAX_REASON: usize = 200;
/// Bytes of what the owner typed to name a list (an alias, a room ID).
pub const MAX_NAME: usize = 255;
/// Senders declined by a list that `show banned` can name.
pub const MAX_RECENT: usize = 20;

/// The state event types that carry rules: the spec's, and the older
/// names Mjolnir lists still use.
pub const RULE_TYPES: [(&str, RuleKind); 9] = [
    ("m.policy.rule.user", RuleKind::User),
    ("m.policy.rule.server", RuleKind::Server),
    ("m.policy.rule.room", RuleKind::Room),
    ("m.room.rule.user", RuleKind::User),
    ("m.room.rule.server", RuleKind::Server),
    ("m.room.rule.room", RuleKind::Room),
    ("org.matrix.mjolnir.rule.user", RuleKind::User),
    ("org.matrix.mjolnir.rule.server", RuleKind::Server),
    ("org.matrix.mjolnir.rule.room", RuleKind::Room),
];

/// The recommendations acted on; any other is no rule at all.
const BAN: &str = "m.ban";
const TAKEDOWN: &str = "org.matrix.msc4204.takedown";

/// What a rule's entity is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RuleKind {
    /// A user ID glob.
    User,
    /// A server name glob.
    Server,
    /// A room ID (or alias) glob: invitations to such rooms.
    Room,
}

impl RuleKind {
    pub fn of(event_type: &str) -> Option<Self> {
        RULE_TYPES.iter().find(|(t, _)| *t == event_type).map(|(_, k)| *k)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::User => "user",
            RuleKind::Server => "server",
            RuleKind::Room => "room",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [RuleKind::User, RuleKind::Server, RuleKind::Room].into_iter().find(|k| k.as_str() == s)
    }

    /// The spec's event type for rules of this kind (what `share blocks`
    /// publishes).
    pub fn event_type(self) -> &'static str {
        match self {
            RuleKind::User => "m.policy.rule.user",
            RuleKind::Server => "m.policy.rule.server",
            RuleKind::Room => "m.policy.rule.room",
        }
    }
}

/// One ban rule as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRule {
    pub kind: RuleKind,
    pub entity: String,
    /// `org.matrix.msc4204.takedown` rather than `m.ban`: acted on alike.
    pub takedown: bool,
    pub reason: Option<String>,
}

/// A rule state event as the homeserver gave it: every field the list's
/// moderators (or anyone with power there) chose, unchecked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleEvent {
    pub event_type: String,
    pub state_key: String,
    pub entity: Option<String>,
    pub recommendation: Option<String>,
    pub reason: Option<String>,
}

/// A followed policy room, kept once for everyone who follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyList {
    pub room_id: OwnedRoomId,
    /// What it was asked for by (an alias, or the room ID), for answers.
    pub name: String,
    /// Listed in the operator's configuration: applies to every owner.
    pub operator: bool,
    /// Owners who subscribed to it.
    pub followers: BTreeSet<OwnedUserId>,
    /// Its ban rules, by state event type and state key (each a state slot).
    pub rules: BTreeMap<(String, String), PolicyRule>,
    /// Rules not kept because the list had [`MAX_RULES_PER_LIST`] already.
    pub ignored: u32,
}

impl PolicyList {
    pub fn new(room_id: OwnedRoomId, name: String) -> Self {
        PolicyList { room_id, name, operator: false, followers: BTreeSet::new(), rules: BTreeMap::new(), ignored: 0 }
    }

    /// The first rule banning `user`, or an invitation to `room`.
    pub fn bans(&self, user: &UserId, room: Option<&RoomId>) -> Option<&PolicyRule> {
        self.rules.values().find(|r| r.covers(user, room))
    }

    /// This list with `event` applied: a valid ban rule put in its slot,
    /// anything else (redacted, emptied, another recommendation, out of
    /// bounds) removing what the slot held. `None`: nothing changes.
    pub fn with(&self, event: &RuleEvent) -> Option<PolicyList> {
        let key = (event.event_type.clone(), event.state_key.clone());
        let rule = rule_of(event);
        let mut list = self.clone();
        match rule {
            Some(rule) if list.rules.get(&key) == Some(&rule) => return None,
            Some(rule) if list.rules.contains_key(&key) || list.rules.len() < MAX_RULES_PER_LIST => {
                list.rules.insert(key, rule);
            }
            Some(_) => list.ignored = list.ignored.saturating_add(1),
            None => {
                list.rules.remove(&key)?;
            }
        }
        Some(list)
    }

    /// This list's rules replaced by the room's whole state, as read when
    /// it was (re)joined: at most [`MAX_RULES_PER_LIST`] kept, in the
    /// order given.
    pub fn replaced(&self, events: &[RuleEvent]) -> PolicyList {
        let mut list = PolicyList { rules: BTreeMap::new(), ignored: 0, ..self.clone() };
        for event in events {
            if let Some(next) = list.with(event) {
                list = next;
            }
        }
        list
    }
}

impl PolicyRule {
    /// Whether this rule bans `user` (or an invitation to `room`).
    pub fn covers(&self, user: &UserId, room: Option<&RoomId>) -> bool {
        match self.kind {
            RuleKind::User => glob_match(&self.entity, user.as_str()),
            RuleKind::Server => glob_match(&self.entity, user.server_name().as_str()),
            RuleKind::Room => room.is_some_and(|r| glob_match(&self.entity, r.as_str())),
        }
    }
}

/// A ban rule from a state event, or `None`: no entity, an entity or state
/// key out of bounds, or a recommendation other than a ban. The spec says
/// such a slot holds no rule, so it removes whatever the slot held.
pub fn rule_of(event: &RuleEvent) -> Option<PolicyRule> {
    let kind = RuleKind::of(&event.event_type)?;
    let entity = event.entity.as_deref()?;
    if entity.is_empty() || entity.len() > MAX_ENTITY || event.state_key.len() > MAX_ENTITY {
        return None;
    }
    // A glob that is (almost) nothing but wildcards bans everyone: one
    // hostile or mistaken rule would decline every stranger of every
    // follower. Not a rule.
    let literal = entity.chars().filter(|c| !matches!(c, '*' | '?' | '@' | ':' | '.')).count();
    if literal < MIN_LITERAL {
        return None;
    }
    let takedown = match event.recommendation.as_deref()? {
        BAN => false,
        TAKEDOWN => true,
        _ => return None,
    };
    // A reason is shown to the owner: one line, bounded.
    let reason = event.reason.as_deref().map(|r| texts::one_line(r, MAX_REASON)).filter(|r| !r.is_empty());
    Some(PolicyRule { kind, entity: entity.to_owned(), takedown, reason })
}

/// Matrix globs: `*` any run of characters, `?` exactly one. Greedy with
/// one remembered star, so no input backtracks more than once per star:
/// at most `pattern × text` steps (both at most 255 bytes here), never the
/// exponential blow-up a recursive matcher has on `*a*a*a*…b`.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            // Collapse runs of stars: `**` is `*`.
            while pi < p.len() && p[pi] == '*' {
                pi += 1;
            }
            star = Some((pi, ti));
        } else if let Some((sp, st)) = star {
            pi = sp;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The lists an invitation to `owner` is checked against: theirs and the
/// operator's (see [`crate::policy_read`]), as the snapshot holds them.
fn lists_of<'a>(snapshot: &'a Snapshot, owner: &'a OwnerState) -> impl Iterator<Item = &'a PolicyList> {
    snapshot.policy.values().filter(|l| l.operator || owner.policy_lists.contains(&l.room_id))
}

/// The list and rule that ban `user` for `owner`, if any.
pub fn banned<'a>(
    snapshot: &'a Snapshot,
    owner: &'a OwnerState,
    user: &UserId,
    room: Option<&RoomId>,
) -> Option<(&'a PolicyList, &'a PolicyRule)> {
    lists_of(snapshot, owner).find_map(|l| l.bans(user, room).map(|r| (l, r)))
}

/// The owner's record with one more sender declined by a list.
fn counted(owner: &OwnerState, sender: &OwnedUserId, now_ms: u64) -> OwnerState {
    let mut recent = owner.banned_recent.clone();
    recent.retain(|(u, _)| u != sender);
    recent.push((sender.clone(), now_ms));
    if recent.len() > MAX_RECENT {
        recent.drain(..recent.len() - MAX_RECENT);
    }
    OwnerState { banned: owner.banned.bump(), banned_recent: recent, ..owner.clone() }
}

/// A stranger's invitation, when a followed list bans them (the owner's own
/// `allow` was checked before): declined without a reason, or left as it
/// is (`set banned ignore`: silent, never joined), and counted for the
/// digest. No reply, no join, no push rule: nothing the sender can see
/// but the decline itself.
pub(crate) fn invite(snapshot: &Snapshot, meta: &EventMeta, owner: &OwnerState, now_ms: u64) -> Option<Decision> {
    banned(snapshot, owner, &meta.sender, Some(&meta.room_id))?;
    let d = Decision::default().change(StateChange::PutOwner(counted(owner, &meta.sender, now_ms)));
    Some(
        if owner.banned_ignore {
            d
        } else {
            d.effect(Effect::Leave { as_user: owner.user_id.clone(), room_id: meta.room_id.clone(), reason: None })
        }
        .outcome(Outcome::InviteBanned),
    )
}

/// A rule state event in a room: kept if the room is a followed list, and
/// each follower's pending strangers checked against what it added.
pub(crate) fn rule_event(snapshot: &Snapshot, meta: &EventMeta, event: &RuleEvent) -> Decision {
    let Some(list) = snapshot.policy.get(&meta.room_id) else { return Decision::default() };
    let Some(updated) = list.with(event) else { return Decision::default() };
    let key = (event.event_type.clone(), event.state_key.clone());
    // A rule whose reason alone changed bans nobody new: only a new
    // entity or kind is looked at again.
    let same_ban = |a: &PolicyRule, b: &PolicyRule| a.kind == b.kind && a.entity == b.entity;
    let added = updated.rules.get(&key).filter(|r| !list.rules.get(&key).is_some_and(|old| same_ban(old, r))).cloned();
    let mut d = Decision::default();
    // A rule removed undoes nothing; one added (or changed) may ban someone
    // waiting: each follower is looked at in a decision of their own, so
    // one list followed by many owners never makes one huge decision.
    if let Some(rule) = added {
        let everyone: BTreeSet<&OwnedUserId> = match updated.operator {
            true => snapshot.everyone.iter().chain(&updated.followers).collect(),
            false => updated.followers.iter().collect(),
        };
        for owner in everyone {
            d = d.effect(Effect::CheckPending { owner: owner.clone(), list: meta.room_id.clone(), rule: rule.clone() });
        }
    }
    d.change(StateChange::PutPolicyList(updated))
}

/// A list was joined and its state read (or could not be): `owner` asked
/// (`None`: the operator's configuration). The rules it has are kept, the
/// owner follows it, and their pending strangers are checked against it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn list_read(
    snapshot: &Snapshot,
    owner: Option<&OwnedUserId>,
    asked: &str,
    room_id: &OwnedRoomId,
    events: &[RuleEvent],
    error: Option<&str>,
    now_ms: u64,
    config: &EngineConfig,
) -> Decision {
    let name = texts::one_line(asked, MAX_NAME);
    let state = owner.and_then(|o| snapshot.owners.get(o));
    let answer = |text: texts::Text| match state {
        Some(o) => {
            let seed = format!("{}\0{room_id}\0{asked}\0{now_ms}", o.user_id);
            Some(Effect::SendNotice {
                as_user: config.bot.clone(),
                room_id: o.control_room.clone(),
                txn_id: txn_id_for(&seed, "policy"),
                body: text.plain,
                html: text.html,
                digest: None,
                only_with: None,
                urgent: false,
            })
        }
        None => None,
    };
    if let Some(why) = error {
        return Decision {
            effects: answer(texts::list_not_followed(&name, why)).into_iter().collect(),
            ..Default::default()
        };
    }
    if owner.is_some() && state.is_none() {
        // They stopped meanwhile.
        return Decision::default();
    }
    let base = snapshot.policy.get(room_id).cloned().unwrap_or_else(|| PolicyList::new(room_id.clone(), name.clone()));
    let mut list = base.replaced(events);
    let mut d = Decision::default();
    match state {
        Some(o) => {
            let mut o = o.clone();
            if !o.policy_lists.contains(room_id) {
                if o.policy_lists.len() >= MAX_LISTS_PER_OWNER {
                    return Decision {
                        effects: answer(texts::too_many_lists()).into_iter().collect(),
                        ..Default::default()
                    };
                }
                o.policy_lists.push(room_id.clone());
                d = d.change(StateChange::PutOwner(o.clone()));
            }
            list.followers.insert(o.user_id.clone());
            let text = texts::list_followed(&name, room_id, list.rules.len(), list.ignored, config.client_mode);
            d = d.effects_from(answer(text));
            // Its count written after the list's own change above, on top of it.
            d = pending_banned(d, snapshot, &o, &list, now_ms);
        }
        None => list.operator = true,
    }
    d.change(StateChange::PutPolicyList(list))
}

/// The owner's pending strangers that `list` bans (and the owner has not
/// allowed), handled as if their invitation came now: their rooms left
/// (or, `set banned ignore`, only forgotten and left too, since the owner
/// is in them already), what they wrote dropped, each counted.
fn pending_banned(
    mut d: Decision,
    snapshot: &Snapshot,
    owner: &OwnerState,
    list: &PolicyList,
    now_ms: u64,
) -> Decision {
    let Some(overview) = &snapshot.overview else { return d };
    let mut state = owner.clone();
    let mut decided: BTreeSet<&OwnedUserId> = BTreeSet::new();
    for (room, held) in &overview.held {
        let allowed = overview
            .contacts
            .get(&Subject::User(held.inviter.clone()))
            .or_else(|| overview.contacts.get(&Subject::Server(held.inviter.server_name().to_owned())));
        if matches!(allowed, Some(Contact::Allowed { .. })) || list.bans(&held.inviter, Some(room)).is_none() {
            continue;
        }
        d = d
            .effect(Effect::Leave { as_user: owner.user_id.clone(), room_id: room.clone(), reason: None })
            .effect(unsilence(&owner.user_id, room))
            .change(StateChange::RemoveRoom { room: room.clone(), owner: owner.user_id.clone() });
        for m in overview.deferred.iter().filter(|m| m.room_id == *room) {
            d = d.change(StateChange::RemoveDeferred { owner: owner.user_id.clone(), event_id: m.event_id.clone() });
        }
        if decided.insert(&held.inviter) {
            state = counted(&state, &held.inviter, now_ms);
        }
    }
    if !decided.is_empty() {
        d = d.change(StateChange::PutOwner(state)).outcome(Outcome::InviteBanned);
    }
    d
}

/// A list one owner follows gained `rule`: their pending strangers it bans
/// are handled as at [`list_read`].
pub(crate) fn check_pending(
    snapshot: &Snapshot,
    owner: &OwnedUserId,
    list: &OwnedRoomId,
    rule: &PolicyRule,
    now_ms: u64,
) -> Decision {
    let Some(state) = snapshot.owners.get(owner) else { return Decision::default() };
    let operators = snapshot.policy.get(list).is_some_and(|l| l.operator);
    if !state.policy_lists.contains(list) && !operators {
        return Decision::default();
    }
    let mut one = PolicyList::new(list.clone(), String::new());
    one.rules.insert((String::new(), String::new()), rule.clone());
    pending_banned(Decision::default(), snapshot, state, &one, now_ms)
}

/// The owner stops following `list`: forgotten once nobody follows it.
pub(crate) fn unfollow(snapshot: &Snapshot, owner: &OwnerState, list: &OwnedRoomId) -> Decision {
    let lists: Vec<OwnedRoomId> = owner.policy_lists.iter().filter(|l| *l != list).cloned().collect();
    let d = Decision::default().change(StateChange::PutOwner(OwnerState { policy_lists: lists, ..owner.clone() }));
    leave_list(snapshot, d, &owner.user_id, list)
}

/// An owner who opts out (`stop`, or leaving the control room) follows no
/// list any more: each is forgotten once nobody follows it.
pub(crate) fn forget_owner(snapshot: &Snapshot, mut d: Decision) -> Decision {
    let gone: Vec<&OwnedUserId> = d
        .changes
        .iter()
        .filter_map(|c| match c {
            StateChange::RemoveOwner(o) => Some(o),
            _ => None,
        })
        .collect();
    let mut left = Decision::default();
    for owner in gone {
        for list in snapshot.owners.get(owner).map(|o| o.policy_lists.as_slice()).unwrap_or_default() {
            left = leave_list(&snapshot.after(&left.changes), left, owner, list);
        }
    }
    d.changes.extend(left.changes);
    d.effects.extend(left.effects);
    d
}

/// `owner` no longer among `list`'s followers; the list forgotten once
/// nobody follows it and it is not the operator's.
fn leave_list(snapshot: &Snapshot, mut d: Decision, owner: &OwnedUserId, list: &OwnedRoomId) -> Decision {
    if let Some(kept) = snapshot.policy.get(list) {
        let mut kept = kept.clone();
        kept.followers.remove(owner);
        if kept.followers.is_empty() && !kept.operator {
            // Forgotten, not left: the room may be one Gatekeeper needs for
            // something else (an owner's control room or shared list, a
            // held room) or, in client mode, a room the owner was in before
            // following it. Its later rules change nothing, as no list
            // record is kept for it.
            d = d.change(StateChange::RemovePolicyList(list.clone()));
        } else {
            d = d.change(StateChange::PutPolicyList(kept));
        }
    }
    d
}

/// The rule that publishes (or, `present` false, withdraws) `subject` in
/// the owner's shared list.
pub fn publish(
    as_user: &OwnedUserId,
    room: &OwnedRoomId,
    subject: &Subject,
    reason: Option<String>,
    present: bool,
) -> Effect {
    let (kind, entity) = match subject {
        Subject::User(u) => (RuleKind::User, u.to_string()),
        Subject::Server(s) => (RuleKind::Server, s.to_string()),
    };
    Effect::PutPolicyRule { as_user: as_user.clone(), room_id: room.clone(), kind, entity, reason, present }
}

/// The owner's shared list was made: every block they have is published in
/// it, and they are told where it is.
pub(crate) fn list_created(
    snapshot: &Snapshot,
    owner: &OwnedUserId,
    room: &OwnedRoomId,
    now_ms: u64,
    config: &EngineConfig,
) -> Decision {
    let Some(state) = snapshot.owners.get(owner) else { return Decision::default() };
    if state.shared_list.is_some() {
        return Decision::default();
    }
    let blocked: Vec<&Subject> = snapshot
        .overview
        .iter()
        .flat_map(|o| o.contacts.iter())
        .filter(|(_, c)| matches!(c, Contact::Blocked { .. }))
        .map(|(s, _)| s)
        .collect();
    let mut d = Decision::default()
        .change(StateChange::PutOwner(OwnerState { shared_list: Some(room.clone()), ..state.clone() }));
    for subject in &blocked {
        d = d.effect(publish(&config.bot, room, subject, None, true));
    }
    let text = texts::sharing_blocks(room.as_str(), blocked.len());
    let seed = format!("{owner}\0{room}\0{now_ms}");
    d.effect(Effect::SendNotice {
        as_user: config.bot.clone(),
        room_id: state.control_room.clone(),
        txn_id: txn_id_for(&seed, "shared"),
        body: text.plain,
        html: text.html,
        digest: None,
        only_with: None,
        urgent: false,
    })
}

/// Whatever decided it (`block`, `unblock`, `undo`, `block all`, an
/// e-mailed link), a block made or lifted is published in, or withdrawn
/// from, the owner's shared list, if they share one. A rule the decision
/// publishes itself (a `block` with a reason) is left as it is.
pub(crate) fn keep_shared(snapshot: &Snapshot, mut d: Decision, config: &EngineConfig) -> Decision {
    let touches_contacts =
        d.changes.iter().any(|c| matches!(c, StateChange::PutContact { .. } | StateChange::RemoveContact { .. }));
    if !touches_contacts {
        return d;
    }
    // The owner's record as this decision leaves it (`share blocks off`
    // and a block in one decision cannot happen, but the last word counts).
    let shared_of = |owner: &OwnedUserId| {
        let put = d.changes.iter().rev().find_map(|c| match c {
            StateChange::PutOwner(o) if o.user_id == *owner => Some(o),
            _ => None,
        });
        put.or_else(|| snapshot.owners.get(owner)).and_then(|o| o.shared_list.clone())
    };
    let was_blocked = |owner: &OwnedUserId, subject: &Subject| {
        let stored = snapshot.contacts.get(&(owner.clone(), subject.clone()));
        let seen = stored.or_else(|| {
            snapshot
                .overview
                .as_ref()
                .filter(|_| snapshot.owners.contains_key(owner))
                .and_then(|o| o.contacts.get(subject))
        });
        matches!(seen, Some(Contact::Blocked { .. }))
    };
    let mut extra = Vec::new();
    for change in &d.changes {
        let (owner, subject, blocked) = match change {
            StateChange::PutContact { owner, subject, contact } => {
                (owner, subject, matches!(contact, Contact::Blocked { .. }))
            }
            StateChange::RemoveContact { owner, subject } => (owner, subject, false),
            _ => continue,
        };
        let Some(room) = shared_of(owner) else { continue };
        let room = &room;
        if blocked == was_blocked(owner, subject) {
            continue;
        }
        let effect = publish(&config.bot, room, subject, None, blocked);
        let same_slot = |e: &Effect| match (e, &effect) {
            (Effect::PutPolicyRule { room_id: r, entity: a, .. }, Effect::PutPolicyRule { entity: b, .. }) => {
                r == room && a == b
            }
            _ => false,
        };
        if !d.effects.iter().chain(&extra).any(same_slot) {
            extra.push(effect);
        }
    }
    d.effects.extend(extra);
    d
}

impl Decision {
    fn effects_from(mut self, e: Option<Effect>) -> Self {
        self.effects.extend(e);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_the_spec_says() {
        for (p, t, m) in [
            ("@spam:evil.org", "@spam:evil.org", true),
            ("@spam:evil.org", "@spam:evil.orgx", false),
            ("@*:evil.org", "@anyone:evil.org", true),
            ("@*:evil.org", "@anyone:good.org", false),
            ("*.evil.org", "a.b.evil.org", true),
            ("*.evil.org", "evil.org", false),
            ("@sp?m:x", "@spam:x", true),
            ("@sp?m:x", "@spm:x", false),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("**a**", "xxaxx", true),
            ("@ü?:x", "@üß:x", true),
        ] {
            assert_eq!(glob_match(p, t), m, "{p} on {t}");
        }
    }

    #[test]
    fn a_hostile_glob_is_matched_in_bounded_steps() {
        // A recursive matcher takes exponential time on this; greedy with
        // one remembered star takes at most pattern × text steps.
        let pattern = format!("{}b", "*a".repeat(120));
        let text = "a".repeat(255);
        let started = std::time::Instant::now();
        for _ in 0..100 {
            assert!(!glob_match(&pattern, &text));
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
    }
}
