//! `allowed`: who may reach the owner directly, since when and why.

use super::{Args, Command, Ctx, Handler, Spec};
use crate::{Decision, texts};

pub(super) const SPEC: Spec =
    Spec { name: "allowed", aliases: &[], usage: "allowed", summary: "who may reach you directly", parse };

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed;

fn parse(args: &Args<'_>) -> Result<Command, String> {
    args.none()?;
    Ok(Command::Allowed(Allowed))
}

impl Handler for Allowed {
    fn run(self, ctx: &Ctx<'_>) -> Decision {
        ctx.answer(texts::contacts(&ctx.overview.contacts, true, ctx.now_ms, ctx.config.client_mode))
    }
}
