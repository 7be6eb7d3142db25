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
/// Of those, rules whose entity is a glob: an invitation is matched against
/// each glob found under its index keys (see [`index_key`]), so their number
/// bounds the work one invitation costs.
pub const MAX_GLOBS_PER_LIST: usize = 1_000;
/// Steps of glob matching one list may take for one sender. A hostile
/// list's globs (`*a*a*a…b`) then cost at most this, and match nobody
/// past it, rather than stalling every owner behind one invitation. Honest
/// globs take about as many steps as the sender's ID is long: 1,000
/// `*word*` globs against a 255-byte ID stay within it.
pub const GLOB_BUDGET: u64 = 300_000;
/// Pending strangers one pending check looks at; the next ones are checked
/// by the next input (a cursor on the owner's record), so that one check
/// never holds the processor for a whole flood of held rooms.
pub const CHECK_PAGE: usize = 25;
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
/// The index key of globs no literal part of which can be looked up: every
/// invitation reads them (at most [`MAX_GLOBS_PER_LIST`] a list).
pub const WILD: &str = "*";
/// Parent domains of a sender's server looked up for `*.domain` globs (the
/// ones nearest the top).
const MAX_SUFFIXES: usize = 8;

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

/// A rule's place in its list: its state event type and state key. A state
/// event replaces whatever its slot held.
pub type Slot = (String, String);

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

impl RuleEvent {
    pub fn slot(&self) -> Slot {
        (self.event_type.clone(), self.state_key.clone())
    }
}

/// A followed policy list, kept once for everyone who follows it. Its
/// record holds what is here but `rules`; each rule is kept apart, in its
/// slot and under its [`index_key`], so that a rule event writes one rule
/// and an invitation reads only the rules that could name its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyList {
    pub room_id: OwnedRoomId,
    /// What it was asked for by (an alias, or the room ID), for answers.
    pub name: String,
    /// Listed in the operator's configuration: applies to every owner.
    pub operator: bool,
    /// Owners who subscribed to it.
    pub followers: BTreeSet<OwnedUserId>,
    /// Rules kept, and of them globs.
    pub kept: u32,
    pub globs: u32,
    /// Rules not kept because the list had [`MAX_RULES_PER_LIST`] (or
    /// [`MAX_GLOBS_PER_LIST`]) already.
    pub ignored: u32,
    /// When a rule event last changed a slot (the engine's clock): a read of
    /// the list's state asked for before then misses it, and replaces nothing.
    pub event_ms: u64,
    /// When a rule that may ban someone new was last kept: followers whose
    /// pending strangers were checked before then are checked again (on
    /// the timer, one owner per input, however many rules came).
    pub changed_ms: u64,
    /// The rules this decision read (see [`crate::PolicyRead`]), by slot:
    /// never stored with the record.
    pub rules: BTreeMap<Slot, PolicyRule>,
}

impl PolicyList {
    pub fn new(room_id: OwnedRoomId, name: String) -> Self {
        PolicyList {
            room_id,
            name,
            operator: false,
            followers: BTreeSet::new(),
            kept: 0,
            globs: 0,
            ignored: 0,
            event_ms: 0,
            changed_ms: 0,
            rules: BTreeMap::new(),
        }
    }

    /// `event` applied to this list, whose `rules` hold the event's slot as
    /// stored: a valid ban rule put in its slot, anything else (redacted,
    /// emptied, another recommendation, out of bounds) removing what the
    /// slot held. The list's record after it, and the slot's new rule;
    /// `None`: nothing changes.
    pub fn with(&self, event: &RuleEvent, now_ms: u64) -> Option<(PolicyList, Option<PolicyRule>)> {
        let slot = event.slot();
        let old = self.rules.get(&slot);
        let mut new = rule_of(event);
        if new.as_ref() == old {
            return None;
        }
        let mut list = self.clone();
        if let Some(rule) = &new {
            let globs = list.globs - old.map_or(0, |o| is_glob(&o.entity) as u32) + is_glob(&rule.entity) as u32;
            let full = old.is_none() && list.kept as usize >= MAX_RULES_PER_LIST;
            if full || globs as usize > MAX_GLOBS_PER_LIST {
                // Counted, not kept; and the slot no longer holds its old
                // rule either: the list's moderators replaced it.
                list.ignored = list.ignored.saturating_add(1);
                new = None;
            }
        }
        if let Some(old) = old {
            list.kept -= 1;
            list.globs -= is_glob(&old.entity) as u32;
        }
        match &new {
            Some(rule) => {
                list.kept += 1;
                list.globs += is_glob(&rule.entity) as u32;
                // A rule whose reason alone changed bans nobody new.
                let same_ban = old.is_some_and(|o| o.kind == rule.kind && o.entity == rule.entity);
                if !same_ban {
                    list.changed_ms = changed(list.changed_ms, now_ms);
                }
                list.rules.insert(slot, rule.clone());
            }
            None => {
                list.rules.remove(&slot);
            }
        }
        Some((list, new))
    }

