//! Time-driven decisions: expired allows, ended pauses, and digests, both
//! scheduled (from a housekeeping tick) and asked for (`digest`).

use std::collections::BTreeSet;

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};

use super::links::{self, Link, LinkAction};
use super::*;

/// An owner's time-driven work, one owner's per input (their overview is
/// the only one a decision holds): the replies the hourly cap held back,
/// if the budget is back, oldest first; then the scheduled digest if it is
/// still due, starting from what the replies changed so that neither write
/// undoes the other. A repeated input finds nothing due and does nothing.
pub(super) fn owner_due(snapshot: &Snapshot, owner: &OwnedUserId, now_ms: u64, config: &EngineConfig) -> Decision {
    let Some(due) = &snapshot.due else { return Decision::default() };
    let mut d = Decision::default();
    for owed in due.replies.iter().filter(|r| r.owner.user_id == *owner) {
        let late = waves::owed_replies(owed, now_ms, config);
        d.changes.extend(late.changes);
        d.effects.extend(late.effects);
        d.outcomes.extend(late.outcomes);
    }
    if let Some(due_digest) = due.digests.iter().find(|d| d.owner.user_id == *owner) {
        let (state, overview) = patched(&due_digest.owner, &due_digest.overview, &d.changes);
        let seed = format!("{}:{}", due_digest.owner.user_id, due_digest.slot_ms);
        let sent = send_digest(&state, &overview, Some(due_digest.slot_ms), now_ms, &seed, config);
        d.changes.extend(sent.changes);
        d.effects.extend(sent.effects);
        d.outcomes.extend(sent.outcomes);
    }
    d
}

/// Housekeeping: expired allows are removed (their senders are strangers
/// again, and their invites are held), ended pauses resume holding.
/// Digests and owed replies come one owner at a time ([`owner_due`]).
pub(super) fn tick(snapshot: &Snapshot, now_ms: u64, config: &EngineConfig) -> Decision {
    let Some(due) = &snapshot.due else { return Decision::default() };
    let mut d = Decision::default();
    for (owner, subject) in &due.expired {
        d = d
            .change(StateChange::RemoveContact { owner: owner.clone(), subject: subject.clone() })
            .effect(Effect::DeletePushRule { owner: owner.clone(), rule_id: rules::allow_id(subject), room: None });
    }
    for owner in due.unpause.iter().filter(|o| o.paused_until_ms.is_some_and(|u| u <= now_ms)) {
        let seed = format!("{}:{}", owner.user_id, owner.paused_until_ms.unwrap_or_default());
        let said = texts::pause_over();
        d = d
            .change(StateChange::PutOwner(OwnerState { paused_until_ms: None, ..owner.clone() }))
            .effect(Effect::EnablePushRule {
                owner: owner.user_id.clone(),
                rule_id: rules::HOLD_INVITES.into(),
                enabled: true,
            })
            .effect(Effect::SendNotice {
                as_user: config.bot.clone(),
                room_id: owner.control_room.clone(),
                txn_id: txn_id_for(&seed, "resumed"),
                body: said.plain,
                html: said.html,
                digest: None,
                only_with: None,
                urgent: false,
            });
    }
    d
}

/// An owner's record and overview with the owner and held-room changes
/// already decided in this tick applied.
fn patched(owner: &OwnerState, overview: &OwnerOverview, changes: &[StateChange]) -> (OwnerState, OwnerOverview) {
    let (mut owner, mut overview) = (owner.clone(), overview.clone());
    for change in changes {
        match change {
            StateChange::PutOwner(o) if o.user_id == owner.user_id => owner = o.clone(),
            StateChange::PutRoom(room, RoomState::Held(h)) if h.owner == owner.user_id => {
                overview.held.insert(room.clone(), h.clone());
            }
            StateChange::PutStranger { owner: o, user, state } if *o == owner.user_id => {
                if let Some(s) = overview.strangers.get_mut(user) {
                    *s = state.clone();
                }
            }
            _ => {}
        }
    }
    (owner, overview)
}

