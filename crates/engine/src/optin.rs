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
        Membership::Invite if snapshot.held().next().is_some() || snapshot.control_of().is_some() => {
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
        Membership::Leave | Membership::Ban => match (snapshot.control_of(), snapshot.pending_control()) {
            (Some(owner), _) => opt_out(snapshot, owner, None, config),
            (None, Some(inviter)) => {
                Decision::default().change(StateChange::RemoveRoom { room, owner: inviter.clone() })
            }
            _ => Decision::default(),
        },
        _ => Decision::default(),
    }
}

pub(super) fn bot_joined(snapshot: &Snapshot, meta: &EventMeta, now_ms: u64, config: &EngineConfig) -> Decision {
    let Some(inviter) = snapshot.pending_control() else {
        return Decision::default();
    };
    let room = meta.room_id.clone();
    let mut d = Decision::default();
    let owner = match snapshot.owners.get(inviter) {
        // Already an owner: this DM replaces the old control room.
        Some(old) => {
            if old.control_room != room {
                d = d
                    .change(StateChange::RemoveRoom { room: old.control_room.clone(), owner: inviter.clone() })
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
    let d = native::refresh(d, &owner, config);
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
        // Told again at each start: what is kept in step on the
        // homeserver is put right.
        Some(old) if old.control_room == *room => return native::refresh(Decision::default(), old, config),
        // The old control room was lost (left, or forgotten): this one replaces it.
        Some(old) => (
            Decision::default()
                .change(StateChange::RemoveRoom { room: old.control_room.clone(), owner: owner.clone() }),
            OwnerState { control_room: room.clone(), ..old.clone() },
        ),
        None => enrol(Decision::default(), owner, room, None, now_ms),
    };
    let greeting = texts::greeting();
    let d = native::refresh(d, &state, config);
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
    if snapshot.control_of() == Some(target) {
        return opt_out(snapshot, target, None, config);
    }
    match snapshot.held_for(target) {
        // The owner left or rejected a held room themselves: stop holding it.
        Some(held) if meta.sender == *target => Decision::default()
            .change(StateChange::RemoveRoom { room: meta.room_id.clone(), owner: target.clone() })
            .effect(unsilence(&held.owner, &meta.room_id)),
        // Someone else took the owner out: the stranger withdrew the invite
        // (or kicked them). The join queued for it may still run (a public
        // room lets anyone in), so the owner leaves first, in the room's
        // lane after that join, and only then is the silence lifted: never
        // is the owner in a stranger's room unheld and unsilenced.
        Some(held) => Decision::default()
            .change(StateChange::RemoveRoom { room: meta.room_id.clone(), owner: target.clone() })
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
    d = native::restore_filter(d, state, overview);
    // A shared list nobody keeps current any more would go on banning for
    // everyone who follows it: its rules are withdrawn (the room stays).
    if let Some(room) = &state.shared_list {
        for (subject, _) in overview.contacts.iter().filter(|(_, c)| matches!(c, Contact::Blocked { .. })) {
            d = d.effect(crate::policy::publish(&config.bot, room, subject, None, false));
        }
    }
    if let Some(meta) = farewell {
        d = d.effect(notice(&config.bot, &state.control_room, meta, "stopped", texts::stopped(config.client_mode)));
    }
    d.effect(Effect::Leave { as_user: config.bot.clone(), room_id: state.control_room.clone(), reason: None })
        .change(StateChange::RemoveRoom { room: state.control_room.clone(), owner: owner.clone() })
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
    strangers: &[(OwnedRoomId, OwnedUserId)],
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
    hold_strangers_rooms(d, snapshot, owner, &seen, strangers, now_ms, config)
}

/// Two-person rooms the owner is in but never answered: the stranger's
/// DM the owner was in before opting in, or one Gatekeeper held before a
/// `stop`. Each is held as if its invite came now (silenced, listed, read
/// back), within the owner's bounds, without an automatic reply: the
/// stranger may have had one, and the conversation is not new.
fn hold_strangers_rooms(
    mut d: Decision,
    snapshot: &Snapshot,
    owner: &OwnedUserId,
    contacts: &std::collections::BTreeSet<&OwnedUserId>,
    strangers: &[(OwnedRoomId, OwnedUserId)],
    now_ms: u64,
    config: &EngineConfig,
) -> Decision {
    let held = snapshot.overview.as_ref().map(|o| &o.held);
    let mut owner_rooms = snapshot.kept(owner).held_rooms;
    let mut per_stranger: std::collections::BTreeMap<&OwnedUserId, u64> = Default::default();
    let mut rooms = std::collections::BTreeSet::new();
    for (room, user) in strangers {
        // A contact (here or in another of these rooms), anyone decided on,
        // the bot, or a room held already: nothing to hold.
        if user == owner
            || *user == config.bot
            || contacts.contains(user)
            || snapshot.standing(owner, user, now_ms) != Standing::Stranger
            || held.is_some_and(|h| h.contains_key(room))
            || !rooms.insert(room)
        {
            continue;
        }
        let theirs = per_stranger.entry(user).or_insert_with(|| snapshot.kept_with(owner, user).held_rooms);
        if owner_rooms >= config.bounds.held_rooms_per_owner || *theirs >= config.bounds.held_rooms_per_stranger {
            continue;
        }
        owner_rooms += 1;
        *theirs += 1;
        let record = HeldRoom { replied: true, ..HeldRoom::new(owner.clone(), user.clone(), true, now_ms) };
        d = hold_joined(d.change(StateChange::PutRoom(room.clone(), RoomState::Held(record))), owner, room)
            .effect(Effect::Backfill { owner: owner.clone(), room_id: room.clone() })
            .outcome(crate::Outcome::InviteHeld);
    }
    d
}
