//! `pending`: who is waiting, oldest first and numbered; later commands'
//! numbers refer to this list.

use std::collections::BTreeMap;

use ruma::OwnedUserId;

use super::{Args, Command, Ctx, Handler, Spec};
use crate::{Decision, Deferred, OwnerOverview, OwnerState, PendingEntry, StateChange, Subject, schedule, texts};

pub(super) const SPEC: Spec = Spec {
    name: "pending",
    aliases: &[],
    usage: "pending",
    summary: "who is waiting, numbered, with how many messages and since when",
    parse,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending;

fn parse(args: &Args<'_>) -> Result<Command, String> {
    args.none()?;
    Ok(Command::Pending(Pending))
}

impl Handler for Pending {
    fn run(self, ctx: &Ctx<'_>) -> Decision {
        let (entries, invites) = entries(ctx.overview);
        let list: Vec<Subject> = entries.iter().map(|e| Subject::User(e.sender.clone())).collect();
        let tz = schedule::zone(ctx.owner.timezone.as_deref());
        let mut d = Decision::default().effect(ctx.reply(texts::pending(&entries, &invites, &tz)));
        if list != ctx.owner.last_list {
            d = d.change(StateChange::PutOwner(OwnerState { last_list: list, ..ctx.owner.clone() }));
        }
        d
    }
}

/// Strangers waiting, oldest first, with their group-room invitations.
fn entries(overview: &OwnerOverview) -> (Vec<PendingEntry>, Vec<(String, String)>) {
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
        });
        e.unreadable = e.unreadable.or(held.unreadable);
        e.rooms.push(room.clone());
        e.first_ms = e.first_ms.min(held.invited_at_ms);
        e.last_ms = e.last_ms.max(held.invited_at_ms);
    }
    let mut messages: Vec<&Deferred> = overview.deferred.iter().collect();
    messages.sort_by_key(|m| m.ts_ms);
    for m in messages {
        let e = by_sender.entry(m.sender.clone()).or_insert_with(|| PendingEntry {
            sender: m.sender.clone(),
            name: None,
            rooms: vec![m.room_id.clone()],
            messages: 0,
            first_ms: m.ts_ms,
            last_ms: m.ts_ms,
            preview: None,
            unreadable: None,
        });
        e.messages += 1;
        e.first_ms = e.first_ms.min(m.ts_ms);
        e.last_ms = e.last_ms.max(m.ts_ms);
        e.preview = Some(texts::pending_preview(m));
    }
    let invites =
        overview.held.values().filter(|h| !h.is_dm).map(|h| (h.inviter.to_string(), texts::group_invite(h))).collect();
    let mut entries: Vec<PendingEntry> = by_sender.into_values().collect();
    entries.sort_by_key(|e| (e.first_ms, e.sender.clone()));
    (entries, invites)
}
