//! The gate: holding strangers' invites, capturing what they write, and the
//! one etiquette reply.

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};

use super::*;

const HOUR_MS: u64 = 3_600_000;

/// Someone invited an opted-in owner to a room.
#[allow(clippy::too_many_arguments)]
pub(super) fn invite(
    snapshot: &Snapshot,
    meta: &EventMeta,
    owner: &OwnerState,
    is_direct: bool,
    reason: &Option<String>,
    (room_name, sender_name): &(Option<String>, Option<String>),
    now_ms: u64,
    config: &EngineConfig,
) -> Decision {
    let room = &meta.room_id;
    if meta.sender == config.bot {
        return Decision::default();
    }
    match snapshot.standing(&owner.user_id, &meta.sender, now_ms) {
        Standing::Allowed => return Decision::default(),
        // Declined at once and without a word.
        Standing::Blocked => {
            return Decision::default().effect(Effect::Leave {
                as_user: owner.user_id.clone(),
                room_id: room.clone(),
                reason: None,
            });
        }
        Standing::Stranger => {}
    }
    // Paused: the invite rang as it used to, and nothing is held.
    if owner.is_paused(now_ms) || snapshot.room_of(&owner.user_id).is_some() {
        // Already held for this owner (a replay or a re-invite), or their
        // own control room. Held for another owner: held for this one too.
        return Decision::default();
    }
    // A followed ban list names them (the owner's own allow came first).
    if let Some(d) = policy::invite(snapshot, meta, owner, now_ms) {
        return d;
    }
    // Past a bound the invite stays as it is: silent (the owner's invites
    // are held by one rule) and unjoined, so it costs neither a push rule,
    // a join nor a backfill. Only the count is kept.
    let bounds = &config.bounds;
    if snapshot.kept_with(&owner.user_id, &meta.sender).held_rooms >= bounds.held_rooms_per_stranger {
        let stranger = snapshot.stranger(&owner.user_id, &meta.sender);
        return Decision::default()
            .change(StateChange::PutStranger {
                owner: owner.user_id.clone(),
                user: meta.sender.clone(),
                state: StrangerState { invites_not_held: stranger.invites_not_held.bump(), ..stranger },
            })
            .outcome(Outcome::InviteNotHeld);
    }
    if snapshot.kept(&owner.user_id).held_rooms >= bounds.held_rooms_per_owner {
        return Decision::default()
            .change(StateChange::PutOwner(OwnerState {
                invites_not_held: owner.invites_not_held.bump(),
                ..owner.clone()
            }))
            .outcome(Outcome::InviteNotHeld);
    }
    // Gatekeeper's clock, not the sender's: who comes first in `pending`
    // and the digest must not be the sender's to choose.
    let invited_at_ms = now_ms;
    let (wave_changes, wave, invited) = waves::observe_invite(snapshot, &meta.sender, &owner.user_id, now_ms, config);
    let held = HeldRoom {
        inviter_name: sender_name.clone(),
        name: room_name.clone(),
        reason: reason.clone(),
        wave,
        // Only the appservice sees every invite on the server.
        invited_here: (!config.client_mode).then_some(invited),
        ..HeldRoom::new(owner.user_id.clone(), meta.sender.clone(), is_direct, invited_at_ms)
    };
    let o = owner.user_id.clone();
    let mut d = Decision::default().change(StateChange::PutRoom(room.clone(), RoomState::Held(held)));
    d.changes.extend(wave_changes);
    if wave.is_some() {
        d = d.outcome(Outcome::WaveInvite);
    }
    // One look-up per sender, when first held; none for a wave or a flood.
    let first_held = snapshot.kept_with(&owner.user_id, &meta.sender).held_rooms == 0;
    let flooded = snapshot.kept(&owner.user_id).held_rooms >= SHARED_LOOKUPS_HELD;
    d = d
        // The room's silence must be in place before the owner is in it.
        .effect(Effect::PutPushRule { owner: o.clone(), rule: rules::held_room(room.as_str()) })
        .effect(Effect::Join { as_user: o.clone(), room_id: room.clone() })
        .effect(Effect::SetTag { owner: o.clone(), room_id: room.clone(), tag: "m.lowpriority".into(), present: true })
        .effect(Effect::Backfill { owner: o.clone(), room_id: room.clone() })
        .outcome(Outcome::InviteHeld);
    if first_held && wave.is_none() && !flooded {
        d = d.effect(Effect::LookUpShared { owner: o, user: meta.sender.clone(), room_id: room.clone() });
    }
    d
}

