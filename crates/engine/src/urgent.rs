//! Urgent messages: when the owner turned it on (`set urgent on`), a
//! stranger's message that starts with `urgent:` reaches the owner at once —
//! a notice with sound in the control room, and an e-mail to a verified
//! digest address — within bounds: once per stranger per period (default 30
//! days), a few per owner per day (default 3), never for a wave sender. The
//! room stays held and the message is kept for the digest either way; the
//! stranger is told whether it went through.

use super::*;

pub const DAY_MS: u64 = 86_400_000;
/// At most one urgent message per stranger in this period, unless the
/// owner set another (`set urgent-per-sender`).
pub const DEFAULT_PER_SENDER_MS: u64 = 30 * DAY_MS;
/// The shortest period the owner may set: a stranger gets through at most
/// once a day whatever the owner chose.
pub const MIN_PER_SENDER_MS: u64 = DAY_MS;
/// At most this many urgent messages per owner per day, unless the owner
/// set another (`set urgent-per-day`), which may not be more than
/// [`MAX_PER_DAY`]: the owner's record keeps one time per message.
pub const DEFAULT_PER_DAY: u32 = 3;
pub const MAX_PER_DAY: u32 = 20;

/// What an urgent message starts with (any case, after leading spaces).
pub const MARK: &str = "urgent:";
/// Longest subject and text quoted to the owner.
const SUBJECT_CHARS: usize = 200;
const TEXT_CHARS: usize = 2_000;

/// The rest of `body` if it starts with [`MARK`]: in any case, after
/// leading white space only.
pub fn marked(body: &str) -> Option<&str> {
    let body = body.trim_start();
    let head = body.get(..MARK.len())?;
    head.eq_ignore_ascii_case(MARK).then(|| &body[MARK.len()..])
}

/// The subject (the first line) and the text (the rest) of an urgent
/// message, without the mark, bounded and flattened for showing.
pub fn subject_and_text(rest: &str) -> (String, String) {
    let rest = rest.trim_start();
    let (first, more) = rest.split_once('\n').unwrap_or((rest, ""));
    let text: String = texts::visible(more.trim()).chars().take(TEXT_CHARS).collect();
    (texts::one_line(first, SUBJECT_CHARS), text)
}

/// After `d` captured a stranger's message in `held`: if it is urgent, the
/// owner hears of it at once, within the limits, and the stranger is told
/// whether it went through. Everything it counts is in the same decision
/// as the capture, so a repeated event (already captured) is never urgent
/// twice.
#[allow(clippy::too_many_arguments)]
pub(super) fn maybe_urgent(
    d: Decision,
    snapshot: &Snapshot,
    meta: &EventMeta,
    held: &HeldRoom,
    msgtype: &str,
    body: &str,
    now_ms: u64,
    config: &EngineConfig,
) -> Decision {
    let Some(rest) = marked(body) else { return d };
    // Only the inviter of a held direct chat (where the reply could tell
    // them of it), only a new message Gatekeeper kept.
    if msgtype != "m.text"
        || !held.is_dm
        || meta.sender != held.inviter
        || !d.outcomes.contains(&Outcome::MessageCaptured)
    {
        return d;
    }
    let snapshot = &snapshot.after(&d.changes);
    let Some(owner) = snapshot.owners.get(&held.owner) else { return d };
    if !owner.urgent {
        return d;
    }
    // A wave sender gets nothing through, and no word back.
    if held.wave.is_some() || waves::in_wave(&snapshot.waves, held, &meta.sender, now_ms, config).is_some() {
        return d;
    }
    let stranger = snapshot.stranger(&held.owner, &meta.sender);
    let per_sender = owner.urgent_per_sender_ms.unwrap_or(DEFAULT_PER_SENDER_MS).max(MIN_PER_SENDER_MS);
    let per_day = owner.urgent_per_day.unwrap_or(DEFAULT_PER_DAY).min(MAX_PER_DAY);
    let mut today: Vec<u64> =
        owner.urgent_sent.iter().copied().filter(|t| now_ms.saturating_sub(*t) < DAY_MS && *t <= now_ms).collect();
    let sender_may = stranger.urgent_ms.is_none_or(|t| now_ms.saturating_sub(t) >= per_sender && t <= now_ms);
    let name = owner.displayname.clone().unwrap_or_else(|| owner.user_id.localpart().to_owned());
    let to_stranger = |purpose: &str, text: texts::Text| Effect::SendNotice {
        as_user: held.owner.clone(),
        room_id: meta.room_id.clone(),
        txn_id: txn_id(meta, purpose),
        body: text.plain,
        html: text.html,
        digest: None,
        only_with: Some(meta.sender.clone()),
        urgent: false,
    };
    if !sender_may || today.len() as u32 >= per_day {
        // Told once per period, however often they try.
        if stranger.urgent_refused_ms.is_some_and(|t| now_ms.saturating_sub(t) < per_sender) {
            return d;
        }
        return d
            .change(StateChange::PutStranger {
                owner: held.owner.clone(),
                user: meta.sender.clone(),
                state: StrangerState { urgent_refused_ms: Some(now_ms), ..stranger },
            })
            .effect(to_stranger("urgent.refused", texts::urgent_not_through(&name)));
    }
    today.push(now_ms);
    let (subject, text) = subject_and_text(rest);
    let note = texts::urgent_for_owner(&meta.sender, held.inviter_name.as_deref(), &subject, &text);
    let mut d = d
        .change(StateChange::PutStranger {
            owner: held.owner.clone(),
            user: meta.sender.clone(),
            state: StrangerState { urgent_ms: Some(now_ms), ..stranger },
        })
        .change(StateChange::PutOwner(OwnerState { urgent_sent: today, ..owner.clone() }))
        .effect(Effect::SendNotice {
            as_user: config.bot.clone(),
            room_id: owner.control_room.clone(),
            txn_id: txn_id(meta, "urgent"),
            body: note.plain,
            html: note.html,
            digest: None,
            only_with: None,
            // Own messages never ring in client mode: nothing to mark.
            urgent: !config.client_mode,
        });
    if let (Some(to), Some(_)) = (&owner.email, &config.mail_secret) {
        let mail = texts::urgent_email(&meta.sender, held.inviter_name.as_deref(), &subject, &text);
        d = d.effect(Effect::SendEmail {
            owner: owner.user_id.clone(),
            to: to.clone(),
            subject: texts::urgent_email_subject(),
            text: mail.plain,
            html: texts::email_document(&mail.html),
            message_id: mail::message_id(meta.event_id.as_str(), "urgent", config.server_name.as_str()),
            unsubscribe: None,
        });
    }
    d.effect(to_stranger("urgent.through", texts::urgent_through(&name))).outcome(Outcome::UrgentSent)
}

/// The push rule that makes urgent notices ring, for an owner who turned
/// urgent on (none in client mode: the owner's own messages never ring).
pub(crate) fn rule_effect(owner: &OwnerState, on: bool, config: &EngineConfig) -> Option<Effect> {
    if config.client_mode {
        return None;
    }
    Some(if on {
        Effect::PutPushRule {
            owner: owner.user_id.clone(),
            rule: rules::urgent(owner.control_room.as_str(), &config.bot),
        }
    } else {
        Effect::DeletePushRule { owner: owner.user_id.clone(), rule_id: rules::URGENT.into(), room: None }
    })
}
