//! Verifying Gatekeeper's device from the owner's other client (emoji
//! verification). Only the owner's own devices are answered. Gatekeeper
//! shows its emoji in the control room: the owner compares them with what
//! their other client shows and confirms there. This is device plumbing,
//! not a gatekeeping decision, so it lives in the connector.

use futures_util::StreamExt;
use matrix_sdk::encryption::verification::{SasState, SasVerification, Verification, VerificationRequestState};
use matrix_sdk::ruma::events::key::verification::request::ToDeviceKeyVerificationRequestEvent;
use matrix_sdk::ruma::events::key::verification::start::ToDeviceKeyVerificationStartEvent;
use ruma::events::room::message::RoomMessageEventContent;
use ruma::{OwnedRoomId, OwnedUserId};

/// Answers the owner's verification requests from now on.
pub fn install(sdk: &matrix_sdk::Client, owner: OwnedUserId, control_room: OwnedRoomId) {
    let (o, c) = (owner.clone(), control_room.clone());
    sdk.add_event_handler(move |ev: ToDeviceKeyVerificationRequestEvent, client: matrix_sdk::Client| {
        let (owner, control_room) = (o.clone(), c.clone());
        async move {
            if ev.sender != owner {
                return;
            }
            let Some(request) =
                client.encryption().get_verification_request(&ev.sender, &ev.content.transaction_id).await
            else {
                return;
            };
            tracing::info!(device = %ev.content.from_device, "the owner asked to verify this device");
            // Handlers run inside the sync: waiting for the next steps here
            // would hold back the very sync that brings them.
            tokio::spawn(follow(client, request, control_room));
        }
    });
    // Some clients start the emoji flow without a request first.
    sdk.add_event_handler(move |ev: ToDeviceKeyVerificationStartEvent, client: matrix_sdk::Client| {
        let (owner, control_room) = (owner.clone(), control_room.clone());
        async move {
            if ev.sender != owner {
                return;
            }
            if let Some(Verification::SasV1(sas)) =
                client.encryption().get_verification(&ev.sender, ev.content.transaction_id.as_str()).await
                && !sas.started_from_request()
            {
                tokio::spawn(drive(client, sas, control_room));
            }
        }
    });
}

/// Accepts the owner's request and follows it into the emoji flow.
async fn follow(
    client: matrix_sdk::Client,
    request: matrix_sdk::encryption::verification::VerificationRequest,
    control_room: OwnedRoomId,
) {
    if let Err(e) = request.accept().await {
        return tracing::warn!(error = %e, "accepting the verification request failed");
    }
    let mut changes = request.changes();
    // The state may have moved on before the stream was opened.
    let mut state = request.state();
    loop {
        match state {
            VerificationRequestState::Transitioned { verification: Verification::SasV1(sas), .. } => {
                return drive(client, sas, control_room).await;
            }
            VerificationRequestState::Done | VerificationRequestState::Cancelled(_) => return,
            _ => {}
        }
        match changes.next().await {
            Some(next) => state = next,
            None => return,
        }
    }
}

/// Accepts the emoji flow, shows the emoji, confirms this side, and says how
/// it ended.
async fn drive(client: matrix_sdk::Client, sas: SasVerification, control_room: OwnedRoomId) {
    let say = |text: String| {
        let client = client.clone();
        let room = control_room.clone();
        async move {
            if let Some(room) = client.get_room(&room)
                && let Err(e) = room.send(RoomMessageEventContent::notice_plain(text)).await
            {
                tracing::warn!(error = %e, "telling the owner about the verification failed");
            }
        }
    };
    if !sas.we_started()
        && let Err(e) = sas.accept().await
    {
        return tracing::warn!(error = %e, "accepting the emoji verification failed");
    }
    let mut changes = sas.changes();
    let mut state = sas.state();
    let mut shown = false;
    loop {
        match state {
            SasState::KeysExchanged { emojis, decimals } if !shown => {
                shown = true;
                let shown = match emojis {
                    Some(e) => e
                        .emojis
                        .iter()
                        .map(|e| format!("{} {}", e.symbol, e.description))
                        .collect::<Vec<_>>()
                        .join("  "),
                    None => format!("{} {} {}", decimals.0, decimals.1, decimals.2),
                };
                say(format!(
                    "Verifying this Gatekeeper device with your device {}. Your other client should show:\n{shown}\n\
                     If they match, confirm there. If not, cancel there: someone may be in between.",
                    sas.other_device().device_id()
                ))
                .await;
                // The owner compares both screens; this side agrees to what it showed.
                if let Err(e) = sas.confirm().await {
                    tracing::warn!(error = %e, "confirming the emoji verification failed");
                    return;
                }
            }
            SasState::Done { .. } => {
                tracing::info!(device = %sas.other_device().device_id(), "verified with the owner's device");
                say("Verified: your device and this Gatekeeper device now trust each other.".into()).await;
                return;
            }
            SasState::Cancelled(info) => {
                say(format!("Verification cancelled: {}", info.reason())).await;
                return;
            }
            _ => {}
        }
        match changes.next().await {
            Some(next) => state = next,
            None => return,
        }
    }
}
