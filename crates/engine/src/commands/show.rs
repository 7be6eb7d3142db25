//! `show <target>`: every held message from one sender.

use super::args::{self, Target};
use super::{Args, Command, Ctx, Handler, Spec};
use crate::{Decision, texts};

pub(super) const SPEC: Spec =
    Spec { name: "show", aliases: &[], usage: "show <target>", summary: "every held message from one sender", parse };

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Show {
    pub target: Target,
}

fn parse(args: &Args<'_>) -> Result<Command, String> {
    match args.words.as_slice() {
        [word] => Ok(Command::Show(Show { target: args::target(word)? })),
        _ => Err(texts::one_sender_at_a_time()),
    }
}

impl Handler for Show {
    fn run(self, ctx: &Ctx<'_>) -> Decision {
        ctx.with_subjects(std::slice::from_ref(&self.target), |subjects| {
            let subject = &subjects[0];
            let (_, mut messages) = ctx.held_of(subject);
            // Not what others wrote in the same rooms.
            messages.retain(|m| subject.covers(&m.sender));
            messages.sort_by_key(|m| m.ts_ms);
            ctx.answer(texts::show(subject, &messages))
        })
    }
}
