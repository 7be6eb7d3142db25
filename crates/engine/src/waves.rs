//! Waves, and the replies the hourly cap held back.
//!
//! The appservice sees every invite to every local owner, so it can tell a
//! wave from a person: a sender who invites `wave_owners_per_sender` owners
//! within an hour, or `wave_senders_per_server` new senders from one server
//! (never the owners' own) within an hour. A wave sender's invites are held
//! as any stranger's, silently, but never answered: a reply would confirm
//! that the account is live. The digest groups them.
//!
//! "New" means new to the owner invited: no contact entry (allowed,
//! blocked, or an allow that ran out) and no stranger entry (no reply from
//! that owner ever). Each sender counts once per server and window.
//!
//! What this reads is two small records per sender, found by point
//! look-up: the sender's own (the owners they invited) and their server's
//! (the new senders seen from it). Each keeps at most its threshold of
//! entries, all within the window; a record says nothing after its
//! `expires_ms` and housekeeping prunes it. All times are Gatekeeper's
//! clock, never the sender's.

use std::collections::{BTreeMap, BTreeSet};

use ruma::{OwnedRoomId, OwnedUserId, UserId};

use super::*;

/// The window both thresholds count within.
pub const WINDOW_MS: u64 = 3_600_000;
/// How long a wave is remembered after its threshold was last reached: its
/// senders get no reply for that long, not even one the cap held back.
pub const WAVE_MEMORY_MS: u64 = 24 * 3_600_000;
/// How far back a sender's card counts the people they invited here.
pub const DAY_MS: u64 = 24 * 3_600_000;
/// The most invitees a sender's record keeps for the card: past it, the
/// card says this many (the oldest are let go), so a flood of invites
/// cannot grow a record.
pub const DAY_CAP: usize = 100;

/// The sender whose wave records an input is decided with: the inviter of
/// an invite, the sender of a message.
pub(super) fn reads(input: &Input) -> Option<OwnedUserId> {
    match input {
        Input::Member { meta, target, membership: Membership::Invite, .. } if *target != meta.sender => {
            Some(meta.sender.clone())
        }
        Input::Message { meta, .. } | Input::Encrypted { meta } => Some(meta.sender.clone()),
        _ => None,
    }
}

/// The records a decision about `sender` reads: their own, and their
/// server's (never written for the owners' own server).
pub fn keys(sender: &UserId) -> [WaveKey; 2] {
    [WaveKey::Sender(sender.to_owned()), WaveKey::Server(sender.server_name().to_owned())]
}

/// A record as it stands at `now`: entries past the window and a wave past
/// its memory dropped.
fn live(record: Option<&WaveRecord>, now_ms: u64) -> WaveRecord {
    let mut r = record.cloned().unwrap_or_default();
    r.seen.retain(|(_, at)| now_ms.saturating_sub(*at) < WINDOW_MS);
    r.day.retain(|(_, at)| now_ms.saturating_sub(*at) < DAY_MS);
    if !waving(&r, now_ms) {
        r.wave_ms = None;
    }
    r
}

fn waving(r: &WaveRecord, now_ms: u64) -> bool {
    r.wave_ms.is_some_and(|w| now_ms.saturating_sub(w) < WAVE_MEMORY_MS)
}

/// Notes `who` as seen now, keeping at most `threshold` entries (the newest,
/// distinct users). True when the threshold is reached: a wave.
fn note(r: &mut WaveRecord, who: &OwnedUserId, now_ms: u64, threshold: u32) -> bool {
    let cap = threshold.max(1) as usize;
    r.seen.retain(|(u, _)| u != who);
    r.seen.push((who.clone(), now_ms));
    if r.seen.len() > cap {
        r.seen.drain(..r.seen.len() - cap);
    }
    let wave = r.seen.len() >= cap;
    if wave {
        r.wave_ms = Some(now_ms);
    }
    r.expires_ms = (now_ms + WINDOW_MS).max(r.wave_ms.map_or(0, |w| w + WAVE_MEMORY_MS)).max(day_expiry(r));
    wave
}

fn day_expiry(r: &WaveRecord) -> u64 {
    r.day.last().map_or(0, |(_, at)| at + DAY_MS)
}

