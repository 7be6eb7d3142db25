//! Engine effects -> calls, as the owner's own device. Push rules, tags,
//! leaves and look-ups are plain client-server calls with the owner's token
//! (shared with the appservice); joins, sends and history go through
//! matrix-sdk, which encrypts and decrypts where the room asks for it.

use std::time::{Duration, Instant};

use matrix_sdk::room::MessagesOptions;
use ruma::events::Mentions;
use ruma::events::room::message::RoomMessageEventContent;
use ruma::{DeviceId, RoomId, TransactionId, UserId, uint};
use serde_json::Value;

use super::once::{self, Look, Sends, Verdict};
use crate::engine::Effect;
use crate::matrix::{HsClient, classify};
use crate::pipeline::executor::{PerformError, Performer};
use crate::store::{FollowUp, OutboxItem, Store};

/// The owner's events per page when an inherited message is looked for,
/// and pages at most. Only the owner's own events are asked for (the
/// homeserver filters, and they are checked again here), so a stranger's
/// flood cannot push the message out of sight; a message sent just before
/// a takeover is among the owner's newest in that room.
const LOOK_BACK_PAGE: u32 = 50;
const LOOK_BACK_PAGES: usize = 2;
/// How long looking for an inherited message may take. Reading a room's
/// history can make the homeserver backfill from the other servers in it,
/// a stranger's among them, which can answer as slowly as it likes; past
/// this, what was not read counts as unreadable (held, within the wait).
const LOOK_UP_FOR: Duration = Duration::from_secs(15);

pub struct ClientPerformer {
    pub sdk: matrix_sdk::Client,
    pub hs: HsClient,
    /// Outbox items up to this one may have been sent by another device
    /// (see [`once`]): their messages are looked for before they are sent.
    pub inherited_up_to: u64,
    /// When this device took over (in memory: a restart waits again, no
    /// more); inherited messages that an unreadable event may be are held
    /// until `hold_limit` after it (see [`once::verdict`]).
    pub took_over: Instant,
    pub hold_limit: Duration,
}

impl ClientPerformer {
    /// `retry_for`: the executor's bound on retrying one effect.
    pub fn new(sdk: matrix_sdk::Client, hs: HsClient, inherited_up_to: u64, retry_for: Duration) -> Self {
        ClientPerformer { sdk, hs, inherited_up_to, took_over: Instant::now(), hold_limit: once::hold_limit(retry_for) }
    }
}

/// Which device sent last, as the store says (`None`: none, or unreadable,
/// which is treated as another device's: at worst a few more look-ups).
pub fn sends_of(store: &dyn Store) -> anyhow::Result<Option<Sends>> {
    Ok(store.connector_value(once::SENDS_KEY)?.and_then(|b| serde_json::from_slice::<Sends>(&b).ok()))
}

/// Records that `own` sends from now on (see [`once::take_over`]), and
/// returns the last outbox item it inherited from another device. Before
/// the executor starts: a device that dies after this still knows, when it
/// starts again, what it inherited.
pub fn take_over_sends(store: &dyn Store, found: Option<Sends>, own: &DeviceId) -> anyhow::Result<u64> {
    let sends = once::take_over(found, own, store.outbox_high_water()?);
    store.set_connector_value(once::SENDS_KEY, Some(&serde_json::to_vec(&sends)?))?;
    let Sends::V1 { inherited_up_to, .. } = sends;
    Ok(inherited_up_to)
}

/// Rate limits, server errors and network trouble pass; a refusal does not.
fn sdk_error(e: matrix_sdk::Error) -> PerformError {
    match e.as_client_api_error().map(|api| api.status_code.as_u16()) {
        Some(status) if (400..500).contains(&status) && status != 429 => PerformError::Permanent(e.to_string()),
        _ => PerformError::Transient(e.to_string()),
    }
}

impl ClientPerformer {
    fn room(&self, room_id: &RoomId) -> Result<matrix_sdk::Room, PerformError> {
        // Rooms come to the SDK's state through its own join or a sync: a
        // room not known yet may be soon, so this is retried, but only
        // within the executor's bound (`gate.effect_retry_for`), since a
        // join that never succeeds leaves it unknown for good.
        self.sdk.get_room(room_id).ok_or_else(|| PerformError::Transient(format!("{room_id} is not known yet")))
    }

