//! `block <target>...`: decline them now and in future, without a reply.

use super::args::{self, Target};
use super::{Args, Command, Ctx, Handler, Spec};
use crate::{Contact, Decision, Effect, StateChange, Subject, rules, texts};

pub(super) const SPEC: Spec = Spec {
    name: "block",
    aliases: &[],
    usage: "block <target>...",
    summary: "decline their invites now and in future, without a reply",
    parse,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub targets: Vec<Target>,
}

fn parse(args: &Args<'_>) -> Result<Command, String> {
    Ok(Command::Block(Block { targets: args::targets(&args.words)? }))
}

impl Handler for Block {
    fn run(self, ctx: &Ctx<'_>) -> Decision {
        ctx.with_subjects(&self.targets, |subjects| block(ctx, subjects))
    }
}

/// Also what the one-click "block" links from an e-mail do.
pub(crate) fn block(ctx: &Ctx<'_>, subjects: &[Subject]) -> Decision {
    let owner = &ctx.owner.user_id;
    let mut d = Decision::default();
    let mut lines = Vec::new();
    for subject in subjects {
        if *subject == Subject::User(owner.clone()) {
            lines.push(texts::cannot_deny_yourself());
            continue;
        }
        let (left, rooms, messages) = ctx.leave_and_drop(d, subject);
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
    d.effect(ctx.reply(texts::lines(&lines)))
}
