//! `undo`: takes back the owner's last decision (allow, deny, block, from
//! a command or an e-mailed link) within 24 hours; again, the one before.

use super::{Args, Command, Ctx, Handler, Spec};
use crate::undo::live;
use crate::{Contact, Decision, Deferred, Effect, OwnerState, RoomState, StateChange, Undo, UndoKind, rules, texts};

pub(super) const SPEC: Spec = Spec {
    name: "undo",
    aliases: &[],
    usage: "undo",
    summary: "take back your last allow, deny or block (within 24 hours); again for the one before",
    parse,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndoLast;

fn parse(args: &Args<'_>) -> Result<Command, String> {
    args.none()?;
    Ok(Command::Undo(UndoLast))
}

impl Handler for UndoLast {
    fn run(self, ctx: &Ctx<'_>) -> Decision {
        let Some(entry) = ctx.owner.undo.iter().rev().find(|u| live(u, ctx.now_ms)) else {
            return ctx.answer(texts::nothing_to_undo());
        };
        undo(ctx, entry)
    }
}

/// Takes `entry` back, and forgets it (and anything expired).
pub(crate) fn undo(ctx: &Ctx<'_>, entry: &Undo) -> Decision {
    let owner = &ctx.owner.user_id;
    let rest: Vec<Undo> = ctx.owner.undo.iter().filter(|u| live(u, ctx.now_ms) && *u != entry).cloned().collect();
    let left = rest.len();
    let mut d = Decision::default().change(StateChange::PutOwner(OwnerState { undo: rest, ..ctx.owner.clone() }));
    // A deny's or block's captures, marked with its stamp, wait again.
    let denied: Vec<&Deferred> = match entry.kind {
        UndoKind::Allow => Vec::new(),
        UndoKind::Deny | UndoKind::Block => {
            ctx.overview.denied.iter().filter(|m| m.denied_ms == Some(entry.at_ms)).collect()
        }
    };
    for m in &denied {
        d = d.change(StateChange::PutDeferred(Deferred { denied_ms: None, ..(*m).clone() }));
    }
    let mut lines = Vec::new();
    for (subject, before) in &entry.subjects {
        if entry.kind != UndoKind::Deny {
            // The contact entry as it was, with the push rule that goes with it.
            let was_allowed = matches!(before, Some(Contact::Allowed { .. }));
            let is_allowed = matches!(ctx.overview.contacts.get(subject), Some(Contact::Allowed { .. }));
            d = match before {
                Some(contact) => d.change(StateChange::PutContact {
                    owner: owner.clone(),
                    subject: subject.clone(),
                    contact: contact.clone(),
                }),
                None => d.change(StateChange::RemoveContact { owner: owner.clone(), subject: subject.clone() }),
            };
            if was_allowed && !is_allowed {
                d = d.effect(Effect::PutPushRule { owner: owner.clone(), rule: rules::allow(owner, subject) });
            } else if is_allowed && !was_allowed {
                d = d.effect(Effect::DeletePushRule {
                    owner: owner.clone(),
                    rule_id: rules::allow_id(subject),
                    room: None,
                });
            }
        }
        // The rooms an allow released are held again (the owner is still
        // in them): silenced first, in the room's lane, then tagged.
        let mut rooms = 0;
        for (room, held) in
            entry.rooms.iter().filter(|(r, h)| subject.covers(&h.inviter) && !ctx.overview.held.contains_key(r))
        {
            rooms += 1;
            d = crate::hold_joined(
                d.change(StateChange::PutRoom(room.clone(), RoomState::Held(held.clone()))),
                owner,
                room,
            );
        }
        let messages = denied.iter().filter(|m| subject.covers(&m.sender)).count();
        lines.push(texts::undone(entry.kind, subject, rooms, messages));
    }
    if left > 0 {
        lines.push(texts::undone_more(left));
    }
    d.effect(ctx.reply(texts::lines(&lines)))
}
