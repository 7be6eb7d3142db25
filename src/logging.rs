//! Log set-up: `RUST_LOG` wins over the config's `logging.level`.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LoggingConfig};

/// matrix-sdk logs every sync request at info level: quiet unless asked for.
///
/// And an operator's ERROR must mean something is wrong, so two of its
/// targets are quieter still:
/// - `matrix_sdk::http_client` logs every request that gets an error
///   answer at ERROR, expected answers included: the 404 for account data
///   the account never had (`Account data not found`, at each start) and
///   for the control room's absent `m.room.encryption` state (matrix-sdk
///   asks before sending into a room whose encryption it has not seen).
///   Every such error is also returned to the caller, and Gatekeeper
///   reports the ones that matter in its own words (a failed sync, an
///   effect that failed, with its reason).
/// - `matrix_sdk::room` logs three errors: a failed leave (also returned
///   to the caller, which reports a failed effect), a failed forget
///   (Gatekeeper forgets no room), and power levels missing from its cache
///   when reading a room's history just after joining it, before the sync
///   brought the room's state (only the push actions of the history it
///   returns are affected, and Gatekeeper does not read them).
/// - `matrix_sdk_crypto::backups` warns at every sync that it has no
///   backup key: Gatekeeper's device does not back room keys up (the
///   owner's own clients do), so that is how it should be.
const SDK_QUIET: &str = "matrix_sdk=warn,matrix_sdk_base=warn,matrix_sdk_crypto=warn,matrix_sdk_sqlite=warn,\
                         matrix_sdk::http_client=off,matrix_sdk::room=off,matrix_sdk_crypto::backups=error";

/// The filter for a level text: the SDK's chatter is quietened unless the
/// text names it.
fn filter_text(level: &str) -> String {
    if level.contains("matrix_sdk") { level.to_owned() } else { format!("{level},{SDK_QUIET}") }
}

pub fn init(config: &LoggingConfig) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|text| EnvFilter::try_new(filter_text(&text)).ok())
        .or_else(|| EnvFilter::try_new(filter_text(&config.level)).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let result = match config.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    drop(result);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_is_quiet_unless_named() {
        assert_eq!(filter_text("info"), format!("info,{SDK_QUIET}"));
        assert_eq!(filter_text("gatekeeper=debug,matrix_sdk=debug"), "gatekeeper=debug,matrix_sdk=debug");
        assert!(EnvFilter::try_new(filter_text("gatekeeper=debug,info")).is_ok());
    }
}