/// Notes that the sender of `r` invited `who` now, for the card: distinct
/// people within a day, at most [`DAY_CAP`]. How many that makes.
fn note_day(r: &mut WaveRecord, who: &OwnedUserId, now_ms: u64) -> u32 {
    r.day.retain(|(u, _)| u != who);
    r.day.push((who.clone(), now_ms));
    if r.day.len() > DAY_CAP {
        r.day.drain(..r.day.len() - DAY_CAP);
    }
    r.expires_ms = r.expires_ms.max(day_expiry(r));
    r.day.len() as u32
}

/// Appservice mode: `sender` invited `target`, someone on this server who
/// is not an owner. Only the sender's count for the card notes it (the
/// appservice sees every invite here); waves count owners only.
pub(super) fn observe_other_invite(
    snapshot: &Snapshot,
    sender: &OwnedUserId,
    target: &OwnedUserId,
    now_ms: u64,
) -> Vec<StateChange> {
    let key = WaveKey::Sender(sender.clone());
    let mut own = live(snapshot.waves.get(&key), now_ms);
    note_day(&mut own, target, now_ms);
    vec![StateChange::PutWave(key, own)]
}
fn new_to(snapshot: &Snapshot, owner: &OwnedUserId, sender: &OwnedUserId) -> bool {
    snapshot.contact(owner, sender).is_none() && !snapshot.strangers.contains_key(&(owner.clone(), sender.clone()))
}

/// An invite from `sender` to `owner` is being held: the records that note
/// it, whether it is (part of) a wave, and how many people here the sender
/// invited within a day, this owner included.
pub(super) fn observe_invite(
    snapshot: &Snapshot,
    sender: &OwnedUserId,
    owner: &OwnedUserId,
    now_ms: u64,
    config: &EngineConfig,
) -> (Vec<StateChange>, Option<WaveKind>, u32) {
    let mut changes = Vec::new();
    let mut kind = None;
    let key = WaveKey::Sender(sender.clone());
    let mut own = live(snapshot.waves.get(&key), now_ms);
    if note(&mut own, owner, now_ms, config.wave_owners_per_sender) || waving(&own, now_ms) {
        kind = Some(WaveKind::Sender);
    }
    let invited = note_day(&mut own, owner, now_ms);
    changes.push(StateChange::PutWave(key, own));
    if sender.server_name() != config.server_name && new_to(snapshot, owner, sender) {
        let key = WaveKey::Server(sender.server_name().to_owned());
        let mut server = live(snapshot.waves.get(&key), now_ms);
        note(&mut server, sender, now_ms, config.wave_senders_per_server);
        if waving(&server, now_ms) {
            kind = Some(WaveKind::Server);
        }
        changes.push(StateChange::PutWave(key, server));
    }
    (changes, kind, invited)
}

/// Whether `sender`, writing in (or owed a reply in) `held`, is part of a
/// wave: their invite was marked so, or a wave was seen since (they, or
/// their server, reached a threshold after they invited).
pub(super) fn in_wave(
    waves: &BTreeMap<WaveKey, WaveRecord>,
    held: &HeldRoom,
    sender: &UserId,
    now_ms: u64,
    config: &EngineConfig,
) -> Option<WaveKind> {
    if held.wave.is_some() {
        return held.wave;
    }
    // Of a server's wave, only an invite from the hour that made it, or
    // after, is part: a stranger held before a wave began on their (big,
    // public) server is not silenced by it after the fact. A sender's own
    // wave is theirs, whenever they invited.
    let part_of = |r: &WaveRecord| {
        waving(r, now_ms) && r.wave_ms.is_some_and(|w| held.invited_at_ms.saturating_add(WINDOW_MS) >= w)
    };
    let server = WaveKey::Server(sender.server_name().to_owned());
    if sender.server_name() != config.server_name && waves.get(&server).is_some_and(part_of) {
        return Some(WaveKind::Server);
    }
    let own = WaveKey::Sender(sender.to_owned());
    waves.get(&own).is_some_and(|r| waving(r, now_ms)).then_some(WaveKind::Sender)
}

