//! `blocked`: who is blocked, and since when.

use super::{Args, Command, Ctx, Handler, Spec};
use crate::{Decision, texts};

pub(super) const SPEC: Spec =
    Spec { name: "blocked", aliases: &[], usage: "blocked", summary: "who is blocked", parse };

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked;

fn parse(args: &Args<'_>) -> Result<Command, String> {
    args.none()?;
    Ok(Command::Blocked(Blocked))
}

impl Handler for Blocked {
    fn run(self, ctx: &Ctx<'_>) -> Decision {
        ctx.answer(texts::contacts(&ctx.overview.contacts, false, ctx.now_ms, ctx.config.client_mode))
    }
}
