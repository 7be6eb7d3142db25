//! Matrix-native defences: what Gatekeeper keeps in step on the homeserver
//! beside its own records, so that clients and the homeserver itself see
//! the owner's choices. The commands the control room understands, as an
//! MSC4332 state event clients offer completion from; abuse reports to the
//! homeserver's admins (`report`); and the homeserver's own invite filter
//! (MSC4155), read at opt-in and mirrored from the owner's blocks, so that
//! a homeserver that enforces it rejects a blocked sender even while
//! Gatekeeper is down.

use std::collections::{BTreeMap, BTreeSet};

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};

use super::*;

/// MSC4332's state event type (unstable name) for a bot's commands.
pub const COMMANDS_EVENT_TYPE: &str = "org.matrix.msc4332.commands";

/// Entries of the owner's invite filter read at most, all lists together:
/// the account data is the owner's (their clients write it), but nothing
/// read from the homeserver is taken without bound.
pub const MAX_FILTER_ENTRIES: usize = 10_000;

/// Allows imported from the invite filter at opt-in, at most: each costs
/// the owner a push rule, as an imported direct chat does.
pub const MAX_FILTER_ALLOWS: usize = 300;

/// What the owner may say to the homeserver's admins with a report.
pub const MAX_REPORT_REASON: usize = 500;

/// Effects on the homeserver beyond rooms, push rules and tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NativeEffect {
    /// Make the room's state event (`event_type`, `state_key`) hold
    /// `content` (JSON), as `as_user`; a state event that already holds it
    /// is not sent again. Where the room's power levels do not let
    /// `as_user` send it, `grant_as` (the room's owner) first lowers the
    /// level that event type needs to `as_user`'s.
    PutState {
        as_user: OwnedUserId,
        grant_as: Option<OwnedUserId>,
        room_id: OwnedRoomId,
        event_type: String,
        state_key: String,
        content: String,
    },
    /// Report `user` to the homeserver's admins as `owner`: the user report
    /// where the homeserver has it, else (or also, for a user of another
    /// server, whom a homeserver's admins can only see through their
    /// messages) the report of `event`, their latest held message.
    /// Answered with [`NativeInput::Reported`]; `seed` makes the answer's
    /// transaction ID.
    Report {
        owner: OwnedUserId,
        user: OwnedUserId,
        event: Option<(OwnedRoomId, OwnedEventId)>,
        reason: String,
        seed: String,
    },
    /// Read the owner's invite filter (`m.invite_permission_config` and
    /// MSC4155's); answered with [`NativeInput::InviteFilterRead`].
    ReadInviteFilter { owner: OwnedUserId },
    /// Add to and remove from the blocked users and servers of the owner's
    /// MSC4155 invite filter, keeping everything else in it; nothing is
    /// written when nothing changes.
    EditInviteFilter { owner: OwnedUserId, add: Vec<Subject>, remove: Vec<Subject> },
}

impl NativeEffect {
    pub fn lane(&self) -> Lane {
        match self {
            NativeEffect::PutState { room_id, .. } => Lane::Room(room_id.clone()),
            NativeEffect::Report { owner, .. }
            | NativeEffect::ReadInviteFilter { owner }
            | NativeEffect::EditInviteFilter { owner, .. } => Lane::Owner(owner.clone()),
        }
    }

    pub fn acts_for(&self) -> &OwnedUserId {
        match self {
            NativeEffect::PutState { as_user, .. } => as_user,
            NativeEffect::Report { owner, .. }
            | NativeEffect::ReadInviteFilter { owner }
            | NativeEffect::EditInviteFilter { owner, .. } => owner,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            NativeEffect::PutState { .. } => "put_state",
            NativeEffect::Report { .. } => "report",
            NativeEffect::ReadInviteFilter { .. } => "read_invite_filter",
            NativeEffect::EditInviteFilter { .. } => "edit_invite_filter",
        }
    }
}

