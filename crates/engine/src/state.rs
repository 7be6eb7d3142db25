//! The stored state the engine reads, and the changes to it that the engine
//! decides. The store persists these; the engine never touches storage.

use std::collections::BTreeMap;

use ruma::{OwnedEventId, OwnedRoomId, OwnedServerName, OwnedUserId, UserId};

use super::subject::Subject;

/// A user who opted in, and the DM with the bot where they give commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerState {
    pub user_id: OwnedUserId,
    pub control_room: OwnedRoomId,
    pub since_ms: u64,
    /// The owner's display name, for the etiquette reply.
    pub displayname: Option<String>,
    /// The owner's own etiquette reply text; `None` uses the default.
    pub reply_template: Option<String>,
    /// The digest address: where digests are mailed. Always one the owner
    /// confirmed with a mailed code; never shown to anyone.
    pub email: Option<String>,
    /// What the owner chose to show strangers in the automatic reply
    /// (`{contact}`): an address or a short text. None by default.
    pub contact: Option<String>,
    /// An address kept from before the two were separate, when it is not
    /// known to have been confirmed: neither mailed nor shown, only
    /// offered back in `settings`.
    pub email_unconfirmed: Option<String>,
    /// An address waiting for its verification code.
    pub email_pending: Option<PendingEmail>,
    /// How Gatekeeper's messages in the control room (digests) notify;
    /// `None` is the default, one quiet notification.
    pub notify: Option<Notify>,
    /// Send a one-line "nothing new" when a scheduled digest is empty.
    pub digest_when_empty: bool,
    /// Start of the current hour of the reply cap, and replies sent in it.
    pub reply_window_start_ms: u64,
    pub replies_in_window: u32,
    /// The numbered list the owner saw last (`pending`), for `allow 2`.
    pub last_list: Vec<Subject>,
    /// Holding is paused until then (`u64::MAX`: until `resume`).
    pub paused_until_ms: Option<u64>,
    /// The owner's own settings; `None` uses the deployment's default.
    pub reply_interval_ms: Option<u64>,
    pub timezone: Option<String>,
    /// Minutes after local midnight.
    pub digest_minute: Option<u16>,
    pub retention_ms: Option<u64>,
    /// The last scheduled digest slot handled (sent, or empty and skipped).
    pub digest_last_slot_ms: Option<u64>,
    /// When the last digest went out (scheduled or asked for).
    pub digest_last_sent_ms: Option<u64>,
    /// Invitations not held because the owner had the most held rooms
    /// allowed: left silent and unjoined, only counted.
    pub invites_not_held: Tally,
    /// Messages not kept because the owner had the most kept messages
    /// allowed, from senders with nothing else kept: only counted.
    pub messages_not_kept: Tally,
    /// When verification codes were mailed, as kept before the limits were
    /// kept apart from the owner (`WaveKey::CodesBy`, `WaveKey::CodesTo`):
    /// still read, emptied by the next code.
    pub codes_mailed: Vec<u64>,
    /// Some held DM's etiquette reply was held back by the hourly cap and
    /// is still owed: the tick after the hour looks at this owner's rooms
    /// (and only then), and sends what the budget allows, oldest first.
    pub replies_owed: bool,
    /// A stranger's message starting with `urgent:` reaches the owner at
    /// once (`set urgent on`); off by default.
    pub urgent: bool,
    /// At most one urgent message per stranger in this period (`None`: 30
    /// days), and at most this many per day (`None`: 3).
    pub urgent_per_sender_ms: Option<u64>,
    pub urgent_per_day: Option<u32>,
    /// When urgent messages went through in the last day: at most
    /// [`crate::urgent::MAX_PER_DAY`] entries.
    pub urgent_sent: Vec<u64>,
    /// The owner's recent decisions, oldest first, for `undo`: at most
    /// [`crate::undo::MAX_HISTORY`], none older than a day.
    pub undo: Vec<Undo>,
    /// The owner's invite filter on the homeserver (MSC4155), once read:
    /// `None` until the first read, at opt-in.
    pub invite_filter: Option<crate::native::InviteFilter>,
    /// The policy lists (ban lists) the owner follows, by room: at most
    /// [`crate::policy::MAX_LISTS_PER_OWNER`]. The operator's come on top.
    pub policy_lists: Vec<OwnedRoomId>,
    /// Invitations declined (or left silent) because a followed list bans
    /// their sender, for the digest.
    pub banned: Tally,
    /// The senders declined so, newest last, at most
    /// [`crate::policy::MAX_RECENT`] (`show banned`).
    pub banned_recent: Vec<(OwnedUserId, u64)>,
    /// `set banned ignore`: a banned sender's invitation is left as it is
    /// (silent, never joined) rather than declined.
    pub banned_ignore: bool,
    /// `share blocks`: the policy room the owner's blocks are published in.
    pub shared_list: Option<OwnedRoomId>,
    /// When the owner's pending strangers were last checked against their
    /// lists (see [`crate::policy::check_due`]).
    pub lists_checked_ms: u64,
    /// A pending check under way stopped after this held room, and the
    /// lists' mark when it began (see [`crate::policy::check_page`]).
    pub lists_check_from: Option<(OwnedRoomId, u64)>,
}

