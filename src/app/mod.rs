//! The composition root: everything a mode runs is started here (store,
//! processor, housekeeping, executors, the mail lane, link pages, metrics)
//! and stopped here. Architecture Invariant: nothing below imports this
//! module (`tidy` checks it).

mod appservice;
mod client;
mod lease;
mod lists;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::config::{self, Config};
use crate::engine::{EngineConfig, MailLinks};
use crate::pipeline::shutdown::{self, Trigger};
use crate::pipeline::{Shared, Shutdown, clock, executor, housekeeping, processor};

/// Options of `gatekeeper run` that are not configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Accept and persist input but decide and do nothing: for maintenance
    /// and for tests of crash safety.
    pub hold_processing: bool,
}

/// Runs Gatekeeper in the configured mode until a signal, or until the
/// database fails for good (an error, so the service manager restarts it).
pub async fn run(config: Config, options: RunOptions) -> anyhow::Result<()> {
    let problems = config::check(&config);
    if !problems.is_empty() {
        bail!("the configuration has problems:\n  - {}", problems.join("\n  - "));
    }
    match config.mode {
        config::Mode::Appservice => appservice::run(config, options).await,
        config::Mode::Client => client::run(config, options).await,
    }
}

/// What the engine needs to know of the deployment, from the configuration
/// (the appservice's view; client mode adjusts it).
fn engine_config(config: &Config) -> anyhow::Result<EngineConfig> {
    Ok(EngineConfig {
        bot: config.bot_user_id().try_into().context("bot user ID")?,
        bot_name: config.appservice.as_ref().map(|a| a.bot_displayname.clone()),
        server_name: config.server_name().try_into().context("homeserver.server_name")?,
        users: config.users_regex().context("appservice.users")?,
        reply_interval_ms: config.gate.reply_interval.0.as_millis() as u64,
        max_replies_per_hour: config.gate.max_replies_per_hour,
        auto_allow_owner_started: config.gate.auto_allow_owner_started,
        notify_allowed: config.gate.notify_allowed,
        retention_ms: config.gate.retention.0.as_millis() as u64,
        mail_secret: config.email.as_ref().map(|e| e.secret.clone()),
        mail_links: config.email.as_ref().and_then(|e| {
            e.public_url.as_ref().map(|url| MailLinks {
                public_url: url.trim_end_matches('/').to_owned(),
                lifetime_ms: e.link_lifetime.0.as_millis() as u64,
            })
        }),
        bounds: bounds(&config.gate),
        client_mode: false,
        wave_owners_per_sender: config.gate.wave_owners_per_sender,
        wave_senders_per_server: config.gate.wave_senders_per_server,
    })
}

/// What strangers may make Gatekeeper keep, from the configuration.
fn bounds(gate: &crate::config::GateConfig) -> crate::engine::Bounds {
    crate::engine::Bounds {
        held_rooms_per_stranger: gate.max_held_rooms_per_stranger,
        held_rooms_per_owner: gate.max_held_rooms_per_owner,
        messages_per_stranger: gate.max_messages_per_stranger,
        messages_per_owner: gate.max_messages_per_owner,
        message_bytes: gate.max_message_bytes,
    }
}

/// How the executors retry, from the configuration.
fn executor_policy(config: &Config) -> executor::Policy {
    executor::Policy { retry_for: config.gate.effect_retry_for.0, ..executor::Policy::default() }
}

/// A mode's running tasks and the signal that stops them.
struct Running {
    shared: Shared,
    trigger: Trigger,
    tasks: Vec<JoinHandle<()>>,
    /// The outbox watermark the Matrix executor may carry out up to; `None`
    /// while processing is on hold.
    released: Option<watch::Receiver<u64>>,
    /// The appservice API's listener, given to [`Running::start`], to serve
    /// once active.
    intake: Option<tokio::net::TcpListener>,
}

