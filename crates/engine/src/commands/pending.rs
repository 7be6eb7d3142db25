//! `pending [page]`: who is waiting, newest first, numbered, a page at a
//! time; later commands' numbers refer to this numbering.
//!
//! Numbers are global across pages, never per page: `pending` numbers
//! everyone waiting (newest first) and remembers that numbering as
//! `last_list`; `pending 2` shows a later page of the *same* numbering,
//! adding anyone who arrived since at the end. So within one numbering a
//! number never names two people, whichever page the owner read it on, and
//! `allow 3` means the person shown as 3 on any page since the last bare
//! `pending` (or digest), which is the list the owner saw last. Per-page
//! numbers would make page 1's "3." and page 2's "3." different people,
//! and renumbering on every page would shift page 1's numbers when someone
//! new arrives between two pages.

use std::collections::BTreeMap;

use ruma::OwnedUserId;

use super::{Args, Command, Ctx, Handler, Spec};
use crate::{Decision, Deferred, OwnerOverview, OwnerState, PendingEntry, StateChange, Subject, schedule, texts};

pub(super) const SPEC: Spec = Spec {
    name: "pending",
    aliases: &[],
    usage: "pending [page]",
    summary: "who is waiting, newest first and numbered, with how many messages and since when; \
              long lists come in pages (`pending 2`)",
    parse,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The page asked for; `None` starts a new numbering at page 1.
    pub page: Option<usize>,
}

fn parse(args: &Args<'_>) -> Result<Command, String> {
    let page = match args.words.as_slice() {
        [] => None,
        [n] | ["page", n] => Some(super::args::page(n)?),
        _ => return Err(texts::one_page_number()),
    };
    Ok(Command::Pending(Pending { page }))
}

impl Handler for Pending {
    fn run(self, ctx: &Ctx<'_>) -> Decision {
        let (mut waiting, invites) = entries(ctx.owner, ctx.overview);
        let tz = schedule::zone(ctx.owner.timezone.as_deref());
        if waiting.is_empty() {
            return ctx.answer(with_not_held(texts::nobody_waiting(), ctx));
        }
        let list = numbering(&ctx.owner.last_list, &waiting, self.page.is_some());
        let numbered: Vec<(usize, PendingEntry)> = list
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Subject::User(u) => waiting.remove(u).map(|e| (i + 1, e)),
                Subject::Server(_) => None,
            })
            .collect();
        let items: Vec<texts::Text> = numbered
            .iter()
            .map(|(n, e)| texts::pending_entry(*n, e, invites.get(&e.sender).map(String::as_str), &tz))
            .collect();
        let pages = texts::paginate(&items, &with_not_held(texts::pending_frame(), ctx), ctx.config.client_mode);
        let page = self.page.unwrap_or(1);
        let text = match pages.get(page - 1) {
            Some(range) => texts::pending_page(&items[range.clone()], page, pages.len(), numbered.len()),
            None => texts::no_such_page(page, pages.len(), "pending"),
        };
        let d = ctx.answer(with_not_held(text, ctx));
        if list != ctx.owner.last_list {
            return d.change(StateChange::PutOwner(OwnerState { last_list: list, ..ctx.owner.clone() }));
        }
        d
    }
}

/// Invitations not held at all (the owner's bound was reached) since the
/// last digest, said below the list: they have no entry of their own.
fn with_not_held(mut text: texts::Text, ctx: &Ctx<'_>) -> texts::Text {
    let n = ctx.owner.invites_not_held.unreported();
    if n > 0 {
        let note = texts::invites_not_held(n, ctx.overview.held.len() as u64);
        text.plain.push_str(&format!("\n\n{note}"));
        text.html.push_str(&format!("<p>{}</p>", texts::escape_html(&note)));
    }
    let m = ctx.owner.messages_not_kept.unreported();
    if m > 0 {
        let note = texts::messages_not_kept(m, ctx.overview.deferred.len() as u64);
        text.plain.push_str(&format!("\n\n{note}"));
        text.html.push_str(&format!("<p>{}</p>", texts::escape_html(&note)));
    }
    text
}

