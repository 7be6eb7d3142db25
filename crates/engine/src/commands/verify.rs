//! `verify <code>`: confirm the e-mail address with the code mailed to it.

use super::{Args, Command, Ctx, Handler, Spec};
use crate::{Decision, OwnerState, PendingEmail, mail, texts};

pub(super) const SPEC: Spec = Spec {
    name: "verify",
    aliases: &[],
    usage: "verify <code>",
    summary: "confirm your e-mail address with the code sent to it",
    parse,
};

/// At most this many wrong codes before the owner must ask for a new one.
const MAX_CODE_ATTEMPTS: u32 = 5;

/// Longest code accepted; ours have six digits.
const MAX_CODE_DIGITS: usize = 12;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verify {
    pub code: String,
}

fn parse(args: &Args<'_>) -> Result<Command, String> {
    match args.words.as_slice() {
        [code] if code.len() <= MAX_CODE_DIGITS && code.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(Command::Verify(Verify { code: (*code).to_owned() }))
        }
        _ => Err(texts::code_is_the_number()),
    }
}

impl Handler for Verify {
    fn run(self, ctx: &Ctx<'_>) -> Decision {
        let o = ctx.owner.clone();
        let Some(pending) = o.email_pending.clone() else {
            return ctx.answer(texts::no_code_waiting());
        };
        if pending.expires_ms <= ctx.now_ms || pending.attempts >= MAX_CODE_ATTEMPTS {
            return ctx.update(OwnerState { email_pending: None, ..o }, texts::code_expired());
        }
        if !mail::codes_match(&pending.code, &self.code) {
            let left = MAX_CODE_ATTEMPTS - pending.attempts - 1;
            let attempts = pending.attempts + 1;
            let updated = OwnerState { email_pending: Some(PendingEmail { attempts, ..pending }), ..o };
            return ctx.update(updated, texts::code_does_not_match(left));
        }
        let said = texts::email_verified(&pending.address);
        ctx.update(OwnerState { email: Some(pending.address), email_pending: None, ..o }, said)
    }
}