/// The owner invited someone: starting a conversation is consent.
pub(super) fn owner_invited(
    snapshot: &Snapshot,
    owner: &OwnerState,
    target: &OwnedUserId,
    now_ms: u64,
    config: &EngineConfig,
) -> Decision {
    if !config.auto_allow_owner_started || *target == config.bot || snapshot.contact(&owner.user_id, target).is_some() {
        return Decision::default();
    }
    let subject = Subject::User(target.clone());
    Decision::default()
        .effect(Effect::PutPushRule { owner: owner.user_id.clone(), rule: rules::allow(&owner.user_id, &subject) })
        .change(StateChange::PutContact {
            owner: owner.user_id.clone(),
            subject,
            contact: Contact::Allowed { since_ms: now_ms, source: AllowSource::OwnerStarted, until_ms: None },
        })
}

/// The owner wrote in a held room: answering is consent, like inviting.
/// The inviter is allowed and this room released, as `allow` would.
pub(super) fn owner_wrote(
    snapshot: &Snapshot,
    meta: &EventMeta,
    held: &HeldRoom,
    now_ms: u64,
    config: &EngineConfig,
) -> Decision {
    if !config.auto_allow_owner_started || snapshot.standing(&held.owner, &held.inviter, now_ms) == Standing::Blocked {
        return Decision::default();
    }
    let owner = &held.owner;
    let subject = Subject::User(held.inviter.clone());
    let room = &meta.room_id;
    let allowed = Decision::default()
        .change(StateChange::PutContact {
            owner: owner.clone(),
            subject: subject.clone(),
            contact: Contact::Allowed { since_ms: now_ms, source: AllowSource::OwnerStarted, until_ms: None },
        })
        .effect(Effect::PutPushRule { owner: owner.clone(), rule: rules::allow(owner, &subject) });
    let mut d = release(allowed, owner, room);
    for m in snapshot.overview.iter().flat_map(|o| o.deferred.iter()).filter(|m| m.room_id == *room) {
        d = d.change(StateChange::RemoveDeferred { owner: owner.clone(), event_id: m.event_id.clone() });
    }
    if let Some(state) = snapshot.owners.get(owner) {
        let text = texts::answered_in_held_chat(&held.inviter);
        d = d.effect(notice(&config.bot, &state.control_room, meta, "answered", text));
    }
    d
}

fn from_stranger(meta: &EventMeta, held: &HeldRoom, config: &EngineConfig) -> bool {
    meta.sender != held.owner && meta.sender != config.bot
}

#[allow(clippy::too_many_arguments)]
pub(super) fn message(
    snapshot: &Snapshot,
    meta: &EventMeta,
    held: &HeldRoom,
    msgtype: &str,
    body: &str,
    html: &Option<String>,
    media: &Option<Media>,
    replaces: &Option<Replacement>,
    now_ms: u64,
    config: &EngineConfig,
) -> Decision {
    if !from_stranger(meta, held, config) || seen_before(snapshot, meta, held, replaces) {
        return Decision::default();
    }
    // A late decryption names its own event: the capture that said "could
    // not be decrypted" gets the text, and nothing else happens again.
    let limit = config.bounds.message_bytes;
    if let Some(r) = replaces.as_ref().filter(|r| r.original == meta.event_id) {
        // The capture it completes is gone (redacted, pruned, decided on,
        // or never kept past a bound): nothing to complete, and nothing to
        // capture anew.
        let Some(original) = snapshot.related_for(&held.owner).filter(|o| o.sender == meta.sender) else {
            return Decision::default();
        };
        let (body, html) = bounded_text(&r.body, &r.html, limit);
        return Decision::default().change(StateChange::PutDeferred(Deferred {
            msgtype: msgtype.to_owned(),
            body,
            html,
            media: media.as_ref().map(|m| bounded_media(m, limit)),
            encrypted: false,
            ..original.clone()
        }));
    } else if let Some(r) = replaces {
        return match snapshot.related_for(&held.owner) {
            // Only the author's own edits count.
            Some(original) if original.sender == meta.sender => {
                let (body, html) = bounded_text(&r.body, &r.html, limit);
                Decision::default().change(StateChange::PutDeferred(Deferred {
                    body,
                    html,
                    edited: true,
                    ..original.clone()
                }))
            }
            _ => Decision::default(),
        };
    }
    let line = body;
    let (body, html) = bounded_text(body, html, limit);
    let d = capture(
        snapshot,
        Deferred {
            msgtype: msgtype.to_owned(),
            body,
            html,
            media: media.as_ref().map(|m| bounded_media(m, limit)),
            ..fresh_capture(meta, held, now_ms)
        },
        config,
    );
    // Bots announce themselves with notices; a notice is never answered.
    if msgtype == "m.notice" {
        return d;
    }
    let d = urgent::maybe_urgent(d, snapshot, meta, held, msgtype, line, now_ms, config);
    // The reply asked for one line on who they are and what it is about:
    // their first line after it is the subject, unless the invite gave one.
    if held.replied && held.said.is_none() && media.is_none() && !line.trim().is_empty() {
        let said = HeldRoom { said: Some(texts::subject_line(line)), ..held.clone() };
        return d.change(StateChange::PutRoom(meta.room_id.clone(), RoomState::Held(said)));
    }
    maybe_reply(d, snapshot, meta, held, false, now_ms, config)
}

