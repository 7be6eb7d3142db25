//! `help [command]`: every command in one overview, or one command's usage.

use super::{ALL, Args, Command, Ctx, Handler, PREFIX, Spec, find};
use crate::{Decision, texts};

pub(super) const SPEC: Spec = Spec {
    name: "help",
    aliases: &["?"],
    usage: "help [command]",
    summary: "this overview, or details about one command",
    parse,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Help {
    /// A command's name or alias, in lower case; `None` for the overview.
    pub topic: Option<String>,
}

fn parse(args: &Args<'_>) -> Result<Command, String> {
    match args.words.as_slice() {
        [] => Ok(Command::Help(Help { topic: None })),
        [topic] => Ok(Command::Help(Help { topic: Some(topic.trim_start_matches(PREFIX).to_ascii_lowercase()) })),
        _ => Err(texts::one_topic_at_a_time()),
    }
}

impl Handler for Help {
    fn run(self, ctx: &Ctx<'_>) -> Decision {
        ctx.answer(match self.topic.as_deref() {
            None => texts::help_overview(ALL),
            Some(topic) => match find(topic) {
                Some(spec) => texts::help_topic(spec),
                None => texts::unknown_command(topic),
            },
        })
    }
}