    /// This list as the room's whole state makes it, as read when it was
    /// (re)joined: at most [`MAX_RULES_PER_LIST`] kept, in the order given.
    /// `rules` must hold every rule kept before (see [`RulesRead::All`]).
    pub fn replaced(&self, events: &[RuleEvent], now_ms: u64) -> PolicyList {
        let mut list = PolicyList { rules: BTreeMap::new(), kept: 0, globs: 0, ignored: 0, ..self.clone() };
        for event in events {
            if let Some((next, _)) = list.with(event, now_ms) {
                list = next;
            }
        }
        // Only a rule that was not there before bans anyone new.
        let before: BTreeSet<(RuleKind, &str)> = self.rules.values().map(|r| (r.kind, r.entity.as_str())).collect();
        let news = list.rules.values().any(|r| !before.contains(&(r.kind, r.entity.as_str())));
        list.changed_ms = if news { changed(self.changed_ms, now_ms) } else { self.changed_ms };
        list
    }

    /// The slot changes that turn `self.rules` into `next.rules`.
    pub fn changes_to(&self, next: &PolicyList) -> Vec<StateChange> {
        let room = &self.room_id;
        let put = |slot: &Slot, rule: Option<&PolicyRule>| StateChange::PutPolicyRule {
            list: room.clone(),
            slot: slot.clone(),
            rule: rule.cloned(),
        };
        let gone = self.rules.keys().filter(|s| !next.rules.contains_key(*s)).map(|s| put(s, None));
        let new = next.rules.iter().filter(|(s, r)| self.rules.get(*s) != Some(*r)).map(|(s, r)| put(s, Some(r)));
        gone.chain(new).collect()
    }
}

/// A list's change mark after one more change: the time, but always past
/// the last mark, so that a clock gone back still makes a new mark (the
/// timer queues a check when the mark moves).
fn changed(before: u64, now_ms: u64) -> u64 {
    now_ms.max(before.saturating_add(1))
}

/// What a list's rules are read for a decision: none (its record only),
/// one slot (a rule event's), those that could name a subject (an
/// invitation's sender, each pending stranger), or every one (a re-read of
/// the whole list replaces them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RulesRead {
    #[default]
    None,
    Slot(Slot),
    /// The rules under these index keys (see [`index_key`], [`names`]).
    Naming(Vec<String>),
    All,
}

/// Whether an entity is a glob rather than one name.
pub fn is_glob(entity: &str) -> bool {
    entity.contains(['*', '?'])
}

/// The one key a rule is found under: an entity with no wildcard under
/// itself; a user glob whose server part is a name (`@spam*:evil.org`)
/// under that name, and one whose server part is `*.name` under the name;
/// a server glob `*.name` under the name; any other glob under [`WILD`].
/// [`names`] gives the keys an invitation looks up: every rule that can
/// ban it is under one of them.
pub fn index_key(rule: &PolicyRule) -> String {
    let e = &rule.entity;
    if !is_glob(e) {
        return e.clone();
    }
    let domain = |server: &str| -> Option<String> {
        if !is_glob(server) {
            return Some(server.to_owned());
        }
        server.strip_prefix("*.").filter(|rest| !rest.is_empty() && !is_glob(rest)).map(str::to_owned)
    };
    let key = match rule.kind {
        // A user ID's localpart has no `:`: what follows the first is the server.
        RuleKind::User => e.split_once(':').and_then(|(_, server)| domain(server)),
        RuleKind::Server => domain(e).filter(|_| e.starts_with("*.")),
        RuleKind::Room => None,
    };
    key.unwrap_or_else(|| WILD.to_owned())
}