/// The digest of everything not yet digested, as notices in the control
/// room. Each item is marked digested in the same commit that queues the
/// notice carrying it, so a crash can neither lose the digest nor send it
/// twice; an item whose notice is not queued (only one too big to send,
/// which the renderer never makes) stays for the next digest, and so does
/// one whose notice is set aside (see [`digest_part_failed`]).
/// `slot_ms` is the schedule slot handled (none when asked for by command).
pub(super) fn send_digest(
    owner: &OwnerState,
    overview: &OwnerOverview,
    slot_ms: Option<u64>,
    now_ms: u64,
    seed: &str,
    config: &EngineConfig,
) -> Decision {
    let mut updated = owner.clone();
    if slot_ms.is_some() {
        updated.digest_last_slot_ms = slot_ms;
    }
    let Some(digest) = digest::render_for(owner, overview, config.client_mode) else {
        let nothing_new = || {
            let said = digest::nothing_new();
            Effect::SendNotice {
                as_user: config.bot.clone(),
                room_id: owner.control_room.clone(),
                txn_id: txn_id_for(seed, "digest0"),
                body: said.plain,
                html: said.html,
                digest: None,
                only_with: None,
                urgent: false,
            }
        };
        let d = Decision::default();
        return match slot_ms {
            // Nothing new: no message (unless asked for), but the slot is handled.
            Some(_) if !owner.digest_when_empty => d.change(StateChange::PutOwner(updated)),
            Some(_) => d
                .change(StateChange::PutOwner(updated))
                .effect(nothing_new())
                .outcome(Outcome::DigestSent { notices: 1 }),
            None => d.effect(nothing_new()).outcome(Outcome::DigestSent { notices: 1 }),
        };
    };
    updated.digest_last_sent_ms = Some(now_ms);
    updated.last_list = digest.list.clone();
    updated.invites_not_held = owner.invites_not_held.all_reported();
    updated.messages_not_kept = owner.messages_not_kept.all_reported();
    updated.banned = owner.banned.all_reported();
    let mut d = Decision::default().change(StateChange::PutOwner(updated));
    let sendable: Vec<bool> =
        digest.parts.iter().map(|p| limits::fits(&p.plain, &p.html, config.client_mode)).collect();
    let carried = digest.carried.iter().zip(&sendable).filter(|(_, ok)| **ok).map(|(c, _)| c);
    let (mut messages, mut invites, mut counted) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for c in carried {
        messages.extend(c.messages.iter());
        invites.extend(c.invites.iter());
        counted.extend(c.counted.iter());
    }
    for (user, st) in overview.strangers.iter().filter(|(u, _)| counted.contains(u)) {
        let state = StrangerState {
            invites_not_held: st.invites_not_held.all_reported(),
            messages_not_kept: st.messages_not_kept.all_reported(),
            ..st.clone()
        };
        d = d.change(StateChange::PutStranger { owner: owner.user_id.clone(), user: user.clone(), state });
    }
    for m in overview.deferred.iter().filter(|m| messages.contains(&m.event_id)) {
        d = d.change(StateChange::PutDeferred(Deferred { digested: true, ..m.clone() }));
    }
    for (room, held) in overview.held.iter().filter(|(r, _)| invites.contains(r)) {
        d = d.change(StateChange::PutRoom(room.clone(), RoomState::Held(HeldRoom { digested: true, ..held.clone() })));
    }
    // The e-mail carries the whole digest in one message; it goes on its own
    // lane, so the notices below never wait for a mail server.
    if let (Some(to), Some(_)) = (&owner.email, &config.mail_secret) {
        let subject = texts::digest_email_subject(digest.list.len());
        let mut html: String = digest.parts.iter().map(|p| p.html.as_str()).collect();
        let mut unsubscribe = None;
        if let (Some(links), Some(secret)) = (&config.mail_links, &config.mail_secret) {
            let link = |action: LinkAction, subject: String, n: usize| {
                let l = Link {
                    owner: owner.user_id.to_string(),
                    action,
                    subject,
                    expires_ms: now_ms + links.lifetime_ms,
                    nonce: format!("{seed}:{n}:{action:?}"),
                };
                format!("{}/action/{}", links.public_url, links::sign(secret, &l))
            };
            let senders: Vec<(String, Vec<(LinkAction, String)>)> = digest
                .list
                .iter()
                .enumerate()
                .map(|(i, subject)| {
                    let server = match subject {
                        Subject::User(u) => Subject::Server(u.server_name().to_owned()).to_string(),
                        Subject::Server(_) => subject.to_string(),
                    };
                    let actions = [
                        (LinkAction::Allow, subject.to_string()),
                        (LinkAction::Allow30, subject.to_string()),
                        (LinkAction::Deny, subject.to_string()),
                        (LinkAction::Block, subject.to_string()),
                        (LinkAction::BlockServer, server),
                    ];
                    (subject.to_string(), actions.into_iter().map(|(a, s)| (a, link(a, s, i))).collect())
                })
                .collect();
            let stop = link(LinkAction::Unsubscribe, String::new(), usize::MAX);
            html.push_str(&texts::one_click_links(&senders, links.lifetime_ms, &stop));
            unsubscribe = Some(stop);
        }
        d = d.effect(Effect::SendEmail {
            owner: owner.user_id.clone(),
            to: to.clone(),
            subject,
            text: digest.parts.iter().map(|p| p.plain.as_str()).collect::<Vec<_>>().join("\n\n"),
            html: texts::email_document(&html),
            message_id: mail::message_id(seed, "digest", config.server_name.as_str()),
            unsubscribe,
        });
    }
    let mut notices = 0;
    let parts = digest.parts.into_iter().zip(digest.carried).enumerate().filter(|(i, _)| sendable[*i]);
    for (i, (part, carried)) in parts {
        notices += 1;
        let carries = !carried.messages.is_empty() || !carried.invites.is_empty();
        d = d.effect(Effect::SendNotice {
            as_user: config.bot.clone(),
            room_id: owner.control_room.clone(),
            txn_id: txn_id_for(seed, &format!("digest{i}")),
            body: part.plain,
            html: part.html,
            digest: carries.then(|| {
                let (messages, invites) = (carried.messages, carried.invites);
                Box::new(DigestPart { owner: owner.user_id.clone(), messages, invites })
            }),
            only_with: None,
            urgent: false,
        });
    }
    d.outcome(Outcome::DigestSent { notices })
}