    async fn send_notice(&self, room_id: &RoomId, txn_id: &str, body: &str, html: &str) -> Result<(), PerformError> {
        let room = self.room(room_id)?;
        let mut content = RoomMessageEventContent::notice_html(body, html);
        // Gatekeeper's messages never ping anyone.
        content.mentions = Some(Mentions::new());
        let mut content = serde_json::to_value(&content).map_err(|e| PerformError::Permanent(e.to_string()))?;
        // Inside the content, so encrypted with it: another device of the
        // owner's finds it after a takeover (see `once`).
        content[once::MARKER_KEY] = Value::from(txn_id);
        // The same transaction ID after a crash: the homeserver sends once
        // (for this device; another one looks for the marker first).
        room.send_raw("m.room.message", content)
            .with_transaction_id(<&TransactionId>::from(txn_id))
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    /// Whether an inherited message is already out, from the owner's newest
    /// events in the room, decrypted where this device has the keys.
    async fn look_for(&self, room_id: &RoomId, txn_id: &str) -> Result<Look, PerformError> {
        let room = self.room(room_id)?;
        let (Some(owner), Some(own)) = (self.sdk.user_id(), self.sdk.device_id()) else {
            return Err(PerformError::Transient("the session is not restored yet".into()));
        };
        let mut events: Vec<Value> = Vec::new();
        let read = async {
            let mut from = None;
            for _ in 0..LOOK_BACK_PAGES {
                let mut options = MessagesOptions::backward();
                options.from = from;
                options.limit = LOOK_BACK_PAGE.into();
                options.filter.senders = Some(vec![owner.to_owned()]);
                let page = room.messages(options).await.map_err(sdk_error)?;
                events.extend(page.chunk.iter().filter_map(|e| serde_json::from_str(e.kind.raw().json().get()).ok()));
                // Found: an older page could only stall (past the join, the
                // homeserver may backfill from a stranger's server).
                if once::look(&events, owner, own, txn_id) == Look::Sent {
                    break;
                }
                match page.end {
                    Some(end) if !page.chunk.is_empty() => from = Some(end),
                    _ => break,
                }
            }
            Ok::<_, PerformError>(())
        };
        let finished = tokio::time::timeout(LOOK_UP_FOR, read).await;
        // What was read before a timeout still counts: found is found.
        let found = once::look(&events, owner, own, txn_id);
        match finished {
            Ok(read) => read.map(|()| found),
            Err(_) if found == Look::Sent => Ok(found),
            Err(_) => {
                tracing::warn!(%room_id, txn_id, "reading the room's history took too long; counted as unreadable");
                Ok(Look::Unreadable)
            }
        }
    }

    /// Whether to send an inherited message: not if it is out already.
    async fn still_to_send(&self, owner: &UserId, room_id: &RoomId, txn_id: &str) -> Result<bool, PerformError> {
        let found = self.look_for(room_id, txn_id).await?;
        match once::verdict(found, self.took_over.elapsed(), self.hold_limit) {
            Verdict::Hold => Err(PerformError::Transient(format!(
                "an event of {owner}'s in {room_id} may be this message but cannot be decrypted yet"
            ))),
            Verdict::Done => {
                tracing::info!(%room_id, txn_id, "sent before a takeover by another device; not again");
                Ok(false)
            }
            Verdict::Send => {
                if found == Look::Unreadable {
                    tracing::warn!(%room_id, txn_id, "an unreadable event may be this message; sent anyway");
                }
                Ok(true)
            }
        }
    }

    /// What the room said before the owner joined, decrypted where keys
    /// allow, then the room's name and size.
    async fn backfill(&self, owner: &ruma::UserId, room_id: &RoomId) -> Result<Vec<FollowUp>, PerformError> {
        let room = self.room(room_id)?;
        let mut options = MessagesOptions::backward();
        options.limit = uint!(100);
        let page = room.messages(options).await.map_err(sdk_error)?;
        let mut follow_ups: Vec<FollowUp> = page
            .chunk
            .iter()
            .rev()
            .filter_map(|event| super::sync::with_room_id(event.kind.raw().json().get(), room_id))
            .map(|raw| FollowUp { internal: false, raw })
            .collect();
        follow_ups.push(self.hs.room_info(owner, room_id).await.map_err(classify)?);
        Ok(follow_ups)
    }
}

impl Performer for ClientPerformer {
    async fn perform_item(&self, item: &OutboxItem) -> Result<Vec<FollowUp>, PerformError> {
        if item.id <= self.inherited_up_to
            && let Effect::SendNotice { as_user, room_id, txn_id, .. } = &item.effect
            && !self.still_to_send(as_user, room_id, txn_id).await?
        {
            return Ok(Vec::new());
        }
        self.perform(&item.effect).await
    }

    async fn perform(&self, effect: &Effect) -> Result<Vec<FollowUp>, PerformError> {
        match effect {
            Effect::Join { room_id, .. } => {
                self.sdk.join_room_by_id(room_id).await.map_err(sdk_error)?;
                Ok(Vec::new())
            }
            Effect::SendNotice { as_user, room_id, txn_id, body, html, only_with, .. } => {
                if let Some(with) = only_with
                    && let Some(not_sent) = self.hs.not_two_people(as_user, room_id, with).await.map_err(classify)?
                {
                    return Ok(vec![not_sent]);
                }
                self.send_notice(room_id, txn_id, body, html).await?;
                Ok(Vec::new())
            }
            Effect::Backfill { owner, room_id } => self.backfill(owner, room_id).await,
            other => self.hs.perform(other).await,
        }
    }
}
