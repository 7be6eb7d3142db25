//! `unblock <target>...`: undo a block; they are a new contact again.

use super::args::{self, Target};
use super::{Args, Command, Ctx, Handler, Spec};
use crate::{Contact, Decision, StateChange, texts};

pub(super) const SPEC: Spec =
    Spec { name: "unblock", aliases: &[], usage: "unblock <target>...", summary: "undo a block", parse };

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unblock {
    pub targets: Vec<Target>,
}

fn parse(args: &Args<'_>) -> Result<Command, String> {
    Ok(Command::Unblock(Unblock { targets: args::targets(&args.words)? }))
}

impl Handler for Unblock {
    fn run(self, ctx: &Ctx<'_>) -> Decision {
        ctx.with_subjects(&self.targets, |subjects| {
            let mut d = Decision::default();
            let mut lines = Vec::new();
            for subject in subjects {
                if matches!(ctx.overview.contacts.get(subject), Some(Contact::Blocked { .. })) {
                    d = d.change(StateChange::RemoveContact {
                        owner: ctx.owner.user_id.clone(),
                        subject: subject.clone(),
                    });
                    lines.push(texts::unblocked(subject));
                    // Gatekeeper never takes out what the owner set by hand.
                    if ctx.owner.invite_filter.as_ref().is_some_and(|f| f.hand.contains(subject)) {
                        lines.push(texts::still_in_your_invite_filter(subject));
                    }
                } else {
                    lines.push(texts::was_not_blocked(subject));
                }
            }
            d.effect(ctx.reply(texts::lines(&lines)))
        })
    }
}