/// A part of the owner's digest was set aside: what it carried was never
/// shown, so it is marked back as not digested, and the next digest carries
/// it. Only what is still kept and still marked is touched (the owner may
/// have decided about the sender since).
pub(super) fn digest_part_failed(snapshot: &Snapshot, messages: &[OwnedEventId], invites: &[OwnedRoomId]) -> Decision {
    let Some(overview) = &snapshot.overview else { return Decision::default() };
    let (messages, invites): (BTreeSet<_>, BTreeSet<_>) = (messages.iter().collect(), invites.iter().collect());
    let mut d = Decision::default();
    for m in overview.deferred.iter().filter(|m| m.digested && messages.contains(&m.event_id)) {
        d = d.change(StateChange::PutDeferred(Deferred { digested: false, ..m.clone() }));
    }
    for (room, held) in overview.held.iter().filter(|(r, h)| h.digested && invites.contains(r)) {
        d = d.change(StateChange::PutRoom(room.clone(), RoomState::Held(HeldRoom { digested: false, ..held.clone() })));
    }
    d
}

/// Mail to the owner's address failed for good: say so where they will see it.
pub(super) fn mail_failed(
    snapshot: &Snapshot,
    owner: &OwnedUserId,
    to: &str,
    reason: &str,
    config: &EngineConfig,
) -> Decision {
    let Some(state) = snapshot.owners.get(owner) else { return Decision::default() };
    let text = texts::mail_failed(to, reason);
    let seed = format!("{owner}:{to}:{reason}:{}", state.digest_last_sent_ms.unwrap_or_default());
    Decision::default().effect(Effect::SendNotice {
        as_user: config.bot.clone(),
        room_id: state.control_room.clone(),
        txn_id: txn_id_for(&seed, "mailfailed"),
        body: text.plain,
        html: text.html,
        digest: None,
        only_with: None,
        urgent: false,
    })
}