/// The index keys an invitation from `user` (to `room`) looks up: the user
/// ID, their server and its parent domains, the room, and [`WILD`].
pub fn names(user: &UserId, room: Option<&RoomId>) -> Vec<String> {
    let full = user.server_name();
    let mut keys = vec![user.to_string(), full.to_string()];
    // A server rule names the host, with or without a port (see `covers`).
    let server = full.host();
    if full.port().is_some() {
        keys.push(server.to_owned());
    }
    // The parents nearest the top: a `*.evil.org` rule names the domain its
    // owner registered, and whoever owns it can name a server any number
    // of labels under it (a.b.c.d.e.f.g.h.i.evil.org); the first parents
    // from the left would miss it.
    let parents: Vec<&str> = server.match_indices('.').map(|(i, _)| &server[i + 1..]).collect();
    keys.extend(parents[parents.len().saturating_sub(MAX_SUFFIXES)..].iter().map(|p| (*p).to_owned()));
    keys.extend(room.map(|r| r.to_string()));
    keys.push(WILD.to_owned());
    keys
}

impl PolicyRule {
    /// Whether this rule bans `user` (or an invitation to `room`), within
    /// what is left of `budget` (glob steps).
    pub fn covers(&self, user: &UserId, room: Option<&RoomId>, budget: &mut u64) -> bool {
        let mut one = |text: &str| {
            if is_glob(&self.entity) { glob_match(&self.entity, text, budget) } else { self.entity == text }
        };
        match self.kind {
            RuleKind::User => one(user.as_str()),
            // With or without its port: a server ban names the host (as
            // the homeserver's server ACLs do), and a port changes nobody.
            RuleKind::Server => {
                let server = user.server_name();
                one(server.as_str()) || (server.port().is_some() && one(server.host()))
            }
            RuleKind::Room => room.is_some_and(|r| one(r.as_str())),
        }
    }
}

/// One list's rules as read, indexed for matching many subjects (each
/// pending stranger) in one decision, with a glob budget for each.
pub struct Matcher<'a> {
    pub list: &'a PolicyList,
    by_key: BTreeMap<String, Vec<&'a PolicyRule>>,
}

impl<'a> Matcher<'a> {
    pub fn of(list: &'a PolicyList) -> Self {
        let mut by_key: BTreeMap<String, Vec<&PolicyRule>> = BTreeMap::new();
        for rule in list.rules.values() {
            by_key.entry(index_key(rule)).or_default().push(rule);
        }
        Matcher { list, by_key }
    }

