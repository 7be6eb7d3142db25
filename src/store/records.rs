//! The stored forms of state, versioned apart from the engine's types so
//! that the engine can change without silently misreading old databases.

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use serde::{Deserialize, Serialize};

use super::policy_records::WithPolicy;

use super::StoreError;
use crate::engine::{
    AllowSource, Contact, Deferred, DigestPart, Effect, HeldRoom, Match, Media, OwnerState, PendingEmail, PushRule,
    RoomState, RuleActions, SharedRooms, StrangerState, Tally, Undo, UndoKind, Unreadable, WaveKey, WaveKind,
    WaveRecord,
};

#[derive(Serialize, Deserialize)]
#[serde(tag = "v")]
pub enum OwnerRecord {
    #[serde(rename = "1")]
    V1 {
        user_id: OwnedUserId,
        control_room: OwnedRoomId,
        since_ms: u64,
        displayname: Option<String>,
        reply_template: Option<String>,
        email: Option<String>,
        reply_window_start_ms: u64,
        replies_in_window: u32,
        last_list: Vec<String>,
        paused_until_ms: Option<u64>,
        reply_interval_ms: Option<u64>,
        timezone: Option<String>,
        digest_minute: Option<u16>,
        retention_ms: Option<u64>,
        digest_last_slot_ms: Option<u64>,
        digest_last_sent_ms: Option<u64>,
        email_pending: Option<PendingEmailV1>,
        #[serde(default)]
        notify: Option<String>,
        #[serde(default)]
        digest_when_empty: bool,
        /// Invitations counted, not held (total, reported).
        #[serde(default)]
        invites_not_held: (u32, u32),
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        codes_mailed: Vec<u64>,
        /// Messages counted on the owner, not kept (total, reported).
        #[serde(default)]
        messages_not_kept: (u32, u32),
        /// What the reply shows strangers (absent before it was its own).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        contact: Option<String>,
        /// Set when `email` is the confirmed digest address. Records from
        /// before lack it: their `email` may never have been confirmed (it
        /// was kept as is where e-mail was not set up), so it is read as
        /// unconfirmed — neither mailed nor shown.
        #[serde(default)]
        email_confirmed: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        email_unconfirmed: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        replies_owed: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        urgent: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        urgent_per_sender_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        urgent_per_day: Option<u32>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        urgent_sent: Vec<u64>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        undo: Vec<UndoV1>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        invite_filter: Option<super::records_native::InviteFilterV1>,
        /// Ban lists followed and what they declined (absent before them).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        policy: Option<super::policy_records::OwnerPolicyV1>,
    },
}

/// One decision `undo` can revert (see [`Undo`]).
#[derive(Serialize, Deserialize)]
pub struct UndoV1 {
    at_ms: u64,
    kind: String,
    subjects: Vec<(String, Option<ContactRecord>)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    rooms: Vec<(OwnedRoomId, RoomRecord)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    link: Option<String>,
}

impl From<&Undo> for UndoV1 {
    fn from(u: &Undo) -> Self {
        UndoV1 {
            at_ms: u.at_ms,
            kind: u.kind.as_str().to_owned(),
            subjects: u.subjects.iter().map(|(s, c)| (s.to_string(), c.as_ref().map(ContactRecord::from))).collect(),
            rooms: u.rooms.iter().map(|(r, h)| (r.clone(), RoomRecord::from(&RoomState::Held(h.clone())))).collect(),
            link: u.link.clone(),
        }
    }
}

impl UndoV1 {
    /// `None` for an entry that no longer reads (dropped, not fatal).
    fn into_undo(self) -> Option<Undo> {
        Some(Undo {
            at_ms: self.at_ms,
            kind: UndoKind::parse(&self.kind)?,
            subjects: self
                .subjects
                .into_iter()
                .filter_map(|(s, c)| Some((s.parse().ok()?, c.map(Contact::from))))
                .collect(),
            rooms: self
                .rooms
                .into_iter()
                .filter_map(|(r, rec)| match RoomState::from(rec) {
                    RoomState::Held(h) => Some((r, h)),
                    _ => None,
                })
                .collect(),
            link: self.link,
        })
    }
}

#[derive(Serialize, Deserialize, Clone)]
pub struct PendingEmailV1 {
    address: String,
    code: String,
    expires_ms: u64,
    attempts: u32,
}

#[derive(Serialize)]
#[serde(tag = "v")]
pub enum RoomRecord {
    #[serde(rename = "1")]
    V1(RoomRecordV1),
}

/// Read as one flat struct (`{"v":"1","kind":"held",…}`, as written):
/// serde reads an internally tagged enum by buffering the whole record,
/// here twice (version, then kind), and a stranger's message reads its
/// room's record. Each kind's required fields stay required.
impl<'de> Deserialize<'de> for RoomRecord {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        struct Wire {
            v: String,
            kind: String,
            owner: Option<OwnedUserId>,
            inviter: Option<OwnedUserId>,
            inviter_name: Option<String>,
            is_dm: Option<bool>,
            invited_at_ms: Option<u64>,
            name: Option<String>,
            members: Option<u32>,
            reason: Option<String>,
            replied: Option<bool>,
            #[serde(default)]
            digested: bool,
            unreadable: Option<String>,
            wave: Option<String>,
            reply_owed_ms: Option<u64>,
            said: Option<String>,
            invited_here: Option<u32>,
            shared: Option<SharedRecord>,
        }
        let w = Wire::deserialize(d)?;
        if w.v != "1" {
            return Err(D::Error::custom(format!("unknown version {:?}", w.v)));
        }
        fn need<T, E: Error>(v: Option<T>, field: &'static str) -> Result<T, E> {
            v.ok_or_else(|| E::missing_field(field))
        }
        Ok(RoomRecord::V1(match w.kind.as_str() {
            "pending_control" => RoomRecordV1::PendingControl {
                inviter: need(w.inviter, "inviter")?,
                invited_at_ms: need(w.invited_at_ms, "invited_at_ms")?,
            },
            "control" => RoomRecordV1::Control { owner: need(w.owner, "owner")? },
            "held" => RoomRecordV1::Held {
                owner: need(w.owner, "owner")?,
                inviter: need(w.inviter, "inviter")?,
                inviter_name: w.inviter_name,
                is_dm: need(w.is_dm, "is_dm")?,
                invited_at_ms: need(w.invited_at_ms, "invited_at_ms")?,
                name: w.name,
                members: w.members,
                reason: w.reason,
                replied: need(w.replied, "replied")?,
                digested: w.digested,
                unreadable: w.unreadable,
                wave: w.wave,
                reply_owed_ms: w.reply_owed_ms,
                said: w.said,
                invited_here: w.invited_here,
                shared: w.shared,
            },
            other => return Err(D::Error::unknown_variant(other, &["pending_control", "control", "held"])),
        }))
    }
}

