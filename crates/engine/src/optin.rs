//! Opting in (inviting the bot to a DM), opting out (leaving it, `stop`),
//! and what opt-in looks up: the owner's name and existing contacts.

use ruma::{OwnedRoomId, OwnedUserId};

use super::*;

pub(super) fn bot_membership(
    snapshot: &Snapshot,
    meta: &EventMeta,
    membership: &Membership,
    is_direct: bool,
    now_ms: u64,
    config: &EngineConfig,
) -> Decision {
    let bot = config.bot.clone();
    let room = meta.room_id.clone();
    match membership {
        // Users from other servers can never opt in here: the refusal rides
        // on the rejection itself, so an invite wave costs no messages.
        Membership::Invite if meta.sender.server_name() != config.server_name => {
            Decision::default().effect(Effect::Leave {
                as_user: bot,
                room_id: room,
                reason: Some(texts::refusal(config.server_name.as_str()).plain),
            })
        }
        Membership::Invite if !config.may_opt_in(&meta.sender) => Decision::default()
            .effect(Effect::Join { as_user: bot.clone(), room_id: room.clone() })
            .effect(notice(&bot, &room, meta, "refusal", texts::refusal(config.server_name.as_str())))
            .effect(Effect::Leave { as_user: bot, room_id: room, reason: None }),
        // A room Gatekeeper already keeps for an owner (held, or a control
        // room) is never anyone's new control room: a member of someone's
        // held room must not overwrite its record by inviting the bot.
        Membership::Invite if matches!(snapshot.room, Some(RoomState::Held(_) | RoomState::Control { .. })) => {
            Decision::default()
        }
        Membership::Invite if !is_direct => Decision::default().effect(Effect::Leave {
            as_user: bot,
            room_id: room,
            reason: Some(texts::NOT_A_DM_REASON.into()),
        }),
        Membership::Invite => Decision::default()
            .change(StateChange::PutRoom(
                room.clone(),
                RoomState::PendingControl { inviter: meta.sender.clone(), invited_at_ms: now_ms },
            ))
            .effect(Effect::Join { as_user: bot, room_id: room }),
        // Someone removed the bot: from a control room, that is an opt-out.
        Membership::Leave | Membership::Ban => match &snapshot.room {
            Some(RoomState::Control { owner }) => opt_out(snapshot, owner, None, config),
            Some(RoomState::PendingControl { .. }) => Decision::default().change(StateChange::RemoveRoom(room)),
            _ => Decision::default(),
        },
        _ => Decision::default(),
    }
}

pub(super) fn bot_joined(snapshot: &Snapshot, meta: &EventMeta, now_ms: u64, config: &EngineConfig) -> Decision {
    let Some(RoomState::PendingControl { inviter, .. }) = &snapshot.room else {
        return Decision::default();
    };
    let room = meta.room_id.clone();
    let mut d = Decision::default();
    let owner = match snapshot.owners.get(inviter) {
        // Already an owner: this DM replaces the old control room.
        Some(old) => {
            if old.control_room != room {
                d = d
                    .change(StateChange::RemoveRoom(old.control_room.clone()))
                    .effect(notice(&config.bot, &old.control_room, meta, "moved", texts::moved_control_room()))
                    .effect(Effect::Leave {
                        as_user: config.bot.clone(),
                        room_id: old.control_room.clone(),
                        reason: None,
                    });
            }
            d = d.effect(Effect::PutPushRule {
                owner: inviter.clone(),
                rule: rules::control_room(room.as_str(), &config.bot, old.notify.unwrap_or(Notify::Quiet)),
            });
            let moved = OwnerState { control_room: room.clone(), ..old.clone() };
            if moved.urgent {
                d.effects.extend(crate::urgent::rule_effect(&moved, true, config));
            }
            moved
        }
        None => {
            let quiet = rules::control_room(room.as_str(), &config.bot, Notify::Quiet);
            let (enrolled, state) = enrol(d, inviter, &room, Some(quiet), now_ms);
            d = enrolled;
            state
        }
    };
    d.change(StateChange::PutOwner(owner))
        .change(StateChange::PutRoom(room.clone(), RoomState::Control { owner: inviter.clone() }))
        .effect(notice(&config.bot, &room, meta, "greeting", texts::greeting()))
}

/// A new owner's invites start being held; their existing contacts and
/// name are looked up. Returns the owner's fresh record.
fn enrol(
    d: Decision,
    owner: &OwnedUserId,
    room: &OwnedRoomId,
    control_rule: Option<PushRule>,
    now_ms: u64,
) -> (Decision, OwnerState) {
    let mut d = d.effect(Effect::PutPushRule { owner: owner.clone(), rule: rules::hold_invites(owner) });
    if let Some(rule) = control_rule {
        d = d.effect(Effect::PutPushRule { owner: owner.clone(), rule });
    }
    let d =
        d.effect(Effect::ImportContacts { owner: owner.clone() }).effect(Effect::FetchProfile { user: owner.clone() });
    (d, OwnerState::new(owner.clone(), room.clone(), now_ms))
}

