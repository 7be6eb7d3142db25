//! The client-mode connector: Gatekeeper as a device of the owner's own
//! account, on any homeserver, reading end-to-end encrypted chats. The
//! owner's sync feeds the same inbox and engine as the appservice does;
//! effects are carried out with the owner's own session (wired in
//! `app::client`).

pub mod once;
pub mod performer;
pub mod session;
pub mod sync;
pub mod verify;

use std::time::Duration;

use anyhow::Context;
use ruma::api::client::push::{RuleKind, delete_pushrule, get_pushrules_all};
use ruma::api::client::room::create_room::v3::{Request as CreateRoom, RoomPreset};
use ruma::events::InitialStateEvent;
use ruma::events::room::encryption::RoomEncryptionEventContent;
use ruma::{OwnedRoomId, OwnedUserId};

use crate::config::Config;
use crate::matrix::HsClient;
use crate::pipeline::translate::Internal;
use crate::store::Store;

pub use session::{Credentials, login, logout, restore};

/// Where the control room's ID is kept among the connector's values.
const CONTROL_ROOM_KEY: &str = "control_room";
pub const CONTROL_ROOM_NAME: &str = "Gatekeeper";

/// Makes the owner's private control room once, and tells the engine.
/// Telling it again at each start is harmless: the engine ignores a room it
/// already knows.
pub async fn ensure_control_room(
    sdk: &matrix_sdk::Client,
    owner: &OwnedUserId,
    store: &dyn Store,
    encrypted: bool,
) -> anyhow::Result<Option<OwnedRoomId>> {
    let known =
        store.connector_value(CONTROL_ROOM_KEY)?.and_then(|v| OwnedRoomId::try_from(String::from_utf8(v).ok()?).ok());
    // The owner left the control room (or said `stop`): that is an opt-out,
    // and it holds across restarts until they log in again.
    if let Some(room) = &known
        && sdk.get_room(room).is_some_and(|r| r.state() == matrix_sdk::RoomState::Left)
    {
        return Ok(None);
    }
    let room_id = match known {
        Some(room) => room,
        None => {
            let mut request = CreateRoom::new();
            request.name = Some(CONTROL_ROOM_NAME.into());
            request.topic = Some("Gatekeeper's control room: only you are here. Type `help`.".into());
            request.preset = Some(RoomPreset::PrivateChat);
            if encrypted {
                request.initial_state = vec![
                    InitialStateEvent::with_empty_state_key(RoomEncryptionEventContent::with_recommended_defaults())
                        .to_raw_any(),
                ];
            }
            let room = create_with_retries(sdk, request).await?;
            store.set_connector_value(CONTROL_ROOM_KEY, Some(room.as_bytes()))?;
            tracing::info!(room = %room, encrypted, "control room created");
            room
        }
    };
    let ready = Internal::ControlRoomReady { owner: owner.clone(), room_id: room_id.clone() };
    store.push_internal(&serde_json::to_vec(&ready)?)?;
    Ok(Some(room_id))
}

/// A fresh login is a fresh start: a new first sync, a new control room
/// (the owner's settings, contacts and captured messages are kept).
///
/// Not on a database another Gatekeeper acts on (PostgreSQL, its lease
/// held): this login is a second device that will stand by, and the sync
/// position and control room are the account's, the active one's to keep.
/// Starting over under it would make the takeover skip what arrived since
/// and open a second control room. The lease is taken for the start-over
/// itself (released with the store), so its writes are fenced like any.
pub(crate) fn start_over(config: &Config) -> anyhow::Result<()> {
    let store = crate::store::open(&config.database)?;
    if let Some(lease) = store.lease() {
        lease.stand_by();
        if lease.try_take("gatekeeper login")?.is_none() {
            tracing::info!("another Gatekeeper holds the lease: this device will stand by, and nothing starts over");
            return Ok(());
        }
    }
    store.reset_sync_position()?;
    store.set_connector_value(CONTROL_ROOM_KEY, None)?;
    Ok(())
}

/// Whether another Gatekeeper is active on this account's shared store
/// (PostgreSQL, with a standby): the account's push rules are then that
/// one's, silencing the rooms it holds, and a device logging out must
/// leave them in place. Takes the lease for a moment when nobody holds it.
pub fn another_is_active(config: &Config) -> anyhow::Result<bool> {
    if config.database.url.is_none() {
        // sled: one Gatekeeper per store, and its own file lock says so.
        return Ok(false);
    }
    let store = crate::store::open(&config.database)?;
    let Some(lease) = store.lease() else { return Ok(false) };
    lease.stand_by();
    Ok(lease.try_take("gatekeeper logout")?.is_none())
}

async fn create_with_retries(sdk: &matrix_sdk::Client, request: CreateRoom) -> anyhow::Result<OwnedRoomId> {
    let mut backoff = Duration::from_secs(1);
    for attempt in 1.. {
        match sdk.create_room(request.clone()).await {
            Ok(room) => return Ok(room.room_id().to_owned()),
            Err(e) if attempt < 6 => {
                tracing::warn!(error = %e, retry_in = ?backoff, "creating the control room failed; will retry");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(e) => return Err(e).context("creating the control room"),
        }
    }
    unreachable!("the loop returns")
}

/// Removes every push rule Gatekeeper set on the owner's account, so that
/// nothing stays silenced once no Gatekeeper watches. Returns how many.
pub async fn remove_push_rules(config: &Config, session: &session::Session) -> anyhow::Result<usize> {
    let hs = HsClient::for_user(&config.homeserver.url, session.access_token.clone())?;
    let rules = hs.send(get_pushrules_all::v3::Request::new(), None).await.context("reading the push rules")?;
    let ours: Vec<String> = rules
        .global
        .override_
        .iter()
        .map(|r| r.rule_id.as_str())
        .filter(|id| id.starts_with(crate::engine::rules::PREFIX))
        .map(str::to_owned)
        .collect();
    for id in &ours {
        hs.send(delete_pushrule::v3::Request::new(RuleKind::Override, id.clone()), None)
            .await
            .with_context(|| format!("removing push rule {id}"))?;
    }
    Ok(ours.len())
}
