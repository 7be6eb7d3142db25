//! `report <target> [reason]`: report a sender to the homeserver's admins
//! (the user report, or their latest held message's), then block them.

use super::args::{self, Target};
use super::{Args, Command, Ctx, Handler, Spec};
use crate::native::{MAX_REPORT_REASON, NativeEffect};
use crate::{Decision, Effect, Subject, texts};

pub(super) const SPEC: Spec = Spec {
    name: "report",
    aliases: &[],
    usage: "report <target> [reason]",
    summary: "report them to your homeserver's admins, then block them",
    parse,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub target: Target,
    /// The owner's words for the admins: one line, at most
    /// [`MAX_REPORT_REASON`] characters (the homeserver refuses long ones).
    pub reason: String,
}

fn parse(args: &Args<'_>) -> Result<Command, String> {
    let Some(first) = args.words.first() else { return Err(texts::say_who()) };
    let target = args::target(first)?;
    let rest = args.text.strip_prefix(first).unwrap_or_default();
    let reason = texts::one_line(rest, MAX_REPORT_REASON);
    Ok(Command::Report(Report { target, reason }))
}

impl Handler for Report {
    fn run(self, ctx: &Ctx<'_>) -> Decision {
        ctx.with_subjects(std::slice::from_ref(&self.target), |subjects| {
            let Some(Subject::User(user)) = subjects.first() else {
                return ctx.answer(texts::plain(&texts::report_needs_a_user()));
            };
            if *user == ctx.owner.user_id {
                return ctx.answer(texts::plain(&texts::cannot_deny_yourself()));
            }
            // Their latest message Gatekeeper keeps: the one an event report names.
            let event = ctx
                .overview
                .deferred
                .iter()
                .filter(|m| m.sender == *user)
                .max_by_key(|m| (m.received_ms, m.ts_ms))
                .map(|m| (m.room_id.clone(), m.event_id.clone()));
            let report = Effect::Native(NativeEffect::Report {
                owner: ctx.owner.user_id.clone(),
                user: user.clone(),
                event,
                reason: self.reason.clone(),
                seed: ctx.meta.event_id.to_string(),
            });
            let mut d = super::block(ctx, &subjects[..1]);
            // Said first: the block's answer follows, the report's outcome after.
            if let Some(Effect::SendNotice { body, html, .. }) = d.effects.last_mut() {
                let line = texts::reporting(user);
                *body = format!("{line}\n{body}");
                *html = format!("<p>{}</p>{html}", texts::escape_html(&line));
            }
            d.effects.push(report);
            d
        })
    }
}
