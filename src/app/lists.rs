//! Ban lists from outside the engine's own decisions: the operator's
//! (`policy.lists`), joined and read at every start as the bot (client
//! mode: the owner's account), and every followed list read again every few hours.
//! A rule's later changes come as the list's state events, but a redaction
//! of a rule, a gap in client mode's sync or a state event missed while
//! Gatekeeper was down would otherwise leave a rule applied (or missing)
//! for good. What is read is queued for the engine like any look-up's
//! result.

use std::time::Duration;

use ruma::OwnedUserId;

use crate::engine::policy::REREAD;
use crate::matrix::HsClient;
use crate::pipeline::Shared;
use crate::pipeline::executor::PerformError;
use crate::pipeline::translate::Internal;
use crate::store::FollowUp;

/// Tries a list this many times (transient failures) before leaving it
/// for the next start (or the next re-read).
const ATTEMPTS: u32 = 5;
/// How often every followed list is read whole again. Rules removed the
/// usual way (an emptied state event, as Draupnir and Mjolnir do) apply at
/// once; a redacted rule, or one missed in a sync gap, within this.
const REREAD_EVERY: Duration = Duration::from_secs(6 * 3600);
/// The pause between two lists' re-reads: a server whose owners follow
/// thousands of distinct lists (each read up to 8 MiB) reads them as a
/// slow trickle, never all at once.
const REREAD_PAUSE: Duration = Duration::from_secs(2);

pub async fn follow(shared: Shared, client: HsClient, as_user: OwnedUserId, lists: Vec<String>) {
    let mut shutdown = shared.shutdown.clone();
    // Lists the configuration no longer names stop applying to everyone,
    // before the ones it names are read.
    let configured = Internal::OperatorLists { names: lists.clone() };
    let raw = serde_json::to_vec(&configured).expect("inputs serialize");
    if !queue(&shared, vec![FollowUp { internal: true, raw }]).await {
        tracing::warn!("queuing the operator's ban lists failed; done again at the next start");
    }
    for list in &lists {
        read(&shared, &client, &as_user, list, list).await;
    }
    loop {
        if shutdown.sleep(REREAD_EVERY).await {
            return;
        }
        let store = shared.store.clone();
        let kept = match tokio::task::spawn_blocking(move || store.policy_lists()).await {
            Ok(Ok(kept)) => kept,
            _ => {
                tracing::warn!("reading the followed ban lists failed; trying again in an hour");
                continue;
            }
        };
        for list in kept {
            read(&shared, &client, &as_user, list.room_id.as_str(), REREAD).await;
            if shutdown.sleep(REREAD_PAUSE).await {
                return;
            }
        }
    }
}

/// Queues what was read for the engine; `false` when it could not be.
async fn queue(shared: &Shared, found: Vec<FollowUp>) -> bool {
    let store = shared.store.clone();
    match tokio::task::spawn_blocking(move || store.push_follow_ups(&found)).await {
        Ok(Ok(())) => {
            shared.wake.notify_one();
            true
        }
        _ => false,
    }
}

/// Joins and reads `list`, answering the engine as `asked`, retrying what
/// is transient a few times.
async fn read(shared: &Shared, client: &HsClient, as_user: &OwnedUserId, list: &str, asked: &str) {
    let mut shutdown = shared.shutdown.clone();
    let mut wait = Duration::from_secs(2);
    for attempt in 1..=ATTEMPTS {
        match client.follow_list(as_user, None, list, asked).await {
            Ok(found) => {
                if !queue(shared, found).await {
                    tracing::warn!(%list, "queuing a ban list's rules failed; read again later");
                }
                return;
            }
            Err(PerformError::Transient(why)) if attempt < ATTEMPTS => {
                tracing::info!(%list, %why, "a ban list could not be read yet; retrying");
                if shutdown.sleep(wait).await {
                    return;
                }
                wait *= 2;
            }
            Err(e) => {
                tracing::warn!(%list, error = ?e, "a ban list could not be read");
                return;
            }
        }
    }
}
