//! `settings`: the owner's settings, as `set` takes them.

use super::{Args, Command, Ctx, Handler, Spec};
use crate::{Decision, texts};

pub(super) const SPEC: Spec =
    Spec { name: "settings", aliases: &[], usage: "settings", summary: "your settings", parse };

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings;

fn parse(args: &Args<'_>) -> Result<Command, String> {
    args.none()?;
    Ok(Command::Settings(Settings))
}

impl Handler for Settings {
    fn run(self, ctx: &Ctx<'_>) -> Decision {
        let o = ctx.owner;
        let reply_interval_ms = o.reply_interval_ms.unwrap_or(ctx.config.reply_interval_ms);
        let retention_ms = o.retention_ms.unwrap_or(ctx.config.retention_ms);
        ctx.answer(texts::settings(o, reply_interval_ms, retention_ms, ctx.now_ms))
    }
}
