//! `subscribe <#alias:server | !room:server>`: follow a shared ban list.

use super::{Args, Command, Ctx, Handler, Spec};
use crate::policy::{MAX_LISTS_PER_OWNER, MAX_NAME};
use crate::{Decision, Effect, texts};

pub(super) const SPEC: Spec = Spec {
    name: "subscribe",
    aliases: &[],
    usage: "subscribe <list>",
    summary: "follow a shared ban list (a Matrix policy room): invitations from accounts it bans are declined",
    parse,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// A room alias or room ID, checked.
    pub target: String,
}

/// A policy room as the owner may name it: an alias or a room ID.
pub(super) fn list_target(args: &Args<'_>) -> Result<String, String> {
    let [word] = args.words.as_slice() else { return Err(texts::not_a_list(args.text)) };
    let valid = word.len() <= MAX_NAME && (ruma::RoomAliasId::parse(word).is_ok() || ruma::RoomId::parse(word).is_ok());
    if valid { Ok((*word).to_owned()) } else { Err(texts::not_a_list(word)) }
}

fn parse(args: &Args<'_>) -> Result<Command, String> {
    Ok(Command::Subscribe(Subscribe { target: list_target(args)? }))
}

impl Handler for Subscribe {
    fn run(self, ctx: &Ctx<'_>) -> Decision {
        if super::unsubscribe::followed(ctx, &self.target).is_some() {
            return ctx.answer(texts::already_following(&self.target));
        }
        if ctx.owner.policy_lists.len() >= MAX_LISTS_PER_OWNER {
            return ctx.answer(texts::too_many_lists());
        }
        // The answer with the rule count comes once the list is read.
        Decision::default()
            .effect(Effect::FollowList {
                as_user: ctx.config.bot.clone(),
                owner: Some(ctx.owner.user_id.clone()),
                target: self.target.clone(),
            })
            .effect(ctx.reply(texts::joining_list(&self.target, ctx.config.client_mode)))
    }
}
