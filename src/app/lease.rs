//! Active and standby, on a database several Gatekeepers share (see
//! [`crate::store::Lease`]): before anything acts, the lease is taken —
//! at once, or after standing by until the one holding it is gone — and
//! once taken it is watched, and the process ends the moment it is lost.

use std::sync::Arc;
use std::time::Duration;

use crate::pipeline::Shutdown;
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
pub(super) const EXIT_LEASE_LOST: i32 = 75;

/// Whether this store needs the lease at all (sled and memory do not:
/// only one process can open them).
pub(super) fn needed(store: &Arc<dyn Store>) -> bool {
    store.lease().is_some()
}

/// Waits until this Gatekeeper holds the lease, trying every second;
/// `false` when the shutdown came first. Until then every write to the
/// store is refused.
pub(super) async fn acquire(store: &Arc<dyn Store>, shutdown: &mut Shutdown) -> anyhow::Result<bool> {
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
pub(super) async fn watch(store: Arc<dyn Store>) {
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
