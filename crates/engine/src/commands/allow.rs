//! `allow <target>... [for <duration>]`: let them reach the owner
//! directly, and release what they sent.

use super::args::{self, Target, parse_duration};
use super::{Args, Command, Ctx, Handler, Spec, drop_messages};
use crate::{AllowSource, Contact, Decision, Effect, StateChange, Subject, Undo, UndoKind, rules, texts, txn_id};

pub(super) const SPEC: Spec = Spec {
    name: "allow",
    aliases: &[],
    usage: "allow <target>... [for <duration>]",
    summary: "let them reach you directly and release what they sent; `for 30d` makes it temporary",
    parse,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow {
    pub targets: Vec<Target>,
    /// A temporary allow: it ends this long from now.
    pub for_ms: Option<u64>,
}

fn parse(args: &Args<'_>) -> Result<Command, String> {
    let words = &args.words;
    let (who, for_ms) = match words.iter().position(|w| w.eq_ignore_ascii_case("for")) {
        Some(i) => match &words[i + 1..] {
            [d] => (&words[..i], Some(parse_duration(d)?)),
            _ => return Err(texts::for_takes_one_duration()),
        },
        None => (&words[..], None),
    };
    Ok(Command::Allow(Allow { targets: args::targets(who)?, for_ms }))
}

impl Handler for Allow {
    fn run(self, ctx: &Ctx<'_>) -> Decision {
        ctx.with_subjects(&self.targets, |subjects| allow(ctx, subjects, self.for_ms))
    }
}

/// Also what a one-click "allow" link from an e-mail does.
pub(crate) fn allow(ctx: &Ctx<'_>, subjects: &[Subject], for_ms: Option<u64>) -> Decision {
    let owner = &ctx.owner.user_id;
    let until_ms = for_ms.map(|ms| ctx.now_ms.saturating_add(ms));
    let mut d = Decision::default();
    let mut lines = Vec::new();
    let mut entry = Undo {
        at_ms: crate::undo::stamp(ctx.owner, ctx.now_ms),
        kind: UndoKind::Allow,
        subjects: Vec::new(),
        rooms: Vec::new(),
        link: None,
    };
    for subject in subjects {
        if *subject == Subject::User(owner.clone()) {
            lines.push(texts::cannot_allow_yourself());
            continue;
        }
        let (rooms, messages) = ctx.held_of(subject);
        entry.subjects.push((subject.clone(), ctx.overview.contacts.get(subject).cloned()));
        entry.rooms.extend(rooms.iter().filter_map(|r| ctx.overview.held.get(r).map(|h| (r.clone(), h.clone()))));
        d = d
            .change(StateChange::PutContact {
                owner: owner.clone(),
                subject: subject.clone(),
                contact: Contact::Allowed { since_ms: ctx.now_ms, source: AllowSource::Command, until_ms },
            })
            .effect(Effect::PutPushRule { owner: owner.clone(), rule: rules::allow(owner, subject) });
        d = rooms.iter().fold(d, |d, room| crate::release(d, owner, room));
        d = ctx.forget_counts(drop_messages(d, owner, &messages), subject);
        if ctx.config.notify_allowed {
            for room in rooms.iter().filter(|r| ctx.overview.held.get(*r).is_some_and(|h| h.is_dm)) {
                let note = texts::you_are_allowed(&ctx.name());
                d = d.effect(Effect::SendNotice {
                    as_user: owner.clone(),
                    room_id: room.clone(),
                    txn_id: txn_id(ctx.meta, &format!("allowed.{room}")),
                    body: note.plain,
                    html: note.html,
                    digest: None,
                    only_with: None,
                    urgent: false,
                });
            }
        }
        lines.push(texts::allowed(subject, until_ms, rooms.len()));
    }
    if !entry.subjects.is_empty() {
        lines.push(texts::undo_hint());
    }
    ctx.remember(d, entry).effect(ctx.reply(texts::lines(&lines)))
}
