//! `deny <target>...`: not this time. Their rooms are left quietly and
//! what they sent is dropped (kept a day for `undo`, shown nowhere);
//! nothing else about them is remembered. `deny all`: everyone pending.

use super::args::{self, Target};
use super::{Args, Command, Ctx, Handler, Spec};
use crate::{Contact, Decision, Effect, Subject, Undo, UndoKind, texts};

pub(super) const SPEC: Spec = Spec {
    name: "deny",
    aliases: &[],
    usage: "deny <target>...|all",
    summary: "not this time: leave their rooms quietly and drop what they sent; `deny all` for everyone pending",
    parse,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deny {
    /// Empty: everyone pending (`deny all`).
    pub targets: Vec<Target>,
}

fn parse(args: &Args<'_>) -> Result<Command, String> {
    if let [all] = args.words.as_slice()
        && all.eq_ignore_ascii_case("all")
    {
        return Ok(Command::Deny(Deny { targets: Vec::new() }));
    }
    Ok(Command::Deny(Deny { targets: args::targets(&args.words)? }))
}

impl Handler for Deny {
    fn run(self, ctx: &Ctx<'_>) -> Decision {
        if self.targets.is_empty() {
            return all(ctx, UndoKind::Deny);
        }
        ctx.with_subjects(&self.targets, |subjects| deny(ctx, subjects))
    }
}

/// `deny all` and `block all`: one decision about everyone pending, with
/// the count, undone as one.
pub(super) fn all(ctx: &Ctx<'_>, kind: UndoKind) -> Decision {
    let subjects = ctx.everyone_pending();
    if subjects.is_empty() {
        return ctx.answer(texts::nobody_pending_for_all());
    }
    let d = match kind {
        UndoKind::Block => super::block(ctx, &subjects),
        _ => deny(ctx, &subjects),
    };
    // One line with the count instead of one per sender.
    let said = texts::plain(&texts::bulk_done(kind, subjects.len()));
    let effects = d
        .effects
        .into_iter()
        .map(|e| match e {
            Effect::SendNotice { as_user, room_id, txn_id, digest, only_with, urgent, .. }
                if room_id == ctx.meta.room_id && txn_id == crate::txn_id(ctx.meta, "reply") =>
            {
                let (body, html) = (said.plain.clone(), said.html.clone());
                Effect::SendNotice { as_user, room_id, txn_id, body, html, digest, only_with, urgent }
            }
            other => other,
        })
        .collect();
    Decision { effects, ..d }
}

/// Also what a one-click "deny" link from an e-mail does.
pub(crate) fn deny(ctx: &Ctx<'_>, subjects: &[Subject]) -> Decision {
    let stamp = crate::undo::stamp(ctx.owner, ctx.now_ms);
    let mut d = Decision::default();
    let mut lines = Vec::new();
    let mut decided: Vec<(Subject, Option<Contact>)> = Vec::new();
    for subject in subjects {
        if *subject == Subject::User(ctx.owner.user_id.clone()) {
            lines.push(texts::cannot_deny_yourself());
            continue;
        }
        let (left, rooms, messages) = ctx.leave_and_drop(d, subject, stamp);
        d = left;
        lines.push(if rooms == 0 && messages == 0 {
            texts::nothing_waiting_from(subject)
        } else {
            decided.push((subject.clone(), ctx.overview.contacts.get(subject).cloned()));
            texts::denied(subject, rooms, messages)
        });
    }
    if !decided.is_empty() {
        lines.push(texts::undo_hint());
    }
    let entry = Undo { at_ms: stamp, kind: UndoKind::Deny, subjects: decided, rooms: Vec::new(), link: None };
    ctx.remember(d, entry).effect(ctx.reply(texts::lines(&lines)))
}