/// Which reporting endpoint carried a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportVia {
    /// `POST /users/{userId}/report`.
    User,
    /// `POST /rooms/{roomId}/report/{eventId}`, their latest held message.
    Event,
    /// Both: the user report, and their message for a user of another server.
    UserAndEvent,
    /// Neither: the homeserver has no user report and nothing of theirs is held.
    Nothing,
}

impl ReportVia {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportVia::User => "user",
            ReportVia::Event => "event",
            ReportVia::UserAndEvent => "user+event",
            ReportVia::Nothing => "nothing",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [ReportVia::User, ReportVia::Event, ReportVia::UserAndEvent, ReportVia::Nothing]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// What was found in the owner's invite filter (bounded by the connector to
/// [`MAX_FILTER_ENTRIES`]): exact user IDs and server names only; globs
/// stay the homeserver's business.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterSeen {
    /// It blocks every invite: `m.invite_permission_config` with
    /// `default_action: block`, or an MSC4155 block of `*`.
    pub blocks_all: bool,
    /// It is MSC4155's (unstable) filter that the homeserver reads: a
    /// stable `m.invite_permission_config` takes precedence over it.
    pub stable_present: bool,
    pub blocked: Vec<Subject>,
    pub allowed: Vec<Subject>,
    /// More entries were there than were read.
    pub truncated: bool,
}

/// Results of the effects above, and Gatekeeper's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NativeInput {
    /// Gatekeeper started, or the owner's invite filter changed: what it
    /// keeps in step for `owner` on the homeserver is put right.
    Refresh { owner: OwnedUserId },
    /// A report was made (or could not be).
    Reported { owner: OwnedUserId, user: OwnedUserId, via: ReportVia, seed: String },
    /// The owner's invite filter as it is now.
    InviteFilterRead { owner: OwnedUserId, seen: FilterSeen },
}

impl NativeInput {
    pub fn owner(&self) -> &OwnedUserId {
        match self {
            NativeInput::Refresh { owner }
            | NativeInput::Reported { owner, .. }
            | NativeInput::InviteFilterRead { owner, .. } => owner,
        }
    }

    /// Whether deciding it reads the owner's whole overview (their contacts).
    pub fn needs_overview(&self) -> bool {
        matches!(self, NativeInput::InviteFilterRead { .. })
    }
}

/// What Gatekeeper remembers of the owner's invite filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InviteFilter {
    /// Blocked entries the owner set there themselves (found at opt-in, or
    /// since, that are not Gatekeeper's): an unblock or `stop` never
    /// removes them. At most [`MAX_FILTER_ENTRIES`].
    pub hand: BTreeSet<Subject>,
    /// It blocked every invite when last read (the owner was told).
    pub blocks_all: bool,
    /// A stable `m.invite_permission_config` was there when last read (the
    /// owner was told that the homeserver then ignores the MSC4155 list
    /// Gatekeeper mirrors their blocks into).
    pub stable: bool,
}

/// Whether Gatekeeper can write `subject` into an MSC4155 list, whose
/// entries are globs: a user ID with a glob character in it would block
/// others too.
pub fn mirrorable(subject: &Subject) -> bool {
    match subject {
        Subject::User(u) => !u.as_str().contains(['*', '?']),
        Subject::Server(_) => true,
    }
}

/// The commands, as the MSC4332 event in the owner's control room: the bot
/// sends it in appservice mode (the owner's account lets it, if need be);
/// in client mode the owner's own account does.
pub(crate) fn publish_commands(owner: &OwnedUserId, room: &OwnedRoomId, config: &EngineConfig) -> Effect {
    let grant_as = (!config.client_mode).then(|| owner.clone());
    Effect::Native(NativeEffect::PutState {
        as_user: config.bot.clone(),
        grant_as,
        room_id: room.clone(),
        event_type: COMMANDS_EVENT_TYPE.into(),
        state_key: config.bot.to_string(),
        content: commands::discover::content().to_string(),
    })
}

