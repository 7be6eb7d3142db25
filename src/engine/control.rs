//! Commands in the control room: only from the owner, only in the owner's
//! own control room (both are checked before any command runs).

use std::collections::BTreeMap;

use ruma::OwnedUserId;

use super::command::{self, Command};
use super::*;

pub(super) fn command(
    snapshot: &Snapshot,
    meta: &EventMeta,
    owner: &OwnedUserId,
    msgtype: &str,
    body: &str,
    config: &EngineConfig,
) -> Decision {
    if *owner != meta.sender || msgtype != "m.text" {
        return Decision::default();
    }
    let Some(state) = snapshot.owners.get(owner) else { return Decision::default() };
    if state.control_room != meta.room_id {
        return Decision::default();
    }
    let Some(cmd) = command::parse(body) else { return Decision::default() };
    let reply = |text: Text| Decision::default().effect(notice(&config.bot, &meta.room_id, meta, "reply", text));
    match cmd {
        Command::Help { topic } => reply(texts::help(topic.as_deref())),
        Command::Unknown { word } => reply(texts::unknown_command(&word)),
        Command::BadArgs { usage } => reply(texts::bad_args(usage)),
        Command::Pending => {
            let overview = snapshot.overview.clone().unwrap_or_default();
            let (entries, invites) = pending_entries(&overview);
            reply(texts::pending(&entries, &invites))
        }
        Command::ReplyShow => reply(preview(state)),
        Command::ReplySet { text } => {
            let updated = OwnerState { reply_template: Some(text), ..state.clone() };
            let answer = preview(&updated);
            reply(answer).change(StateChange::PutOwner(updated))
        }
        Command::ReplyReset => {
            let updated = OwnerState { reply_template: None, ..state.clone() };
            let answer = preview(&updated);
            reply(answer).change(StateChange::PutOwner(updated))
        }
        Command::Stop => optin::opt_out(snapshot, owner, Some(meta), config),
    }
}

fn preview(owner: &OwnerState) -> Text {
    let name = owner.displayname.clone().unwrap_or_else(|| owner.user_id.localpart().to_owned());
    let rendered = texts::etiquette(owner.reply_template.as_deref(), &name, owner.email.as_deref(), false);
    texts::reply_preview(&rendered, owner.reply_template.is_some())
}

/// Strangers waiting, oldest first, with their group-room invitations.
pub(super) fn pending_entries(overview: &OwnerOverview) -> (Vec<PendingEntry>, Vec<(String, String)>) {
    let mut by_sender: BTreeMap<OwnedUserId, PendingEntry> = BTreeMap::new();
    for (room, held) in &overview.held {
        let e = by_sender.entry(held.inviter.clone()).or_insert_with(|| PendingEntry {
            sender: held.inviter.clone(),
            rooms: vec![],
            messages: 0,
            first_ms: held.invited_at_ms,
            last_ms: held.invited_at_ms,
            preview: None,
        });
        e.rooms.push(room.clone());
        e.first_ms = e.first_ms.min(held.invited_at_ms);
        e.last_ms = e.last_ms.max(held.invited_at_ms);
    }
    let mut messages: Vec<&Deferred> = overview.deferred.iter().collect();
    messages.sort_by_key(|m| m.ts_ms);
    for m in messages {
        let e = by_sender.entry(m.sender.clone()).or_insert_with(|| PendingEntry {
            sender: m.sender.clone(),
            rooms: vec![m.room_id.clone()],
            messages: 0,
            first_ms: m.ts_ms,
            last_ms: m.ts_ms,
            preview: None,
        });
        e.messages += 1;
        e.first_ms = e.first_ms.min(m.ts_ms);
        e.last_ms = e.last_ms.max(m.ts_ms);
        e.preview = Some(if m.encrypted {
            "(an encrypted message)".to_owned()
        } else if let Some(media) = &m.media {
            format!("(sent {})", texts::one_line(&media.name, 60))
        } else {
            texts::one_line(&m.body, 80)
        });
    }
    let invites = overview
        .held
        .values()
        .filter(|h| !h.is_dm)
        .map(|h| {
            let name = h.name.clone().unwrap_or_else(|| "a room".to_owned());
            let size = h.members.map(|n| format!(" ({n} members)")).unwrap_or_default();
            let reason = h.reason.as_ref().map(|r| format!(": “{}”", texts::one_line(r, 80))).unwrap_or_default();
            (h.inviter.to_string(), format!("invited you to {}{size}{reason}", texts::one_line(&name, 60)))
        })
        .collect();
    let mut entries: Vec<PendingEntry> = by_sender.into_values().collect();
    entries.sort_by_key(|e| e.first_ms);
    (entries, invites)
}