// A record lives only between a read and its conversion: one at a time, so
// the held variant's size costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RoomRecordV1 {
    PendingControl {
        inviter: OwnedUserId,
        invited_at_ms: u64,
    },
    Control {
        owner: OwnedUserId,
    },
    Held {
        owner: OwnedUserId,
        inviter: OwnedUserId,
        #[serde(default)]
        inviter_name: Option<String>,
        is_dm: bool,
        invited_at_ms: u64,
        name: Option<String>,
        members: Option<u32>,
        reason: Option<String>,
        replied: bool,
        #[serde(default)]
        digested: bool,
        /// Why the room could not be read (`no_answer`, `refused`,
        /// `not_silenced`); absent in records from before it was kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unreadable: Option<String>,
        /// Part of a wave (`sender`, `server`); absent before waves.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wave: Option<String>,
        /// When the hourly cap held its reply back; absent when none is owed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_owed_ms: Option<u64>,
        /// The inviter's first line after the reply; absent before subjects.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        said: Option<String>,
        /// People here the inviter had invited within a day (appservice).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        invited_here: Option<u32>,
        /// Rooms the inviter shares with the owner; absent until looked up.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shared: Option<SharedRecord>,
    },
}

#[derive(Serialize, Deserialize)]
pub struct SharedRecord {
    names: Vec<String>,
    count: u32,
    complete: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "v")]
pub enum ContactRecord {
    #[serde(rename = "1")]
    V1 { allowed: bool, since_ms: u64, source: Option<String>, until_ms: Option<u64> },
}

#[derive(Serialize)]
#[serde(tag = "v")]
pub enum StrangerRecord {
    #[serde(rename = "1")]
    V1 {
        last_reply_ms: Option<u64>,
        #[serde(default)]
        invites_not_held: (u32, u32),
        #[serde(default)]
        messages_not_kept: (u32, u32),
        #[serde(default, skip_serializing_if = "Option::is_none")]
        urgent_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        urgent_refused_ms: Option<u64>,
    },
}

/// Read as the flat struct it is written as, without serde's buffering
/// of an internally tagged enum (read for every stranger's message).
impl<'de> Deserialize<'de> for StrangerRecord {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            v: String,
            last_reply_ms: Option<u64>,
            #[serde(default)]
            invites_not_held: (u32, u32),
            #[serde(default)]
            messages_not_kept: (u32, u32),
            urgent_ms: Option<u64>,
            urgent_refused_ms: Option<u64>,
        }
        let Wire { v, last_reply_ms, invites_not_held, messages_not_kept, urgent_ms, urgent_refused_ms } =
            Wire::deserialize(d)?;
        if v != "1" {
            return Err(serde::de::Error::custom(format!("unknown version {v:?}")));
        }
        Ok(StrangerRecord::V1 { last_reply_ms, invites_not_held, messages_not_kept, urgent_ms, urgent_refused_ms })
    }
}

fn tally_pair(t: Tally) -> (u32, u32) {
    (t.total, t.reported)
}

fn tally_of((total, reported): (u32, u32)) -> Tally {
    Tally { total, reported }
}

/// A sender's or a server's recent invitations (see `engine::waves`).
#[derive(Serialize, Deserialize)]
#[serde(tag = "v")]
pub enum WaveRecordV {
    #[serde(rename = "1")]
    V1 {
        seen: Vec<(OwnedUserId, u64)>,
        wave_ms: Option<u64>,
        expires_ms: u64,
        /// Everyone here the sender invited within a day; absent before cards.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        day: Vec<(OwnedUserId, u64)>,
    },
}

impl From<&WaveRecord> for WaveRecordV {
    fn from(w: &WaveRecord) -> Self {
        WaveRecordV::V1 { seen: w.seen.clone(), wave_ms: w.wave_ms, expires_ms: w.expires_ms, day: w.day.clone() }
    }
}

impl From<WaveRecordV> for WaveRecord {
    fn from(r: WaveRecordV) -> Self {
        let WaveRecordV::V1 { seen, wave_ms, expires_ms, day } = r;
        WaveRecord { seen, wave_ms, expires_ms, day }
    }
}

/// `u\0@user:server`, `s\0server`, `m\0address` or `b\0@user:server`: one
/// tree for every kind of record of recent events by sender or address.
pub fn wave_key(key: &WaveKey) -> Vec<u8> {
    match key {
        WaveKey::Sender(u) => pair_key("u", u.as_str()),
        WaveKey::Server(s) => pair_key("s", s.as_str()),
        WaveKey::CodesTo(a) => pair_key("m", a),
        WaveKey::CodesBy(u) => pair_key("b", u.as_str()),
    }
}

#[derive(Serialize, Deserialize, Clone)]
pub struct MediaV1 {
    url: String,
    name: String,
    mimetype: Option<String>,
    size: Option<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "v")]
