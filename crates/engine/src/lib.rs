//! The pure decision core: `decide(snapshot, input, now, config)` returns the
//! state changes and effects an input calls for. No I/O, no clock, no
//! randomness: the same arguments always give the same decision.

pub mod action;
pub mod commands;
mod control;
mod gate;
mod housekeeping;
pub mod input;
pub mod limits;
pub mod links;
pub mod mail;
pub mod native;
mod optin;
pub mod policy;
pub mod rules;
pub mod schedule;
pub mod state;
pub mod subject;
pub mod texts;
pub mod undo;
pub mod urgent;
pub mod waves;

use ruma::{OwnedEventId, OwnedRoomId, OwnedServerName, OwnedUserId, UserId};
use sha2::{Digest, Sha256};

pub use action::{DigestPart, Effect, Lane, Match, PushRule, RuleActions};
pub use input::{EventMeta, FailedStep, Input, Membership, Replacement};
pub use state::Notify;
pub use state::{
    AllowSource, Contact, Deferred, Due, DueDigest, DueReplies, HeldRoom, Kept, Media, OwnerOverview, OwnerState,
    PendingEmail, PendingEntry, RoomState, SharedRooms, Snapshot, Standing, StateChange, StrangerState, Tally, Undo,
    UndoKind, Unreadable, WaveKey, WaveKind, WaveRecord,
};
pub use subject::Subject;
use texts::Text;
/// The digest is words Gatekeeper says; it lives with them.
pub use texts::digest;

/// What the engine needs to know about the deployment.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub bot: OwnedUserId,
    /// The bot's display name (appservice mode), which a command may
    /// start with as a mention: `Gatekeeper: pending`.
    pub bot_name: Option<String>,
    pub server_name: OwnedServerName,
    /// Users who may opt in; must match the whole user ID.
    pub users: regex::Regex,
    /// At most one etiquette reply per stranger per owner in this period.
    pub reply_interval_ms: u64,
    /// At most this many etiquette replies per owner per hour.
    pub max_replies_per_hour: u32,
    /// People the owner invites are allowed from then on.
    pub auto_allow_owner_started: bool,
    /// Tell a sender when the owner allows them.
    pub notify_allowed: bool,
    /// How long captured messages are kept by default.
    pub retention_ms: u64,
    /// Set when e-mail is set up: the key verification codes are derived
    /// from (so the engine stays deterministic without being guessable).
    pub mail_secret: Option<gatekeeper_common::Secret>,
    /// Set when e-mails may carry one-click links (a public URL is known).
    pub mail_links: Option<MailLinks>,
    /// What one stranger (and all of them together) may make Gatekeeper keep.
    pub bounds: Bounds,
    /// Client mode: Gatekeeper is a device of the one owner's own account.
    /// `bot` is then the owner: Gatekeeper speaks as them, their own
    /// events are theirs (not echoes), and nobody opts in by invitation.
    pub client_mode: bool,
    /// A sender who invites this many owners within the wave window is a
    /// wave: no automatic reply, grouped in the digest.
    pub wave_owners_per_sender: u32,
    /// This many new senders from one server (not the owners' own) within
    /// the wave window are a wave.
    pub wave_senders_per_server: u32,
}

/// How much strangers may make Gatekeeper keep for one owner. Past a bound,
/// further invitations stay silent and unjoined and further messages are
/// counted, not stored: what a stranger sends can cost the owner a line in
/// the digest, never memory, disk, push rules or joins without limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Held rooms per stranger per owner.
    pub held_rooms_per_stranger: u64,
    /// Held rooms per owner, all strangers together.
    pub held_rooms_per_owner: u64,
    /// Messages kept per stranger per owner.
    pub messages_per_stranger: u64,
    /// Messages kept per owner, all strangers together (a group room of
    /// many made-up senders).
    pub messages_per_owner: u64,
    /// Bytes of one kept message's text; longer ones are trimmed with a note.
    pub message_bytes: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            held_rooms_per_stranger: 5,
            held_rooms_per_owner: 1_000,
            messages_per_stranger: 1_000,
            messages_per_owner: 20_000,
            message_bytes: 16_384,
        }
    }
}

