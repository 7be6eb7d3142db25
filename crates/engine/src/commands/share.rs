//! `share blocks` / `share blocks off`: publish the owner's blocks as a
//! ban list (a Matrix policy room) that others can follow, kept current.

use super::{Args, Command, Ctx, Handler, Spec};
use crate::{Contact, Decision, Effect, OwnerState, texts};

pub(super) const SPEC: Spec = Spec {
    name: "share",
    aliases: &[],
    usage: "share blocks | share blocks off",
    summary: "publish your blocks as a ban list anyone can follow, kept current; `share blocks off` stops",
    parse,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Share {
    On,
    Off,
}

fn parse(args: &Args<'_>) -> Result<Command, String> {
    let words: Vec<String> = args.words.iter().map(|w| w.to_ascii_lowercase()).collect();
    match words.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["blocks"] => Ok(Command::Share(Share::On)),
        ["blocks", "off"] => Ok(Command::Share(Share::Off)),
        _ => Err(texts::share_what()),
    }
}

impl Handler for Share {
    fn run(self, ctx: &Ctx<'_>) -> Decision {
        match (self, &ctx.owner.shared_list) {
            (Share::On, Some(room)) => {
                let blocks = ctx.overview.contacts.values().filter(|c| matches!(c, Contact::Blocked { .. })).count();
                ctx.answer(texts::sharing_blocks(room.as_str(), blocks))
            }
            (Share::On, None) => Decision::default()
                .effect(Effect::CreateList { as_user: ctx.config.bot.clone(), owner: ctx.owner.user_id.clone() })
                .effect(ctx.reply(texts::sharing_started())),
            (Share::Off, None) => ctx.answer(texts::not_sharing()),
            (Share::Off, Some(room)) => {
                ctx.update(OwnerState { shared_list: None, ..ctx.owner.clone() }, texts::sharing_stopped(room.as_str()))
            }
        }
    }
}
