//! Engine effects -> calls, as the owner's own device. Push rules, tags,
//! leaves and look-ups are plain client-server calls with the owner's token
//! (shared with the appservice); joins, sends and history go through
//! matrix-sdk, which encrypts and decrypts where the room asks for it.

use matrix_sdk::room::MessagesOptions;
use ruma::events::Mentions;
use ruma::events::room::message::RoomMessageEventContent;
use ruma::{OwnedTransactionId, RoomId, uint};

use crate::engine::Effect;
use crate::matrix::{HsClient, classify};
use crate::pipeline::executor::{PerformError, Performer};
use crate::store::FollowUp;

pub struct ClientPerformer {
    pub sdk: matrix_sdk::Client,
    pub hs: HsClient,
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
        // The same transaction ID after a crash: the homeserver sends once.
        room.send(content).with_transaction_id(OwnedTransactionId::from(txn_id)).await.map_err(sdk_error)?;
        Ok(())
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