/// The same event captured already (delivered twice: by the homeserver and
/// by the backfill after joining, or again after a crash).
fn seen_before(snapshot: &Snapshot, meta: &EventMeta, held: &HeldRoom, replaces: &Option<Replacement>) -> bool {
    replaces.is_none() && snapshot.related_for(&held.owner).is_some_and(|d| d.event_id == meta.event_id)
}

pub(super) fn encrypted(
    snapshot: &Snapshot,
    meta: &EventMeta,
    held: &HeldRoom,
    now_ms: u64,
    config: &EngineConfig,
) -> Decision {
    if !from_stranger(meta, held, config) || seen_before(snapshot, meta, held, &None) {
        return Decision::default();
    }
    let d = capture(
        snapshot,
        Deferred { msgtype: "m.room.encrypted".into(), encrypted: true, ..fresh_capture(meta, held, now_ms) },
        config,
    );
    maybe_reply(d, snapshot, meta, held, true, now_ms, config)
}

/// What every new capture of `meta` for `held`'s owner starts from, stamped
/// with Gatekeeper's clock; the caller fills in the content.
fn fresh_capture(meta: &EventMeta, held: &HeldRoom, now_ms: u64) -> Deferred {
    Deferred {
        owner: held.owner.clone(),
        room_id: meta.room_id.clone(),
        event_id: meta.event_id.clone(),
        sender: meta.sender.clone(),
        ts_ms: meta.ts_ms,
        received_ms: now_ms,
        msgtype: String::new(),
        body: String::new(),
        html: None,
        media: None,
        encrypted: false,
        edited: false,
        digested: false,
        redacted_by: None,
        denied_ms: None,
    }
}

/// Keeps a new message, unless its sender (or all strangers together) have
/// as many kept for this owner as the bounds allow: then it is counted.
fn capture(snapshot: &Snapshot, deferred: Deferred, config: &EngineConfig) -> Decision {
    let bounds = &config.bounds;
    let (owner, sender) = (&deferred.owner, &deferred.sender);
    let has_kept = snapshot.kept_with(owner, sender).messages;
    let known = snapshot.strangers.contains_key(&(owner.clone(), sender.clone()));
    // Counted on the sender when they have a record anyway (kept messages,
    // a reply); otherwise on the owner: made-up senders past the owner's
    // bound must not each cost a record of their own.
    if has_kept >= bounds.messages_per_stranger
        || (snapshot.kept(owner).messages >= bounds.messages_per_owner && (has_kept > 0 || known))
    {
        let stranger = snapshot.stranger(owner, sender);
        return Decision::default()
            .change(StateChange::PutStranger {
                owner: owner.clone(),
                user: sender.clone(),
                state: StrangerState { messages_not_kept: stranger.messages_not_kept.bump(), ..stranger },
            })
            .outcome(Outcome::MessageNotKept);
    }
    if snapshot.kept(owner).messages >= bounds.messages_per_owner {
        let Some(state) = snapshot.owners.get(owner) else { return Decision::default() };
        return Decision::default()
            .change(StateChange::PutOwner(OwnerState {
                messages_not_kept: state.messages_not_kept.bump(),
                ..state.clone()
            }))
            .outcome(Outcome::MessageNotKept);
    }
    Decision::default().change(StateChange::PutDeferred(deferred)).outcome(Outcome::MessageCaptured)
}

/// A message's text within `limit` bytes: the body cut at a character
/// boundary with a note saying so; HTML that does not fit is dropped (cut
/// HTML is not HTML), leaving the body, which every message has.
fn bounded_text(body: &str, html: &Option<String>, limit: usize) -> (String, Option<String>) {
    let html = html.clone().filter(|h| h.len() <= limit);
    if body.len() <= limit {
        return (body.to_owned(), html);
    }
    let note = texts::trimmed_on_capture(body.len());
    let mut cut = limit.saturating_sub(note.len());
    while !body.is_char_boundary(cut) {
        cut -= 1;
    }
    (format!("{}{note}", &body[..cut]), None)
}

