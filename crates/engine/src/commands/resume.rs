//! `resume`: hold again after a pause.

use super::{Args, Command, Ctx, Handler, Spec};
use crate::{Decision, Effect, OwnerState, StateChange, rules, texts};

pub(super) const SPEC: Spec =
    Spec { name: "resume", aliases: &[], usage: "resume", summary: "hold again after a pause", parse };

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume;

fn parse(args: &Args<'_>) -> Result<Command, String> {
    args.none()?;
    Ok(Command::Resume(Resume))
}

impl Handler for Resume {
    fn run(self, ctx: &Ctx<'_>) -> Decision {
        if !ctx.owner.is_paused(ctx.now_ms) {
            return ctx.answer(texts::not_paused());
        }
        Decision::default()
            .change(StateChange::PutOwner(OwnerState { paused_until_ms: None, ..ctx.owner.clone() }))
            .effect(Effect::EnablePushRule {
                owner: ctx.owner.user_id.clone(),
                rule_id: rules::HOLD_INVITES.into(),
                enabled: true,
            })
            .effect(ctx.reply(texts::holding_again()))
    }
}
