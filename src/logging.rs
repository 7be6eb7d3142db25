//! Log set-up: `RUST_LOG` wins over the config's `logging.level`.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LoggingConfig};

/// matrix-sdk logs every sync request at info level: quiet unless asked for.
const SDK_QUIET: &str = "matrix_sdk=warn,matrix_sdk_base=warn,matrix_sdk_crypto=warn,matrix_sdk_sqlite=warn";

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