/// What opt-in and every start do for an owner: the commands published,
/// the invite filter read.
pub(crate) fn refresh(d: Decision, owner: &OwnerState, config: &EngineConfig) -> Decision {
    d.effect(publish_commands(&owner.user_id, &owner.control_room, config))
        .effect(Effect::Native(NativeEffect::ReadInviteFilter { owner: owner.user_id.clone() }))
}

pub(crate) fn decide(snapshot: &Snapshot, input: &NativeInput, config: &EngineConfig) -> Decision {
    let Some(owner) = snapshot.owners.get(input.owner()) else { return Decision::default() };
    match input {
        NativeInput::Refresh { .. } => {
            // The control room's rule put again too: one from before it
            // took only messages would notify of the commands' event.
            let rule = (!config.client_mode).then(|| Effect::PutPushRule {
                owner: owner.user_id.clone(),
                rule: rules::control_room(
                    owner.control_room.as_str(),
                    &config.bot,
                    owner.notify.unwrap_or(crate::Notify::Quiet),
                ),
            });
            refresh(Decision { effects: rule.into_iter().collect(), ..Decision::default() }, owner, config)
        }
        NativeInput::Reported { user, via, seed, .. } => {
            let text = texts::reported(user, *via);
            Decision::default().effect(Effect::SendNotice {
                as_user: config.bot.clone(),
                room_id: owner.control_room.clone(),
                txn_id: txn_id_for(seed, "reported"),
                body: text.plain,
                html: text.html,
                digest: None,
                only_with: None,
                urgent: false,
            })
        }
        NativeInput::InviteFilterRead { seen, .. } => filter_read(snapshot, owner, seen, config),
    }
}

/// The owner's contacts, from the overview this input reads.
fn contacts(snapshot: &Snapshot) -> BTreeMap<Subject, Contact> {
    snapshot.overview.as_ref().map(|o| o.contacts.clone()).unwrap_or_default()
}