/// Client mode's opt-in: the connector made (or found) the owner's
/// control room. Gatekeeper's messages there come from the owner's own
/// account, which never pushes to its owner, so no control-room rule.
pub(super) fn control_room_ready(
    snapshot: &Snapshot,
    owner: &OwnedUserId,
    room: &OwnedRoomId,
    now_ms: u64,
    config: &EngineConfig,
) -> Decision {
    if !config.client_mode || *owner != config.bot {
        return Decision::default();
    }
    let (d, state) = match snapshot.owners.get(owner) {
        Some(old) if old.control_room == *room => return Decision::default(),
        // The old control room was lost (left, or forgotten): this one replaces it.
        Some(old) => (
            Decision::default().change(StateChange::RemoveRoom(old.control_room.clone())),
            OwnerState { control_room: room.clone(), ..old.clone() },
        ),
        None => enrol(Decision::default(), owner, room, None, now_ms),
    };
    let greeting = texts::greeting();
    d.change(StateChange::PutOwner(state))
        .change(StateChange::PutRoom(room.clone(), RoomState::Control { owner: owner.clone() }))
        .effect(Effect::SendNotice {
            as_user: owner.clone(),
            room_id: room.clone(),
            txn_id: txn_id_for(room.as_str(), "greeting"),
            body: greeting.plain,
            html: greeting.html,
            digest: None,
            only_with: None,
            urgent: false,
        })
}

pub(super) fn member_left(
    snapshot: &Snapshot,
    meta: &EventMeta,
    target: &OwnedUserId,
    config: &EngineConfig,
) -> Decision {
    match &snapshot.room {
        Some(RoomState::Control { owner }) if owner == target => opt_out(snapshot, owner, None, config),
        // The owner left or rejected a held room themselves: stop holding it.
        Some(RoomState::Held(held)) if held.owner == *target && meta.sender == *target => Decision::default()
            .change(StateChange::RemoveRoom(meta.room_id.clone()))
            .effect(unsilence(&held.owner, &meta.room_id)),
        // Someone else took the owner out: the stranger withdrew the invite
        // (or kicked them). The join queued for it may still run (a public
        // room lets anyone in), so the owner leaves first, in the room's
        // lane after that join, and only then is the silence lifted: never
        // is the owner in a stranger's room unheld and unsilenced.
        Some(RoomState::Held(held)) if held.owner == *target => Decision::default()
            .change(StateChange::RemoveRoom(meta.room_id.clone()))
            .effect(Effect::Leave { as_user: held.owner.clone(), room_id: meta.room_id.clone(), reason: None })
            .effect(unsilence(&held.owner, &meta.room_id)),
        _ => Decision::default(),
    }
}

/// Undoes everything Gatekeeper set for `owner`. `farewell` is the event
/// that asked (for `stop`), to say goodbye in the control room.
pub(super) fn opt_out(
    snapshot: &Snapshot,
    owner: &OwnedUserId,
    farewell: Option<&EventMeta>,
    config: &EngineConfig,
) -> Decision {
    let Some(state) = snapshot.owners.get(owner) else { return Decision::default() };
    let overview = snapshot.overview.clone().unwrap_or_default();
    undo_everything(state, &overview, farewell, config)
}

/// [`opt_out`] of an owner whose overview is at hand (`stop`).
pub(super) fn undo_everything(
    state: &OwnerState,
    overview: &OwnerOverview,
    farewell: Option<&EventMeta>,
    config: &EngineConfig,
) -> Decision {
    let owner = &state.user_id;
    let mut d = Decision::default()
        .effect(Effect::DeletePushRule { owner: owner.clone(), rule_id: rules::HOLD_INVITES.into(), room: None })
        .effect(Effect::DeletePushRule { owner: owner.clone(), rule_id: rules::CONTROL.into(), room: None });
    if state.urgent && !config.client_mode {
        d = d.effect(Effect::DeletePushRule { owner: owner.clone(), rule_id: rules::URGENT.into(), room: None });
    }
    for (subject, contact) in &overview.contacts {
        if matches!(contact, Contact::Allowed { .. }) {
            d = d.effect(Effect::DeletePushRule {
                owner: owner.clone(),
                rule_id: rules::allow_id(subject),
                room: None,
            });
        }
    }
    for room in overview.held.keys() {
        d = release(d, owner, room);
    }
    if let Some(meta) = farewell {
        d = d.effect(notice(&config.bot, &state.control_room, meta, "stopped", texts::stopped(config.client_mode)));
    }
    d.effect(Effect::Leave { as_user: config.bot.clone(), room_id: state.control_room.clone(), reason: None })
        .change(StateChange::RemoveRoom(state.control_room.clone()))
        .change(StateChange::RemoveOwner(owner.clone()))
        .change(StateChange::ForgetOwnerData(owner.clone()))
}

pub(super) fn profile_fetched(snapshot: &Snapshot, user: &OwnedUserId, displayname: &Option<String>) -> Decision {
    match snapshot.owners.get(user) {
        Some(owner) if owner.displayname != *displayname => Decision::default()
            .change(StateChange::PutOwner(OwnerState { displayname: displayname.clone(), ..owner.clone() })),
        _ => Decision::default(),
    }
}

pub(super) fn contacts_imported(
    snapshot: &Snapshot,
    owner: &OwnedUserId,
    users: &[OwnedUserId],
    now_ms: u64,
    config: &EngineConfig,
) -> Decision {
    if !snapshot.owners.contains_key(owner) {
        return Decision::default();
    }
    let mut d = Decision::default();
    let mut seen = std::collections::BTreeSet::new();
    for user in users {
        if user == owner || *user == config.bot || !seen.insert(user) || snapshot.contact(owner, user).is_some() {
            continue;
        }
        let subject = Subject::User(user.clone());
        d = d.effect(Effect::PutPushRule { owner: owner.clone(), rule: rules::allow(owner, &subject) }).change(
            StateChange::PutContact {
                owner: owner.clone(),
                subject,
                contact: Contact::Allowed { since_ms: now_ms, source: AllowSource::Imported, until_ms: None },
            },
        );
    }
    d
}
