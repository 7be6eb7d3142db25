//! `subscriptions`: the ban lists the owner follows, with their rule counts.

use super::{Args, Command, Ctx, Handler, Spec};
use crate::{Decision, texts};

pub(super) const SPEC: Spec = Spec {
    name: "subscriptions",
    aliases: &[],
    usage: "subscriptions",
    summary: "the ban lists you follow, and how many rules each has",
    parse,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriptions;

fn parse(args: &Args<'_>) -> Result<Command, String> {
    args.none()?;
    Ok(Command::Subscriptions(Subscriptions))
}

impl Handler for Subscriptions {
    fn run(self, ctx: &Ctx<'_>) -> Decision {
        let mut lines: Vec<String> = ctx
            .owner
            .policy_lists
            .iter()
            .map(|room| {
                let list = ctx.policy.get(room);
                let name = list.map_or(room.as_str(), |l| l.name.as_str());
                texts::subscription(name, room, list.map(|l| (l.kept as usize, l.ignored)), false)
            })
            .collect();
        for list in ctx.policy.values().filter(|l| l.operator && !ctx.owner.policy_lists.contains(&l.room_id)) {
            lines.push(texts::subscription(&list.name, &list.room_id, Some((list.kept as usize, list.ignored)), true));
        }
        ctx.answer(texts::subscriptions(&lines, ctx.owner.banned_ignore))
    }
}