fn filter_read(snapshot: &Snapshot, owner: &OwnerState, seen: &FilterSeen, config: &EngineConfig) -> Decision {
    let o = &owner.user_id;
    let contacts = contacts(snapshot);
    let ours = |s: &Subject| matches!(contacts.get(s), Some(Contact::Blocked { .. }));
    let mut d = Decision::default();
    let seed = format!("{o}\0{}", owner.since_ms);
    let hand: BTreeSet<Subject> = match &owner.invite_filter {
        // First read, at opt-in: what is blocked or allowed there becomes
        // Gatekeeper's too, and stays the owner's own entry.
        None => {
            for subject in seen.blocked.iter().filter(|s| mirrorable(s) && !contacts.contains_key(*s)) {
                if *subject == Subject::User(o.clone()) {
                    continue;
                }
                d = d.change(StateChange::PutContact {
                    owner: o.clone(),
                    subject: subject.clone(),
                    contact: Contact::Blocked { since_ms: owner.since_ms },
                });
            }
            let allows = seen.allowed.iter().filter(|s| !contacts.contains_key(*s) && !seen.blocked.contains(s));
            for subject in allows.take(MAX_FILTER_ALLOWS) {
                d = d.effect(Effect::PutPushRule { owner: o.clone(), rule: rules::allow(o, subject) }).change(
                    StateChange::PutContact {
                        owner: o.clone(),
                        subject: subject.clone(),
                        contact: Contact::Allowed {
                            since_ms: owner.since_ms,
                            source: AllowSource::Imported,
                            until_ms: None,
                        },
                    },
                );
            }
            seen.blocked.iter().filter(|s| mirrorable(s)).take(MAX_FILTER_ENTRIES).cloned().collect()
        }
        // Later reads: what is there and not Gatekeeper's is the owner's.
        Some(before) => seen
            .blocked
            .iter()
            .filter(|s| before.hand.contains(*s) || !ours(s))
            .take(MAX_FILTER_ENTRIES)
            .cloned()
            .collect(),
    };
    // Every read puts the filter right: Gatekeeper's blocks from before
    // (a return after `stop`, an upgrade, an edit set aside) go in, and a
    // server block of Gatekeeper's that now has an allowed user goes out.
    let add: Vec<Subject> =
        contacts.keys().filter(|s| mirrored(&contacts, s) && !seen.blocked.contains(s)).cloned().collect();
    let remove: Vec<Subject> = seen
        .blocked
        .iter()
        .filter(|s| matches!(s, Subject::Server(_)) && ours(s) && !mirrored(&contacts, s) && !hand.contains(*s))
        .cloned()
        .collect();
    if !add.is_empty() || !remove.is_empty() {
        d = d.effect(Effect::Native(NativeEffect::EditInviteFilter { owner: o.clone(), add, remove }));
    }
    let tell = |text: texts::Text, purpose: &str| Effect::SendNotice {
        as_user: config.bot.clone(),
        room_id: owner.control_room.clone(),
        txn_id: txn_id_for(&seed, purpose),
        body: text.plain,
        html: text.html,
        digest: None,
        only_with: None,
        urgent: false,
    };
    let told = owner.invite_filter.as_ref().is_some_and(|f| f.blocks_all);
    if seen.blocks_all && !told {
        d = d.effect(tell(texts::invite_filter_blocks_all(), "filter-blocks-all"));
    }
    // A homeserver reads a stable filter before MSC4155's (Synapse ignores
    // the MSC4155 lists while it exists): the mirrored blocks are then not
    // enforced while Gatekeeper is down. Said once, not when every invite
    // is blocked anyway (told above).
    let stable_told = owner.invite_filter.as_ref().is_some_and(|f| f.stable);
    if seen.stable_present && !seen.blocks_all && !stable_told {
        d = d.effect(tell(texts::invite_filter_stable(), "filter-stable"));
    }
    let filter = InviteFilter { hand, blocks_all: seen.blocks_all, stable: seen.stable_present };
    if owner.invite_filter.as_ref() != Some(&filter) {
        d = d.change(StateChange::PutOwner(OwnerState { invite_filter: Some(filter), ..owner.clone() }));
    }
    d
}

/// Whether Gatekeeper keeps `subject` in the owner's invite filter, given
/// their contacts: a blocked user; a blocked server none of whose users
/// the owner allowed (the filter reads a server's block before Gatekeeper
/// does, so a user-level allow must keep beating it).
fn mirrored(contacts: &BTreeMap<Subject, Contact>, subject: &Subject) -> bool {
    let blocked = matches!(contacts.get(subject), Some(Contact::Blocked { .. }));
    blocked
        && mirrorable(subject)
        && match subject {
            Subject::User(_) => true,
            Subject::Server(server) => !contacts.iter().any(
                |(s, c)| matches!((s, c), (Subject::User(u), Contact::Allowed { .. }) if u.server_name() == server),
            ),
        }
}

/// What `stop` does to the invite filter: Gatekeeper's entries go, the
/// owner's own stay, so it is as it was before opt-in.
pub(crate) fn restore_filter(d: Decision, owner: &OwnerState, overview: &OwnerOverview) -> Decision {
    let Some(filter) = &owner.invite_filter else { return d };
    let remove: Vec<Subject> = overview
        .contacts
        .iter()
        .filter(|(s, c)| matches!(c, Contact::Blocked { .. }) && mirrorable(s) && !filter.hand.contains(*s))
        .map(|(s, _)| s.clone())
        .collect();
    if remove.is_empty() {
        return d;
    }
    d.effect(Effect::Native(NativeEffect::EditInviteFilter { owner: owner.user_id.clone(), add: Vec::new(), remove }))
}