pub enum DeferredRecord {
    #[serde(rename = "1")]
    V1 {
        owner: OwnedUserId,
        room_id: OwnedRoomId,
        event_id: OwnedEventId,
        sender: OwnedUserId,
        ts_ms: u64,
        /// Missing in records written before retention counted from receipt.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        received_ms: Option<u64>,
        msgtype: String,
        body: String,
        html: Option<String>,
        media: Option<MediaV1>,
        encrypted: bool,
        edited: bool,
        #[serde(default)]
        digested: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        redacted_by: Option<OwnedUserId>,
        /// Denied or blocked at this time: kept a day for `undo`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        denied_ms: Option<u64>,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "v")]
pub enum EffectRecord {
    #[serde(rename = "1")]
    V1(EffectRecordV1),
}

#[derive(Serialize, Deserialize, Clone)]
pub struct PushRuleV1 {
    rule_id: String,
    conditions: Vec<(String, String)>,
    ring: bool,
    #[serde(default)]
    quiet: bool,
    before: Option<String>,
}

/// The items a digest part carries (see `DigestPart`).
#[derive(Serialize, Deserialize)]
pub struct DigestPartV1 {
    owner: OwnedUserId,
    messages: Vec<OwnedEventId>,
    invites: Vec<OwnedRoomId>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EffectRecordV1 {
    Join {
        as_user: OwnedUserId,
        room_id: OwnedRoomId,
    },
    Leave {
        as_user: OwnedUserId,
        room_id: OwnedRoomId,
        reason: Option<String>,
    },
    SendNotice {
        as_user: OwnedUserId,
        room_id: OwnedRoomId,
        txn_id: String,
        body: String,
        html: String,
        /// A digest part's items (absent in records written before).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        digest: Option<DigestPartV1>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        only_with: Option<OwnedUserId>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        urgent: bool,
    },
    PutPushRule {
        owner: OwnedUserId,
        rule: PushRuleV1,
    },
    DeletePushRule {
        owner: OwnedUserId,
        rule_id: String,
        /// A held room's silence; absent in records from before lanes (they
        /// then go on the owner's lane).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<OwnedRoomId>,
    },
    EnablePushRule {
        owner: OwnedUserId,
        rule_id: String,
        enabled: bool,
    },
    SetTag {
        owner: OwnedUserId,
        room_id: OwnedRoomId,
        tag: String,
        present: bool,
    },
    SendEmail {
        owner: OwnedUserId,
        to: String,
        subject: String,
        text: String,
        html: String,
        message_id: String,
        unsubscribe: Option<String>,
    },
    FetchProfile {
        user: OwnedUserId,
    },
    ImportContacts {
        owner: OwnedUserId,
    },
    Backfill {
        owner: OwnedUserId,
        room_id: OwnedRoomId,
    },
    LookUpShared {
        owner: OwnedUserId,
        user: OwnedUserId,
        room_id: OwnedRoomId,
    },
    Native(super::records_native::NativeEffectV1),
    FollowList {
        as_user: OwnedUserId,
        owner: Option<OwnedUserId>,
        target: String,
    },
    /// Older versions named the list and the rule; a check now looks at
    /// every list the owner follows.
    CheckPending {
        owner: OwnedUserId,
    },
    CreateList {
        as_user: OwnedUserId,
        owner: OwnedUserId,
    },
    PutPolicyRule {
        as_user: OwnedUserId,
        room_id: OwnedRoomId,
        rule_kind: String,
        entity: String,
        reason: Option<String>,
        present: bool,
    },
}

/// A tracked room's events consumed last, oldest first.
#[derive(Serialize)]
#[serde(tag = "v")]
pub enum SeenRecord {
    #[serde(rename = "1")]
    V1 { events: Vec<OwnedEventId> },
}

/// Read as the plain struct it is written as (`{"v":"1","events":[…]}`):
/// serde reads an internally tagged enum by buffering the whole record
/// first, which made this list, read and rewritten for every tracked room
/// a batch touches, the costliest record of a stranger's message.
impl<'de> Deserialize<'de> for SeenRecord {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            v: String,
            events: Vec<OwnedEventId>,
        }
        let Wire { v, events } = Wire::deserialize(d)?;
        match v.as_str() {
            "1" => Ok(SeenRecord::V1 { events }),
            other => Err(serde::de::Error::custom(format!("unknown version {other:?}"))),
        }
    }
}

impl From<&[OwnedEventId]> for SeenRecord {
    fn from(events: &[OwnedEventId]) -> Self {
        SeenRecord::V1 { events: events.to_vec() }
    }
}

impl From<SeenRecord> for Vec<OwnedEventId> {
    fn from(record: SeenRecord) -> Self {
        let SeenRecord::V1 { events } = record;
        events
    }
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "v")]
pub enum TxnRecord {
    #[serde(rename = "1")]
    V1 { at_ms: u64, digest: String, events: usize },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "v")]
pub enum QuarantineRecord {
    #[serde(rename = "1")]
    V1 { at_ms: u64, reason: String, raw: String },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "v")]
pub enum FailedEffectRecord {
    #[serde(rename = "1")]
    V1 { at_ms: u64, reason: String, effect: EffectRecordV1 },
}

pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    // A captured message is most of a batch's writes: room for one at the
    // start saves the doublings from serde_json's 128 bytes.
    let mut out = Vec::with_capacity(1024);
    // Records hold only strings, integers and booleans: this cannot fail.
    serde_json::to_writer(&mut out, record).expect("record serializes");
    out
}

pub fn decode<T: for<'de> Deserialize<'de>>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

