//! `stop`: switch Gatekeeper off for the owner and undo everything it set,
//! as leaving the control room does, but with a goodbye.

use super::{Args, Command, Ctx, Handler, Spec};
use crate::{Decision, optin};

pub(super) const SPEC: Spec = Spec {
    name: "stop",
    aliases: &[],
    usage: "stop",
    summary: "switch Gatekeeper off and undo everything it changed",
    parse,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop;

fn parse(args: &Args<'_>) -> Result<Command, String> {
    args.none()?;
    Ok(Command::Stop(Stop))
}

impl Handler for Stop {
    fn run(self, ctx: &Ctx<'_>) -> Decision {
        optin::undo_everything(ctx.owner, ctx.overview, Some(ctx.meta), ctx.config)
    }
}