/// Which decision an [`Undo`] reverts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UndoKind {
    Allow,
    Deny,
    Block,
}

impl UndoKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UndoKind::Allow => "allow",
            UndoKind::Deny => "deny",
            UndoKind::Block => "block",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [UndoKind::Allow, UndoKind::Deny, UndoKind::Block].into_iter().find(|k| k.as_str() == s)
    }
}

/// One decision of the owner's, with what it changed, so that `undo` can
/// put it back: the contact entries before it, and the rooms an allow
/// released (a deny's or block's messages are kept a day, marked with
/// `at_ms`, see [`Deferred::denied_ms`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undo {
    pub at_ms: u64,
    pub kind: UndoKind,
    /// Each subject decided on, and its contact entry before.
    pub subjects: Vec<(Subject, Option<Contact>)>,
    /// The rooms an allow released, as they were held.
    pub rooms: Vec<(OwnedRoomId, HeldRoom)>,
    /// The one-click link that made the decision, if one did.
    pub link: Option<String>,
}

/// Something counted rather than kept: how many in all, and how many of
/// those a digest has reported already.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub total: u32,
    pub reported: u32,
}

impl Tally {
    pub fn bump(self) -> Self {
        Tally { total: self.total.saturating_add(1), ..self }
    }

    /// Counted since the last digest.
    pub fn unreported(self) -> u32 {
        self.total.saturating_sub(self.reported)
    }

    pub fn all_reported(self) -> Self {
        Tally { reported: self.total, ..self }
    }
}

impl OwnerState {
    pub fn new(user_id: OwnedUserId, control_room: OwnedRoomId, since_ms: u64) -> Self {
        Self {
            user_id,
            control_room,
            since_ms,
            displayname: None,
            reply_template: None,
            email: None,
            contact: None,
            email_unconfirmed: None,
            email_pending: None,
            notify: None,
            digest_when_empty: false,
            reply_window_start_ms: 0,
            replies_in_window: 0,
            last_list: Vec::new(),
            paused_until_ms: None,
            reply_interval_ms: None,
            timezone: None,
            digest_minute: None,
            retention_ms: None,
            digest_last_slot_ms: None,
            digest_last_sent_ms: None,
            invites_not_held: Tally::default(),
            messages_not_kept: Tally::default(),
            codes_mailed: Vec::new(),
            replies_owed: false,
            urgent: false,
            urgent_per_sender_ms: None,
            urgent_per_day: None,
            urgent_sent: Vec::new(),
            undo: Vec::new(),
            invite_filter: None,
            policy_lists: Vec::new(),
            banned: Tally::default(),
            banned_recent: Vec::new(),
            banned_ignore: false,
            shared_list: None,
            lists_checked_ms: 0,
            lists_check_from: None,
        }
    }

    pub fn is_paused(&self, now_ms: u64) -> bool {
        self.paused_until_ms.is_some_and(|until| until > now_ms)
    }
}