impl From<&OwnerState> for OwnerRecord {
    fn from(o: &OwnerState) -> Self {
        let policy = super::policy_records::OwnerPolicyV1::of(o);
        let o = o.clone();
        OwnerRecord::V1 {
            user_id: o.user_id,
            control_room: o.control_room,
            since_ms: o.since_ms,
            displayname: o.displayname,
            reply_template: o.reply_template,
            email: o.email,
            reply_window_start_ms: o.reply_window_start_ms,
            replies_in_window: o.replies_in_window,
            last_list: o.last_list.iter().map(ToString::to_string).collect(),
            paused_until_ms: o.paused_until_ms,
            reply_interval_ms: o.reply_interval_ms,
            timezone: o.timezone,
            digest_minute: o.digest_minute,
            retention_ms: o.retention_ms,
            digest_last_slot_ms: o.digest_last_slot_ms,
            digest_last_sent_ms: o.digest_last_sent_ms,
            notify: o.notify.map(|n| n.as_str().to_owned()),
            digest_when_empty: o.digest_when_empty,
            invites_not_held: tally_pair(o.invites_not_held),
            codes_mailed: o.codes_mailed,
            messages_not_kept: tally_pair(o.messages_not_kept),
            contact: o.contact,
            email_confirmed: true,
            email_unconfirmed: o.email_unconfirmed,
            replies_owed: o.replies_owed,
            urgent: o.urgent,
            urgent_per_sender_ms: o.urgent_per_sender_ms,
            urgent_per_day: o.urgent_per_day,
            urgent_sent: o.urgent_sent,
            undo: o.undo.iter().map(UndoV1::from).collect(),
            invite_filter: o.invite_filter.as_ref().map(Into::into),
            policy,
            email_pending: o.email_pending.map(|p| PendingEmailV1 {
                address: p.address,
                code: p.code,
                expires_ms: p.expires_ms,
                attempts: p.attempts,
            }),
        }
    }
}

impl From<OwnerRecord> for OwnerState {
    fn from(r: OwnerRecord) -> Self {
        let OwnerRecord::V1 {
            user_id,
            control_room,
            since_ms,
            displayname,
            reply_template,
            email,
            reply_window_start_ms,
            replies_in_window,
            last_list,
            paused_until_ms,
            reply_interval_ms,
            timezone,
            digest_minute,
            retention_ms,
            digest_last_slot_ms,
            digest_last_sent_ms,
            email_pending,
            notify,
            digest_when_empty,
            invites_not_held,
            codes_mailed,
            messages_not_kept,
            contact,
            email_confirmed,
            email_unconfirmed,
            replies_owed,
            urgent,
            urgent_per_sender_ms,
            urgent_per_day,
            urgent_sent,
            undo,
            invite_filter,
            policy,
        } = r;
        let (email, email_unconfirmed) = if email_confirmed { (email, email_unconfirmed) } else { (None, email) };
        OwnerState {
            // An entry that no longer parses is dropped, not fatal.
            last_list: last_list.iter().filter_map(|s| s.parse().ok()).collect(),
            paused_until_ms,
            reply_interval_ms,
            timezone,
            digest_minute,
            retention_ms,
            digest_last_slot_ms,
            digest_last_sent_ms,
            notify: notify.and_then(|n| n.parse().ok()),
            digest_when_empty,
            invites_not_held: tally_of(invites_not_held),
            codes_mailed,
            messages_not_kept: tally_of(messages_not_kept),
            contact,
            email_unconfirmed,
            email_pending: email_pending.map(|p| PendingEmail {
                address: p.address,
                code: p.code,
                expires_ms: p.expires_ms,
                attempts: p.attempts,
            }),
            user_id,
            control_room,
            since_ms,
            displayname,
            reply_template,
            email,
            reply_window_start_ms,
            replies_in_window,
            replies_owed,
            urgent,
            urgent_per_sender_ms,
            urgent_per_day,
            urgent_sent,
            undo: undo.into_iter().filter_map(UndoV1::into_undo).collect(),
            invite_filter: invite_filter.map(Into::into),
            policy_lists: Vec::new(),
            banned: Default::default(),
            banned_recent: Vec::new(),
            banned_ignore: false,
            shared_list: None,
            lists_checked_ms: 0,
            lists_check_from: None,
        }
        .with_policy(policy)
    }
}

impl From<&RoomState> for RoomRecord {
    fn from(s: &RoomState) -> Self {
        RoomRecord::V1(match s.clone() {
            RoomState::PendingControl { inviter, invited_at_ms } => {
                RoomRecordV1::PendingControl { inviter, invited_at_ms }
            }
            RoomState::Control { owner } => RoomRecordV1::Control { owner },
            RoomState::Held(h) => RoomRecordV1::Held {
                owner: h.owner,
                inviter: h.inviter,
                inviter_name: h.inviter_name,
                is_dm: h.is_dm,
                invited_at_ms: h.invited_at_ms,
                name: h.name,
                members: h.members,
                reason: h.reason,
                replied: h.replied,
                digested: h.digested,
                unreadable: h.unreadable.map(|u| u.as_str().to_owned()),
                wave: h.wave.map(|w| w.as_str().to_owned()),
                reply_owed_ms: h.reply_owed_ms,
                said: h.said,
                invited_here: h.invited_here,
                shared: h.shared.map(|s| SharedRecord { names: s.names, count: s.count, complete: s.complete }),
            },
        })
    }
}

impl From<RoomRecord> for RoomState {
    fn from(r: RoomRecord) -> Self {
        match r {
            RoomRecord::V1(RoomRecordV1::PendingControl { inviter, invited_at_ms }) => {
                RoomState::PendingControl { inviter, invited_at_ms }
            }
            RoomRecord::V1(RoomRecordV1::Control { owner }) => RoomState::Control { owner },
            RoomRecord::V1(RoomRecordV1::Held {
                owner,
                inviter,
                inviter_name,
                is_dm,
                invited_at_ms,
                name,
                members,
                reason,
                replied,
                digested,
                unreadable,
                wave,
                reply_owed_ms,
                said,
                invited_here,
                shared,
            }) => RoomState::Held(HeldRoom {
                owner,
                inviter,
                inviter_name,
                is_dm,
                invited_at_ms,
                name,
                members,
                reason,
                replied,
                digested,
                // A reason this version does not know reads as "no answer":
                // still unreadable, still listed.
                unreadable: unreadable.map(|u| Unreadable::parse(&u).unwrap_or(Unreadable::NoAnswer)),
                // A kind this version does not know is still a wave.
                wave: wave.map(|w| WaveKind::parse(&w).unwrap_or(WaveKind::Sender)),
                reply_owed_ms,
                said,
                invited_here,
                shared: shared.map(|s| SharedRooms { names: s.names, count: s.count, complete: s.complete }),
            }),
        }
    }
}

