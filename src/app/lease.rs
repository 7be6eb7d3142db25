//! Active and standby, on a database several Gatekeepers share (see
//! [`crate::store::Lease`]): before anything acts, the lease is taken —
//! at once, or after standing by until the one holding it is gone — and
//! once taken it is watched, and the process ends the moment it is lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::pipeline::shutdown;
use crate::pipeline::{Shared, Shutdown};
use crate::store::Store;

/// How often a standby tries to take the lease: the takeover's delay
/// after the active one's connection ends.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// How often the active one checks that it still holds the lease.
const CHECK_EVERY: Duration = Duration::from_millis(500);

/// A check that takes longer says the database is out of reach: the
/// lease may be another's by now.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// The exit status when the lease is lost: an error, so that the service
/// manager starts this Gatekeeper again (as a standby).
const EXIT_LEASE_LOST: i32 = 75;

/// Stands by until the lease is taken, where the store has one (sled and
/// memory have none: only one process can open them): meanwhile `intake`
/// and `metrics` give the standby's answers (503, "standby"). Returns the
/// listeners for the real answers once active, with the lease watched
/// from then on; `None` when a signal came first.
pub(super) async fn stand_by(
    shared: &Shared,
    intake: Option<TcpListener>,
    metrics: Option<TcpListener>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<Option<(Option<TcpListener>, Option<TcpListener>)>> {
    if shared.store.lease().is_none() {
        crate::metrics::METRICS.active.set(1);
        return Ok(Some((intake, metrics)));
    }
    crate::metrics::METRICS.active.set(0);
    let (active, standby_over) = shutdown::channel();
    let intake = match intake {
        Some(l) => Some(serve_meanwhile(l, crate::appservice::http::standby_router(), &standby_over, tasks)?),
        None => None,
    };
    let metrics = match metrics {
        Some(l) => Some(serve_meanwhile(l, crate::metrics::standby_router(), &standby_over, tasks)?),
        None => None,
    };
    let taken = acquire(&shared.store, &mut shared.shutdown.clone()).await?;
    // The standby's answers end: the real ones take their listeners.
    active.fire();
    if !taken {
        for task in tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        return Ok(None);
    }
    crate::metrics::METRICS.active.set(1);
    tasks.push(tokio::spawn(watch(shared.store.clone())));
    Ok(Some((intake, metrics)))
}

/// Serves `router` on `listener` until `over` fires, and returns a listener
/// on the same socket for what is served after: connections that arrive
/// in between wait in its queue, none is refused.
fn serve_meanwhile(
    listener: TcpListener,
    router: axum::Router,
    over: &Shutdown,
    tasks: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<TcpListener> {
    let socket = listener.into_std()?;
    let after = TcpListener::from_std(socket.try_clone()?)?;
    let meanwhile = TcpListener::from_std(socket)?;
    tasks.push(tokio::spawn(super::serve(meanwhile, router, over.clone(), "standby answers")));
    Ok(after)
}

/// Waits until this Gatekeeper holds the lease, trying every second;
/// `false` when the shutdown came first. Until then every write to the
/// store is refused.
async fn acquire(store: &Arc<dyn Store>, shutdown: &mut Shutdown) -> anyhow::Result<bool> {
    let Some(lease) = store.lease() else { return Ok(true) };
    lease.stand_by();
    let holder = holder_name();
    let mut said = false;
    loop {
        let (s, h) = (store.clone(), holder.clone());
        let taken = tokio::task::spawn_blocking(move || s.lease().map_or(Ok(Some(0)), |l| l.try_take(&h))).await?;
        match taken {
            Ok(Some(epoch)) => {
                tracing::info!(%holder, epoch, "lease taken; active");
                return Ok(true);
            }
            Ok(None) if !said => {
                tracing::info!("standby: another Gatekeeper holds the lease");
                said = true;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "could not try to take the lease; trying again"),
        }
        if shutdown.sleep(RETRY_EVERY).await {
            return Ok(false);
        }
    }
}

/// Ends the process at once when the lease is lost (its connection ended,
/// another Gatekeeper took it over, a write was fenced off): whatever this
/// one was doing, the new holder does again from the stored inbox and
/// outbox, and two must never act at once.
async fn watch(store: Arc<dyn Store>) {
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let s = store.clone();
        let checked = tokio::time::timeout(
            CHECK_TIMEOUT,
            tokio::task::spawn_blocking(move || s.lease().map_or(Ok(()), |l| l.check())),
        )
        .await;
        let reason = match checked {
            Ok(Ok(Ok(()))) => continue,
            Ok(Ok(Err(reason))) => reason,
            Ok(Err(e)) => format!("the lease could not be checked: {e}"),
            Err(_) => format!("the database did not answer the lease's check within {CHECK_TIMEOUT:?}"),
        };
        tracing::error!(
            %reason,
            "lease lost; stopping at once, so that only the Gatekeeper holding the lease acts (started again, \
             this one stands by)"
        );
        std::process::exit(EXIT_LEASE_LOST);
    }
}

/// Who holds the lease, as stored for operators: host and process.
fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    format!("{} pid {}", if host.is_empty() { "unknown host" } else { host }, std::process::id())
}