#[derive(Debug, Clone)]
pub struct MailLinks {
    /// Where Gatekeeper's web pages are reachable, without a trailing slash.
    pub public_url: String,
    pub lifetime_ms: u64,
}

impl EngineConfig {
    /// A deployment on `example.org` with the documented defaults (everyone
    /// there may opt in), for tests, benches and fuzzing.
    pub fn example() -> Self {
        EngineConfig {
            bot: "@gatekeeper:example.org".try_into().expect("a valid user ID"),
            bot_name: Some("Gatekeeper".into()),
            server_name: "example.org".try_into().expect("a valid server name"),
            users: regex::Regex::new("^(?:@.*:example\\.org)$").expect("a valid regex"),
            reply_interval_ms: 7 * 24 * 3_600_000,
            max_replies_per_hour: 20,
            auto_allow_owner_started: true,
            notify_allowed: false,
            retention_ms: 30 * 86_400_000,
            mail_secret: None,
            mail_links: None,
            bounds: Bounds::default(),
            client_mode: false,
            wave_owners_per_sender: 3,
            wave_senders_per_server: 20,
        }
    }

    pub fn may_opt_in(&self, user: &UserId) -> bool {
        !self.client_mode
            && user.server_name() == self.server_name
            && user != self.bot
            && self.users.is_match(user.as_str())
    }
}

/// The outcome of one input: applied and enqueued atomically by the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub changes: Vec<StateChange>,
    pub effects: Vec<Effect>,
    /// What the decision amounted to, said by the rule that made it, so
    /// that nothing outside the engine re-derives it (metrics count these).
    pub outcomes: Vec<Outcome>,
}

/// Something a rule did that operators count. Never read back to decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A stranger's invite is held for an owner.
    InviteHeld,
    /// A stranger's message (or one that could not be decrypted) is kept.
    MessageCaptured,
    /// The etiquette reply is queued.
    ReplySent,
    /// A reply was due (a held DM not yet answered) but a limit held it
    /// back: the per-stranger interval or the owner's hourly cap.
    ReplySuppressed,
    /// A digest is queued as this many notices in the control room.
    DigestSent { notices: usize },
    /// A stranger's invite was left silent and unjoined, only counted: the
    /// held rooms allowed per stranger or per owner were reached.
    InviteNotHeld,
    /// A stranger's message was counted, not stored: the messages kept per
    /// stranger or per owner were reached.
    MessageNotKept,
    /// A reply was due but the sender is part of a wave: none is sent, ever.
    ReplySuppressedWave,
    /// An invite made its sender part of a wave (or came from one).
    WaveInvite,
    /// A reply the hourly cap held back is queued now that the budget allows.
    ReplySentLate,
    /// A stranger's urgent message is passed on to the owner at once.
    UrgentSent,
    /// A stranger's invitation was declined (or left silent) because a
    /// followed ban list names them.
    InviteBanned,
}

impl Decision {
    fn change(mut self, c: StateChange) -> Self {
        self.changes.push(c);
        self
    }
    fn effect(mut self, e: Effect) -> Self {
        self.effects.push(e);
        self
    }
    fn outcome(mut self, o: Outcome) -> Self {
        self.outcomes.push(o);
        self
    }

    /// Neither changes state nor does anything (outcomes aside).
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.effects.is_empty()
    }
}