impl From<&Contact> for ContactRecord {
    fn from(c: &Contact) -> Self {
        match c {
            Contact::Allowed { since_ms, source, until_ms } => ContactRecord::V1 {
                allowed: true,
                since_ms: *since_ms,
                until_ms: *until_ms,
                source: Some(
                    match source {
                        AllowSource::Imported => "imported",
                        AllowSource::OwnerStarted => "owner_started",
                        AllowSource::Command => "command",
                    }
                    .into(),
                ),
            },
            Contact::Blocked { since_ms } => {
                ContactRecord::V1 { allowed: false, since_ms: *since_ms, source: None, until_ms: None }
            }
        }
    }
}

impl From<ContactRecord> for Contact {
    fn from(r: ContactRecord) -> Self {
        let ContactRecord::V1 { allowed, since_ms, source, until_ms } = r;
        if !allowed {
            return Contact::Blocked { since_ms };
        }
        let source = match source.as_deref() {
            Some("imported") => AllowSource::Imported,
            Some("owner_started") => AllowSource::OwnerStarted,
            _ => AllowSource::Command,
        };
        Contact::Allowed { since_ms, source, until_ms }
    }
}

impl From<&StrangerState> for StrangerRecord {
    fn from(s: &StrangerState) -> Self {
        StrangerRecord::V1 {
            last_reply_ms: s.last_reply_ms,
            invites_not_held: tally_pair(s.invites_not_held),
            messages_not_kept: tally_pair(s.messages_not_kept),
            urgent_ms: s.urgent_ms,
            urgent_refused_ms: s.urgent_refused_ms,
        }
    }
}

impl From<StrangerRecord> for StrangerState {
    fn from(r: StrangerRecord) -> Self {
        let StrangerRecord::V1 { last_reply_ms, invites_not_held, messages_not_kept, urgent_ms, urgent_refused_ms } = r;
        StrangerState {
            last_reply_ms,
            invites_not_held: tally_of(invites_not_held),
            messages_not_kept: tally_of(messages_not_kept),
            urgent_ms,
            urgent_refused_ms,
        }
    }
}

impl From<&Deferred> for DeferredRecord {
    fn from(d: &Deferred) -> Self {
        let d = d.clone();
        DeferredRecord::V1 {
            owner: d.owner,
            room_id: d.room_id,
            event_id: d.event_id,
            sender: d.sender,
            ts_ms: d.ts_ms,
            received_ms: Some(d.received_ms),
            msgtype: d.msgtype,
            body: d.body,
            html: d.html,
            media: d.media.map(|m| MediaV1 { url: m.url, name: m.name, mimetype: m.mimetype, size: m.size }),
            encrypted: d.encrypted,
            edited: d.edited,
            digested: d.digested,
            redacted_by: d.redacted_by,
            denied_ms: d.denied_ms,
        }
    }
}

impl From<DeferredRecord> for Deferred {
    fn from(r: DeferredRecord) -> Self {
        let DeferredRecord::V1 {
            owner,
            room_id,
            event_id,
            sender,
            ts_ms,
            received_ms,
            msgtype,
            body,
            html,
            media,
            encrypted,
            edited,
            digested,
            redacted_by,
            denied_ms,
        } = r;
        Deferred {
            owner,
            room_id,
            event_id,
            sender,
            ts_ms,
            // Older records only know the sender's time.
            received_ms: received_ms.unwrap_or(ts_ms),
            msgtype,
            body,
            html,
            media: media.map(|m| Media { url: m.url, name: m.name, mimetype: m.mimetype, size: m.size }),
            encrypted,
            edited,
            digested,
            redacted_by,
            denied_ms,
        }
    }
}

impl From<&PushRule> for PushRuleV1 {
    fn from(r: &PushRule) -> Self {
        PushRuleV1 {
            rule_id: r.rule_id.clone(),
            conditions: r.conditions.iter().map(|m| (m.key.clone(), m.pattern.clone())).collect(),
            ring: r.actions == RuleActions::Ring,
            quiet: r.actions == RuleActions::Quiet,
            before: r.before.clone(),
        }
    }
}

impl From<PushRuleV1> for PushRule {
    fn from(r: PushRuleV1) -> Self {
        PushRule {
            rule_id: r.rule_id,
            conditions: r.conditions.into_iter().map(|(key, pattern)| Match { key, pattern }).collect(),
            actions: match (r.ring, r.quiet) {
                (true, _) => RuleActions::Ring,
                (false, true) => RuleActions::Quiet,
                (false, false) => RuleActions::Silent,
            },
            before: r.before,
        }
    }
}

