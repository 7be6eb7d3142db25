//! `pause [duration]`: stop holding for a while; invites ring again.

use super::args::parse_duration;
use super::{Args, Command, Ctx, Handler, Spec};
use crate::{Decision, Effect, OwnerState, StateChange, rules, texts};

pub(super) const SPEC: Spec = Spec {
    name: "pause",
    aliases: &[],
    usage: "pause [duration]",
    summary: "stop holding for a while: invites ring again",
    parse,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pause {
    /// `None`: until `resume`.
    pub for_ms: Option<u64>,
}

fn parse(args: &Args<'_>) -> Result<Command, String> {
    match args.words.as_slice() {
        [] => Ok(Command::Pause(Pause { for_ms: None })),
        [d] => Ok(Command::Pause(Pause { for_ms: Some(parse_duration(d)?) })),
        _ => Err(texts::pause_takes_one_duration()),
    }
}

impl Handler for Pause {
    fn run(self, ctx: &Ctx<'_>) -> Decision {
        // Until `resume`: a pause that no tick ends.
        let until = self.for_ms.map_or(u64::MAX, |ms| ctx.now_ms.saturating_add(ms));
        let said = match self.for_ms {
            Some(_) => texts::paused_until(until),
            None => texts::paused_until_resumed(),
        };
        Decision::default()
            .change(StateChange::PutOwner(OwnerState { paused_until_ms: Some(until), ..ctx.owner.clone() }))
            .effect(Effect::EnablePushRule {
                owner: ctx.owner.user_id.clone(),
                rule_id: rules::HOLD_INVITES.into(),
                enabled: false,
            })
            .effect(ctx.reply(said))
    }
}