/// How the control room's messages (digests above all) reach the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notify {
    /// A notification without sound (the default).
    Quiet,
    /// A notification with sound, like any direct message.
    Sound,
    /// No notification; read it when you look.
    Off,
}

impl Notify {
    pub fn as_str(self) -> &'static str {
        match self {
            Notify::Quiet => "quiet",
            Notify::Sound => "sound",
            Notify::Off => "off",
        }
    }
}

impl std::str::FromStr for Notify {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "quiet" => Ok(Notify::Quiet),
            "sound" => Ok(Notify::Sound),
            "off" => Ok(Notify::Off),
            _ => Err(crate::texts::not_a_notify_mode(s)),
        }
    }
}

/// An address the owner gave, until they type the code mailed to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEmail {
    pub address: String,
    pub code: String,
    pub expires_ms: u64,
    pub attempts: u32,
}

/// A room a stranger invited an owner to, kept quiet until the owner decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRoom {
    pub owner: OwnedUserId,
    pub inviter: OwnedUserId,
    /// The inviter's display name as they set it: never trusted, always
    /// shown next to their user ID.
    pub inviter_name: Option<String>,
    /// A direct chat (`is_direct`), as opposed to a group room.
    pub is_dm: bool,
    pub invited_at_ms: u64,
    pub name: Option<String>,
    pub members: Option<u32>,
    pub reason: Option<String>,
    /// The etiquette reply for this invite was sent (never twice per invite).
    pub replied: bool,
    /// The invite itself was in a digest already.
    pub digested: bool,
    /// Why Gatekeeper could not read the room, if it gave up: the owner
    /// still decides on the invite, from what the invite said.
    pub unreadable: Option<Unreadable>,
    /// The inviter was part of a wave: they never get an automatic reply,
    /// and the digest groups them.
    pub wave: Option<WaveKind>,
    /// When the etiquette reply was held back by the owner's hourly cap;
    /// it is sent later, oldest first, when the budget allows.
    pub reply_owed_ms: Option<u64>,
    /// The inviter's first line after the etiquette reply (which asked for
    /// one), one line and bounded (`texts::subject_line`): the subject
    /// when the invite gave no reason.
    pub said: Option<String>,
    /// Appservice mode: how many people on this server the inviter had
    /// invited in the day up to this invite (see `waves`), for the card.
    pub invited_here: Option<u32>,
    /// The rooms the inviter shares with the owner, looked up once when
    /// they were first held, for the card.
    pub shared: Option<SharedRooms>,
}

/// The rooms an inviter is in with the owner, Gatekeeper's held rooms
/// apart: someone the owner already meets somewhere is less of a stranger,
/// and someone who shares nothing while claiming to know them is worth a
/// second look.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SharedRooms {
    /// Up to three of their names, flattened for showing (`texts::card`);
    /// a room without a name is shown as such.
    pub names: Vec<String>,
    /// How many were found in all.
    pub count: u32,
    /// Whether every room of the owner's was looked at: when the owner is
    /// in more rooms than one look-up reads, `count` is a lower bound.
    pub complete: bool,
}

/// Why an inviter counts as part of a wave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WaveKind {
    /// They invited several owners within the wave window.
    Sender,
    /// They are one of many new senders from their server within the window.
    Server,
}

impl WaveKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WaveKind::Sender => "sender",
            WaveKind::Server => "server",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [WaveKind::Sender, WaveKind::Server].into_iter().find(|k| k.as_str() == s)
    }
}

/// Whose recent invitations a [`WaveRecord`] counts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WaveKey {
    /// The owners one sender invited.
    Sender(OwnedUserId),
    /// The new senders seen from one server.
    Server(OwnedServerName),
    /// Verification codes mailed to one address (lower-cased), for any
    /// owner: many accounts cannot take turns mailing one inbox.
    CodesTo(String),
    /// Verification codes one user had mailed: kept apart from their owner
    /// record, so that `stop` and opting in again does not reset the limit.
    CodesBy(OwnedUserId),
}

