//! What the appservice checks and sets up once the homeserver is reachable:
//! the bot user and its profile, and the ping that proves both directions
//! of the wiring work.

use std::time::Duration;

use crate::config::AppserviceConfig;
use crate::matrix::{ClientError, HsClient};
use crate::pipeline::{Clock, Shutdown};
use ruma::UserId;
use ruma::api::client::account::register::{self, LoginType};
use ruma::api::client::appservice::request_ping;
use ruma::api::client::profile::{get_display_name, set_profile_field};
use ruma::profile::ProfileFieldValue;

/// Registers the bot user if the homeserver has not already.
pub async fn ensure_bot_user(client: &HsClient, localpart: &str) -> Result<(), ClientError> {
    let mut request = register::v3::Request::new();
    request.login_type = Some(LoginType::ApplicationService);
    request.username = Some(localpart.to_owned());
    // The bot acts with the as_token; a device and token of its own would
    // only be one more secret lying around.
    request.inhibit_login = true;
    match client.send(request, None).await {
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
    // The deprecated endpoint for reading, as in `matrix::effects`:
    // `get_profile_field` fails on `{"displayname": null}`.
    #[allow(deprecated)]
    let request = get_display_name::v3::Request::new(bot.to_owned());
    let current = match client.send(request, None).await {
        Ok(response) => response.displayname,
        Err(e) if e.errcode() == Some("M_NOT_FOUND") => None,
        Err(e) => return Err(e),
    };
    if current.as_deref() != Some(displayname) {
        let value = ProfileFieldValue::DisplayName(displayname.to_owned());
        client.send(set_profile_field::v3::Request::new(bot.to_owned(), value), Some(bot)).await?;
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

/// Sets up the bot and pings until the ping succeeds, then returns true
/// (false at shutdown). Runs beside the intake, so a homeserver that
/// starts later is waited for.
// One caller spawns this with what start-up needs; a struct for that one
// call would only move the list.
pub async fn run(
    mut client: HsClient,
    bot: ruma::OwnedUserId,
    appservice: AppserviceConfig,
    clock: std::sync::Arc<dyn Clock>,
    mut shutdown: Shutdown,
) -> bool {
    let AppserviceConfig {
        bot_localpart, bot_displayname: displayname, id: appservice_id, url: appservice_url, ..
    } = appservice;
    if !client.wait_for_homeserver(&mut shutdown).await {
        return false;
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
                return true;
            }
            Err(problem) => tracing::error!(retry_in = ?delay, "{problem}"),
        }
        if shutdown.sleep(delay).await {
            return false;
        }
        // Capped low: a homeserver that is briefly busy should not leave the
        // wiring unchecked for minutes.
        delay = (delay * 2).min(Duration::from_secs(15));
    }
}