/// The replies `due.owner` owes, now that the hourly budget is back: oldest
/// first, as many as the budget allows. A room whose stranger was decided
/// on (allowed or blocked; a denied or released room is gone), who got a
/// reply within the period meanwhile, or who turned out to be part of a
/// wave, is owed nothing any more.
pub(super) fn owed_replies(due: &DueReplies, now_ms: u64, config: &EngineConfig) -> Decision {
    let owner = &due.owner;
    let mut d = Decision::default();
    if !owner.replies_owed {
        return d;
    }
    let (window_start, mut used) = if now_ms.saturating_sub(owner.reply_window_start_ms) >= WINDOW_MS {
        (now_ms, 0)
    } else {
        (owner.reply_window_start_ms, owner.replies_in_window)
    };
    let mut owed: Vec<(&OwnedRoomId, &HeldRoom)> =
        due.overview.held.iter().filter(|(_, h)| h.reply_owed_ms.is_some()).collect();
    owed.sort_by_key(|(room, h)| (h.reply_owed_ms, h.invited_at_ms, (*room).clone()));
    let interval = owner.reply_interval_ms.unwrap_or(config.reply_interval_ms);
    let mut answered: BTreeSet<&OwnedUserId> = BTreeSet::new();
    let mut still_owed = false;
    for (room, held) in owed {
        let wave = in_wave(&due.waves, held, &held.inviter, now_ms, config);
        let decided =
            due.overview.contacts.get(&Subject::User(held.inviter.clone())).is_some_and(|c| live_contact(c, now_ms))
                || due
                    .overview
                    .contacts
                    .get(&Subject::Server(held.inviter.server_name().to_owned()))
                    .is_some_and(|c| live_contact(c, now_ms));
        let recently = due
            .strangers
            .get(&held.inviter)
            .and_then(|s| s.last_reply_ms)
            .is_some_and(|last| now_ms.saturating_sub(last) < interval);
        if wave.is_some() || decided || recently || held.replied || !held.is_dm || answered.contains(&held.inviter) {
            let cleared = HeldRoom { reply_owed_ms: None, wave: wave.or(held.wave), ..held.clone() };
            d = d.change(StateChange::PutRoom(room.clone(), RoomState::Held(cleared)));
            if wave.is_some() {
                d = d.outcome(Outcome::ReplySuppressedWave);
            }
            continue;
        }
        if used >= config.max_replies_per_hour {
            still_owed = true;
            break;
        }
        used += 1;
        answered.insert(&held.inviter);
        let encrypted = {
            let mut theirs =
                due.overview.deferred.iter().filter(|m| m.room_id == *room && m.sender == held.inviter).peekable();
            theirs.peek().is_some() && theirs.all(|m| m.encrypted)
        };
        let text = texts::etiquette_of(owner, encrypted, now_ms);
        let seed = format!("{room}:{}", held.reply_owed_ms.unwrap_or_default());
        // Whatever else is kept of the stranger stays as it is.
        let mut stranger = due.strangers.get(&held.inviter).cloned().unwrap_or_default();
        stranger.last_reply_ms = Some(now_ms);
        d = d
            .change(StateChange::PutRoom(
                room.clone(),
                RoomState::Held(HeldRoom { replied: true, reply_owed_ms: None, ..held.clone() }),
            ))
            .change(StateChange::PutStranger {
                owner: owner.user_id.clone(),
                user: held.inviter.clone(),
                state: stranger,
            })
            .effect(Effect::SendNotice {
                as_user: owner.user_id.clone(),
                room_id: room.clone(),
                txn_id: txn_id_for(&seed, "etiquette"),
                body: text.plain,
                html: text.html,
                digest: None,
                only_with: Some(held.inviter.clone()),
                urgent: false,
            })
            .outcome(Outcome::ReplySentLate);
    }
    d.change(StateChange::PutOwner(OwnerState {
        reply_window_start_ms: window_start,
        replies_in_window: used,
        replies_owed: still_owed,
        ..owner.clone()
    }))
}

/// An allow that has not run out, or a block: the owner decided.
fn live_contact(c: &Contact, now_ms: u64) -> bool {
    match c {
        Contact::Allowed { until_ms: Some(until), .. } => *until > now_ms,
        _ => true,
    }
}