/// Recent invitations of one sender (the owners they invited) or from one
/// server (the new senders seen from it). Bounded: at most the threshold of
/// entries, all within the wave window; a record past `expires_ms` is dead
/// and pruned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WaveRecord {
    /// Who was seen and when, oldest first, distinct users.
    pub seen: Vec<(OwnedUserId, u64)>,
    /// When the threshold was last reached: a wave, remembered for a while.
    pub wave_ms: Option<u64>,
    /// After this, the record says nothing any more.
    pub expires_ms: u64,
    /// A sender's record: everyone on this server they invited in the last
    /// day (owners or not), oldest first, distinct, at most
    /// [`crate::waves::DAY_CAP`]: the card's "invited 37 people here".
    pub day: Vec<(OwnedUserId, u64)>,
}

/// Why a held room could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// Joining kept failing until the retry bound ran out: the room's
    /// server does not answer.
    NoAnswer,
    /// The homeserver refused the join for good.
    Refused,
    /// Its silence could not be set, so it was not joined.
    NotSilenced,
}

impl Unreadable {
    pub fn as_str(self) -> &'static str {
        match self {
            Unreadable::NoAnswer => "no_answer",
            Unreadable::Refused => "refused",
            Unreadable::NotSilenced => "not_silenced",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Unreadable::NoAnswer, Unreadable::Refused, Unreadable::NotSilenced].into_iter().find(|u| u.as_str() == s)
    }
}

impl HeldRoom {
    /// A room `inviter` invited `owner` to, not yet answered or digested,
    /// with nothing known of it beyond the invite.
    pub fn new(owner: OwnedUserId, inviter: OwnedUserId, is_dm: bool, invited_at_ms: u64) -> Self {
        Self {
            owner,
            inviter,
            inviter_name: None,
            is_dm,
            invited_at_ms,
            name: None,
            members: None,
            reason: None,
            replied: false,
            digested: false,
            unreadable: None,
            wave: None,
            reply_owed_ms: None,
            said: None,
            invited_here: None,
            shared: None,
        }
    }
}

/// What a room is to Gatekeeper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomState {
    /// A user invited the bot to a DM; it becomes their control room once
    /// the bot's join comes back from the homeserver.
    PendingControl { inviter: OwnedUserId, invited_at_ms: u64 },
    /// An owner's control room.
    Control { owner: OwnedUserId },
    /// A stranger's room, held for its owner.
    Held(HeldRoom),
}

impl RoomState {
    /// The user whose owner record a decision about this room reads: the
    /// owner it is kept for, or (pending) the user who invited the bot, who
    /// may be an owner already opening a new control room.
    pub fn owner(&self) -> &OwnedUserId {
        match self {
            RoomState::PendingControl { inviter, .. } => inviter,
            RoomState::Control { owner } => owner,
            RoomState::Held(h) => &h.owner,
        }
    }
}

/// Where an allowed contact came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowSource {
    /// An existing DM partner at opt-in.
    Imported,
    /// The owner invited or wrote to them first.
    OwnerStarted,
    /// An explicit `allow` command.
    Command,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact {
    /// May reach the owner directly; until `until_ms` if set.
    Allowed {
        since_ms: u64,
        source: AllowSource,
        until_ms: Option<u64>,
    },
    Blocked {
        since_ms: u64,
    },
}

/// Where a sender stands with an owner right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Allowed,
    Blocked,
    Stranger,
}

/// A stranger as far as one owner is concerned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StrangerState {
    /// When this stranger last got an etiquette reply from this owner.
    pub last_reply_ms: Option<u64>,
    /// Further invitations past the held rooms allowed per stranger: left
    /// silent and unjoined, only counted.
    pub invites_not_held: Tally,
    /// Further messages past the messages kept per stranger (or per owner):
    /// counted, not stored.
    pub messages_not_kept: Tally,
    /// When this stranger's last urgent message went through to the owner.
    pub urgent_ms: Option<u64>,
    /// When they were last told an urgent message could not go through.
    pub urgent_refused_ms: Option<u64>,
}

