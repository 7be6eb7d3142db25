//! `show <target> [page <n>]`: every held message from one sender, in the
//! order they came, a page at a time. `page` is a word of its own so that
//! `show 2 3` stays what it was, a refusal (one sender at a time), rather
//! than quietly meaning "sender 2, page 3".

use super::args::{self, Target};
use super::{Args, Command, Ctx, Handler, Spec};
use crate::{Decision, Deferred, HeldRoom, Subject, texts};

pub(super) const SPEC: Spec = Spec {
    name: "show",
    aliases: &[],
    usage: "show <target> [page <n>]",
    summary: "every held message from one sender, a page at a time",
    parse,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Show {
    pub target: Target,
    /// 1 unless asked for.
    pub page: usize,
}

fn parse(args: &Args<'_>) -> Result<Command, String> {
    match args.words.as_slice() {
        [word] if word.eq_ignore_ascii_case("banned") => Ok(Command::Banned(super::banned::Banned)),
        [word] => Ok(Command::Show(Show { target: args::target(word)?, page: 1 })),
        [word, p, n] if p.eq_ignore_ascii_case("page") => {
            Ok(Command::Show(Show { target: args::target(word)?, page: args::page(n)? }))
        }
        _ => Err(texts::one_sender_at_a_time()),
    }
}

impl Handler for Show {
    fn run(self, ctx: &Ctx<'_>) -> Decision {
        ctx.with_subjects(std::slice::from_ref(&self.target), |subjects| {
            let subject = &subjects[0];
            let (_, mut messages) = ctx.held_of(subject);
            // Not what others wrote in the same rooms.
            messages.retain(|m| subject.covers(&m.sender));
            if messages.is_empty() {
                return ctx.answer(texts::plain(&texts::nothing_waiting_from(subject)));
            }
            messages.sort_by_key(|m| (m.ts_ms, m.received_ms, m.event_id.clone()));
            let items: Vec<texts::Text> = messages.iter().map(|m| texts::show_item(m)).collect();
            let intro = intro(ctx, subject, &messages);
            let pages = texts::paginate(&items, &texts::show_frame(subject, &intro), ctx.config.client_mode);
            ctx.answer(match pages.get(self.page - 1) {
                Some(range) => {
                    texts::show_page(subject, &intro, &items[range.clone()], self.page, pages.len(), items.len())
                }
                None => texts::no_such_page(self.page, pages.len(), &format!("show {subject} page")),
            })
        })
    }
}

/// The subject and card shown above `subject`'s messages (a server's
/// senders together: the first subject, one card for the server).
fn intro(ctx: &Ctx<'_>, subject: &Subject, messages: &[&Deferred]) -> texts::Text {
    let rooms: Vec<&HeldRoom> = ctx.overview.held.values().filter(|h| subject.covers(&h.inviter)).collect();
    let line = texts::subject_of(rooms.iter().copied(), messages.iter().copied());
    let sender = match subject {
        Subject::User(u) => u.clone(),
        Subject::Server(_) => messages[0].sender.clone(),
    };
    let name = rooms.iter().find_map(|h| h.inviter_name.as_deref());
    let mut card = texts::Card::of(&sender, name, &rooms, messages);
    if matches!(subject, Subject::Server(_)) {
        // Rooms shared are one person's, not a server's.
        card.shared = None;
    }
    texts::show_intro(line.as_deref(), &card)
}