/// A file's description within bounds: its name and type are the sender's
/// words, shown in the digest.
fn bounded_media(media: &Media, limit: usize) -> Media {
    let cut = |s: &str, max: usize| -> String {
        let mut end = s.len().min(max);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s[..end].to_owned()
    };
    let short = limit.min(1_024);
    Media {
        url: cut(&media.url, short),
        name: cut(&media.name, short),
        mimetype: media.mimetype.as_deref().map(|m| cut(m, 255)),
        size: media.size,
    }
}

/// The sender withdrawing their message (or the owner removing it) drops
/// what was kept; anyone else's redaction is only noted: another member of
/// a stranger's room must not be able to erase what a stranger said.
pub(super) fn redaction(snapshot: &Snapshot, meta: &EventMeta, held: &HeldRoom, redacts: &OwnedEventId) -> Decision {
    match snapshot.related_for(&held.owner) {
        Some(original) if original.room_id == meta.room_id => {
            if meta.sender == original.sender || meta.sender == held.owner {
                Decision::default()
                    .change(StateChange::RemoveDeferred { owner: held.owner.clone(), event_id: redacts.clone() })
            } else if original.redacted_by.is_none() {
                Decision::default().change(StateChange::PutDeferred(Deferred {
                    redacted_by: Some(meta.sender.clone()),
                    ..original.clone()
                }))
            } else {
                Decision::default()
            }
        }
        _ => Decision::default(),
    }
}

pub(super) fn room_info(
    snapshot: &Snapshot,
    owner: &OwnedUserId,
    room_id: &OwnedRoomId,
    name: &Option<String>,
    members: u32,
) -> Decision {
    match snapshot.held_for(owner) {
        Some(held) => {
            let updated =
                HeldRoom { name: name.clone().or_else(|| held.name.clone()), members: Some(members), ..held.clone() };
            if updated == *held {
                return Decision::default();
            }
            Decision::default().change(StateChange::PutRoom(room_id.clone(), RoomState::Held(updated)))
        }
        _ => Decision::default(),
    }
}

/// Past this many rooms held for an owner, new senders' shared rooms are
/// not looked up: what many identities (one look-up each, up to a hundred
/// requests) cost the owner's homeserver stays bounded.
pub const SHARED_LOOKUPS_HELD: u64 = 50;

/// The rooms the inviter of `room_id` shares with `owner` were looked up:
/// kept on the held room for its card, names flattened and bounded (they
/// are whatever the rooms' admins, perhaps the stranger, called them).
pub(super) fn shared_rooms(
    snapshot: &Snapshot,
    owner: &OwnedUserId,
    room_id: &OwnedRoomId,
    names: &[Option<String>],
    count: u32,
    complete: bool,
) -> Decision {
    let Some(held) = snapshot.held_for(owner) else { return Decision::default() };
    let names: Vec<String> =
        names.iter().take(texts::SHARED_NAMES).map(|n| texts::shared_room_name(n.as_deref())).collect();
    let count = count.max(names.len() as u32);
    let shared = SharedRooms { names, count, complete };
    if held.shared.as_ref() == Some(&shared) {
        return Decision::default();
    }
    let updated = HeldRoom { shared: Some(shared), ..held.clone() };
    Decision::default().change(StateChange::PutRoom(room_id.clone(), RoomState::Held(updated)))
}

/// A notice sent only if `user` and its sender are the room's only members.
fn only_with(notice: Effect, user: &OwnedUserId) -> Effect {
    match notice {
        Effect::SendNotice { as_user, room_id, txn_id, body, html, digest, urgent, .. } => {
            Effect::SendNotice { as_user, room_id, txn_id, body, html, digest, only_with: Some(user.clone()), urgent }
        }
        other => other,
    }
}

/// The reply found more people in the room than the owner and the
/// stranger: the "direct" invite was a group's, and is held as one.
pub(super) fn not_two_people(
    snapshot: &Snapshot,
    owner: &OwnedUserId,
    room_id: &OwnedRoomId,
    members: u32,
) -> Decision {
    match snapshot.held_for(owner) {
        Some(held) if held.is_dm => {
            let group = HeldRoom { is_dm: false, members: Some(members), ..held.clone() };
            Decision::default().change(StateChange::PutRoom(room_id.clone(), RoomState::Held(group)))
        }
        _ => Decision::default(),
    }
}