impl StrangerState {
    /// Nothing counted that the owner has not heard of.
    pub fn has_unreported(&self) -> bool {
        self.invites_not_held.unreported() > 0 || self.messages_not_kept.unreported() > 0
    }
}

/// What the store keeps for an owner (or for one sender with an owner):
/// counted by the store as it writes, so the bounds cost one read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kept {
    pub held_rooms: u64,
    pub messages: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub url: String,
    pub name: String,
    pub mimetype: Option<String>,
    pub size: Option<u64>,
}

/// A stranger's message captured for the digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferred {
    pub owner: OwnedUserId,
    pub room_id: OwnedRoomId,
    pub event_id: OwnedEventId,
    pub sender: OwnedUserId,
    /// When the sender says they sent it (their server's clock): shown,
    /// never trusted for anything that matters.
    pub ts_ms: u64,
    /// When Gatekeeper captured it, on its own clock: retention counts from
    /// here, so a far-future `origin_server_ts` cannot keep a message forever.
    pub received_ms: u64,
    pub msgtype: String,
    pub body: String,
    /// Sanitized HTML (spec-allowed tags only), when the sender sent HTML.
    pub html: Option<String>,
    pub media: Option<Media>,
    /// The message was end-to-end encrypted and could not be read.
    pub encrypted: bool,
    pub edited: bool,
    /// It was in a digest already.
    pub digested: bool,
    /// Someone other than its sender (or the owner) redacted it: it is
    /// kept, and shown with who did, since only the sender may withdraw
    /// what they said.
    pub redacted_by: Option<OwnedUserId>,
    /// The owner denied or blocked its sender at this time: kept a day for
    /// `undo`, shown nowhere, then dropped.
    pub denied_ms: Option<u64>,
}

/// A stranger waiting for the owner, as `pending` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEntry {
    pub sender: OwnedUserId,
    /// Their display name, if they invited the owner (never shown alone).
    pub name: Option<String>,
    pub rooms: Vec<OwnedRoomId>,
    pub messages: usize,
    pub first_ms: u64,
    pub last_ms: u64,
    pub preview: Option<String>,
    /// One of their rooms could not be read, and why.
    pub unreadable: Option<Unreadable>,
    /// Invitations and messages of theirs counted, not kept.
    pub invites_not_held: u32,
    pub messages_not_kept: u32,
    /// They are part of a wave: no automatic reply.
    pub wave: Option<WaveKind>,
    /// Whom their display name imitates, if anyone (see `texts::imitates`).
    pub imitates: Option<String>,
    /// The one line they gave for why they write (see `texts::subject_of`).
    pub subject: Option<String>,
    /// What else is known of them (see `texts::Card`).
    pub card: crate::texts::Card,
}

/// Everything about one owner that commands and opt-out need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnerOverview {
    pub contacts: BTreeMap<Subject, Contact>,
    pub held: BTreeMap<OwnedRoomId, HeldRoom>,
    pub deferred: Vec<Deferred>,
    /// Captures of senders the owner denied or blocked in the last day,
    /// kept only for `undo`.
    pub denied: Vec<Deferred>,
    /// Strangers with something counted rather than kept (the rest have
    /// nothing a command or digest shows).
    pub strangers: BTreeMap<OwnedUserId, StrangerState>,
}

/// The slice of stored state one decision may read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// What Gatekeeper keeps of the room the event is in: at most one
    /// record per owner (a stranger may invite several owners into one
    /// room, and each holds it on their own), ordered by owner.
    pub rooms: Vec<RoomState>,
    /// Owner records of the users the event involves (and of the room's owner).
    pub owners: BTreeMap<OwnedUserId, OwnerState>,
    /// Contact entries between those owners and those users (each user's
    /// own entry and their server's).
    pub contacts: BTreeMap<(OwnedUserId, Subject), Contact>,
    pub strangers: BTreeMap<(OwnedUserId, OwnedUserId), StrangerState>,
    /// The captured message an edit or redaction points at, as each owner
    /// who holds it keeps it.
    pub related: Vec<Deferred>,
    /// What is kept for each of those owners, and for each of those users
    /// with each owner: the bounds read these.
    pub kept: BTreeMap<OwnedUserId, Kept>,
    pub kept_with: BTreeMap<(OwnedUserId, OwnedUserId), Kept>,
    /// Filled for events in a control room and for opt-outs.
    pub overview: Option<OwnerOverview>,
    /// Filled for housekeeping ticks: what has come due.
    pub due: Option<Due>,
    /// The wave records of an inviting or writing sender and of their
    /// server (see [`crate::Reads::waves`]).
    pub waves: BTreeMap<WaveKey, WaveRecord>,
    /// The policy lists the decision reads (see [`crate::policy_read`]).
    pub policy: BTreeMap<OwnedRoomId, crate::policy::PolicyList>,
}

