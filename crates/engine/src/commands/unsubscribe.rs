//! `unsubscribe <#alias:server | !room:server>`: stop following a ban list.

use ruma::OwnedRoomId;

use super::{Args, Command, Ctx, Handler, Spec};
use crate::{Decision, policy, texts};

pub(super) const SPEC: Spec = Spec {
    name: "unsubscribe",
    aliases: &[],
    usage: "unsubscribe <list>",
    summary: "stop following a ban list; what it decided stays decided",
    parse,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub target: String,
}

fn parse(args: &Args<'_>) -> Result<Command, String> {
    Ok(Command::Unsubscribe(Unsubscribe { target: super::subscribe::list_target(args)? }))
}

/// The list the owner follows that `target` names: by its room ID, or by
/// the alias it was followed by.
pub(super) fn followed(ctx: &Ctx<'_>, target: &str) -> Option<OwnedRoomId> {
    ctx.owner
        .policy_lists
        .iter()
        .find(|room| room.as_str() == target || ctx.policy.get(*room).is_some_and(|l| l.name == target))
        .cloned()
}

impl Handler for Unsubscribe {
    fn run(self, ctx: &Ctx<'_>) -> Decision {
        let Some(room) = followed(ctx, &self.target) else {
            let operator =
                ctx.policy.values().any(|l| l.operator && (l.room_id.as_str() == self.target || l.name == self.target));
            return ctx.answer(if operator {
                texts::operator_list(&self.target)
            } else {
                texts::not_following(&self.target)
            });
        };
        let snapshot = crate::Snapshot { policy: ctx.policy.clone(), ..Default::default() };
        policy::unfollow(&snapshot, ctx.owner, &room).effect(ctx.reply(texts::unfollowed(&self.target)))
    }
}
