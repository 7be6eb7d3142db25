//! Appservice mode: the homeserver pushes transactions to our HTTP intake,
//! the processor turns them into decisions, and the executor carries the
//! effects out through the client-server API with identity assertion.

mod auth;
pub mod client;
pub mod http;
pub(crate) mod performer;
pub mod startup;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::{Notify, watch};

use crate::config::Config;
use crate::engine::EngineConfig;
use crate::executor;
use crate::registration::Registration;
use crate::workers::{self, Shared};

/// Options of `gatekeeper run` that are not configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Accept and persist transactions but decide and do nothing: for
    /// maintenance and for tests of crash safety.
    pub hold_processing: bool,
}

pub fn engine_config(config: &Config) -> anyhow::Result<EngineConfig> {
    Ok(EngineConfig {
        bot: config.bot_user_id().try_into().context("bot user ID")?,
        server_name: config.server_name().try_into().context("homeserver.server_name")?,
        users: config.users_regex().context("appservice.users")?,
        reply_interval_ms: config.gate.reply_interval.0.as_millis() as u64,
        max_replies_per_hour: config.gate.max_replies_per_hour,
        auto_allow_owner_started: config.gate.auto_allow_owner_started,
        notify_allowed: config.gate.notify_allowed,
        retention_ms: config.gate.retention.0.as_millis() as u64,
        mail_secret: config.email.as_ref().map(|e| e.secret.clone()),
        mail_links: config.email.as_ref().and_then(|e| {
            e.public_url.as_ref().map(|url| crate::engine::MailLinks {
                public_url: url.trim_end_matches('/').to_owned(),
                lifetime_ms: e.link_lifetime.0.as_millis() as u64,
            })
        }),
        client_mode: false,
    })
}

pub async fn run(config: Config, options: RunOptions) -> anyhow::Result<()> {
    let problems = crate::config::check(&config);
    if !problems.is_empty() {
        bail!("the configuration has problems:\n  - {}", problems.join("\n  - "));
    }
    let asv = config.appservice()?.clone();
    let registration = Registration::load(&asv.registration)?;
    let mismatches = registration.mismatches(&config);
    if !mismatches.is_empty() {
        bail!("the registration does not match the configuration:\n  - {}", mismatches.join("\n  - "));
    }
    let engine = Arc::new(engine_config(&config)?);
    let store = workers::open_store(&config)?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let wake = Arc::new(Notify::new());
    let intake = Arc::new(http::Intake {
        store: store.clone(),
        hs_token: registration.hs_token.clone(),
        wake: wake.clone(),
        max_body_bytes: asv.max_body_bytes,
    });
    let listener =
        tokio::net::TcpListener::bind(asv.listen).await.with_context(|| format!("cannot listen on {}", asv.listen))?;
    tracing::info!(listen = %asv.listen, "appservice API listening");
    let mut server_shutdown = shutdown_rx.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, http::router(intake))
            .with_graceful_shutdown(async move {
                let _ = server_shutdown.wait_for(|stop| *stop).await;
            })
            .await
    });

    let client = client::HsClient::new(&config.homeserver.url, registration.as_token.clone())?;
    let shared =
        Shared { store: store.clone(), engine: engine.clone(), wake: wake.clone(), shutdown: shutdown_rx.clone() };
    let (mut tasks, released) = workers::start(&config, &shared, options.hold_processing).await?;
    tasks.push(tokio::spawn(startup::run(
        client.clone(),
        engine.bot.clone(),
        asv.bot_localpart.clone(),
        asv.bot_displayname.clone(),
        asv.id.clone(),
        asv.url.clone(),
        shutdown_rx.clone(),
    )));
    if let Some(released) = released {
        let mut executor_client = client;
        let mut exec_shutdown = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            if startup::wait_for_homeserver(&mut executor_client, &mut exec_shutdown).await {
                executor::run(
                    shared.store.clone(),
                    Arc::new(executor_client),
                    shared.wake.clone(),
                    false,
                    released,
                    exec_shutdown,
                )
                .await;
            }
        }));
    }

    let outcome = workers::wait_for_stop(&store).await;
    tracing::info!("shutting down");
    workers::stop(&shutdown_tx, tasks).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    outcome?;
    store.flush()?;
    tracing::info!("stopped");
    Ok(())
}
