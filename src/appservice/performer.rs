//! Engine effects -> client-server API calls, as the appservice.

use ruma::api::client::{membership, message};
use ruma::events::Mentions;
use ruma::events::room::message::RoomMessageEventContent;

use super::client::{ClientError, HsClient};
use crate::engine::Effect;
use crate::executor::{PerformError, Performer};

fn classify(e: ClientError) -> PerformError {
    if e.is_transient() {
        PerformError::Transient(e.to_string())
    } else {
        PerformError::Permanent(e.to_string())
    }
}

impl Performer for HsClient {
    async fn perform(&self, effect: &Effect) -> Result<(), PerformError> {
        match effect {
            Effect::Join { as_user, room_id } => {
                let req = membership::join_room_by_id::v3::Request::new(room_id.clone());
                self.send(req, Some(as_user))
                    .await
                    .map(drop)
                    .map_err(classify)
            }
            Effect::Leave {
                as_user,
                room_id,
                reason,
            } => {
                let mut req = membership::leave_room::v3::Request::new(room_id.clone());
                req.reason = reason.clone();
                match self.send(req, Some(as_user)).await {
                    Ok(_) => Ok(()),
                    // Already out of the room (a repeat after a crash, or the
                    // invite was withdrawn): the goal is reached.
                    Err(ClientError::Http {
                        status: 403 | 404, ..
                    }) => Ok(()),
                    Err(e) => Err(classify(e)),
                }
            }
            Effect::SendNotice {
                as_user,
                room_id,
                txn_id,
                body,
                html,
            } => {
                let mut content = RoomMessageEventContent::notice_html(body.clone(), html.clone());
                // Bot replies never ping anyone.
                content.mentions = Some(Mentions::new());
                let req = message::send_message_event::v3::Request::new(
                    room_id.clone(),
                    txn_id.as_str().into(),
                    &content,
                )
                .map_err(|e| PerformError::Permanent(e.to_string()))?;
                self.send(req, Some(as_user))
                    .await
                    .map(drop)
                    .map_err(classify)
            }
        }
    }
}