/// The one place the owner's blocks reach the homeserver's invite filter:
/// every decision's contact changes (`block`, `unblock`, `undo`, `block
/// all`, e-mailed links, `report`, allows, an import) are compared with
/// what the snapshot had, and what Gatekeeper should keep in the filter
/// ([`mirrored`]) before and after is added or removed, for an owner whose
/// filter was read. An entry the owner set there by hand is never removed.
/// A server's entry depends on its users' allows too; where the decision
/// does not read the owner's overview (an expiry), only what it sees is
/// known, so a server's entry is then only ever taken out, and the next
/// read of the filter puts it back if it should be there.
pub(crate) fn mirror_blocks(snapshot: &Snapshot, mut d: Decision) -> Decision {
    let mut owners: BTreeMap<OwnedUserId, Option<OwnerState>> = BTreeMap::new();
    let mut changed: BTreeMap<OwnedUserId, Vec<(Subject, Option<Contact>)>> = BTreeMap::new();
    for change in &d.changes {
        match change {
            StateChange::PutContact { owner, subject, contact } => {
                changed.entry(owner.clone()).or_default().push((subject.clone(), Some(contact.clone())));
            }
            StateChange::RemoveContact { owner, subject } => {
                changed.entry(owner.clone()).or_default().push((subject.clone(), None));
            }
            StateChange::PutOwner(o) => {
                owners.insert(o.user_id.clone(), Some(o.clone()));
            }
            // An opt-out restores the filter itself (`restore_filter`).
            StateChange::RemoveOwner(o) | StateChange::ForgetOwnerData(o) => {
                owners.insert(o.clone(), None);
            }
            _ => {}
        }
    }
    let mut edits: BTreeMap<OwnedUserId, (Vec<Subject>, Vec<Subject>)> = BTreeMap::new();
    for (owner, changes) in changed {
        let state = match owners.get(&owner) {
            Some(state) => state.as_ref(),
            None => snapshot.owners.get(&owner),
        };
        let Some(filter) = state.and_then(|s| s.invite_filter.as_ref()) else { continue };
        // What is known of the owner's contacts: the overview (commands,
        // links, imports read it), and the point look-ups.
        let whole = snapshot.overview.is_some();
        let mut before: BTreeMap<Subject, Contact> =
            snapshot.overview.as_ref().map(|o| o.contacts.clone()).unwrap_or_default();
        for ((o, subject), contact) in &snapshot.contacts {
            if *o == owner {
                before.insert(subject.clone(), contact.clone());
            }
        }
        let mut after = before.clone();
        let mut touched: BTreeSet<Subject> = BTreeSet::new();
        for (subject, contact) in changes {
            if let Subject::User(u) = &subject {
                touched.insert(Subject::Server(u.server_name().to_owned()));
            }
            match contact {
                Some(c) => after.insert(subject.clone(), c),
                None => after.remove(&subject),
            };
            touched.insert(subject);
        }
        let edit = edits.entry(owner).or_default();
        for subject in touched {
            let (was, is) = (mirrored(&before, &subject), mirrored(&after, &subject));
            let partial = !whole && matches!(subject, Subject::Server(_));
            if is && !was && !partial {
                edit.0.push(subject);
            } else if was && !is && !filter.hand.contains(&subject) {
                edit.1.push(subject);
            }
        }
    }
    for (owner, (add, remove)) in edits {
        if add.is_empty() && remove.is_empty() {
            continue;
        }
        // One edit per owner per decision: joined to one already queued.
        let queued = d.effects.iter_mut().find_map(|e| match e {
            Effect::Native(NativeEffect::EditInviteFilter { owner: o, add, remove }) if *o == owner => {
                Some((add, remove))
            }
            _ => None,
        });
        match queued {
            Some((queued_add, queued_remove)) => {
                for s in add {
                    if !queued_add.contains(&s) {
                        queued_add.push(s);
                    }
                }
                for s in remove {
                    if !queued_remove.contains(&s) {
                        queued_remove.push(s);
                    }
                }
            }
            None => d.effects.push(Effect::Native(NativeEffect::EditInviteFilter { owner, add, remove })),
        }
    }
    d
}
