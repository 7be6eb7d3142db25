//! The operator's ban lists (`policy.lists`): joined and read at every
//! start, in the background, as the bot (client mode: the owner's
//! account), and what was read queued for the engine like any look-up's
//! result. Their later changes come as the lists' state events.

use std::time::Duration;

use ruma::OwnedUserId;

use crate::matrix::HsClient;
use crate::pipeline::Shared;
use crate::pipeline::executor::PerformError;

/// Tries a list this many times (transient failures) before leaving it
/// for the next start.
const ATTEMPTS: u32 = 5;

pub async fn follow(shared: Shared, client: HsClient, as_user: OwnedUserId, lists: Vec<String>) {
    let mut shutdown = shared.shutdown.clone();
    for list in lists {
        let mut wait = Duration::from_secs(2);
        for attempt in 1..=ATTEMPTS {
            match client.follow_list(&as_user, None, &list).await {
                Ok(found) => {
                    let store = shared.store.clone();
                    let stored = tokio::task::spawn_blocking(move || store.push_follow_ups(&found)).await;
                    match stored {
                        Ok(Ok(())) => shared.wake.notify_one(),
                        _ => {
                            tracing::warn!(%list, "queuing an operator's ban list failed; read again at the next start")
                        }
                    }
                    break;
                }
                Err(PerformError::Transient(why)) if attempt < ATTEMPTS => {
                    tracing::info!(%list, %why, "an operator's ban list could not be read yet; retrying");
                    if shutdown.sleep(wait).await {
                        return;
                    }
                    wait *= 2;
                }
                Err(e) => {
                    tracing::warn!(%list, error = ?e, "an operator's ban list could not be followed");
                    break;
                }
            }
        }
    }
}