/// A step of holding a room was set aside: the room is remembered as
/// unreadable (the first reason counts: a join set aside because its silence
/// failed stays "not silenced"), and stays in `pending` for the owner to
/// decide on from what the invite said.
pub(super) fn effect_failed(
    snapshot: &Snapshot,
    room_id: &OwnedRoomId,
    owner: Option<&OwnedUserId>,
    step: FailedStep,
    no_answer: bool,
) -> Decision {
    // A report queued before reports named their owner is about the one
    // owner who held the room then.
    let held = match owner {
        Some(owner) => snapshot.held_for(owner),
        None => snapshot.held().next().filter(|_| snapshot.held().count() == 1),
    };
    let Some(held) = held else { return Decision::default() };
    if held.unreadable.is_some() {
        return Decision::default();
    }
    let why = match (step, no_answer) {
        (FailedStep::Silence, _) => Unreadable::NotSilenced,
        (FailedStep::Join, true) => Unreadable::NoAnswer,
        (FailedStep::Join, false) => Unreadable::Refused,
    };
    let updated = HeldRoom { unreadable: Some(why), ..held.clone() };
    Decision::default().change(StateChange::PutRoom(room_id.clone(), RoomState::Held(updated)))
}

/// The etiquette reply, if every loop and spam rule allows it: DMs only,
/// once per invite, once per stranger per period, and a per-owner hourly cap.
#[allow(clippy::too_many_arguments)]
fn maybe_reply(
    d: Decision,
    snapshot: &Snapshot,
    meta: &EventMeta,
    held: &HeldRoom,
    encrypted: bool,
    now_ms: u64,
    config: &EngineConfig,
) -> Decision {
    if !held.is_dm || held.replied {
        return d;
    }
    // What this decision counted already (on the owner, on the stranger) is
    // read back, so that the reply's writes keep it.
    let snapshot = &snapshot.after(&d.changes);
    let Some(owner) = snapshot.owners.get(&held.owner) else { return d };
    // A wave sender never gets a reply: it would confirm the account is live.
    if let Some(kind) = waves::in_wave(&snapshot.waves, held, &meta.sender, now_ms, config) {
        let d = d.outcome(Outcome::ReplySuppressedWave);
        if held.wave.is_some() && held.reply_owed_ms.is_none() {
            return d;
        }
        let marked = HeldRoom { wave: Some(kind), reply_owed_ms: None, ..held.clone() };
        return d.change(StateChange::PutRoom(meta.room_id.clone(), RoomState::Held(marked)));
    }
    // This decision may have counted something for the stranger already.
    let stranger = snapshot.stranger(&held.owner, &meta.sender);
    let interval = owner.reply_interval_ms.unwrap_or(config.reply_interval_ms);
    if stranger.last_reply_ms.is_some_and(|last| now_ms.saturating_sub(last) < interval) {
        return d.outcome(Outcome::ReplySuppressed);
    }
    let (window_start, used) = if now_ms.saturating_sub(owner.reply_window_start_ms) >= HOUR_MS {
        (now_ms, 0)
    } else {
        (owner.reply_window_start_ms, owner.replies_in_window)
    };
    if used >= config.max_replies_per_hour {
        // Owed: sent when the budget allows, oldest first (see `waves`).
        let mut d = d.outcome(Outcome::ReplySuppressed);
        if held.reply_owed_ms.is_none() {
            let owed = HeldRoom { reply_owed_ms: Some(now_ms), ..held.clone() };
            d = d.change(StateChange::PutRoom(meta.room_id.clone(), RoomState::Held(owed)));
        }
        if !owner.replies_owed {
            d = d.change(StateChange::PutOwner(OwnerState { replies_owed: true, ..owner.clone() }));
        }
        return d;
    }
    let text = texts::etiquette_of(owner, encrypted, now_ms);
    let replied = HeldRoom { replied: true, reply_owed_ms: None, ..held.clone() };
    d.change(StateChange::PutRoom(meta.room_id.clone(), RoomState::Held(replied)))
        .change(StateChange::PutStranger {
            owner: held.owner.clone(),
            user: meta.sender.clone(),
            state: StrangerState { last_reply_ms: Some(now_ms), ..stranger },
        })
        .change(StateChange::PutOwner(OwnerState {
            reply_window_start_ms: window_start,
            replies_in_window: used + 1,
            ..owner.clone()
        }))
        .effect(only_with(notice(&held.owner, &meta.room_id, meta, "etiquette", text), &meta.sender))
        .outcome(Outcome::ReplySent)
}