/// What deciding an input reads from the store, declared here beside the
/// rules so that the processor asks and never guesses: point look-ups
/// first, then (see [`overview_read`]) an owner's whole overview.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reads {
    /// The room's state (control room, held room).
    pub room: Option<OwnedRoomId>,
    /// Owner records of these users (and of the room's owner), and the
    /// contact and stranger entries between them.
    pub users: Vec<OwnedUserId>,
    /// The captured message an edit, redaction or repeat refers to.
    pub related: Option<OwnedEventId>,
    /// Everything due now: expired allows, ended pauses (no digests, no
    /// owed replies: those come one owner at a time, see `due_of`).
    pub due: bool,
    /// This owner's time-driven work, with their overview (in
    /// `Snapshot::due`): replies owed whose budget is back, then the
    /// scheduled digest if due. One owner's at a time.
    pub due_of: Option<OwnedUserId>,
    /// The sender whose wave records (their own, and their server's) an
    /// invite or a stranger's message is decided with.
    pub waves: Option<OwnedUserId>,
    /// The records of verification codes mailed that `set email` is
    /// decided with: to that address, and by its sender.
    pub codes: Vec<WaveKey>,
}

/// The point look-ups an input needs, from the input alone.
pub fn reads(input: &Input) -> Reads {
    Reads {
        room: input.room_id().cloned(),
        users: input.users(),
        related: input.related_event().cloned(),
        due: matches!(input, Input::Tick),
        due_of: match input {
            Input::OwnerDue { owner } => Some(owner.clone()),
            _ => None,
        },
        waves: waves::reads(input),
        codes: commands::codes_read(input),
    }
}

/// The policy lists an input is decided with, and which of their rules,
/// once the point look-ups and the overview are in `snapshot`: for an
/// invitation to an owner who has not decided about the sender
/// themselves, the rules of theirs (`lists`) and of the operator's
/// (`operator`) that could name the sender; for an owner's pending check,
/// those that could name any of their pending strangers; for a rule
/// event, its slot; for a re-read, every rule (they are replaced); for an
/// owner's list commands, the lists' records only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyRead {
    pub lists: Vec<OwnedRoomId>,
    pub operator: bool,
    pub rules: policy::RulesRead,
    /// Rules are read only of lists changed after this (their records are
    /// read all the same).
    pub changed_after: Option<u64>,
}

pub fn policy_read(snapshot: &Snapshot, input: &Input, now_ms: u64) -> PolicyRead {
    let of = |owner: &OwnerState, rules| PolicyRead {
        lists: owner.policy_lists.clone(),
        operator: true,
        rules,
        changed_after: None,
    };
    let owner_of = |o: Option<&OwnedUserId>| o.and_then(|o| snapshot.owners.get(o));
    match input {
        Input::Member { meta, target, membership: Membership::Invite, .. } => match snapshot.owners.get(target) {
            // The owner's own allow or block decides before any list.
            Some(o) if snapshot.standing(&o.user_id, &meta.sender, now_ms) == Standing::Stranger => {
                of(o, policy::RulesRead::Naming(policy::names(&meta.sender, Some(&meta.room_id))))
            }
            _ => PolicyRead::default(),
        },
        // The strangers of this page, against the lists changed since the
        // owner's last check (the others' rules are not read).
        Input::CheckPending { owner } => match (snapshot.owners.get(owner), &snapshot.overview) {
            (Some(o), Some(overview)) => {
                let (page, _) = policy::check_page(o, overview);
                let mut names: Vec<String> =
                    page.iter().flat_map(|(room, h)| policy::names(&h.inviter, Some(room))).collect();
                names.sort();
                names.dedup();
                PolicyRead { changed_after: Some(o.lists_checked_ms), ..of(o, policy::RulesRead::Naming(names)) }
            }
            _ => PolicyRead::default(),
        },
        Input::PolicyRule { meta, rule } => PolicyRead {
            lists: vec![meta.room_id.clone()],
            rules: policy::RulesRead::Slot(rule.slot()),
            ..Default::default()
        },
        Input::ListRead { room_id: Some(room), .. } => {
            PolicyRead { lists: vec![room.clone()], rules: policy::RulesRead::All, ..Default::default() }
        }
        Input::OperatorLists { .. } => PolicyRead { operator: true, ..Default::default() },
        // Only the commands about lists read them (a list may be large),
        // and leaving the control room, which stops Gatekeeper as `stop` does.
        Input::Message { body, .. } if commands::reads_lists(body) => {
            owner_of(snapshot.control_of()).map(|o| of(o, policy::RulesRead::None)).unwrap_or_default()
        }
        Input::Member { membership: Membership::Leave | Membership::Ban, .. } => {
            owner_of(snapshot.control_of()).map(|o| of(o, policy::RulesRead::None)).unwrap_or_default()
        }
        _ => PolicyRead::default(),
    }
}