impl From<&Effect> for EffectRecordV1 {
    fn from(e: &Effect) -> Self {
        match e.clone() {
            Effect::Join { as_user, room_id } => EffectRecordV1::Join { as_user, room_id },
            Effect::Leave { as_user, room_id, reason } => EffectRecordV1::Leave { as_user, room_id, reason },
            Effect::SendNotice { as_user, room_id, txn_id, body, html, digest, only_with, urgent } => {
                let digest = digest.map(|p| DigestPartV1 { owner: p.owner, messages: p.messages, invites: p.invites });
                EffectRecordV1::SendNotice { as_user, room_id, txn_id, body, html, digest, only_with, urgent }
            }
            Effect::PutPushRule { owner, rule } => EffectRecordV1::PutPushRule { owner, rule: (&rule).into() },
            Effect::DeletePushRule { owner, rule_id, room } => EffectRecordV1::DeletePushRule { owner, rule_id, room },
            Effect::EnablePushRule { owner, rule_id, enabled } => {
                EffectRecordV1::EnablePushRule { owner, rule_id, enabled }
            }
            Effect::SetTag { owner, room_id, tag, present } => EffectRecordV1::SetTag { owner, room_id, tag, present },
            Effect::SendEmail { owner, to, subject, text, html, message_id, unsubscribe } => {
                EffectRecordV1::SendEmail { owner, to, subject, text, html, message_id, unsubscribe }
            }
            Effect::FetchProfile { user } => EffectRecordV1::FetchProfile { user },
            Effect::ImportContacts { owner } => EffectRecordV1::ImportContacts { owner },
            Effect::Backfill { owner, room_id } => EffectRecordV1::Backfill { owner, room_id },
            Effect::LookUpShared { owner, user, room_id } => EffectRecordV1::LookUpShared { owner, user, room_id },
            Effect::Native(native) => EffectRecordV1::Native(native.into()),
            Effect::FollowList { as_user, owner, target } => EffectRecordV1::FollowList { as_user, owner, target },
            Effect::CheckPending { owner } => EffectRecordV1::CheckPending { owner },
            Effect::CreateList { as_user, owner } => EffectRecordV1::CreateList { as_user, owner },
            Effect::PutPolicyRule { as_user, room_id, kind, entity, reason, present } => {
                EffectRecordV1::PutPolicyRule {
                    as_user,
                    room_id,
                    rule_kind: kind.as_str().to_owned(),
                    entity,
                    reason,
                    present,
                }
            }
        }
    }
}

impl From<EffectRecordV1> for Effect {
    fn from(r: EffectRecordV1) -> Self {
        match r {
            EffectRecordV1::Join { as_user, room_id } => Effect::Join { as_user, room_id },
            EffectRecordV1::Leave { as_user, room_id, reason } => Effect::Leave { as_user, room_id, reason },
            EffectRecordV1::SendNotice { as_user, room_id, txn_id, body, html, digest, only_with, urgent } => {
                let digest =
                    digest.map(|p| Box::new(DigestPart { owner: p.owner, messages: p.messages, invites: p.invites }));
                Effect::SendNotice { as_user, room_id, txn_id, body, html, digest, only_with, urgent }
            }
            EffectRecordV1::PutPushRule { owner, rule } => Effect::PutPushRule { owner, rule: rule.into() },
            EffectRecordV1::DeletePushRule { owner, rule_id, room } => Effect::DeletePushRule { owner, rule_id, room },
            EffectRecordV1::EnablePushRule { owner, rule_id, enabled } => {
                Effect::EnablePushRule { owner, rule_id, enabled }
            }
            EffectRecordV1::SetTag { owner, room_id, tag, present } => Effect::SetTag { owner, room_id, tag, present },
            EffectRecordV1::SendEmail { owner, to, subject, text, html, message_id, unsubscribe } => {
                Effect::SendEmail { owner, to, subject, text, html, message_id, unsubscribe }
            }
            EffectRecordV1::FetchProfile { user } => Effect::FetchProfile { user },
            EffectRecordV1::ImportContacts { owner } => Effect::ImportContacts { owner },
            EffectRecordV1::Backfill { owner, room_id } => Effect::Backfill { owner, room_id },
            EffectRecordV1::LookUpShared { owner, user, room_id } => Effect::LookUpShared { owner, user, room_id },
            EffectRecordV1::Native(native) => Effect::Native(native.into()),
            EffectRecordV1::FollowList { as_user, owner, target } => Effect::FollowList { as_user, owner, target },
            EffectRecordV1::CheckPending { owner } => Effect::CheckPending { owner },
            EffectRecordV1::CreateList { as_user, owner } => Effect::CreateList { as_user, owner },
            EffectRecordV1::PutPolicyRule { as_user, room_id, rule_kind, entity, reason, present } => {
                Effect::PutPolicyRule {
                    as_user,
                    room_id,
                    // Only this build's kinds are ever written.
                    kind: crate::engine::policy::RuleKind::parse(&rule_kind)
                        .unwrap_or(crate::engine::policy::RuleKind::User),
                    entity,
                    reason,
                    present,
                }
            }
        }
    }
}