impl Running {
    /// Opens the store and starts the work every mode shares: deciding,
    /// housekeeping, pruning, the e-mail lane, link pages, metrics, and the
    /// signal listener that fires the shutdown.
    ///
    /// On a database several Gatekeepers share, it first takes the lease:
    /// while another holds it, this one stands by — `intake` (the
    /// appservice API) answers 503 so that the homeserver tries again
    /// (through a load balancer, at the active one), `/health/ready` says
    /// "standby", and nothing acts. `None` when a signal came first.
    async fn start(
        config: &Config,
        engine: EngineConfig,
        options: RunOptions,
        intake: Option<tokio::net::TcpListener>,
    ) -> anyhow::Result<Option<Self>> {
        // Every port is bound before any work starts, so a port in use stops
        // Gatekeeper before it has acted on anything.
        let pages = match config.email.as_ref().and_then(|e| e.listen) {
            Some(listen) => Some(bind(listen, "email.listen").await?),
            None => None,
        };
        let metrics = match &config.metrics {
            Some(m) => Some(bind(m.listen, "metrics.listen").await?),
            None => None,
        };
        let store = crate::store::open(&config.database)?;
        let (trigger, shutdown) = shutdown::channel();
        let shared =
            Shared { store, engine: Arc::new(engine), clock: clock::system(), wake: Arc::new(Notify::new()), shutdown };
        let mut tasks = vec![tokio::spawn(fire_on_signal(trigger.clone()))];
        let Some((intake, metrics)) = lease::stand_by(&shared, intake, metrics, &mut tasks).await? else {
            return Ok(None);
        };
        // Everything already in the outbox was recovered from disk: durable.
        let (released_tx, released_rx) = watch::channel(shared.store.outbox_high_water()?);
        let hold = options.hold_processing;
        if hold {
            tracing::warn!("processing is on hold: events are stored but not acted on");
        } else {
            tasks.push(tokio::spawn(processor::run(shared.clone(), released_tx)));
            tasks
                .push(tokio::spawn(housekeeping::queue_due_ticks(shared.clone(), config.gate.housekeeping_interval.0)));
        }
        if let Some(email) = &config.email {
            if let Some(listener) = pages {
                let pages = Arc::new(crate::web::Pages {
                    store: shared.store.clone(),
                    secret: email.secret.clone(),
                    clock: shared.clock.clone(),
                    wake: shared.wake.clone(),
                });
                tracing::info!(listen = ?listener.local_addr().ok(), "one-click link pages listening");
                tasks.push(tokio::spawn(serve(
                    listener,
                    crate::web::router(pages),
                    shared.shutdown.clone(),
                    "link pages",
                )));
            }
            if !hold {
                // E-mail has its own lane: a slow mail server never holds back Matrix.
                let mailer = Arc::new(crate::email::Mailer::new(email)?);
                // The mailer retries on its own (up to a few minutes) before
                // it reports a failure to the owner: let it finish.
                let policy = executor::Policy { attempt_timeout: Duration::from_secs(600), ..executor_policy(config) };
                tasks.push(tokio::spawn(executor::run(shared.clone(), mailer, true, released_rx.clone(), policy)));
            }
        }
        if let Some(listener) = metrics {
            let health = Arc::new(crate::metrics::Health::new(shared.store.clone(), &config.homeserver.url)?);
            tracing::info!(listen = ?listener.local_addr().ok(), "metrics and health listening");
            tasks.push(tokio::spawn(serve(
                listener,
                crate::metrics::router(health),
                shared.shutdown.clone(),
                "metrics listener",
            )));
        }
        tasks.push(tokio::spawn(housekeeping::prune(shared.clone(), config.gate.retention.0)));
        Ok(Some(Running { shared, trigger, tasks, released: (!hold).then_some(released_rx), intake }))
    }

    /// Waits for the shutdown (a signal fires it), or for the database to
    /// fail for good (see [`Store::failure`]); the latter is an error, so
    /// that Gatekeeper exits non-zero and its service manager starts it
    /// again.
    async fn wait_for_stop(&self) -> anyhow::Result<()> {
        let mut shutdown = self.shared.shutdown.clone();
        let store = self.shared.store.clone();
        let failed = async move {
            loop {
                if let Some(reason) = store.failure() {
                    return reason;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        };
        tokio::select! {
            _ = shutdown.wait() => Ok(()),
            reason = failed => {
                tracing::error!(
                    %reason,
                    "the database cannot write any more (a full disk?); stopping so that Gatekeeper is started \
                     again once there is room. Nothing acknowledged is lost: what the homeserver sent since was \
                     refused, and it sends it again"
                );
                Err(anyhow::anyhow!("the database failed to write: {reason}"))
            }
        }
    }

    /// Fires the shutdown, gives each task (the intake server included) a
    /// while to finish its step, and makes the store durable.
    async fn stop(self) -> anyhow::Result<()> {
        tracing::info!("shutting down");
        self.trigger.fire();
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        // After a database failure a flush can only fail again; a restart
        // recovers everything that was made durable.
        if self.shared.store.failure().is_none() {
            self.shared.store.flush()?;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

async fn bind(addr: std::net::SocketAddr, key: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} ({key})"))
}

/// Serves `router` on a bound listener until shutdown.
async fn serve(listener: tokio::net::TcpListener, router: axum::Router, mut shutdown: Shutdown, what: &'static str) {
    let served = axum::serve(listener, router).with_graceful_shutdown(async move { shutdown.wait().await }).await;
    if let Err(e) = served {
        tracing::error!(error = %e, "{what} stopped");
    }
}

/// Fires the shutdown on SIGINT or SIGTERM. Listening once, for the whole
/// run, means no signal is missed between two waits.
async fn fire_on_signal(trigger: Trigger) {
    wait_for_signal().await;
    tracing::info!("signal received");
    trigger.fire();
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_configured_bounds_default_to_the_engines() {
        assert_eq!(super::bounds(&crate::config::GateConfig::default()), crate::engine::Bounds::default());
    }
}
