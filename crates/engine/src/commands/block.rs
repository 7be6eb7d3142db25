//! `block <target>... [because <reason>]`: decline them now and in future,
//! without a reply (the reason goes with the rule if the owner shares their
//! blocks). `block all`: everyone pending.

use super::args::{self, Target};
use super::{Args, Command, Ctx, Handler, Spec};
use crate::{Contact, Decision, Effect, StateChange, Subject, Undo, UndoKind, rules, texts};

pub(super) const SPEC: Spec = Spec {
    name: "block",
    aliases: &[],
    usage: "block <target>...|all [because <reason>]",
    summary: "decline their invites now and in future, without a reply; `block all` for everyone pending",
    parse,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Empty: everyone pending (`block all`).
    pub targets: Vec<Target>,
    /// Why, one line (`because …`): published with the rule in the owner's
    /// shared ban list, if they share one.
    pub reason: Option<String>,
}

/// Longest reason kept (characters).
const MAX_REASON: usize = 200;

fn parse(args: &Args<'_>) -> Result<Command, String> {
    let at = args.words.iter().position(|w| w.eq_ignore_ascii_case("because"));
    let (words, reason) = match at {
        Some(i) => {
            let reason = texts::one_line(&args.words[i + 1..].join(" "), MAX_REASON);
            (&args.words[..i], (!reason.is_empty()).then_some(reason))
        }
        None => (&args.words[..], None),
    };
    if let [all] = words
        && all.eq_ignore_ascii_case("all")
    {
        return Ok(Command::Block(Block { targets: Vec::new(), reason }));
    }
    Ok(Command::Block(Block { targets: args::targets(words)?, reason }))
}

impl Handler for Block {
    fn run(self, ctx: &Ctx<'_>) -> Decision {
        let reason = self.reason;
        if self.targets.is_empty() {
            let mut d = super::deny::all(ctx, UndoKind::Block);
            // Everyone it blocked, published with the reason given.
            if let (Some(room), Some(_)) = (&ctx.owner.shared_list, &reason) {
                let blocked: Vec<Subject> = d
                    .changes
                    .iter()
                    .filter_map(|c| match c {
                        StateChange::PutContact { subject, contact: Contact::Blocked { .. }, .. } => {
                            Some(subject.clone())
                        }
                        _ => None,
                    })
                    .collect();
                for subject in &blocked {
                    d = d.effect(crate::policy::publish(&ctx.config.bot, room, subject, reason.clone(), true));
                }
            }
            return d;
        }
        ctx.with_subjects(&self.targets, |subjects| {
            let mut d = block(ctx, subjects);
            // With the reason given; blocks without one are published as
            // any other change of the owner's blocks (`policy::keep_shared`).
            if let (Some(room), Some(_)) = (&ctx.owner.shared_list, &reason) {
                for subject in subjects.iter().filter(|s| **s != Subject::User(ctx.owner.user_id.clone())) {
                    d = d.effect(crate::policy::publish(&ctx.config.bot, room, subject, reason.clone(), true));
                }
            }
            d
        })
    }
}

/// Also what the one-click "block" links from an e-mail do.
pub(crate) fn block(ctx: &Ctx<'_>, subjects: &[Subject]) -> Decision {
    let owner = &ctx.owner.user_id;
    let stamp = crate::undo::stamp(ctx.owner, ctx.now_ms);
    let mut d = Decision::default();
    let mut lines = Vec::new();
    let mut decided = Vec::new();
    for subject in subjects {
        if *subject == Subject::User(owner.clone()) {
            lines.push(texts::cannot_deny_yourself());
            continue;
        }
        decided.push((subject.clone(), ctx.overview.contacts.get(subject).cloned()));
        let (left, rooms, messages) = ctx.leave_and_drop(d, subject, stamp);
        d = left;
        // An allowed sender's invites would still ring.
        if matches!(ctx.overview.contacts.get(subject), Some(Contact::Allowed { .. })) {
            d = d.effect(Effect::DeletePushRule {
                owner: owner.clone(),
                rule_id: rules::allow_id(subject),
                room: None,
            });
        }
        d = d.change(StateChange::PutContact {
            owner: owner.clone(),
            subject: subject.clone(),
            contact: Contact::Blocked { since_ms: ctx.now_ms },
        });
        lines.push(texts::blocked(subject, rooms, messages));
    }
    if !decided.is_empty() {
        lines.push(texts::undo_hint());
    }
    let entry = Undo { at_ms: stamp, kind: UndoKind::Block, subjects: decided, rooms: Vec::new(), link: None };
    ctx.remember(d, entry).effect(ctx.reply(texts::lines(&lines)))
}