pub fn effect_summary(e: &Effect) -> String {
    match e {
        Effect::Join { as_user, room_id } => format!("join {room_id} as {as_user}"),
        Effect::Leave { as_user, room_id, .. } => format!("leave {room_id} as {as_user}"),
        Effect::SendNotice { as_user, room_id, txn_id, .. } => format!("notice {txn_id} in {room_id} as {as_user}"),
        Effect::PutPushRule { owner, rule } => format!("push rule {} for {owner}", rule.rule_id),
        Effect::DeletePushRule { owner, rule_id, .. } => format!("delete push rule {rule_id} for {owner}"),
        Effect::EnablePushRule { owner, rule_id, enabled } => {
            format!("push rule {rule_id} enabled={enabled} for {owner}")
        }
        Effect::SetTag { owner, room_id, tag, present } => format!("tag {tag}={present} on {room_id} for {owner}"),
        Effect::SendEmail { owner, message_id, .. } => format!("e-mail {message_id} for {owner}"),
        Effect::FetchProfile { user } => format!("profile of {user}"),
        Effect::ImportContacts { owner } => format!("import contacts of {owner}"),
        Effect::Backfill { owner, room_id } => format!("backfill {room_id} as {owner}"),
        Effect::LookUpShared { owner, user, .. } => format!("rooms {user} shares with {owner}"),
        Effect::Native(native) => super::records_native::summary(native),
        Effect::FollowList { as_user, target, .. } => format!("follow ban list {target} as {as_user}"),
        Effect::CheckPending { owner } => format!("check {owner}'s pending strangers against their ban lists"),
        Effect::CreateList { owner, .. } => format!("create the shared ban list of {owner}"),
        Effect::PutPolicyRule { room_id, entity, present, .. } => {
            format!("{} {entity} in shared ban list {room_id}", if *present { "publish" } else { "withdraw" })
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `owner \0 rest`: keys that sort by owner, so one owner's entries can be
/// found with a prefix scan.
pub fn pair_key(owner: &str, rest: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(owner.len() + rest.len() + 1);
    k.extend_from_slice(owner.as_bytes());
    k.push(0);
    k.extend_from_slice(rest.as_bytes());
    k
}

pub fn owner_prefix(owner: &str) -> Vec<u8> {
    pair_key(owner, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The list of events consumed is read by hand: what the derived writer
    /// wrote (and any order of its fields) reads back, another version and
    /// a bad event ID are refused.
    #[test]
    fn a_seen_list_reads_back_as_written_and_refuses_what_it_does_not_know() {
        let events: Vec<OwnedEventId> = vec!["$a".try_into().unwrap(), "$b:x.org".try_into().unwrap()];
        let written = encode(&SeenRecord::from(events.as_slice()));
        assert_eq!(std::str::from_utf8(&written).unwrap(), r#"{"v":"1","events":["$a","$b:x.org"]}"#);
        assert_eq!(Vec::<OwnedEventId>::from(decode::<SeenRecord>("seen", &written).unwrap()), events);
        let reordered = br#"{"events":["$a","$b:x.org"],"v":"1"}"#;
        assert_eq!(Vec::<OwnedEventId>::from(decode::<SeenRecord>("seen", reordered).unwrap()), events);
        for bad in [&br#"{"v":"2","events":[]}"#[..], br#"{"v":"1","events":["no-sigil"]}"#, br#"{"events":[]}"#] {
            assert!(
                matches!(decode::<SeenRecord>("seen", bad), Err(StoreError::Corrupt(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// Room and stranger records are read by hand: every kind reads back as
    /// the derived writer wrote it, in any field order; each kind's required
    /// fields stay required, and another version or kind is refused.
    #[test]
    fn room_and_stranger_records_read_back_as_written_and_refuse_what_they_do_not_know() {
        let mut full = HeldRoom::new("@a:x.org".try_into().unwrap(), "@s:y.org".try_into().unwrap(), true, 5);
        full.inviter_name = Some("Sam".into());
        full.name = Some("hi".into());
        full.members = Some(2);
        full.reason = Some("why".into());
        full.replied = true;
        full.digested = true;
        full.unreadable = Some(Unreadable::Refused);
        full.wave = Some(WaveKind::Server);
        full.reply_owed_ms = Some(7);
        full.said = Some("first line".into());
        full.invited_here = Some(3);
        full.shared = Some(SharedRooms { names: vec!["Book club".into()], count: 1, complete: true });
        let states = [
            RoomState::PendingControl { inviter: "@a:x.org".try_into().unwrap(), invited_at_ms: 9 },
            RoomState::Control { owner: "@a:x.org".try_into().unwrap() },
            RoomState::Held(HeldRoom::new("@a:x.org".try_into().unwrap(), "@s:y.org".try_into().unwrap(), false, 1)),
            RoomState::Held(full),
        ];
        for state in states {
            let written = encode(&RoomRecord::from(&state));
            assert_eq!(RoomState::from(decode::<RoomRecord>("room", &written).unwrap()), state);
            // The same fields, the tags last.
            let mut fields: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&written).unwrap();
            let (v, kind) = (fields.remove("v").unwrap(), fields.remove("kind").unwrap());
            fields.insert("kind".into(), kind);
            fields.insert("v".into(), v);
            let reordered = serde_json::to_vec(&fields).unwrap();
            assert_eq!(RoomState::from(decode::<RoomRecord>("room", &reordered).unwrap()), state);
        }
        for bad in [
            &br#"{"v":"2","kind":"control","owner":"@a:x.org"}"#[..],
            br#"{"kind":"control","owner":"@a:x.org"}"#,
            br#"{"v":"1","kind":"lobby","owner":"@a:x.org"}"#,
            br#"{"v":"1","owner":"@a:x.org"}"#,
            br#"{"v":"1","kind":"control"}"#,
            br#"{"v":"1","kind":"control","owner":"not-a-user"}"#,
            br#"{"v":"1","kind":"pending_control","inviter":"@a:x.org"}"#,
            br#"{"v":"1","kind":"held","owner":"@a:x.org","inviter":"@s:y.org","is_dm":true,"invited_at_ms":5}"#,
            br#"{"v":"1","kind":"held","inviter":"@s:y.org","is_dm":true,"invited_at_ms":5,"replied":false}"#,
            br#"{"v":"1","kind":"control","owner":"@a:x.org","owner":"@b:x.org"}"#,
        ] {
            assert!(
                matches!(decode::<RoomRecord>("room", bad), Err(StoreError::Corrupt(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }

        let stranger = StrangerState {
            last_reply_ms: Some(1),
            invites_not_held: Tally { total: 2, reported: 1 },
            messages_not_kept: Tally { total: 4, reported: 3 },
            urgent_ms: Some(5),
            urgent_refused_ms: Some(6),
        };
        for state in [stranger, StrangerState::default()] {
            let written = encode(&StrangerRecord::from(&state));
            assert_eq!(StrangerState::from(decode::<StrangerRecord>("stranger", &written).unwrap()), state);
        }
        let old = br#"{"v":"1","last_reply_ms":null}"#;
        assert_eq!(StrangerState::from(decode::<StrangerRecord>("stranger", old).unwrap()), StrangerState::default());
        for bad in [
            &br#"{"v":"2","last_reply_ms":null}"#[..],
            br#"{"last_reply_ms":null}"#,
            br#"{"v":"1","last_reply_ms":"x"}"#,
        ] {
            assert!(matches!(decode::<StrangerRecord>("stranger", bad), Err(StoreError::Corrupt(_))));
        }
    }

    #[test]
    fn urgent_settings_and_the_undo_history_round_trip() {
        let room: OwnedRoomId = "!held:x.org".try_into().unwrap();
        let held = HeldRoom::new("@a:x.org".try_into().unwrap(), "@s:y.org".try_into().unwrap(), true, 5);
        let owner = OwnerState {
            urgent: true,
            urgent_per_sender_ms: Some(86_400_000),
            urgent_per_day: Some(5),
            urgent_sent: vec![7, 8],
            undo: vec![
                Undo {
                    at_ms: 9,
                    kind: UndoKind::Allow,
                    subjects: vec![("@s:y.org".parse().unwrap(), Some(Contact::Blocked { since_ms: 3 }))],
                    rooms: vec![(room, held)],
                    link: Some("n1".into()),
                },
                Undo {
                    at_ms: 10,
                    kind: UndoKind::Deny,
                    subjects: vec![("*:y.org".parse().unwrap(), None)],
                    rooms: vec![],
                    link: None,
                },
            ],
            ..OwnerState::new("@a:x.org".try_into().unwrap(), "!c:x.org".try_into().unwrap(), 1)
        };
        let back: OwnerState = decode::<OwnerRecord>("owner", &encode(&OwnerRecord::from(&owner))).unwrap().into();
        assert_eq!(back, owner);
        let stranger = StrangerState { urgent_ms: Some(4), urgent_refused_ms: Some(6), ..Default::default() };
        let back: StrangerState =
            decode::<StrangerRecord>("stranger", &encode(&StrangerRecord::from(&stranger))).unwrap().into();
        assert_eq!(back, stranger);
    }

    /// An owner record from before the digest address and the contact
    /// were apart: its address may never have been confirmed, so it is
    /// neither mailed nor shown, only offered back; a confirmed one written
    /// since reads as it was written.
    #[test]
    fn an_older_owners_address_is_kept_as_unconfirmed_and_a_new_one_round_trips() {
        let old = br#"{"v":"1","user_id":"@a:x.org","control_room":"!c:x.org","since_ms":1,"displayname":null,
            "reply_template":null,"email":"a@x.org","reply_window_start_ms":0,"replies_in_window":0,"last_list":[],
            "paused_until_ms":null,"reply_interval_ms":null,"timezone":null,"digest_minute":null,
            "retention_ms":null,"digest_last_slot_ms":null,"digest_last_sent_ms":null,"email_pending":null}"#;
        let o: OwnerState = decode::<OwnerRecord>("owner", old).unwrap().into();
        assert_eq!((o.email, o.contact, o.email_unconfirmed.as_deref()), (None, None, Some("a@x.org")));
        let confirmed = OwnerState {
            email: Some("a@x.org".into()),
            contact: Some("office@x.org".into()),
            ..OwnerState::new("@a:x.org".try_into().unwrap(), "!c:x.org".try_into().unwrap(), 1)
        };
        let back: OwnerState = decode::<OwnerRecord>("owner", &encode(&OwnerRecord::from(&confirmed))).unwrap().into();
        assert_eq!(back, confirmed);
    }

    /// A captured message stored before retention counted from receipt
    /// still reads, with the sender's time standing in for the receipt.
    #[test]
    fn a_capture_stored_without_its_receipt_time_reads_with_the_senders_time() {
        let old = br#"{"v":"1","owner":"@a:x.org","room_id":"!r:x.org","event_id":"$e","sender":"@s:y.org",
            "ts_ms":42,"msgtype":"m.text","body":"hi","html":null,"media":null,"encrypted":false,"edited":false,
            "digested":false}"#;
        let d: Deferred = decode::<DeferredRecord>("deferred", old).unwrap().into();
        assert_eq!((d.ts_ms, d.received_ms), (42, 42));
        let again: Deferred = decode::<DeferredRecord>(
            "deferred",
            &encode(&DeferredRecord::from(&Deferred { received_ms: 99, ..d.clone() })),
        )
        .unwrap()
        .into();
        assert_eq!(again.received_ms, 99);
    }

    #[test]
    fn records_from_before_lanes_still_read() {
        let held = br#"{"v":"1","kind":"held","owner":"@a:x.org","inviter":"@s:y.org","is_dm":true,
            "invited_at_ms":5,"name":null,"members":null,"reason":null,"replied":false}"#;
        let RoomState::Held(h) = RoomState::from(decode::<RoomRecord>("room", held).unwrap()) else { panic!() };
        assert_eq!(h.unreadable, None);
        let unrule = br#"{"v":"1","kind":"delete_push_rule","owner":"@a:x.org","rule_id":"gk.held.00"}"#;
        let EffectRecord::V1(r) = decode::<EffectRecord>("effect", unrule).unwrap();
        let effect = Effect::from(r);
        assert_eq!(effect.lane(), crate::engine::Lane::Owner("@a:x.org".try_into().unwrap()));
    }

    #[test]
    fn an_unreadable_room_round_trips_and_an_unknown_reason_still_reads_as_unreadable() {
        let mut h = HeldRoom::new("@a:x.org".try_into().unwrap(), "@s:y.org".try_into().unwrap(), true, 5);
        h.unreadable = Some(Unreadable::NotSilenced);
        let bytes = encode(&RoomRecord::from(&RoomState::Held(h.clone())));
        assert_eq!(RoomState::from(decode::<RoomRecord>("room", &bytes).unwrap()), RoomState::Held(h));
        let later = String::from_utf8(bytes).unwrap().replace("not_silenced", "something_new");
        let RoomState::Held(read) = RoomState::from(decode::<RoomRecord>("room", later.as_bytes()).unwrap()) else {
            panic!()
        };
        assert_eq!(read.unreadable, Some(Unreadable::NoAnswer));
    }
}
