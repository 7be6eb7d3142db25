//! `deny <target>...`: not this time. Their rooms are left quietly and
//! what they sent is dropped; nothing about them is remembered.

use super::args::{self, Target};
use super::{Args, Command, Ctx, Handler, Spec};
use crate::{Decision, Subject, texts};

pub(super) const SPEC: Spec = Spec {
    name: "deny",
    aliases: &[],
    usage: "deny <target>...",
    summary: "not this time: leave their rooms quietly and drop what they sent",
    parse,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deny {
    pub targets: Vec<Target>,
}

fn parse(args: &Args<'_>) -> Result<Command, String> {
    Ok(Command::Deny(Deny { targets: args::targets(&args.words)? }))
}

impl Handler for Deny {
    fn run(self, ctx: &Ctx<'_>) -> Decision {
        ctx.with_subjects(&self.targets, |subjects| deny(ctx, subjects))
    }
}

/// Also what a one-click "deny" link from an e-mail does.
pub(crate) fn deny(ctx: &Ctx<'_>, subjects: &[Subject]) -> Decision {
    let mut d = Decision::default();
    let mut lines = Vec::new();
    for subject in subjects {
        if *subject == Subject::User(ctx.owner.user_id.clone()) {
            lines.push(texts::cannot_deny_yourself());
            continue;
        }
        let (left, rooms, messages) = ctx.leave_and_drop(d, subject);
        d = left;
        lines.push(if rooms == 0 && messages == 0 {
            texts::nothing_waiting_from(subject)
        } else {
            texts::denied(subject, rooms, messages)
        });
    }
    d.effect(ctx.reply(texts::lines(&lines)))
}