    /// The first rule banning `user`, or an invitation to `room`, within
    /// [`GLOB_BUDGET`] steps of glob matching.
    pub fn bans(&mut self, user: &UserId, room: Option<&RoomId>) -> Option<&'a PolicyRule> {
        let mut budget = GLOB_BUDGET;
        for key in names(user, room) {
            for rule in self.by_key.get(&key).into_iter().flatten() {
                if rule.covers(user, room, &mut budget) {
                    return Some(rule);
                }
            }
        }
        None
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
    // No Matrix ID or server name has control characters; a rule with one
    // names nobody.
    if entity.chars().any(char::is_control) {
        return None;
    }
    // A glob that is (almost) nothing but wildcards bans everyone: one
    // hostile or mistaken rule would decline every stranger of every
    // follower. Not a rule.
    let literal = entity.chars().filter(|c| !matches!(c, '*' | '?' | '@' | ':' | '.')).count();
    if literal < MIN_LITERAL {
        return None;
    }
    // A rule with no wildcard is looked up under its entity (see
    // [`index_key`]): one that is no name of its kind (a user rule for
    // `remote.org`) bans nobody, yet every invitation from remote.org would
    // read it, 10,000 times over in a hostile list. Not a rule.
    if !is_glob(entity) && !names_one_of_its_kind(kind, entity) {
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

/// Whether `entity` (no glob) is a name a rule of `kind` can match: a user
/// ID, a server name, a room ID or alias.
fn names_one_of_its_kind(kind: RuleKind, entity: &str) -> bool {
    match kind {
        RuleKind::User => UserId::parse(entity).is_ok(),
        RuleKind::Server => ruma::ServerName::parse(entity).is_ok(),
        RuleKind::Room => entity.starts_with(['!', '#']),
    }
}

/// Matrix globs: `*` any run of characters, `?` exactly one. Greedy with
/// one remembered star, so no input backtracks more than once per star:
/// at most `pattern × text` steps (both at most 255 bytes here), never the
/// exponential blow-up a recursive matcher has on `*a*a*a*…b`. Each step
/// is taken from `budget`; none left, nothing matches.
pub fn glob_match(pattern: &str, text: &str, budget: &mut u64) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
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
    lists_of(snapshot, owner).find_map(|l| Matcher::of(l).bans(user, room).map(|r| (l, r)))
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

/// A rule state event in a room: kept if the room is a followed list. One
/// slot is written, whatever the list's size. A rule that may ban someone
/// new marks the list changed: its followers' pending strangers are
/// checked on the timer, one owner per input, however many rules came
/// (a bulk ban of 500 rules is not 500 checks of every follower).
pub(crate) fn rule_event(snapshot: &Snapshot, meta: &EventMeta, event: &RuleEvent, now_ms: u64) -> Decision {
    let Some(list) = snapshot.policy.get(&meta.room_id) else { return Decision::default() };
    let Some((updated, rule)) = list.with(event, now_ms) else { return Decision::default() };
    let record = PolicyList { event_ms: now_ms.max(list.event_ms), rules: BTreeMap::new(), ..updated };
    Decision::default()
        .change(StateChange::PutPolicyRule { list: meta.room_id.clone(), slot: event.slot(), rule })
        .change(StateChange::PutPolicyList(record))
}

/// What a list's read brought (see `Input::ListRead`).
#[derive(Clone, Copy)]
pub struct Read<'a> {
    /// Who asked (`None`: the operator's configuration, or a re-read).
    pub owner: Option<&'a OwnedUserId>,
    pub asked: &'a str,
    pub rules: &'a [RuleEvent],
    pub read_ms: Option<u64>,
}

/// A list was joined and its state read (or could not be): `owner` asked
/// (`None`: the operator's configuration, or a periodic re-read). The
/// rules it has replace those kept, the owner follows it, and their
/// pending strangers are checked against it; other followers' are on the
/// timer, if it gained a rule.
pub(crate) fn list_read(
    snapshot: &Snapshot,
    read: Read<'_>,
    room_id: &OwnedRoomId,
    error: Option<&str>,
    now_ms: u64,
    config: &EngineConfig,
) -> Decision {
    let Read { owner, asked, rules: events, read_ms } = read;
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
    let stored = snapshot.policy.get(room_id);
    let base = stored.cloned().unwrap_or_else(|| PolicyList::new(room_id.clone(), name.clone()));
    // A rule event applied since the state was asked for is newer than the
    // read: the rules stay as they are (the next re-read catches up).
    let stale = stored.is_some_and(|l| read_ms.is_some_and(|at| l.event_ms >= at));
    let mut list = if stale { base.clone() } else { base.replaced(events, now_ms) };
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
            let text = texts::list_followed(&name, room_id, list.kept as usize, list.ignored, config.client_mode);
            d = d.effects_from(answer(text));
            // Its count written after the list's own change above, on top of it.
            d = pending_banned(d, snapshot, &o, &mut [Matcher::of(&list)], None, now_ms);
        }
        // A periodic re-read refreshes the rules of a list still kept.
        None if asked == REREAD => {
            if stored.is_none() {
                return Decision::default();
            }
        }
        None => {
            // Newly the operator's: it now applies to owners who never
            // followed it, whose pending strangers were checked without it.
            if !list.operator {
                list.changed_ms = changed(list.changed_ms, now_ms);
            }
            list.operator = true
        }
    }
    // The record first, then its slots: a list followed for the first time
    // must exist before its rules are put in it (the snapshot's `after`
    // and the memory store drop a rule of a list they do not have).
    let slots = base.changes_to(&list);
    list.rules.clear();
    d = d.change(StateChange::PutPolicyList(list));
    d.changes.extend(slots);
    d
}

/// What a periodic re-read of a followed list is asked as: it follows the
/// list for nobody new and tells nobody.
pub const REREAD: &str = "(re-read)";