/// Whose whole overview (contacts, held rooms, captured messages) the rule
/// for `input` reads, once the point look-ups are in `snapshot`: the owner
/// commanding in their control room (commands, opt-out), confirming an
/// e-mailed link, or answering in a held room (which releases it with its
/// messages). Every other rule decides from the point look-ups alone. A
/// test decides a corpus of inputs both with these reads and with every
/// overview loaded, and finds the same decisions.
pub fn overview_read(snapshot: &Snapshot, input: &Input) -> Option<OwnedUserId> {
    match input {
        Input::ListRead { owner: Some(owner), .. }
        | Input::CheckPending { owner, .. }
        | Input::ListCreated { owner, .. } => Some(owner.clone()),
        Input::LinkUsed { owner, .. }
        | Input::DigestPartFailed { owner, .. }
        | Input::ContactsImported { owner, .. } => Some(owner.clone()),
        Input::Native(native) if native.needs_overview() => Some(native.owner().clone()),
        Input::Native(_) => None,
        // An owner answering in a room held for them (which may be another
        // owner's control room: a room is held for each owner apart).
        Input::Message { meta, .. } if snapshot.held_for(&meta.sender).is_some() => Some(meta.sender.clone()),
        _ => snapshot.control_of().cloned(),
    }
}

/// A client transaction ID that is the same every time the same event is
/// decided again (after a crash or a replay), so a repeated send is
/// recognised as one.
pub fn txn_id(meta: &EventMeta, purpose: &str) -> String {
    let mut h = Sha256::new();
    h.update(meta.event_id.as_bytes());
    h.update([0]);
    h.update(purpose.as_bytes());
    let digest = h.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("gk.{purpose}.{hex}")
}

