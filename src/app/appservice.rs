//! Wires appservice mode: the homeserver pushes transactions to the HTTP
//! intake, the shared pipeline decides, and the Matrix executor acts through
//! the client-server API with identity assertion.

use std::sync::Arc;

use anyhow::{Context, bail};

use super::{RunOptions, Running, engine_config};
use crate::appservice::gaps::Gaps;
use crate::appservice::resends::Resends;
use crate::appservice::{catch_up, http, startup};
use crate::config::Config;
use crate::matrix::HsClient;
use crate::pipeline::executor;
use crate::registration::Registration;

pub(super) async fn run(config: Config, options: RunOptions) -> anyhow::Result<()> {
    let asv = config.appservice()?.clone();
    let registration = Registration::load(&asv.registration)?;
    let mismatches = registration.mismatches(&config);
    if !mismatches.is_empty() {
        bail!("the registration does not match the configuration:\n  - {}", mismatches.join("\n  - "));
    }
    // Bound before anything starts: a port in use fails the start cleanly.
    let listener =
        tokio::net::TcpListener::bind(asv.listen).await.with_context(|| format!("cannot listen on {}", asv.listen))?;
    let Some(mut running) = Running::start(&config, engine_config(&config)?, options, Some(listener)).await? else {
        return Ok(());
    };
    let shared = running.shared.clone();
    let listener = running.intake.take().expect("given to Running::start");

    let resends = Arc::new(Resends::default());
    let intake = Arc::new(http::Intake {
        store: shared.store.clone(),
        hs_token: registration.hs_token.clone(),
        wake: shared.wake.clone(),
        max_body_bytes: asv.max_body_bytes,
        clock: shared.clock.clone(),
        gaps: std::sync::Mutex::new(match asv.refuse_transaction_gaps {
            true => Gaps::after(shared.store.highest_transaction_number()?),
            false => Gaps::off(),
        }),
        resends: resends.clone(),
    });
    tracing::info!(listen = %asv.listen, "appservice API listening");
    running.tasks.push(tokio::spawn(super::serve(
        listener,
        http::router(intake),
        shared.shutdown.clone(),
        "appservice API",
    )));

    // What each owner keeps in step on the homeserver (the published
    // commands, the invite filter) is put right after every start, as the
    // command list may have changed with the version and the owner's
    // apps may have changed the filter meanwhile (an appservice is not
    // told of account data).
    refresh_owners(&shared)?;
    // Not told of account data, the appservice reads the owners' filters
    // again every hour, so a change made in their apps is seen within one.
    let hourly = shared.clone();
    running.tasks.push(tokio::spawn(async move {
        let mut shutdown = hourly.shutdown.clone();
        while !shutdown.sleep(REFRESH_EVERY).await {
            if let Err(e) = refresh_owners(&hourly) {
                tracing::warn!(error = %e, "could not queue the hourly refresh of the owners' invite filters");
            }
        }
    }));
    let client = HsClient::new(&config.homeserver.url, registration.as_token.clone())?;
    let setup = startup::run(
        client.clone(),
        shared.engine.bot.clone(),
        asv.clone(),
        shared.clock.clone(),
        shared.shutdown.clone(),
    );
    let pinged = resends.clone();
    running.tasks.push(tokio::spawn(async move {
        // The ping makes the homeserver resend what it held back at once.
        if setup.await {
            pinged.pinged();
        }
    }));
    // Also with none configured: lists once configured stop applying, and
    // the followed ones are read again every few hours.
    let (bot, lists) = (shared.engine.bot.clone(), config.policy.lists.clone());
    running.tasks.push(tokio::spawn(super::lists::follow(shared.clone(), client.clone(), bot, lists)));
    if let Some(released) = running.released.clone() {
        // What the homeserver never delivered (a stranded transaction) is
        // read after every start and after each resend, in the background.
        running.tasks.push(tokio::spawn(catch_up::run(shared.clone(), client.clone(), resends)));
        let policy = super::executor_policy(&config);
        let mut executor_client = client;
        let shared = shared.clone();
        running.tasks.push(tokio::spawn(async move {
            let mut shutdown = shared.shutdown.clone();
            if executor_client.wait_for_homeserver(&mut shutdown).await {
                executor::run(shared, Arc::new(executor_client), false, released, policy).await;
            }
        }));
    }

    let outcome = running.wait_for_stop().await;
    let stopped = running.stop().await;
    outcome.and(stopped)
}

/// How often the owners' invite filters (and the published commands) are
/// read again: an appservice is never told of account data.
const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Queues, for every owner, a look at what Gatekeeper keeps in step on the
/// homeserver for them (the published commands, the invite filter); each
/// is one input of its own, so owners take turns.
/// They are follow-ups (counted so), in one write.
fn refresh_owners(shared: &crate::pipeline::Shared) -> anyhow::Result<()> {
    let mut refreshes = Vec::new();
    for owner in shared.store.owners()? {
        let refresh = crate::pipeline::translate::Internal::Refresh { owner: owner.user_id };
        refreshes.push(crate::store::FollowUp { internal: true, raw: serde_json::to_vec(&refresh)? });
    }
    shared.store.push_follow_ups(&refreshes)?;
    shared.wake.notify_one();
    Ok(())
}
