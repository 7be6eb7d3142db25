//! The pure decision core: `decide(snapshot, input, now, config)` returns the
//! state changes and effects an event calls for. No I/O, no clock, no
//! randomness: the same arguments always give the same decision.

pub mod action;
pub mod command;
pub mod input;
pub mod state;
pub mod texts;

use ruma::{OwnedRoomId, OwnedServerName, OwnedUserId, UserId};
use sha2::{Digest, Sha256};

pub use action::Effect;
use command::Command;
pub use input::{EventMeta, Input, Membership};
pub use state::{OwnerState, RoomState, Snapshot, StateChange};
use texts::Text;

/// What the engine needs to know about the deployment.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub bot: OwnedUserId,
    pub server_name: OwnedServerName,
    /// Users who may opt in; must match the whole user ID.
    pub users: regex::Regex,
}

impl EngineConfig {
    pub fn may_opt_in(&self, user: &UserId) -> bool {
        user.server_name() == self.server_name
            && user != self.bot
            && self.users.is_match(user.as_str())
    }
}

/// The outcome of one input: applied and enqueued atomically by the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub changes: Vec<StateChange>,
    pub effects: Vec<Effect>,
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

pub fn decide(snapshot: &Snapshot, input: &Input, now_ms: u64, config: &EngineConfig) -> Decision {
    let meta = input.meta();
    if meta.sender == config.bot {
        // The bot's own join is how an opt-in completes; everything else it
        // sends is an echo of our own effects.
        return match input {
            Input::Member {
                target,
                membership: Membership::Join,
                ..
            } if *target == config.bot => bot_joined(snapshot, meta, now_ms, config),
            _ => Decision::default(),
        };
    }
    match input {
        Input::Member {
            target,
            membership,
            is_direct,
            ..
        } if *target == config.bot => {
            bot_membership(snapshot, meta, membership, *is_direct, now_ms, config)
        }
        Input::Member {
            target,
            membership: Membership::Leave | Membership::Ban,
            ..
        } => member_left(snapshot, meta, target, config),
        Input::Message { msgtype, body, .. } => message(snapshot, meta, msgtype, body, config),
        Input::Member { .. } => Decision::default(),
    }
}

fn notice(
    config: &EngineConfig,
    room: &OwnedRoomId,
    meta: &EventMeta,
    purpose: &str,
    text: Text,
) -> Effect {
    Effect::SendNotice {
        as_user: config.bot.clone(),
        room_id: room.clone(),
        txn_id: txn_id(meta, purpose),
        body: text.plain,
        html: text.html,
    }
}

fn bot_membership(
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
        Membership::Invite if !config.may_opt_in(&meta.sender) => Decision::default()
            .effect(Effect::Join {
                as_user: bot.clone(),
                room_id: room.clone(),
            })
            .effect(notice(
                config,
                &room,
                meta,
                "refusal",
                texts::refusal(config.server_name.as_str()),
            ))
            .effect(Effect::Leave {
                as_user: bot,
                room_id: room,
                reason: None,
            }),
        Membership::Invite if !is_direct => Decision::default().effect(Effect::Leave {
            as_user: bot,
            room_id: room,
            reason: Some(texts::NOT_A_DM_REASON.into()),
        }),
        Membership::Invite => Decision::default()
            .change(StateChange::PutRoom(
                room.clone(),
                RoomState::PendingControl {
                    inviter: meta.sender.clone(),
                    invited_at_ms: now_ms,
                },
            ))
            .effect(Effect::Join {
                as_user: bot,
                room_id: room,
            }),
        // Someone removed the bot: from a control room, that is an opt-out.
        Membership::Leave | Membership::Ban => match &snapshot.room {
            Some(RoomState::Control { owner }) => Decision::default()
                .change(StateChange::RemoveOwner(owner.clone()))
                .change(StateChange::RemoveRoom(room)),
            Some(RoomState::PendingControl { .. }) => {
                Decision::default().change(StateChange::RemoveRoom(room))
            }
            None => Decision::default(),
        },
        _ => Decision::default(),
    }
}

fn bot_joined(
    snapshot: &Snapshot,
    meta: &EventMeta,
    now_ms: u64,
    config: &EngineConfig,
) -> Decision {
    let Some(RoomState::PendingControl { inviter, .. }) = &snapshot.room else {
        return Decision::default();
    };
    let room = meta.room_id.clone();
    let mut d = Decision::default();
    if let Some(old) = snapshot
        .owners
        .get(inviter)
        .filter(|o| o.control_room != room)
    {
        d = d
            .change(StateChange::RemoveRoom(old.control_room.clone()))
            .effect(notice(
                config,
                &old.control_room,
                meta,
                "moved",
                texts::moved_control_room(),
            ))
            .effect(Effect::Leave {
                as_user: config.bot.clone(),
                room_id: old.control_room.clone(),
                reason: None,
            });
    }
    let since_ms = snapshot.owners.get(inviter).map_or(now_ms, |o| o.since_ms);
    d.change(StateChange::PutOwner(OwnerState {
        user_id: inviter.clone(),
        control_room: room.clone(),
        since_ms,
    }))
    .change(StateChange::PutRoom(
        room.clone(),
        RoomState::Control {
            owner: inviter.clone(),
        },
    ))
    .effect(notice(config, &room, meta, "greeting", texts::greeting()))
}

fn member_left(
    snapshot: &Snapshot,
    meta: &EventMeta,
    target: &OwnedUserId,
    config: &EngineConfig,
) -> Decision {
    match &snapshot.room {
        Some(RoomState::Control { owner }) if owner == target => Decision::default()
            .change(StateChange::RemoveOwner(owner.clone()))
            .change(StateChange::RemoveRoom(meta.room_id.clone()))
            .effect(Effect::Leave {
                as_user: config.bot.clone(),
                room_id: meta.room_id.clone(),
                reason: None,
            }),
        _ => Decision::default(),
    }
}

fn message(
    snapshot: &Snapshot,
    meta: &EventMeta,
    msgtype: &str,
    body: &str,
    config: &EngineConfig,
) -> Decision {
    // Commands only from the owner, only in the owner's own control room.
    let Some(RoomState::Control { owner }) = &snapshot.room else {
        return Decision::default();
    };
    if *owner != meta.sender || msgtype != "m.text" {
        return Decision::default();
    }
    let reply = match command::parse(body) {
        None => return Decision::default(),
        Some(Command::Help { topic }) => texts::help(topic.as_deref()),
        Some(Command::Unknown { word }) => texts::unknown_command(&word),
    };
    Decision::default().effect(notice(config, &meta.room_id, meta, "reply", reply))
}

#[cfg(test)]
mod tests;