/// The numbering a page is shown in: a new one (everyone waiting, newest
/// first) unless `continuing` the owner's last list, which then keeps every
/// number it gave and numbers newcomers after it.
fn numbering(last_list: &[Subject], waiting: &BTreeMap<OwnedUserId, PendingEntry>, continuing: bool) -> Vec<Subject> {
    let mut newest_first: Vec<&PendingEntry> = waiting.values().collect();
    newest_first.sort_by(|a, b| b.first_ms.cmp(&a.first_ms).then_with(|| a.sender.cmp(&b.sender)));
    let mut list = if continuing { last_list.to_vec() } else { Vec::new() };
    let known: std::collections::BTreeSet<Subject> = list.iter().cloned().collect();
    list.extend(newest_first.into_iter().map(|e| Subject::User(e.sender.clone())).filter(|s| !known.contains(s)));
    list
}

/// Strangers waiting, by sender, with their group-room invitations.
type Waiting = (BTreeMap<OwnedUserId, PendingEntry>, BTreeMap<OwnedUserId, String>);

fn entries(owner: &OwnerState, overview: &OwnerOverview) -> Waiting {
    let mut by_sender: BTreeMap<OwnedUserId, PendingEntry> = BTreeMap::new();
    for (room, held) in &overview.held {
        let e = by_sender.entry(held.inviter.clone()).or_insert_with(|| PendingEntry {
            sender: held.inviter.clone(),
            name: held.inviter_name.clone(),
            rooms: vec![],
            messages: 0,
            first_ms: held.invited_at_ms,
            last_ms: held.invited_at_ms,
            preview: None,
            unreadable: None,
            invites_not_held: 0,
            messages_not_kept: 0,
            wave: None,
            imitates: None,
            subject: None,
            card: texts::Card::default(),
        });
        e.unreadable = e.unreadable.or(held.unreadable);
        e.wave = e.wave.max(held.wave);
        e.rooms.push(room.clone());
        e.first_ms = e.first_ms.min(held.invited_at_ms);
        e.last_ms = e.last_ms.max(held.invited_at_ms);
    }
    let mut messages: Vec<&Deferred> = overview.deferred.iter().collect();
    messages.sort_by_key(|m| (m.received_ms, m.ts_ms));
    let mut latest: BTreeMap<&OwnedUserId, &Deferred> = BTreeMap::new();
    for m in messages {
        latest.insert(&m.sender, m);
        let e = by_sender.entry(m.sender.clone()).or_insert_with(|| PendingEntry {
            sender: m.sender.clone(),
            name: None,
            rooms: vec![m.room_id.clone()],
            messages: 0,
            first_ms: m.received_ms,
            last_ms: m.received_ms,
            preview: None,
            unreadable: None,
            invites_not_held: 0,
            messages_not_kept: 0,
            wave: None,
            imitates: None,
            subject: None,
            card: texts::Card::default(),
        });
        e.messages += 1;
        e.first_ms = e.first_ms.min(m.received_ms);
        e.last_ms = e.last_ms.max(m.received_ms);
    }
    for (sender, counted) in &overview.strangers {
        if let Some(e) = by_sender.get_mut(sender) {
            e.invites_not_held = counted.invites_not_held.total;
            e.messages_not_kept = counted.messages_not_kept.total;
        }
    }
    let contacts = texts::contact_users(&overview.contacts);
    let likeness = texts::Likeness::new(owner, &contacts);
    for e in by_sender.values_mut() {
        e.imitates = likeness.of(e.name.as_deref());
    }
    let mut rooms_of: BTreeMap<&OwnedUserId, Vec<&crate::HeldRoom>> = BTreeMap::new();
    for h in overview.held.values() {
        rooms_of.entry(&h.inviter).or_default().push(h);
    }
    let mut messages_of: BTreeMap<&OwnedUserId, Vec<&Deferred>> = BTreeMap::new();
    for m in &overview.deferred {
        messages_of.entry(&m.sender).or_default().push(m);
    }
    for e in by_sender.values_mut() {
        let (rooms, theirs) =
            (rooms_of.remove(&e.sender).unwrap_or_default(), messages_of.remove(&e.sender).unwrap_or_default());
        e.subject = texts::subject_of(rooms.iter().copied(), theirs.iter().copied());
        e.card = texts::Card::of(&e.sender, e.name.as_deref(), &rooms, &theirs);
    }
    // Only the latest line of each is shown: only that one is read.
    for (sender, m) in latest {
        if let Some(e) = by_sender.get_mut(sender) {
            e.preview = Some(texts::pending_preview(m));
        }
    }
    // The first group invitation of each sender is the one shown.
    let mut invites = BTreeMap::new();
    for h in overview.held.values().filter(|h| !h.is_dm) {
        invites.entry(h.inviter.clone()).or_insert_with(|| texts::group_invite(h));
    }
    (by_sender, invites)
}