/// The owner's pending strangers that one of `lists` bans (and the owner
/// has not allowed), handled as if their invitation came now: their rooms
/// left (or, `set banned ignore`, only forgotten and left too, since the
/// owner is in them already), what they wrote dropped, each counted.
fn pending_banned(
    mut d: Decision,
    snapshot: &Snapshot,
    owner: &OwnerState,
    lists: &mut [Matcher<'_>],
    only: Option<&BTreeSet<&OwnedRoomId>>,
    now_ms: u64,
) -> Decision {
    let Some(overview) = &snapshot.overview else { return d };
    let mut state = owner.clone();
    let mut decided: BTreeSet<&OwnedUserId> = BTreeSet::new();
    for (room, held) in overview.held.iter().filter(|(room, _)| only.is_none_or(|o| o.contains(room))) {
        let allowed = overview
            .contacts
            .get(&Subject::User(held.inviter.clone()))
            .or_else(|| overview.contacts.get(&Subject::Server(held.inviter.server_name().to_owned())));
        if matches!(allowed, Some(Contact::Allowed { .. }))
            || !lists.iter_mut().any(|m| m.bans(&held.inviter, Some(room)).is_some())
        {
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

/// What the timer queues an owner's pending check for: a list they follow
/// (or the operator's) gained a rule since they were last checked.
pub fn check_due(owner: &OwnerState, lists: &[&PolicyList]) -> bool {
    lists.iter().any(|l| follows(owner, l) && l.changed_ms > owner.lists_checked_ms)
}

fn follows(owner: &OwnerState, list: &PolicyList) -> bool {
    list.operator || owner.policy_lists.contains(&list.room_id)
}

/// The pending strangers one check looks at: up to [`CHECK_PAGE`] held
/// rooms after the owner's cursor, and whether they are the last.
pub fn check_page<'a>(owner: &OwnerState, overview: &'a OwnerOverview) -> (Vec<(&'a OwnedRoomId, &'a HeldRoom)>, bool) {
    let after = |room: &&OwnedRoomId| owner.lists_check_from.as_ref().is_none_or(|(from, _)| *room > from);
    let mut page: Vec<(&OwnedRoomId, &HeldRoom)> =
        overview.held.iter().filter(|(room, _)| after(room)).take(CHECK_PAGE + 1).collect();
    let last = page.len() <= CHECK_PAGE;
    page.truncate(CHECK_PAGE);
    (page, last)
}

/// The owner's pending strangers checked against the lists they follow
/// (and the operator's) that changed since their last check, as the timer
/// found one did (see [`check_due`]): a page at a time, each page's input
/// queueing the next, the owner marked checked after the last.
pub(crate) fn check_pending(snapshot: &Snapshot, owner: &OwnedUserId, now_ms: u64) -> Decision {
    let Some(state) = snapshot.owners.get(owner) else { return Decision::default() };
    let Some(overview) = &snapshot.overview else { return Decision::default() };
    let changed: Vec<&PolicyList> =
        lists_of(snapshot, state).filter(|l| l.changed_ms > state.lists_checked_ms).collect();
    // Nothing changed and no pass under way: a check queued twice (the
    // timer's and a page's, after a restart) does nothing the second time.
    if changed.is_empty() && state.lists_check_from.is_none() {
        return Decision::default();
    }
    let (page, last) = check_page(state, overview);
    let rooms: BTreeSet<&OwnedRoomId> = page.iter().map(|(room, _)| *room).collect();
    let mut matchers: Vec<Matcher<'_>> = changed.into_iter().map(Matcher::of).collect();
    // Checked as of every list's mark as read when the pass began (each
    // rule up to it was in what each page read), and at least a
    // millisecond ago: a rule kept later gets a later mark, and one kept
    // during the pass leaves the owner due again.
    let mark = match &state.lists_check_from {
        Some((_, mark)) => *mark,
        None => lists_of(snapshot, state).map(|l| l.changed_ms).max().unwrap_or(0).max(now_ms.saturating_sub(1)),
    };
    let next = match last {
        true => OwnerState { lists_checked_ms: mark, lists_check_from: None, ..state.clone() },
        false => OwnerState { lists_check_from: page.last().map(|(room, _)| ((*room).clone(), mark)), ..state.clone() },
    };
    let mut d = pending_banned(Decision::default(), snapshot, &next, &mut matchers, Some(&rooms), now_ms);
    if !d.changes.iter().any(|c| matches!(c, StateChange::PutOwner(_))) {
        d = d.change(StateChange::PutOwner(next));
    }
    if !last {
        d = d.effect(Effect::CheckPending { owner: owner.clone() });
    }
    d
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
        kept.rules.clear();
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

/// The operator's configuration names `configured` lists now (read at
/// every start): a list it named before and no longer does stops applying
/// to every owner, and is forgotten unless an owner follows it.
pub(crate) fn operator_lists(snapshot: &Snapshot, configured: &[String]) -> Decision {
    let mut d = Decision::default();
    for list in snapshot.policy.values().filter(|l| l.operator) {
        if configured.iter().any(|c| *c == list.name || *c == list.room_id.as_str()) {
            continue;
        }
        d = d.change(if list.followers.is_empty() {
            StateChange::RemovePolicyList(list.room_id.clone())
        } else {
            StateChange::PutPolicyList(PolicyList { operator: false, rules: BTreeMap::new(), ..list.clone() })
        });
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
            assert_eq!(glob_match(p, t, &mut u64::MAX.clone()), m, "{p} on {t}");
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
            assert!(!glob_match(&pattern, &text, &mut u64::MAX.clone()));
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
    }
}
