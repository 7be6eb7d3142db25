//! `digest`: the digest of everything new, now, without moving the schedule.

use super::{Args, Command, Ctx, Handler, Spec};
use crate::{Decision, housekeeping};

pub(super) const SPEC: Spec = Spec {
    name: "digest",
    aliases: &[],
    usage: "digest",
    summary: "the digest of everything new, now; the daily one still comes as planned",
    parse,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest;

fn parse(args: &Args<'_>) -> Result<Command, String> {
    args.none()?;
    Ok(Command::Digest(Digest))
}

impl Handler for Digest {
    fn run(self, ctx: &Ctx<'_>) -> Decision {
        // No schedule slot: the next scheduled digest comes as planned.
        housekeeping::send_digest(ctx.owner, ctx.overview, None, ctx.now_ms, ctx.meta.event_id.as_str(), ctx.config)
    }
}
