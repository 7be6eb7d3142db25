//! What the appservice checks and sets up once the homeserver is reachable:
//! the bot user and its profile, and the ping that proves both directions
//! of the wiring work.

use std::time::Duration;

use crate::matrix::{ClientError, HsClient};
use crate::pipeline::{Clock, Shutdown};
use ruma::UserId;
use ruma::api::client::appservice::request_ping;

/// Registers the bot user if the homeserver has not already.
pub async fn ensure_bot_user(client: &HsClient, localpart: &str) -> Result<(), ClientError> {
    let body = serde_json::json!({
        "type": "m.login.application_service",
        "username": localpart,
        "inhibit_login": true,
    });
    match client.send_json(http::Method::POST, "/_matrix/client/v3/register", None, Some(&body)).await {
        Ok(_) => {
            tracing::info!(localpart, "bot user registered");
            Ok(())
        }
        Err(e) if e.errcode() == Some("M_USER_IN_USE") => Ok(()),
        Err(e) => Err(e),
    }
}

/// Sets the bot's display name if it differs; the avatar stays unset.
pub async fn ensure_bot_profile(client: &HsClient, bot: &UserId, displayname: &str) -> Result<(), ClientError> {
    let path =
        format!("/_matrix/client/v3/profile/{}/displayname", crate::matrix::client::percent_encode(bot.as_str()));
    let current = match client.send_json(http::Method::GET, &path, None, None).await {
        Ok(v) => v.get("displayname").and_then(|d| d.as_str()).map(str::to_owned),
        Err(e) if e.errcode() == Some("M_NOT_FOUND") => None,
        Err(e) => return Err(e),
    };
    if current.as_deref() != Some(displayname) {
        let body = serde_json::json!({ "displayname": displayname });
        client.send_json(http::Method::PUT, &path, Some(bot), Some(&body)).await?;
        tracing::info!(%bot, displayname, "bot display name set");
    }
    Ok(())
}

/// Explains a failed ping in terms of what the operator should fix.
pub fn ping_advice(e: &ClientError, appservice_url: &str) -> String {
    match e {
        ClientError::Http { errcode, message, .. } if errcode == "M_CONNECTION_FAILED" => format!(
            "the homeserver cannot reach Gatekeeper at {appservice_url} ({message}): check appservice.url and appservice.listen"
        ),
        ClientError::Http { errcode, message, .. } if errcode == "M_BAD_STATUS" => format!(
            "the homeserver reached Gatekeeper but was refused ({message}): its copy of the registration has another hs_token; give it the current registration file and restart it"
        ),
        ClientError::Http { errcode, .. } if errcode == "M_UNKNOWN_TOKEN" || errcode == "M_FORBIDDEN" => {
            "the homeserver does not accept our as_token: is the registration file listed in its app_service_config_files (Synapse), and was it restarted after the file changed?".into()
        }
        ClientError::Http { status: 404, .. } => {
            "the homeserver does not support the appservice ping (Matrix 1.7); the wiring could not be checked".into()
        }
        other => format!("{other}"),
    }
}

/// Asks the homeserver to call our ping endpoint; `Ok` carries its round trip.
pub async fn ping(client: &HsClient, appservice_id: &str, txn: &str) -> Result<Duration, ClientError> {
    let mut req = request_ping::v1::Request::new(appservice_id.to_owned());
    req.transaction_id = Some(txn.into());
    client.send(req, None).await.map(|r| r.duration)
}

/// Sets up the bot and pings until the ping succeeds, then returns. Runs
/// beside the intake, so a homeserver that starts later is waited for.
// One caller spawns this with what start-up needs; a struct for that one
// call would only move the list.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    mut client: HsClient,
    bot: ruma::OwnedUserId,
    bot_localpart: String,
    displayname: String,
    appservice_id: String,
    appservice_url: String,
    clock: std::sync::Arc<dyn Clock>,
    mut shutdown: Shutdown,
) {
    if !client.wait_for_homeserver(&mut shutdown).await {
        return;
    }
    let mut delay = Duration::from_secs(1);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let result = async {
            ensure_bot_user(&client, &bot_localpart)
                .await
                .map_err(|e| format!("registering the bot user: {}", ping_advice(&e, &appservice_url)))?;
            ensure_bot_profile(&client, &bot, &displayname)
                .await
                .map_err(|e| format!("setting the bot profile: {e}"))?;
            let txn = format!("gk-startup-{}-{attempt}", clock.now_ms());
            ping(&client, &appservice_id, &txn)
                .await
                .map_err(|e| format!("ping failed: {}", ping_advice(&e, &appservice_url)))
        }
        .await;
        match result {
            Ok(rtt) => {
                tracing::info!(
                    duration_ms = rtt.as_millis() as u64,
                    "homeserver ping ok: the homeserver and Gatekeeper reach each other"
                );
                return;
            }
            Err(problem) => tracing::error!(retry_in = ?delay, "{problem}"),
        }
        if shutdown.sleep(delay).await {
            return;
        }
        // Capped low: a homeserver that is briefly busy should not leave the
        // wiring unchecked for minutes.
        delay = (delay * 2).min(Duration::from_secs(15));
    }
}
