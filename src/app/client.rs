//! Wires client mode: the owner's own session syncs into the shared
//! pipeline, the control room is made once the first sync has told the SDK
//! which rooms exist, and effects are carried out as the owner's device.

use std::sync::Arc;

use anyhow::Context;
use ruma::OwnedUserId;
use tokio::sync::watch;

use super::{RunOptions, Running};
use crate::client::performer::{ClientPerformer, sends_of, take_over_sends};
use crate::client::session::Session;
use crate::client::{ensure_control_room, once, restore, sync, verify};
use crate::config::Config;
use crate::engine::EngineConfig;
use crate::matrix::HsClient;
use crate::pipeline::executor;

/// The appservice's engine configuration, seen from the owner's account.
fn engine_config(config: &Config) -> anyhow::Result<EngineConfig> {
    let owner: OwnedUserId = config.client()?.user_id.as_str().try_into().context("client.user_id")?;
    let mut engine = super::engine_config(config)?;
    engine.server_name = owner.server_name().to_owned();
    // The owner is the only user, and Gatekeeper speaks as them.
    engine.bot = owner;
    engine.client_mode = true;
    // The bot is the owner's own account: no name of its own to mention.
    engine.bot_name = None;
    Ok(engine)
}

/// How long a device's own catch-up may take before it goes on without.
const PRIME_FOR: std::time::Duration = std::time::Duration::from_secs(120);

/// Once the lease is held, before this device syncs from the shared
/// position: after another device, its own catch-up (`sync::prime`), then
/// the record that it sends. The last outbox item it inherited.
async fn take_over_sends_after_catching_up(session: &Session, shared: &crate::pipeline::Shared) -> anyhow::Result<u64> {
    let found = sends_of(shared.store.as_ref())?;
    if once::after_another(found.as_ref(), &session.device_id) {
        // Without it the device works as before: rooms it does not know
        // are retried until they show up, and what it cannot decrypt is
        // reported as such. Recorded only after it: a crash in between
        // catches up again at the next start.
        match tokio::time::timeout(PRIME_FOR, sync::prime(&session.sdk)).await {
            Ok(Ok(())) => tracing::info!(device = %session.device_id, "caught up after another device"),
            Ok(Err(e)) => tracing::warn!(error = %e, "catching up after another device failed; going on"),
            Err(_) => tracing::warn!("catching up after another device took too long; going on"),
        }
    }
    take_over_sends(shared.store.as_ref(), found, &session.device_id)
}

pub(super) async fn run(config: Config, options: RunOptions) -> anyhow::Result<()> {
    let engine = engine_config(&config)?;
    let session = restore(&config).await?;
    tracing::info!(user = %session.user_id, device = %session.device_id, "session restored");
    // A standby does not sync: the active one does (with its own device).
    let Some(mut running) = Running::start(&config, engine, options, None).await? else {
        return Ok(());
    };
    let shared = running.shared.clone();
    let sends = take_over_sends_after_catching_up(&session, &shared).await?;

    let (synced_tx, mut synced_rx) = watch::channel(false);
    let mut syncing = tokio::spawn(sync::run(session.sdk.clone(), session.user_id.clone(), shared.clone(), synced_tx));
    // The control room is made once the first sync has told the SDK which
    // rooms exist, and before any effect needs it.
    let mut ended = None;
    let mut outcome = Ok(());
    let mut stopped = false;
    tokio::select! {
        _ = synced_rx.wait_for(|s| *s) => {}
        end = &mut syncing => ended = Some(end),
        stop = running.wait_for_stop() => (outcome, stopped) = (stop, true),
    }
    if ended.is_none() && !stopped && *synced_rx.borrow() {
        let encrypted = config.client()?.encrypt_control_room;
        match ensure_control_room(&session.sdk, &session.user_id, shared.store.as_ref(), encrypted).await? {
            Some(control_room) => {
                verify::install(&session.sdk, session.user_id.clone(), control_room);
                shared.wake.notify_one();
                if let Some(released) = running.released.clone() {
                    let hs = HsClient::for_user(&config.homeserver.url, session.access_token.clone())?
                        .on_device(session.device_id.clone());
                    // Also with none configured: see the appservice's start.
                    let (owner, lists) = (session.user_id.clone(), config.policy.lists.clone());
                    let follow = super::lists::follow(shared.clone(), hs.clone(), owner, lists);
                    running.tasks.push(tokio::spawn(follow));
                    let policy = super::executor_policy(&config);
                    let performer = Arc::new(ClientPerformer::new(session.sdk.clone(), hs, sends, policy.retry_for));
                    running.tasks.push(tokio::spawn(executor::run(shared.clone(), performer, false, released, policy)));
                }
                tracing::info!(owner = %session.user_id, "Gatekeeper is guarding this account");
                tokio::select! {
                    end = &mut syncing => ended = Some(end),
                    stop = running.wait_for_stop() => outcome = stop,
                }
            }
            None => tracing::warn!(
                "the owner stopped Gatekeeper (left its control room); nothing is guarded. \
                 `gatekeeper logout` removes this device; `gatekeeper logout` then `login` starts over"
            ),
        }
    }
    if let Some(Ok(sync::SyncEnd::SessionEnded)) = ended {
        outcome = Err(anyhow::anyhow!("the homeserver ended this device's session; log out and in again"));
    }
    running.tasks.push(tokio::spawn(async move {
        let _ = syncing.await;
    }));
    let stopped = running.stop().await;
    outcome.and(stopped)
}
