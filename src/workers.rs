//! The background work both connectors share: deciding (the processor),
//! housekeeping, the e-mail lane, the one-click link pages and pruning. A
//! connector adds its own intake and its Matrix executor.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::engine::EngineConfig;
use crate::store::Store;
use crate::{executor, processor};

/// How long acknowledged transaction IDs are remembered for replay checks.
const TXN_MEMORY: Duration = Duration::from_secs(7 * 24 * 3600);

/// What the shared workers and a connector's own tasks work on.
#[derive(Clone)]
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub engine: Arc<EngineConfig>,
    /// Rung whenever the inbox or the outbox has something new.
    pub wake: Arc<Notify>,
    pub shutdown: watch::Receiver<bool>,
}

/// Opens the database and says what it holds.
pub fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let store = crate::store::SledStore::open(&config.database.path, config.database.cache_capacity_mb)
        .with_context(|| format!("opening the database at {}", config.database.path.display()))?;
    let stats = store.stats()?;
    tracing::info!(
        inbox_pending = stats.inbox_pending,
        outbox_pending = stats.outbox_pending,
        owners = stats.owners,
        "database open"
    );
    Ok(Arc::new(store))
}

/// Starts the shared workers. Returns their tasks and, unless processing is
/// on hold, the watermark of effects the Matrix executor may carry out.
pub async fn start(
    config: &Config,
    shared: &Shared,
    hold_processing: bool,
) -> anyhow::Result<(Vec<JoinHandle<()>>, Option<watch::Receiver<u64>>)> {
    let Shared { store, engine, wake, shutdown } = shared.clone();
    let mut tasks = Vec::new();
    // Everything already in the outbox was recovered from disk: durable.
    let (released_tx, released_rx) = watch::channel(store.outbox_high_water()?);
    if hold_processing {
        tracing::warn!("processing is on hold: events are stored but not acted on");
    } else {
        tasks.push(tokio::spawn(processor::run(
            store.clone(),
            engine.clone(),
            wake.clone(),
            released_tx,
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(processor::housekeeping(
            store.clone(),
            wake.clone(),
            config.gate.housekeeping_interval.0,
            shutdown.clone(),
        )));
    }
    if let Some(email) = &config.email {
        if let Some(listen) = email.listen {
            let pages =
                Arc::new(crate::web::Pages { store: store.clone(), secret: email.secret.clone(), wake: wake.clone() });
            let listener =
                tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
            tracing::info!(%listen, "one-click link pages listening");
            tasks.push(tokio::spawn(serve(listener, crate::web::router(pages), shutdown.clone(), "link pages")));
        }
        if !hold_processing {
            // E-mail has its own lane: a slow mail server never holds back Matrix.
            let mailer = Arc::new(crate::email::Mailer::new(email)?);
            tasks.push(tokio::spawn(executor::run(
                store.clone(),
                mailer,
                wake.clone(),
                true,
                released_rx.clone(),
                shutdown.clone(),
            )));
        }
    }
    if let Some(metrics) = &config.metrics {
        let health = Arc::new(crate::metrics::Health::new(store.clone(), &config.homeserver.url)?);
        let listener = tokio::net::TcpListener::bind(metrics.listen)
            .await
            .with_context(|| format!("cannot listen on {} (metrics.listen)", metrics.listen))?;
        tracing::info!(listen = %metrics.listen, "metrics and health listening");
        tasks.push(tokio::spawn(serve(listener, crate::metrics::router(health), shutdown.clone(), "metrics listener")));
    }
    tasks.push(tokio::spawn(prune_loop(store.clone(), config.gate.retention.0, shutdown.clone())));
    Ok((tasks, (!hold_processing).then_some(released_rx)))
}

/// Serves `router` until shutdown.
async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    mut shutdown: watch::Receiver<bool>,
    what: &'static str,
) {
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "{what} stopped");
    }
}

/// Stops `tasks` after a signal, giving each a while to finish its step.
pub async fn stop(shutdown: &watch::Sender<bool>, tasks: Vec<JoinHandle<()>>) {
    shutdown.send_replace(true);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
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

/// Waits for a signal to stop, or for the database to fail for good (see
/// [`Store::failure`]); the latter is an error, so that Gatekeeper exits
/// non-zero and its service manager starts it again.
pub async fn wait_for_stop(store: &Arc<dyn Store>) -> anyhow::Result<()> {
    let failed = async {
        loop {
            if let Some(reason) = store.failure() {
                return reason;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    tokio::select! {
        _ = wait_for_signal() => Ok(()),
        reason = failed => {
            tracing::error!(
                %reason,
                "the database cannot write any more (a full disk?); stopping so that Gatekeeper is started again \
                 once there is room. Nothing acknowledged is lost: what the homeserver sent since was refused, \
                 and it sends it again"
            );
            Err(anyhow::anyhow!("the database failed to write: {reason}"))
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