/// Time-based changes that have come due.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Due {
    /// Allow entries past their `until_ms`.
    pub expired: Vec<(OwnedUserId, Subject)>,
    /// Owners whose pause has ended.
    pub unpause: Vec<OwnerState>,
    /// For `Input::OwnerDue`: that one owner's scheduled digest, if due,
    /// with everything they have (never more than one owner's).
    pub digests: Vec<DueDigest>,
    /// Owners owed etiquette replies whose hourly budget has come back.
    pub replies: Vec<DueReplies>,
}

/// An owner with replies owed, and what deciding them reads: their held
/// rooms and captures, and for each owed room's inviter their stranger
/// entry and wave records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueReplies {
    pub owner: OwnerState,
    pub overview: OwnerOverview,
    pub strangers: BTreeMap<OwnedUserId, StrangerState>,
    pub waves: BTreeMap<WaveKey, WaveRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDigest {
    pub owner: OwnerState,
    pub overview: OwnerOverview,
    /// The scheduled slot this digest is for.
    pub slot_ms: u64,
}

impl Snapshot {
    /// The user's own entry, else their server's.
    pub fn contact(&self, owner: &OwnedUserId, user: &UserId) -> Option<&Contact> {
        self.contacts
            .get(&(owner.clone(), Subject::User(user.to_owned())))
            .or_else(|| self.contacts.get(&(owner.clone(), Subject::Server(user.server_name().to_owned()))))
    }

    /// Allowed (and not expired), blocked, or a stranger.
    pub fn standing(&self, owner: &OwnedUserId, user: &UserId, now_ms: u64) -> Standing {
        match self.contact(owner, user) {
            Some(Contact::Blocked { .. }) => Standing::Blocked,
            Some(Contact::Allowed { until_ms: Some(until), .. }) if *until <= now_ms => Standing::Stranger,
            Some(Contact::Allowed { .. }) => Standing::Allowed,
            None => Standing::Stranger,
        }
    }

    pub fn stranger(&self, owner: &OwnedUserId, user: &OwnedUserId) -> StrangerState {
        self.strangers.get(&(owner.clone(), user.clone())).cloned().unwrap_or_default()
    }

    /// The room held for `owner`, if it is one.
    pub fn held_for(&self, owner: &UserId) -> Option<&HeldRoom> {
        self.held().find(|h| h.owner == owner)
    }

    /// The room as each owner who holds it keeps it.
    pub fn held(&self) -> impl Iterator<Item = &HeldRoom> {
        self.rooms.iter().filter_map(|r| match r {
            RoomState::Held(h) => Some(h),
            _ => None,
        })
    }

    /// The owner whose control room this is.
    pub fn control_of(&self) -> Option<&OwnedUserId> {
        self.rooms.iter().find_map(|r| match r {
            RoomState::Control { owner } => Some(owner),
            _ => None,
        })
    }

    /// The user who invited the bot here, while the control room is opening.
    pub fn pending_control(&self) -> Option<&OwnedUserId> {
        self.rooms.iter().find_map(|r| match r {
            RoomState::PendingControl { inviter, .. } => Some(inviter),
            _ => None,
        })
    }

    /// `owner`'s own record of the room: held for them, or their control room.
    pub fn room_of(&self, owner: &UserId) -> Option<&RoomState> {
        self.rooms.iter().find(|r| r.owner() == owner)
    }

