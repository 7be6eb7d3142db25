//! The owner's decisions reach the engine two ways: commands in their
//! control room and one-click links from e-mail. Who may decide is checked
//! here, once, before any handler in `commands` runs.

use ruma::OwnedUserId;

use sha2::Digest;

use super::commands::{self, Ctx};
use super::*;

/// A message in a control room. Only the room's owner commands, only in
/// their current control room, and never with a notice (Gatekeeper's own
/// answers are notices, and in client mode they come from the owner).
pub(super) fn command(
    snapshot: &Snapshot,
    meta: &EventMeta,
    owner: &OwnedUserId,
    msgtype: &str,
    body: &str,
    now_ms: u64,
    config: &EngineConfig,
) -> Decision {
    if *owner != meta.sender || msgtype != "m.text" {
        return Decision::default();
    }
    let Some(state) = snapshot.owners.get(owner) else { return Decision::default() };
    if state.control_room != meta.room_id {
        return Decision::default();
    }
    let to = commands::Addressee { bot: Some(&config.bot), name: config.bot_name.as_deref(), any_user: false };
    let Some(command) = commands::parse_as(body, &to) else { return Decision::default() };
    let empty = OwnerOverview::default();
    let ctx = Ctx {
        owner: state,
        overview: snapshot.overview.as_ref().unwrap_or(&empty),
        meta,
        now_ms,
        config,
        codes: &snapshot.waves,
        policy: &snapshot.policy,
    };
    command.run(&ctx)
}

/// A one-click link from an e-mail, confirmed on its web page: the same
/// decision as the command, answered in the control room.
pub(super) fn link_used(
    snapshot: &Snapshot,
    owner: &OwnedUserId,
    action: links::LinkAction,
    subject: Option<&Subject>,
    nonce: &str,
    now_ms: u64,
    config: &EngineConfig,
) -> Decision {
    let Some(state) = snapshot.owners.get(owner) else { return Decision::default() };
    let empty = OwnerOverview::default();
    // No event asked; the link's nonce seeds the transaction IDs instead.
    let digest = sha2::Sha256::digest(nonce.as_bytes());
    let id: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    let Ok(event_id) = ruma::OwnedEventId::try_from(format!("$link{id}")) else { return Decision::default() };
    let meta = EventMeta { event_id, room_id: state.control_room.clone(), sender: owner.clone(), ts_ms: now_ms };
    let codes = std::collections::BTreeMap::new();
    let ctx = Ctx {
        owner: state,
        overview: snapshot.overview.as_ref().unwrap_or(&empty),
        meta: &meta,
        now_ms,
        config,
        codes: &codes,
        policy: &snapshot.policy,
    };
    let subjects: Vec<Subject> = subject.cloned().into_iter().collect();
    use links::LinkAction as A;
    let d = match (action, subjects.is_empty()) {
        (A::Undo, _) => {
            // Only the decision that link made, while it can be undone.
            let made_by = nonce.strip_prefix("undo.");
            let entry =
                state.undo.iter().find(|u| u.link.is_some() && u.link.as_deref() == made_by && undo::live(u, now_ms));
            match entry {
                Some(entry) => commands::undo(&ctx, entry),
                None => ctx.answer(texts::nothing_to_undo()),
            }
        }
        (A::Unsubscribe, _) => {
            let updated = OwnerState { email: None, email_pending: None, ..state.clone() };
            return ctx.update(updated, texts::unsubscribed_by_email());
        }
        (_, true) => return Decision::default(),
        (A::Allow, _) => commands::allow(&ctx, &subjects, None),
        (A::Allow30, _) => commands::allow(&ctx, &subjects, Some(30 * 86_400_000)),
        (A::Deny, _) => commands::deny(&ctx, &subjects),
        (A::Block | A::BlockServer, _) => commands::block(&ctx, &subjects),
    };
    // Remember which link decided, so that its page can offer to undo it.
    let mut changes = d.changes;
    for change in &mut changes {
        if let StateChange::PutOwner(o) = change
            && let Some(last) = o.undo.last_mut()
            && !state.undo.contains(last)
        {
            last.link = Some(nonce.to_owned());
        }
    }
    // Say where the decision came from.
    let effects = d
        .effects
        .into_iter()
        .map(|e| match e {
            Effect::SendNotice { as_user, room_id, txn_id, body, html, digest, only_with, urgent }
                if room_id == state.control_room =>
            {
                let body = texts::from_your_email(&body);
                Effect::SendNotice { as_user, room_id, txn_id, body, html, digest, only_with, urgent }
            }
            other => other,
        })
        .collect();
    Decision { changes, effects, outcomes: d.outcomes }
}
