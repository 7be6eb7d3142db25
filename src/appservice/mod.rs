//! Appservice mode: the homeserver pushes transactions to our HTTP intake,
//! the processor turns them into decisions, and the executor carries the
//! effects out through the client-server API with identity assertion.

mod auth;
pub mod client;
pub mod http;
mod performer;
pub mod startup;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::{Notify, watch};

use crate::config::Config;
use crate::engine::EngineConfig;
use crate::registration::Registration;
use crate::store::{SledStore, Store};
use crate::{executor, processor};

/// Options of `gatekeeper run` that are not configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Accept and persist transactions but decide and do nothing: for
    /// maintenance and for tests of crash safety.
    pub hold_processing: bool,
}

/// How long acknowledged transaction IDs are remembered for replay checks.
const TXN_MEMORY: Duration = Duration::from_secs(7 * 24 * 3600);

pub fn engine_config(config: &Config) -> anyhow::Result<EngineConfig> {
    Ok(EngineConfig {
        bot: config.bot_user_id().try_into().context("bot user ID")?,
        server_name: config.homeserver.server_name.as_str().try_into().context("homeserver.server_name")?,
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
    })
}

pub async fn run(config: Config, options: RunOptions) -> anyhow::Result<()> {
    let problems = crate::config::check(&config);
    if !problems.is_empty() {
        bail!("the configuration has problems:\n  - {}", problems.join("\n  - "));
    }
    let registration = Registration::load(&config.appservice.registration)?;
    let mismatches = registration.mismatches(&config);
    if !mismatches.is_empty() {
        bail!("the registration does not match the configuration:\n  - {}", mismatches.join("\n  - "));
    }
    let engine = Arc::new(engine_config(&config)?);
    let store: Arc<dyn Store> = Arc::new(
        SledStore::open(&config.database.path, config.database.cache_capacity_mb)
            .with_context(|| format!("opening the database at {}", config.database.path.display()))?,
    );
    let stats = store.stats()?;
    tracing::info!(
        inbox_pending = stats.inbox_pending,
        outbox_pending = stats.outbox_pending,
        owners = stats.owners,
        "database open"
    );

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let wake = Arc::new(Notify::new());
    let intake = Arc::new(http::Intake {
        store: store.clone(),
        hs_token: registration.hs_token.clone(),
        wake: wake.clone(),
        max_body_bytes: config.appservice.max_body_bytes,
    });
    let listener = tokio::net::TcpListener::bind(config.appservice.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.appservice.listen))?;
    tracing::info!(listen = %config.appservice.listen, "appservice API listening");
    let mut server_shutdown = shutdown_rx.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, http::router(intake))
            .with_graceful_shutdown(async move {
                let _ = server_shutdown.wait_for(|stop| *stop).await;
            })
            .await
    });

    let client = client::HsClient::new(&config.homeserver.url, registration.as_token.clone())?;
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(startup::run(
        client.clone(),
        engine.bot.clone(),
        config.appservice.bot_localpart.clone(),
        config.appservice.bot_displayname.clone(),
        config.appservice.id.clone(),
        config.appservice.url.clone(),
        shutdown_rx.clone(),
    )));

    // Everything already in the outbox was recovered from disk: durable.
    let (released_tx, released_rx) = watch::channel(store.outbox_high_water()?);
    let released_for_mail = released_rx.clone();
    if options.hold_processing {
        tracing::warn!("processing is on hold: transactions are stored but not acted on");
    } else {
        tasks.push(tokio::spawn(processor::run(
            store.clone(),
            engine.clone(),
            wake.clone(),
            released_tx,
            shutdown_rx.clone(),
        )));
        let mut executor_client = client;
        let mut exec_shutdown = shutdown_rx.clone();
        let exec_store = store.clone();
        let exec_wake = wake.clone();
        tasks.push(tokio::spawn(async move {
            if startup::wait_for_homeserver(&mut executor_client, &mut exec_shutdown).await {
                executor::run(exec_store, Arc::new(executor_client), exec_wake, false, released_rx, exec_shutdown)
                    .await;
            }
        }));
    }
    if !options.hold_processing {
        tasks.push(tokio::spawn(processor::housekeeping(
            store.clone(),
            wake.clone(),
            config.gate.housekeeping_interval.0,
            shutdown_rx.clone(),
        )));
    }
    let retention = config.gate.retention.0;
    if let Some(listen) = config.email.as_ref().and_then(|e| e.listen) {
        let pages = Arc::new(crate::web::Pages {
            store: store.clone(),
            secret: config.email.as_ref().expect("listen is under email").secret.clone(),
            wake: wake.clone(),
        });
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        tracing::info!(%listen, "one-click link pages listening");
        let mut web_shutdown = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            let served = axum::serve(listener, crate::web::router(pages))
                .with_graceful_shutdown(async move {
                    let _ = web_shutdown.wait_for(|stop| *stop).await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "link pages stopped");
            }
        }));
    }
    if let (Some(email), false) = (&config.email, options.hold_processing) {
        // E-mail has its own lane: a slow mail server never holds back Matrix.
        let mailer = Arc::new(crate::email::Mailer::new(email)?);
        tasks.push(tokio::spawn(executor::run(
            store.clone(),
            mailer,
            wake.clone(),
            true,
            released_for_mail.clone(),
            shutdown_rx.clone(),
        )));
    }
    tasks.push(tokio::spawn(prune_loop(store.clone(), retention, shutdown_rx.clone())));

    wait_for_signal().await;
    tracing::info!("shutting down");
    shutdown_tx.send_replace(true);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    store.flush()?;
    tracing::info!("stopped");
    Ok(())
}

/// Forgets old transaction IDs and drops captured messages past retention.
async fn prune_loop(store: Arc<dyn Store>, retention: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        let s = store.clone();
        let now = processor::now_ms();
        let txns_before = now.saturating_sub(TXN_MEMORY.as_millis() as u64);
        let default_retention = retention.as_millis() as u64;
        // Each owner's own retention, or the deployment's.
        let pruned = tokio::task::spawn_blocking(move || {
            let txns = s.prune_transactions(txns_before)?;
            let mut messages = 0;
            for owner in s.owners()? {
                let keep = owner.retention_ms.unwrap_or(default_retention);
                messages += s.prune_deferred(&owner.user_id, now.saturating_sub(keep))?;
            }
            Ok::<_, crate::store::StoreError>((txns, messages))
        })
        .await;
        match pruned {
            Ok(Ok((txns, messages))) if txns + messages > 0 => {
                tracing::info!(transaction_ids = txns, captured_messages = messages, "pruned past retention")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "pruning failed; will retry"),
            _ => {}
        }
        processor::sleep_or_shutdown(Duration::from_secs(3600), &mut shutdown).await;
        if *shutdown.borrow() {
            return;
        }
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