    /// The captured message an edit or redaction points at, as `owner` keeps it.
    pub fn related_for(&self, owner: &UserId) -> Option<&Deferred> {
        self.related.iter().find(|d| d.owner == owner)
    }

    /// This snapshot with `changes` (a decision being made) applied to the
    /// records it holds: what a later step of the same decision must read,
    /// so that its writes keep the earlier ones. (Captures are each owner's
    /// own: no step reads another owner's, so they are left as they were.)
    pub fn after(&self, changes: &[StateChange]) -> Snapshot {
        let mut s = self.clone();
        for change in changes {
            match change {
                StateChange::PutOwner(o) => {
                    s.owners.insert(o.user_id.clone(), o.clone());
                }
                StateChange::PutStranger { owner, user, state } => {
                    s.strangers.insert((owner.clone(), user.clone()), state.clone());
                }
                StateChange::PutWave(key, record) => {
                    s.waves.insert(key.clone(), record.clone());
                }
                StateChange::PutRoom(_, room) => {
                    s.rooms.retain(|r| r.owner() != room.owner());
                    s.rooms.push(room.clone());
                    s.rooms.sort_by(|a, b| a.owner().cmp(b.owner()));
                }
                StateChange::RemoveRoom { owner, .. } => s.rooms.retain(|r| r.owner() != owner),
                StateChange::PutPolicyList(list) => {
                    // The record, with the rules this decision read as they are.
                    let rules = s.policy.remove(&list.room_id).map(|l| l.rules).unwrap_or_default();
                    s.policy.insert(list.room_id.clone(), crate::policy::PolicyList { rules, ..list.clone() });
                }
                StateChange::PutPolicyRule { list, slot, rule } => {
                    if let Some(l) = s.policy.get_mut(list) {
                        match rule {
                            Some(r) => l.rules.insert(slot.clone(), r.clone()),
                            None => l.rules.remove(slot),
                        };
                    }
                }
                StateChange::RemovePolicyList(room) => {
                    s.policy.remove(room);
                }
                _ => {}
            }
        }
        s
    }

    pub fn kept(&self, owner: &OwnedUserId) -> Kept {
        self.kept.get(owner).copied().unwrap_or_default()
    }

    pub fn kept_with(&self, owner: &OwnedUserId, user: &OwnedUserId) -> Kept {
        self.kept_with.get(&(owner.clone(), user.clone())).copied().unwrap_or_default()
    }
}

// An owner's record is the largest change; a decision holds a handful of
// changes and never many of them, so boxing it would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateChange {
    PutOwner(OwnerState),
    RemoveOwner(OwnedUserId),
    /// Keeps a room's record for the owner it names (`RoomState::owner`).
    PutRoom(OwnedRoomId, RoomState),
    /// Forgets `owner`'s record of a room; other owners' records stay.
    RemoveRoom {
        room: OwnedRoomId,
        owner: OwnedUserId,
    },
    PutContact {
        owner: OwnedUserId,
        subject: Subject,
        contact: Contact,
    },
    RemoveContact {
        owner: OwnedUserId,
        subject: Subject,
    },
    PutStranger {
        owner: OwnedUserId,
        user: OwnedUserId,
        state: StrangerState,
    },
    PutDeferred(Deferred),
    RemoveDeferred {
        owner: OwnedUserId,
        event_id: OwnedEventId,
    },
    /// Forgets everything kept for an owner: contacts, strangers, deferred.
    ForgetOwnerData(OwnedUserId),
    /// A sender's or a server's recent invitations (waves).
    PutWave(WaveKey, WaveRecord),
    /// A followed policy list's record, kept once whoever follows it (its
    /// `rules` are not part of it: see `PutPolicyRule`).
    PutPolicyList(crate::policy::PolicyList),
    /// One slot of a list: the rule it holds now, or none.
    PutPolicyRule {
        list: OwnedRoomId,
        slot: crate::policy::Slot,
        rule: Option<crate::policy::PolicyRule>,
    },
    RemovePolicyList(OwnedRoomId),
}
