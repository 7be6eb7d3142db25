//! `reply`: the automatic reply strangers get, shown as they would see it,
//! or back to the default. `reply set <text>` is `set reply <text>`.

use super::{Args, Command, Ctx, Handler, Spec, set};
use crate::texts::{self, Text};
use crate::{Decision, EngineConfig, OwnerState};

pub(super) const SPEC: Spec = Spec {
    name: "reply",
    aliases: &[],
    usage: "reply | reply set <text> | reply reset",
    summary: "see or change the automatic reply new contacts get",
    parse,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Show,
    /// Back to the default reply.
    Reset,
}

fn parse(args: &Args<'_>) -> Result<Command, String> {
    let (sub, text) = match args.text.split_once(char::is_whitespace) {
        Some((s, t)) => (s, t.trim()),
        None => (args.text, ""),
    };
    match (sub.to_ascii_lowercase().as_str(), text) {
        ("", _) => Ok(Command::Reply(Reply::Show)),
        ("reset", "") => Ok(Command::Reply(Reply::Reset)),
        ("set", text) => Ok(set::command("reply", text)),
        _ => Err(texts::unknown_reply_subcommand()),
    }
}

impl Handler for Reply {
    fn run(self, ctx: &Ctx<'_>) -> Decision {
        match self {
            Reply::Show => ctx.answer(preview(ctx.owner, ctx.config, ctx.now_ms)),
            Reply::Reset => {
                let updated = OwnerState { reply_template: None, ..ctx.owner.clone() };
                let text = preview(&updated, ctx.config, ctx.now_ms);
                ctx.update(updated, text)
            }
        }
    }
}

/// The reply as a stranger would get it from `owner`, introduced.
pub(super) fn preview(owner: &OwnerState, config: &EngineConfig, now_ms: u64) -> Text {
    let rendered = texts::etiquette_of(owner, false, now_ms);
    let interval = owner.reply_interval_ms.unwrap_or(config.reply_interval_ms);
    texts::reply_preview(&rendered, owner.reply_template.is_some(), &texts::format_duration(interval))
}