/// [`txn_id`] for decisions without a triggering event (housekeeping).
pub fn txn_id_for(seed: &str, purpose: &str) -> String {
    let digest = Sha256::digest(format!("{seed}\0{purpose}").as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("gk.{purpose}.{hex}")
}

pub fn decide(snapshot: &Snapshot, input: &Input, now_ms: u64, config: &EngineConfig) -> Decision {
    let d = policy::keep_shared(snapshot, decide_input(snapshot, input, now_ms, config), config);
    let d = policy::forget_owner(snapshot, d);
    // Last: the invite filter mirrors every change of blocks, a list's own
    // included.
    fit_notices(native::mirror_blocks(snapshot, d), config.client_mode)
}

/// Every notice leaves the engine small enough for one event: a send the
/// homeserver refuses for size fails for good and the owner hears nothing.
/// Renderers of unbounded data page themselves; this only catches what the
/// owner's own text can blow up (see `texts::fitted`).
fn fit_notices(mut d: Decision, client_mode: bool) -> Decision {
    for effect in &mut d.effects {
        if let Effect::SendNotice { body, html, .. } = effect
            && !limits::fits(body, html, client_mode)
        {
            let text = texts::fitted(Text { plain: std::mem::take(body), html: std::mem::take(html) }, client_mode);
            (*body, *html) = (text.plain, text.html);
        }
    }
    d
}

fn decide_input(snapshot: &Snapshot, input: &Input, now_ms: u64, config: &EngineConfig) -> Decision {
    match input {
        Input::ProfileFetched { user, displayname } => optin::profile_fetched(snapshot, user, displayname),
        Input::ContactsImported { owner, users, strangers } => {
            optin::contacts_imported(snapshot, owner, users, strangers, now_ms, config)
        }
        Input::RoomInfo { owner, room_id, name, members } => gate::room_info(snapshot, owner, room_id, name, *members),
        Input::SharedRooms { owner, room_id, names, count, complete } => {
            gate::shared_rooms(snapshot, owner, room_id, names, *count, *complete)
        }
        Input::NotTwoPeople { owner, room_id, members } => gate::not_two_people(snapshot, owner, room_id, *members),
        Input::Tick => housekeeping::tick(snapshot, now_ms, config),
        Input::Native(native) => native::decide(snapshot, native, config),
        Input::OwnerDue { owner } => housekeeping::owner_due(snapshot, owner, now_ms, config),
        Input::ControlRoomReady { owner, room_id } => {
            optin::control_room_ready(snapshot, owner, room_id, now_ms, config)
        }
        Input::MailFailed { owner, to, reason } => housekeeping::mail_failed(snapshot, owner, to, reason, config),
        Input::EffectFailed { room_id, owner, step, no_answer, .. } => {
            gate::effect_failed(snapshot, room_id, owner.as_ref(), *step, *no_answer)
        }
        Input::DigestPartFailed { messages, invites, .. } => {
            housekeeping::digest_part_failed(snapshot, messages, invites)
        }
        Input::LinkUsed { owner, action, subject, nonce } => {
            control::link_used(snapshot, owner, *action, subject.as_ref(), nonce, now_ms, config)
        }
        Input::PolicyRule { meta, rule } => policy::rule_event(snapshot, meta, rule, now_ms),
        Input::ListRead { owner, asked, room_id, rules, error, read_ms } => {
            let read = policy::Read { owner: owner.as_ref(), asked, rules, read_ms: *read_ms };
            match (room_id, error) {
                (Some(room), None) => policy::list_read(snapshot, read, room, None, now_ms, config),
                (_, why) => {
                    let why = why.as_deref().unwrap_or("no room");
                    let room: OwnedRoomId =
                        room_id.clone().unwrap_or_else(|| "!unknown:invalid".try_into().expect("valid"));
                    policy::list_read(snapshot, policy::Read { rules: &[], ..read }, &room, Some(why), now_ms, config)
                }
            }
        }
        Input::CheckPending { owner } => policy::check_pending(snapshot, owner, now_ms),
        Input::OperatorLists { names } => policy::operator_lists(snapshot, names),
        Input::ListCreated { owner, room_id } => policy::list_created(snapshot, owner, room_id, now_ms, config),
        Input::Member { meta, .. }
        | Input::Message { meta, .. }
        | Input::Encrypted { meta }
        | Input::Redaction { meta, .. }
            if meta.sender == config.bot && !config.client_mode =>
        {
            // The bot's own join is how an opt-in completes; everything else
            // it sends is an echo of our own effects.
            match input {
                Input::Member { target, membership: Membership::Join, .. } if *target == config.bot => {
                    optin::bot_joined(snapshot, meta, now_ms, config)
                }
                _ => Decision::default(),
            }
        }
        Input::Member { meta, target, membership, is_direct, reason, room_name, sender_name, .. } => {
            if *target == config.bot && !config.client_mode {
                return optin::bot_membership(snapshot, meta, membership, *is_direct, now_ms, config);
            }
            match membership {
                Membership::Invite => {
                    if let Some(owner) = snapshot.owners.get(target) {
                        let names = (room_name.clone(), sender_name.clone());
                        gate::invite(snapshot, meta, owner, *is_direct, reason, &names, now_ms, config)
                    } else if let Some(owner) = snapshot.owners.get(&meta.sender) {
                        gate::owner_invited(snapshot, owner, target, now_ms, config)
                    } else if !config.client_mode
                        && target.server_name() == config.server_name
                        && *target != meta.sender
                        && *target != config.bot
                    {
                        // The appservice sees every invite here: the
                        // inviter's card counts the people they invited.
                        let changes = waves::observe_other_invite(snapshot, &meta.sender, target, now_ms);
                        Decision { changes, ..Decision::default() }
                    } else {
                        Decision::default()
                    }
                }
                Membership::Leave | Membership::Ban => optin::member_left(snapshot, meta, target, config),
                _ => Decision::default(),
            }
        }
        Input::Message { meta, msgtype, body, html, media, replaces } => {
            let d = match snapshot.control_of() {
                Some(owner) => control::command(snapshot, meta, owner, msgtype, body, now_ms, config),
                None => Decision::default(),
            };
            for_each_holder(snapshot, d, |s, held| {
                if meta.sender == held.owner && msgtype != "m.notice" {
                    gate::owner_wrote(s, meta, held, now_ms, config)
                } else {
                    gate::message(s, meta, held, msgtype, body, html, media, replaces, now_ms, config)
                }
            })
        }
        Input::Encrypted { meta } => {
            for_each_holder(snapshot, Decision::default(), |s, held| gate::encrypted(s, meta, held, now_ms, config))
        }
        Input::Redaction { meta, redacts } => {
            for_each_holder(snapshot, Decision::default(), |s, held| gate::redaction(s, meta, held, redacts))
        }
    }
}

/// Decides an event in a room for each owner who holds it, one after the
/// other: each step reads what the earlier ones changed (the sender's wave
/// records, a shared stranger), and each owner's capture is their own.
fn for_each_holder(
    snapshot: &Snapshot,
    mut d: Decision,
    mut decide: impl FnMut(&Snapshot, &HeldRoom) -> Decision,
) -> Decision {
    let owners: Vec<OwnedUserId> = snapshot.held().map(|h| h.owner.clone()).collect();
    for owner in owners {
        let s = snapshot.after(&d.changes);
        let Some(held) = s.held_for(&owner) else { continue };
        let next = decide(&s, held);
        d.changes.extend(next.changes);
        d.effects.extend(next.effects);
        d.outcomes.extend(next.outcomes);
    }
    d
}

/// A held room becomes a normal room again: its silence and low-priority
/// tag go, and Gatekeeper forgets holding it.
/// A room the owner is in already is held (again): silenced first, then
/// tagged low priority, in the room's lane.
fn hold_joined(d: Decision, owner: &OwnedUserId, room: &OwnedRoomId) -> Decision {
    d.effect(Effect::PutPushRule { owner: owner.clone(), rule: rules::held_room(room.as_str()) }).effect(
        Effect::SetTag { owner: owner.clone(), room_id: room.clone(), tag: "m.lowpriority".into(), present: true },
    )
}

fn release(d: Decision, owner: &OwnedUserId, room: &OwnedRoomId) -> Decision {
    d.effect(unsilence(owner, room))
        .effect(Effect::SetTag {
            owner: owner.clone(),
            room_id: room.clone(),
            tag: "m.lowpriority".into(),
            present: false,
        })
        .change(StateChange::RemoveRoom { room: room.clone(), owner: owner.clone() })
}

/// Removes a held room's silence, in that room's lane.
fn unsilence(owner: &OwnedUserId, room: &OwnedRoomId) -> Effect {
    Effect::DeletePushRule {
        owner: owner.clone(),
        rule_id: rules::held_room_id(room.as_str()),
        room: Some(room.clone()),
    }
}

fn notice(as_user: &OwnedUserId, room: &OwnedRoomId, meta: &EventMeta, purpose: &str, text: Text) -> Effect {
    Effect::SendNotice {
        as_user: as_user.clone(),
        room_id: room.clone(),
        txn_id: txn_id(meta, purpose),
        body: text.plain,
        html: text.html,
        digest: None,
        only_with: None,
        urgent: false,
    }
}

/// Fixtures shared by the engine's tests and the pipeline's, which live in
/// another crate (so this cannot be `cfg(test)`).
#[doc(hidden)]
pub mod tests_support {
    use super::EngineConfig;

    /// The example deployment, with the engine tests' reply cap.
    pub fn config() -> EngineConfig {
        EngineConfig { max_replies_per_hour: 3, ..EngineConfig::example() }
    }
}

#[cfg(test)]
mod tests;
