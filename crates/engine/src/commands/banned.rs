//! `banned` (also `show banned`): who a ban list declined lately.

use super::{Args, Command, Ctx, Handler, Spec};
use crate::{Decision, texts};

pub(super) const SPEC: Spec = Spec {
    name: "banned",
    aliases: &[],
    usage: "banned",
    summary: "whose invitations your ban lists declined lately (also `show banned`)",
    parse,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banned;

fn parse(args: &Args<'_>) -> Result<Command, String> {
    args.none()?;
    Ok(Command::Banned(Banned))
}

impl Handler for Banned {
    fn run(self, ctx: &Ctx<'_>) -> Decision {
        let lines: Vec<String> = ctx
            .owner
            .banned_recent
            .iter()
            .map(|(user, at)| texts::banned_sender(user.as_str(), &texts::format_time(*at)))
            .collect();
        ctx.answer(texts::banned_senders(&lines, ctx.owner.banned.total))
    }
}
