//! Gatekeeper's configuration: the typed YAML file, environment overrides,
//! and a pure `check` that lists every problem at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer};
use thiserror::Error;

/// Environment variables with this prefix override config keys:
/// `GATEKEEPER__HOMESERVER__URL` sets `homeserver.url`.
pub const ENV_PREFIX: &str = "GATEKEEPER__";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `appservice` (many owners, on the homeserver) or `client` (one owner,
    /// a device of their own account, any homeserver).
    #[serde(default)]
    pub mode: Mode,
    pub homeserver: HomeserverConfig,
    /// Required in appservice mode.
    #[serde(default)]
    pub appservice: Option<AppserviceConfig>,
    /// Required in client mode.
    #[serde(default)]
    pub client: Option<ClientConfig>,
    pub database: DatabaseConfig,
    #[serde(default)]
    pub gate: GateConfig,
    /// Digests by e-mail; leave out to keep everything on Matrix.
    #[serde(default)]
    pub email: Option<EmailConfig>,
    #[serde(default)]
    pub logging: LoggingConfig,
    /// `/metrics` and `/health` on their own address; off when left out.
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    /// Shared ban lists every owner follows.
    #[serde(default)]
    pub policy: PolicyConfig,
}

/// Moderation policy rooms (ban lists) the operator has every owner follow,
/// on top of those each owner subscribes to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Room aliases (`#list:example.org`) or room IDs (`!abc:example.org`).
    #[serde(default)]
    pub lists: Vec<String>,
}

/// At most this many operator lists: each is read for every invitation.
pub const MAX_OPERATOR_LISTS: usize = 20;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where Prometheus and health checks reach Gatekeeper; keep it private.
    #[serde(deserialize_with = "native_or_text")]
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// `smtp://host:25` (plain, for a local relay), `smtp://host:587?tls=required`
    /// (STARTTLS) or `smtps://host:465` (TLS); `user:password@` may come
    /// before the host. A secret: it may hold a password.
    pub smtp_url: crate::secret::Secret,
    /// The sender, e.g. `Gatekeeper <gatekeeper@example.org>`.
    pub from: String,
    /// A random key (at least 32 characters) that verification codes are
    /// derived from and one-click links signed with.
    pub secret: crate::secret::Secret,
    /// Where Gatekeeper's web pages (the one-click links) are reachable by
    /// owners, e.g. `https://gatekeeper.example.org`. Without it, e-mails
    /// carry no links.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Where the web pages are served (put a TLS proxy in front).
    #[serde(default, deserialize_with = "optional_addr")]
    pub listen: Option<SocketAddr>,
    /// How long a one-click link works.
    #[serde(default = "default_link_lifetime", deserialize_with = "native_or_text")]
    pub link_lifetime: HumanDuration,
}

fn default_link_lifetime() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(7 * 86_400))
}

fn optional_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    match Option::<String>::deserialize(d)? {
        Some(s) => s.parse().map(Some).map_err(serde::de::Error::custom),
        None => Ok(None),
    }
}

/// How the gate treats strangers; owners cannot change these (yet).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    /// At most one etiquette reply per stranger per owner in this period.
    #[serde(default = "default_reply_interval", deserialize_with = "native_or_text")]
    pub reply_interval: HumanDuration,
    /// At most this many etiquette replies per owner per hour, so that a
    /// spam wave cannot turn Gatekeeper into a reflector.
    #[serde(default = "default_max_replies", deserialize_with = "native_or_text")]
    pub max_replies_per_hour: u32,
    /// People an owner invites are allowed from then on.
    #[serde(default = "default_true", deserialize_with = "native_or_text")]
    pub auto_allow_owner_started: bool,
    /// Captured messages older than this are dropped, decided or not.
    #[serde(default = "default_retention", deserialize_with = "native_or_text")]
    pub retention: HumanDuration,
    /// Tell a sender "you can now message <owner> directly" when allowed.
    #[serde(default, deserialize_with = "native_or_text")]
    pub notify_allowed: bool,
    /// How often expired allows and ended pauses are looked for.
    #[serde(default = "default_housekeeping", deserialize_with = "native_or_text")]
    pub housekeeping_interval: HumanDuration,
    /// How long an effect that keeps failing transiently (a stranger's
    /// server that does not answer) is retried before it is set aside and
    /// the owner is told; it holds up only its own room meanwhile.
    #[serde(default = "default_effect_retry_for", deserialize_with = "native_or_text")]
    pub effect_retry_for: HumanDuration,
    /// Held rooms per stranger per owner; further invitations from the same
    /// sender stay silent and unjoined, and are counted.
    #[serde(default = "default_held_per_stranger", deserialize_with = "native_or_text")]
    pub max_held_rooms_per_stranger: u64,
    /// Held rooms per owner; beyond it, invitations stay silent and
    /// unjoined, and are counted.
    #[serde(default = "default_held_per_owner", deserialize_with = "native_or_text")]
    pub max_held_rooms_per_owner: u64,
    /// Messages kept per stranger per owner; further ones are counted.
    #[serde(default = "default_messages_per_stranger", deserialize_with = "native_or_text")]
    pub max_messages_per_stranger: u64,
    /// Messages kept per owner, all strangers together.
    #[serde(default = "default_messages_per_owner", deserialize_with = "native_or_text")]
    pub max_messages_per_owner: u64,
    /// Bytes of one kept message's text; longer ones are trimmed with a note.
    #[serde(default = "default_message_bytes", deserialize_with = "native_or_text")]
    pub max_message_bytes: usize,
    /// A sender who invites this many owners within an hour is a wave: no
    /// automatic reply, grouped in the digest.
    #[serde(default = "default_wave_owners_per_sender", deserialize_with = "native_or_text")]
    pub wave_owners_per_sender: u32,
    /// This many new senders from one server (not the owners' own) within
    /// an hour are a wave.
    #[serde(default = "default_wave_senders_per_server", deserialize_with = "native_or_text")]
    pub wave_senders_per_server: u32,
}

// The same numbers as the engine's `Bounds::default()` (app/ tests that
// they agree): the configuration does not import the engine.
fn default_held_per_stranger() -> u64 {
    5
}
fn default_held_per_owner() -> u64 {
    1_000
}
fn default_messages_per_stranger() -> u64 {
    1_000
}
fn default_messages_per_owner() -> u64 {
    20_000
}
fn default_message_bytes() -> usize {
    16_384
}

fn default_wave_owners_per_sender() -> u32 {
    3
}

fn default_wave_senders_per_server() -> u32 {
    20
}

/// The thresholds' bounds: a wave record keeps up to its threshold of
/// entries, so this bounds what one sender or server costs.
pub const WAVE_OWNERS_RANGE: std::ops::RangeInclusive<u32> = 2..=100;
pub const WAVE_SENDERS_RANGE: std::ops::RangeInclusive<u32> = 2..=1000;

fn default_effect_retry_for() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(24 * 3600))
}

fn default_housekeeping() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
}

impl Default for GateConfig {
    fn default() -> Self {
        Self {
            reply_interval: default_reply_interval(),
            max_replies_per_hour: default_max_replies(),
            auto_allow_owner_started: true,
            retention: default_retention(),
            notify_allowed: false,
            housekeeping_interval: default_housekeeping(),
            effect_retry_for: default_effect_retry_for(),
            max_held_rooms_per_stranger: default_held_per_stranger(),
            max_held_rooms_per_owner: default_held_per_owner(),
            max_messages_per_stranger: default_messages_per_stranger(),
            max_messages_per_owner: default_messages_per_owner(),
            max_message_bytes: default_message_bytes(),
            wave_owners_per_sender: default_wave_owners_per_sender(),
            wave_senders_per_server: default_wave_senders_per_server(),
        }
    }
}

fn default_retention() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30 * 86_400))
}

fn default_reply_interval() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(7 * 86_400))
}
fn default_max_replies() -> u32 {
    20
}
fn default_true() -> bool {
    true
}

/// A duration written for people: `30s`, `15m`, `12h`, `7d`, `2w`, `1h30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub std::time::Duration);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        gatekeeper_common::duration::parse(s).map(|ms| HumanDuration(std::time::Duration::from_millis(ms)))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Appservice,
    Client,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomeserverConfig {
    /// Client-server API base URL, e.g. `http://127.0.0.1:8008`.
    pub url: String,
    /// The homeserver's server name: the part after the colon in user IDs.
    /// Client mode takes it from `client.user_id` when left out.
    #[serde(default)]
    pub server_name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The owner's user ID: Gatekeeper is a device of this account.
    pub user_id: String,
    /// The name of Gatekeeper's device, as the owner's other clients list it.
    #[serde(default = "default_device_name")]
    pub device_name: String,
    /// matrix-sdk's store: the session, the encryption keys and room state.
    /// Relative paths are taken from the config file's directory.
    #[serde(default = "default_client_store")]
    pub store: PathBuf,
    /// Whether the control room Gatekeeper creates is end-to-end encrypted
    /// (the digest quotes strangers' messages, which may have been encrypted).
    #[serde(default = "default_true")]
    pub encrypt_control_room: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppserviceConfig {
    /// The registration's `id`; must be unique on the homeserver.
    #[serde(default = "default_id")]
    pub id: String,
    /// Where Gatekeeper listens for the homeserver's requests.
    #[serde(deserialize_with = "native_or_text")]
    pub listen: SocketAddr,
    /// What the homeserver calls; written into the registration.
    pub url: String,
    /// Local part of the bot user, `@<bot_localpart>:<server_name>`.
    #[serde(default = "default_bot_localpart")]
    pub bot_localpart: String,
    /// The bot's display name, set at start-up.
    #[serde(default = "default_bot_displayname")]
    pub bot_displayname: String,
    /// Regex (whole user ID) of the users who may opt in.
    pub users: String,
    /// Path of the registration file the tokens are read from; relative
    /// paths are taken from the config file's directory.
    #[serde(default = "default_registration")]
    pub registration: PathBuf,
    /// Largest transaction body accepted, in bytes. 100 events of the
    /// maximal 64 KiB each need about 6.4 MiB, so the floor is 8 MiB.
    #[serde(default = "default_max_body", deserialize_with = "native_or_text")]
    pub max_body_bytes: usize,
    /// Refuse a transaction once when its numeric ID skips numbers, so
    /// that the homeserver sends a stranded one first. Only sound when
    /// Gatekeeper is the homeserver's only appservice: Synapse numbers the
    /// transactions of all its appservices from one sequence, so with a
    /// second one, skipped numbers are normal. Off by default.
    #[serde(default, deserialize_with = "native_or_text")]
    pub refuse_transaction_gaps: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// sled directory, the embedded default (nothing else to run);
    /// relative paths are taken from the config file's directory.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Instead of `path`: PostgreSQL, e.g. `postgresql://gatekeeper@db.example.org/gatekeeper`.
    /// A secret: it may hold the password (`user:password@host`).
    #[serde(default)]
    pub url: Option<crate::secret::Secret>,
    /// The PostgreSQL password, when the URL has none
    /// (`GATEKEEPER__DATABASE__PASSWORD` sets it from the environment).
    #[serde(default)]
    pub password: Option<crate::secret::Secret>,
    /// A file whose first line is the PostgreSQL password; relative paths
    /// are taken from the config file's directory.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// With `?sslmode=require` in the URL: the CA certificate(s) (PEM) the
    /// server's certificate must be signed by, instead of the system's
    /// trusted roots. The certificate is always verified, host name included.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// sled page cache, in MiB (sled's own default of 1 GiB is far too much).
    #[serde(default = "default_cache_mb", deserialize_with = "native_or_text")]
    pub cache_capacity_mb: u64,
}

/// Which store the configuration selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Sled(PathBuf),
    /// The URL, and the password from `password` or `password_file` when
    /// the URL has none.
    Postgres {
        url: crate::secret::Secret,
        password: Option<crate::secret::Secret>,
        ca_file: Option<PathBuf>,
    },
}

impl DatabaseConfig {
    /// The store selected: `path` for sled or `url` for PostgreSQL, exactly
    /// one of them.
    pub fn selected(&self) -> Result<Database, String> {
        match (&self.path, &self.url) {
            (Some(path), None) if self.password.is_none() && self.password_file.is_none() && self.ca_file.is_none() => {
                Ok(Database::Sled(path.clone()))
            }
            (Some(_), None) => Err("database: password, password_file and ca_file are for url (PostgreSQL)".into()),
            (None, Some(url)) => {
                let parsed: postgres::Config = url.expose().parse().map_err(|e: postgres::Error| {
                    let why = std::error::Error::source(&e).map_or_else(|| e.to_string(), |c| c.to_string());
                    format!("database.url: not a PostgreSQL URL ({why})")
                })?;
                let password = match (&self.password, &self.password_file) {
                    (Some(_), Some(_)) => return Err("database: set password or password_file, not both".into()),
                    (Some(p), None) => Some(p.clone()),
                    (None, Some(file)) => {
                        let text = std::fs::read_to_string(file)
                            .map_err(|e| format!("database.password_file: reading {}: {e}", file.display()))?;
                        Some(crate::secret::Secret::new(text.lines().next().unwrap_or("")))
                    }
                    (None, None) => None,
                };
                if password.is_some() && parsed.get_password().is_some() {
                    return Err("database: the URL has a password already; leave out password and password_file".into());
                }
                if self.ca_file.is_some() && parsed.get_ssl_mode() != postgres::config::SslMode::Require {
                    return Err("database.ca_file: only used with TLS: add ?sslmode=require to database.url".into());
                }
                Ok(Database::Postgres { url: url.clone(), password, ca_file: self.ca_file.clone() })
            }
            (Some(_), Some(_)) => Err("database: set path (sled) or url (PostgreSQL), not both".into()),
            (None, None) => Err("database: set path (sled, the embedded default) or url (PostgreSQL)".into()),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// A `RUST_LOG`-style filter; `RUST_LOG` itself wins when set.
    #[serde(default = "default_log_level")]
    pub level: String,
    /// `text` for people, `json` for log collectors.
    #[serde(default)]
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self { level: default_log_level(), format: LogFormat::default() }
    }
}

fn default_device_name() -> String {
    "Gatekeeper".into()
}
fn default_client_store() -> PathBuf {
    "gatekeeper-client".into()
}
fn default_id() -> String {
    "gatekeeper".into()
}
fn default_bot_localpart() -> String {
    "gatekeeper".into()
}
fn default_bot_displayname() -> String {
    "Gatekeeper".into()
}
fn default_registration() -> PathBuf {
    "registration.yaml".into()
}
fn default_max_body() -> usize {
    16 * 1024 * 1024
}
fn default_cache_mb() -> u64 {
    64
}
fn default_log_level() -> String {
    "info".into()
}

/// Environment overrides arrive as text, so numbers and addresses accept
/// both their YAML form and a string.
fn native_or_text<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr + Deserialize<'de>,
    T::Err: std::fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either<T> {
        Native(T),
        Text(String),
    }
    match Either::<T>::deserialize(d)? {
        Either::Native(v) => Ok(v),
        Either::Text(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: invalid YAML: {message}")]
    Yaml { path: PathBuf, message: String },
    #[error("{path}: {key}: {message}")]
    Field { path: PathBuf, key: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

impl Config {
    /// Reads the file, applies `GATEKEEPER__*` overrides from `env`, and
    /// resolves relative paths against the file's directory.
    pub fn load(path: &Path, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let mut config = Self::parse(&text, path, env)?;
        let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        config.resolve_paths(base);
        Ok(config)
    }

    /// Parses YAML text; `origin` only names the source in errors.
    pub fn parse(
        text: &str,
        origin: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut tree: serde_json::Value = serde_saphyr::from_str(text)
            .map_err(|e| ConfigError::Yaml { path: origin.to_owned(), message: e.to_string() })?;
        if tree.is_null() {
            tree = serde_json::Value::Object(Default::default());
        }
        apply_env_overrides(&mut tree, env)?;
        serde_path_to_error::deserialize(tree).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Field {
                path: origin.to_owned(),
                key: if key == "." { "(top level)".into() } else { key },
                message: e.into_inner().to_string(),
            }
        })
    }

    fn resolve_paths(&mut self, base: &Path) {
        if let Some(asv) = &mut self.appservice
            && asv.registration.is_relative()
        {
            asv.registration = base.join(&asv.registration);
        }
        if let Some(client) = &mut self.client
            && client.store.is_relative()
        {
            client.store = base.join(&client.store);
        }
        let db = &mut self.database;
        for path in [&mut db.path, &mut db.password_file, &mut db.ca_file].into_iter().flatten() {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }

    /// The appservice section, or why there is none.
    pub fn appservice(&self) -> anyhow::Result<&AppserviceConfig> {
        self.appservice.as_ref().ok_or_else(|| anyhow::anyhow!("appservice: this needs the appservice section"))
    }

    /// The client section, or why there is none.
    pub fn client(&self) -> anyhow::Result<&ClientConfig> {
        self.client.as_ref().ok_or_else(|| anyhow::anyhow!("client: this needs the client section (mode: client)"))
    }

    /// `homeserver.server_name`, or in client mode the owner's server.
    pub fn server_name(&self) -> &str {
        match (&self.client, self.homeserver.server_name.is_empty()) {
            (Some(c), true) => c.user_id.split_once(':').map_or("", |(_, server)| server),
            _ => &self.homeserver.server_name,
        }
    }

    pub fn bot_user_id(&self) -> String {
        let localpart = self.appservice.as_ref().map_or("gatekeeper", |a| a.bot_localpart.as_str());
        format!("@{localpart}:{}", self.server_name())
    }

    /// The opt-in regex, anchored so that it must match the whole user ID
    /// (stricter than Synapse's prefix match, never looser). Matches
    /// nobody without an appservice section.
    pub fn users_regex(&self) -> Result<regex::Regex, regex::Error> {
        match &self.appservice {
            Some(asv) => regex::Regex::new(&format!("^(?:{})$", asv.users)),
            None => regex::Regex::new("[^\\s\\S]"),
        }
    }
}

fn apply_env_overrides(
    tree: &mut serde_json::Value,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    // Sorted so that the outcome does not depend on the environment's order.
    let overrides: BTreeMap<String, String> = env.into_iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
    for (var, value) in overrides {
        let keys: Vec<String> = var[ENV_PREFIX.len()..].split("__").map(|k| k.to_ascii_lowercase()).collect();
        if keys.iter().any(|k| k.is_empty()) {
            return Err(ConfigError::Env { var, message: "expected GATEKEEPER__SECTION__KEY".into() });
        }
        set_path(tree, &keys, value).map_err(|message| ConfigError::Env { var, message })?;
    }
    Ok(())
}

fn set_path(node: &mut serde_json::Value, keys: &[String], value: String) -> Result<(), String> {
    let serde_json::Value::Object(map) = node else {
        return Err(format!("cannot set `{}`: its parent is not a section", keys.join(".")));
    };
    match keys {
        [last] => {
            map.insert(last.clone(), serde_json::Value::String(value));
            Ok(())
        }
        [first, rest @ ..] => {
            let child = map.entry(first.clone()).or_insert_with(|| serde_json::Value::Object(Default::default()));
            set_path(child, rest, value)
        }
        [] => Err("empty key".into()),
    }
}

/// Everything wrong with a loaded config, as sentences for the operator.
/// Pure: looks at files only through the paths it is given by `probe`.
pub fn check(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    let hs = &config.homeserver;
    if !(hs.url.starts_with("http://") || hs.url.starts_with("https://")) {
        problems.push(format!("homeserver.url: `{}` must start with http:// or https://", hs.url));
    }
    match (config.mode, &config.appservice, &config.client) {
        (Mode::Appservice, None, _) => problems.push("appservice: required in appservice mode".into()),
        (Mode::Client, _, None) => problems.push("client: required with mode: client".into()),
        (Mode::Appservice, Some(_), Some(_)) => {
            problems.push("client: only read with mode: client; remove it or set mode: client".into())
        }
        (Mode::Client, Some(_), Some(_)) => {
            problems.push("appservice: not read with mode: client; remove it or set mode: appservice".into())
        }
        _ => {}
    }
    if let (Mode::Client, Some(client)) = (config.mode, &config.client) {
        check_client(client, &hs.server_name, &mut problems);
    }
    if config.mode == Mode::Appservice
        && let Some(asv) = &config.appservice
    {
        check_appservice(config, asv, &mut problems);
    }
    // Unbounded retrying is what the bound is for: a room that never
    // answers would wait forever, and its owner would never hear of it.
    let retry_for = config.gate.effect_retry_for.0;
    if retry_for < std::time::Duration::from_secs(1) || retry_for > std::time::Duration::from_secs(30 * 86_400) {
        problems.push("gate.effect_retry_for: must be between 1s and 30d (24h is the default)".into());
    }
    if !WAVE_OWNERS_RANGE.contains(&config.gate.wave_owners_per_sender) {
        problems.push(format!(
            "gate.wave_owners_per_sender: must be between {} and {} (3 is the default)",
            WAVE_OWNERS_RANGE.start(),
            WAVE_OWNERS_RANGE.end()
        ));
    }
    if !WAVE_SENDERS_RANGE.contains(&config.gate.wave_senders_per_server) {
        problems.push(format!(
            "gate.wave_senders_per_server: must be between {} and {} (20 is the default)",
            WAVE_SENDERS_RANGE.start(),
            WAVE_SENDERS_RANGE.end()
        ));
    }
    if let Err(e) = config.database.selected() {
        problems.push(e);
    }
    if config.database.cache_capacity_mb == 0 {
        problems.push("database.cache_capacity_mb: must be at least 1".into());
    }
    if let Some(email) = &config.email {
        let url = email.smtp_url.expose();
        if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
            problems.push("email.smtp_url: must start with smtp:// or smtps://".into());
        }
        if email.from.parse::<lettre::message::Mailbox>().is_err() {
            problems.push(format!("email.from: `{}` is not an address like Gatekeeper <gk@example.org>", email.from));
        }
        if email.secret.expose().len() < 32 {
            problems.push("email.secret: use at least 32 random characters".into());
        }
        match (&email.public_url, &email.listen) {
            (Some(url), Some(_)) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                problems.push(format!("email.public_url: `{url}` must start with https:// (or http://)"));
            }
            (Some(_), None) => problems.push("email.public_url needs email.listen to serve the links".into()),
            (None, Some(_)) => problems.push("email.listen needs email.public_url for the links it serves".into()),
            _ => {}
        }
    }
    if config.policy.lists.len() > MAX_OPERATOR_LISTS {
        problems.push(format!("policy.lists: at most {MAX_OPERATOR_LISTS} lists"));
    }
    for list in &config.policy.lists {
        if ruma::RoomAliasId::parse(list).is_err() && ruma::RoomId::parse(list).is_err() {
            problems.push(format!(
                "policy.lists: `{list}` is neither a room alias (#list:example.org) nor a room ID (!abc:example.org)"
            ));
        }
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&config.logging.level) {
        problems.push(format!("logging.level: `{}` is not a valid filter: {e}", config.logging.level));
    }
    problems
}

fn check_appservice(config: &Config, asv: &AppserviceConfig, problems: &mut Vec<String>) {
    let hs = &config.homeserver;
    if ruma::ServerName::parse(&hs.server_name).is_err() {
        problems.push(format!("homeserver.server_name: `{}` is not a valid server name", hs.server_name));
    }
    if asv.id.trim().is_empty() {
        problems.push("appservice.id: must not be empty".into());
    }
    if !(asv.url.starts_with("http://") || asv.url.starts_with("https://")) {
        problems.push(format!("appservice.url: `{}` must start with http:// or https://", asv.url));
    }
    let localpart_ok = !asv.bot_localpart.is_empty()
        && asv
            .bot_localpart
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/' | b'+'));
    if !localpart_ok {
        problems.push(format!("appservice.bot_localpart: `{}` may only use a-z, 0-9 and ._=-/+", asv.bot_localpart));
    } else if ruma::ServerName::parse(&hs.server_name).is_ok() && ruma::UserId::parse(config.bot_user_id()).is_err() {
        problems.push(format!("appservice.bot_localpart: `{}` is not a valid user ID", config.bot_user_id()));
    }
    if asv.bot_displayname.trim().is_empty() {
        problems.push("appservice.bot_displayname: must not be empty".into());
    }
    if let Err(e) = config.users_regex() {
        problems.push(format!("appservice.users: not a valid regex: {e}"));
    }
    if asv.max_body_bytes < 8 * 1024 * 1024 {
        problems.push(format!(
            "appservice.max_body_bytes: {} is below 8 MiB; a homeserver may send 100 events of 64 KiB",
            asv.max_body_bytes
        ));
    }
}

fn check_client(client: &ClientConfig, server_name: &str, problems: &mut Vec<String>) {
    match ruma::UserId::parse(&client.user_id) {
        Err(e) => problems.push(format!("client.user_id: `{}` is not a user ID like @alice:example.org: {e}", client.user_id)),
        Ok(user) if !server_name.is_empty() && user.server_name().as_str() != server_name => problems.push(format!(
            "homeserver.server_name: `{server_name}` differs from client.user_id's server `{}` (leave it out in client mode)",
            user.server_name()
        )),
        Ok(_) => {}
    }
    if client.device_name.trim().is_empty() {
        problems.push("client.device_name: must not be empty".into());
    }
}

/// Files holding secrets (the config may hold the SMTP password and the
/// link key; the registration holds both tokens) that users other than
/// their owner may read: one warning per file, with the fix.
pub fn exposed_files(config_path: &Path, config: &Config) -> Vec<String> {
    let mut files = vec![config_path.to_owned()];
    if let Ok(asv) = config.appservice()
        && config.mode == Mode::Appservice
    {
        files.push(asv.registration.clone());
    }
    // The PostgreSQL password, kept apart from the config for this reason.
    files.extend(config.database.password_file.iter().cloned());
    files
        .iter()
        .filter(|path| open_to_others(path))
        .map(|path| {
            format!(
                "warning: {} is readable by other users and holds secrets; run `chmod 600 {}`",
                path.display(),
                path.display()
            )
        })
        .collect()
}

/// A PostgreSQL URL that sends everything Gatekeeper keeps (strangers'
/// words, the owners' decisions) over the network in clear: without
/// `sslmode=require`, to a host that is neither this machine nor a Unix
/// socket. A warning, not a problem: a private network may be trusted.
pub fn database_in_clear(database: &DatabaseConfig) -> Option<String> {
    use postgres::config::{Host, SslMode};
    let url: postgres::Config = database.url.as_ref()?.expose().parse().ok()?;
    if url.get_ssl_mode() == SslMode::Require {
        return None;
    }
    let remote: Vec<&str> = url
        .get_hosts()
        .iter()
        .filter_map(|host| match host {
            Host::Tcp(name) => Some(name.as_str()),
            Host::Unix(_) => None,
        })
        .filter(|name| !is_loopback(name))
        .collect();
    (!remote.is_empty()).then(|| {
        format!(
            "warning: database.url reaches {} without TLS: add ?sslmode=require (and database.ca_file if its \
             certificate is not signed by a trusted root)",
            remote.join(", ")
        )
    })
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether the file's mode gives group or others any access.
fn open_to_others(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strangers' messages cross the network only encrypted, or the
    /// operator is told.
    #[test]
    fn check_config_warns_of_a_remote_database_without_tls() {
        let base = MINIMAL.replace("database:\n  path: ./data\n", "");
        let warn =
            |url: &str| database_in_clear(&parse(&format!("{base}database:\n  url: '{url}'\n"), &[]).unwrap().database);
        let remote = warn("postgresql://gk@db.example.org/gk").expect("a remote host in clear");
        assert!(remote.contains("db.example.org") && remote.contains("sslmode=require"), "{remote}");
        assert!(warn("postgresql://gk@db.example.org/gk?sslmode=prefer").is_some(), "prefer is plain here");
        assert_eq!(warn("postgresql://gk@db.example.org/gk?sslmode=require"), None);
        for local in ["postgresql://gk@localhost/gk", "postgresql://gk@127.0.0.1:5433/gk", "postgresql://gk@[::1]/gk"] {
            assert_eq!(warn(local), None, "{local}");
        }
        assert_eq!(warn("postgresql://gk@%2Frun%2Fpostgresql/gk"), None, "a Unix socket");
        assert_eq!(warn("host=/run/postgresql dbname=gk"), None, "a Unix socket, key=value form");
        assert!(warn("host=10.0.0.5 dbname=gk").is_some());
        assert_eq!(database_in_clear(&parse(MINIMAL, &[]).unwrap().database), None, "sled");
    }

    #[cfg(unix)]
    #[test]
    fn check_config_warns_of_secrets_others_can_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        let registration = dir.path().join("registration.yaml");
        std::fs::write(&path, MINIMAL).unwrap();
        std::fs::write(&registration, "id: gatekeeper\n").unwrap();
        let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        mode(&path, 0o644);
        mode(&registration, 0o640);
        let c = Config::load(&path, Vec::new()).unwrap();
        let warnings = exposed_files(&path, &c);
        assert_eq!(
            warnings,
            vec![
                format!(
                    "warning: {} is readable by other users and holds secrets; run `chmod 600 {}`",
                    path.display(),
                    path.display()
                ),
                format!(
                    "warning: {} is readable by other users and holds secrets; run `chmod 600 {}`",
                    registration.display(),
                    registration.display()
                ),
            ]
        );
        mode(&path, 0o600);
        mode(&registration, 0o600);
        assert_eq!(exposed_files(&path, &c), Vec::<String>::new());
        // A missing registration is reported by the check itself, not here.
        std::fs::remove_file(&registration).unwrap();
        assert_eq!(exposed_files(&path, &c), Vec::<String>::new());
    }

    /// The PostgreSQL password's file holds a secret too.
    #[cfg(unix)]
    #[test]
    fn check_config_warns_of_a_database_password_file_others_can_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        let password = dir.path().join("db-password");
        let config = MINIMAL.replace("database:\n  path: ./data\n", "")
            + "database:\n  url: postgresql://gk@db/gk\n  password_file: db-password\n";
        std::fs::write(&path, config).unwrap();
        std::fs::write(&password, "s3cret\n").unwrap();
        let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        mode(&path, 0o600);
        mode(&password, 0o644);
        let c = Config::load(&path, Vec::new()).unwrap();
        let warnings = exposed_files(&path, &c);
        assert_eq!(
            warnings,
            vec![format!(
                "warning: {} is readable by other users and holds secrets; run `chmod 600 {}`",
                password.display(),
                password.display()
            )]
        );
        mode(&password, 0o600);
        assert_eq!(exposed_files(&path, &c), Vec::<String>::new());
    }

    const MINIMAL: &str = "
homeserver:
  url: http://127.0.0.1:8008
  server_name: example.org
appservice:
  listen: 127.0.0.1:29333
  url: http://127.0.0.1:29333
  users: '@.*:example.org'
database:
  path: ./data
";

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.yaml"), env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    const CLIENT: &str = "
mode: client
homeserver:
  url: https://matrix.example.org
client:
  user_id: '@alice:example.org'
database:
  path: ./data
";

    #[test]
    fn client_mode_needs_only_the_owner_and_takes_the_server_from_them() {
        let c = parse(CLIENT, &[]).unwrap();
        assert!(check(&c).is_empty(), "{:?}", check(&c));
        assert_eq!(c.server_name(), "example.org");
        let client = c.client().unwrap();
        assert_eq!((client.device_name.as_str(), client.encrypt_control_room), ("Gatekeeper", true));
        assert_eq!(client.store, PathBuf::from("gatekeeper-client"));
        assert!(c.appservice().is_err());
        // Nobody opts in by invitation in client mode.
        assert!(!c.users_regex().unwrap().is_match("@alice:example.org"));
    }

    #[test]
    fn each_mode_needs_its_own_section_and_only_that() {
        let problems = check(&parse(&CLIENT.replace("mode: client\n", ""), &[]).unwrap());
        assert!(problems.iter().any(|p| p.starts_with("appservice: required")), "{problems:?}");
        let problems = check(&parse(&MINIMAL.replace("homeserver:", "mode: client\nhomeserver:"), &[]).unwrap());
        assert!(problems.iter().any(|p| p.starts_with("client: required")), "{problems:?}");
        let both = format!("{MINIMAL}client:\n  user_id: '@alice:example.org'\n");
        assert!(check(&parse(&both, &[]).unwrap()).iter().any(|p| p.starts_with("client: only read")));
        let bad = CLIENT.replace("'@alice:example.org'", "alice");
        assert!(check(&parse(&bad, &[]).unwrap()).iter().any(|p| p.starts_with("client.user_id")));
        let other_server = CLIENT
            .replace("  url: https://matrix.example.org\n", "  url: https://m.example.org\n  server_name: other.org\n");
        assert!(check(&parse(&other_server, &[]).unwrap()).iter().any(|p| p.contains("differs from client.user_id")));
        let err = parse(&CLIENT.replace("mode: client", "mode: bridge"), &[]).unwrap_err().to_string();
        assert!(err.contains("mode"), "{err}");
    }

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = parse(MINIMAL, &[]).unwrap();
        assert_eq!(c.appservice().unwrap().id, "gatekeeper");
        assert_eq!(c.appservice().unwrap().bot_localpart, "gatekeeper");
        assert_eq!(c.appservice().unwrap().registration, PathBuf::from("registration.yaml"));
        assert_eq!(c.appservice().unwrap().max_body_bytes, 16 * 1024 * 1024);
        assert_eq!(c.database.cache_capacity_mb, 64);
        assert_eq!(c.bot_user_id(), "@gatekeeper:example.org");
        assert!(check(&c).is_empty(), "{:?}", check(&c));
    }

    #[test]
    fn unknown_key_is_an_error_that_names_it() {
        let text = MINIMAL.replace("  users:", "  lsiten: x\n  users:");
        let err = parse(&text, &[]).unwrap_err().to_string();
        assert!(err.contains("appservice"), "{err}");
        assert!(err.contains("lsiten"), "{err}");
    }

    #[test]
    fn unknown_section_is_an_error_that_names_it() {
        let err = parse(&format!("{MINIMAL}\nsmtp: {{}}\n"), &[]).unwrap_err().to_string();
        assert!(err.contains("smtp"), "{err}");
    }

    #[test]
    fn missing_required_key_is_named() {
        let text = MINIMAL.replace("  url: http://127.0.0.1:8008\n", "");
        let err = parse(&text, &[]).unwrap_err().to_string();
        assert!(err.contains("homeserver") && err.contains("url"), "{err}");
        // Only client mode can do without a server name.
        let text = MINIMAL.replace("  server_name: example.org\n", "");
        let problems = check(&parse(&text, &[]).unwrap());
        assert!(problems.iter().any(|p| p.starts_with("homeserver.server_name")), "{problems:?}");
    }

    #[test]
    fn invalid_yaml_is_reported() {
        let err = parse("homeserver: [unclosed", &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Yaml { .. }), "{err}");
    }

    #[test]
    fn env_overrides_replace_and_add_keys() {
        let c = parse(
            MINIMAL,
            &[
                ("GATEKEEPER__HOMESERVER__URL", "https://matrix.example.org"),
                ("GATEKEEPER__APPSERVICE__LISTEN", "0.0.0.0:9000"),
                ("GATEKEEPER__DATABASE__CACHE_CAPACITY_MB", "8"),
                ("GATEKEEPER__APPSERVICE__BOT_LOCALPART", "doorman"),
                ("UNRELATED", "x"),
            ],
        )
        .unwrap();
        assert_eq!(c.homeserver.url, "https://matrix.example.org");
        assert_eq!(c.appservice().unwrap().listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(c.database.cache_capacity_mb, 8);
        assert_eq!(c.bot_user_id(), "@doorman:example.org");
    }

    #[test]
    fn env_override_of_unknown_key_is_an_error() {
        let err = parse(MINIMAL, &[("GATEKEEPER__APPSERVICE__TYPO", "1")]).unwrap_err().to_string();
        assert!(err.contains("typo"), "{err}");
    }

    #[test]
    fn env_override_with_bad_value_is_an_error() {
        let err = parse(MINIMAL, &[("GATEKEEPER__APPSERVICE__LISTEN", "not-an-address")]).unwrap_err().to_string();
        assert!(err.contains("listen"), "{err}");
    }

    #[test]
    fn effect_retry_for_defaults_to_a_day_and_is_bounded() {
        let c = parse(MINIMAL, &[]).unwrap();
        assert_eq!(c.gate.effect_retry_for.0.as_secs(), 24 * 3600);
        assert!(check(&c).is_empty());
        let short = parse(&format!("{MINIMAL}gate:\n  effect_retry_for: 20s\n"), &[]).unwrap();
        assert_eq!(short.gate.effect_retry_for.0.as_secs(), 20);
        assert!(check(&short).is_empty());
        let forever = parse(&format!("{MINIMAL}gate:\n  effect_retry_for: 60d\n"), &[]).unwrap();
        assert!(check(&forever).iter().any(|p| p.starts_with("gate.effect_retry_for")), "{:?}", check(&forever));
    }

    #[test]
    fn wave_thresholds_default_to_three_owners_and_twenty_senders_and_are_bounded() {
        let c = parse(MINIMAL, &[]).unwrap();
        assert_eq!((c.gate.wave_owners_per_sender, c.gate.wave_senders_per_server), (3, 20));
        let set =
            parse(&format!("{MINIMAL}gate:\n  wave_owners_per_sender: 5\n  wave_senders_per_server: '50'\n"), &[])
                .unwrap();
        assert_eq!((set.gate.wave_owners_per_sender, set.gate.wave_senders_per_server), (5, 50));
        assert!(check(&set).is_empty(), "{:?}", check(&set));
        for (key, bad) in
            [("wave_owners_per_sender", 1), ("wave_owners_per_sender", 101), ("wave_senders_per_server", 0)]
        {
            let c = parse(&format!("{MINIMAL}gate:\n  {key}: {bad}\n"), &[]).unwrap();
            assert!(check(&c).iter().any(|p| p.starts_with(&format!("gate.{key}"))), "{key}: {bad}: {:?}", check(&c));
        }
        let c = parse(&format!("{MINIMAL}gate:\n  wave_senders_per_server: 1001\n"), &[]).unwrap();
        assert!(check(&c).iter().any(|p| p.starts_with("gate.wave_senders_per_server")));
    }

    #[test]
    fn policy_lists_are_aliases_or_room_ids_and_bounded() {
        assert!(parse(MINIMAL, &[]).unwrap().policy.lists.is_empty());
        let good =
            parse(&format!("{MINIMAL}policy:\n  lists: ['#bans:example.org', '!abc:example.org']\n"), &[]).unwrap();
        assert_eq!(good.policy.lists.len(), 2);
        assert!(check(&good).is_empty(), "{:?}", check(&good));
        let bad = parse(&format!("{MINIMAL}policy:\n  lists: ['bans', '@user:example.org']\n"), &[]).unwrap();
        assert_eq!(check(&bad).iter().filter(|p| p.starts_with("policy.lists")).count(), 2, "{:?}", check(&bad));
        let many: Vec<String> = (0..21).map(|i| format!("'#l{i}:example.org'")).collect();
        let many = parse(&format!("{MINIMAL}policy:\n  lists: [{}]\n", many.join(", ")), &[]).unwrap();
        assert!(check(&many).iter().any(|p| p.starts_with("policy.lists: at most")), "{:?}", check(&many));
        assert!(parse(&format!("{MINIMAL}policy:\n  list: []\n"), &[]).is_err(), "unknown keys are refused");
    }

    #[test]
    fn check_lists_every_problem() {
        let text = MINIMAL
            .replace("http://127.0.0.1:8008", "ftp://x")
            .replace("'@.*:example.org'", "'@(unclosed'")
            .replace("server_name: example.org", "server_name: 'bad name!'");
        let c = parse(&text, &[]).unwrap();
        let problems = check(&c);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().any(|p| p.starts_with("homeserver.url")));
        assert!(problems.iter().any(|p| p.starts_with("homeserver.server_name")));
        assert!(problems.iter().any(|p| p.starts_with("appservice.users")));
    }

    #[test]
    fn durations_parse_and_bad_ones_are_named() {
        let d = |s: &str| s.parse::<HumanDuration>().map(|h| h.0.as_secs());
        assert_eq!(d("30s"), Ok(30));
        assert_eq!(d("7d"), Ok(604_800));
        assert_eq!(d("1h30m"), Ok(5400));
        assert_eq!(d("2w"), Ok(1_209_600));
        for bad in ["", "7", "d", "0d", "7x", "-1d", "99999999999999999999w"] {
            assert!(d(bad).is_err(), "{bad}");
        }
        let c = parse(&format!("{MINIMAL}gate:\n  reply_interval: 3d\n"), &[]).unwrap();
        assert_eq!(c.gate.reply_interval.0.as_secs(), 3 * 86_400);
        let err = parse(&format!("{MINIMAL}gate:\n  reply_interval: soon\n"), &[]).unwrap_err().to_string();
        assert!(err.contains("gate.reply_interval") && err.contains("soon"), "{err}");
        let env = parse(MINIMAL, &[("GATEKEEPER__GATE__AUTO_ALLOW_OWNER_STARTED", "false")]).unwrap();
        assert!(!env.gate.auto_allow_owner_started);
    }

    #[test]
    fn email_section_is_optional_checked_and_its_secrets_hidden() {
        assert!(parse(MINIMAL, &[]).unwrap().email.is_none());
        let good = format!(
            "{MINIMAL}email:\n  smtp_url: smtp://user:hunter2@127.0.0.1:2525\n  from: Gatekeeper <gk@example.org>\n  secret: {}\n",
            "k".repeat(40)
        );
        let c = parse(&good, &[]).unwrap();
        assert!(check(&c).is_empty(), "{:?}", check(&c));
        assert!(!format!("{c:?}").contains("hunter2"));
        let bad = "email:\n  smtp_url: http://x\n  from: nobody\n  secret: short\n";
        let c = parse(&format!("{MINIMAL}{bad}"), &[]).unwrap();
        assert_eq!(check(&c).len(), 3, "{:?}", check(&c));
    }

    #[test]
    fn small_body_limit_is_refused() {
        let c = parse(MINIMAL, &[("GATEKEEPER__APPSERVICE__MAX_BODY_BYTES", "1024")]).unwrap();
        assert!(check(&c).iter().any(|p| p.contains("max_body_bytes")));
    }

    #[test]
    fn users_regex_matches_whole_ids_only() {
        let c = parse(MINIMAL, &[]).unwrap();
        let re = c.users_regex().unwrap();
        assert!(re.is_match("@alice:example.org"));
        assert!(!re.is_match("@alice:example.org.evil.com"));
    }

    #[test]
    fn relative_paths_are_taken_from_the_config_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, MINIMAL).unwrap();
        let c = Config::load(&path, Vec::new()).unwrap();
        assert_eq!(c.database.path, Some(dir.path().join("./data")));
        assert_eq!(c.appservice().unwrap().registration, dir.path().join("registration.yaml"));
    }

    /// Every example config shipped in the repository must parse and pass
    /// the check, so the docs cannot drift from the code.
    #[test]
    fn shipped_example_configs_are_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut seen = 0;
        for entry in std::fs::read_dir(root).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with("config") && name.ends_with(".example.yaml") {
                let c = Config::load(&path, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
                assert!(check(&c).is_empty(), "{name}: {:?}", check(&c));
                seen += 1;
            }
        }
        assert!(seen >= 1, "no config*.example.yaml found");
    }

    /// `database.path` selects sled, `database.url` PostgreSQL, exactly one;
    /// the password comes from the URL, `password` (also from the
    /// environment) or `password_file`, from one place only.
    #[test]
    fn the_database_is_sled_or_postgresql_with_its_password_from_one_place() {
        let base = MINIMAL.replace("database:\n  path: ./data\n", "");
        let with = |db: &str, env: &[(&str, &str)]| parse(&format!("{base}database:\n{db}"), env).unwrap();
        assert_eq!(with("  path: ./data\n", &[]).database.selected(), Ok(Database::Sled("./data".into())));
        let pg = with("  url: postgresql://gk@db.example.org/gk\n", &[]);
        assert!(check(&pg).is_empty(), "{:?}", check(&pg));
        let Ok(Database::Postgres { url, password: None, ca_file: None }) = pg.database.selected() else { panic!() };
        assert_eq!(url.expose(), "postgresql://gk@db.example.org/gk");
        let env = with("  url: postgresql://gk@db/gk\n", &[("GATEKEEPER__DATABASE__PASSWORD", "hunter2")]);
        let Ok(Database::Postgres { password: Some(p), .. }) = env.database.selected() else { panic!() };
        assert_eq!(p.expose(), "hunter2");
        assert!(!format!("{:?}", env.database).contains("hunter2"), "the password stays out of debug output");

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\nignored\n").unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, format!("{base}database:\n  url: postgresql://gk@db/gk\n  password_file: pw\n")).unwrap();
        let c = Config::load(&path, Vec::new()).unwrap();
        let Ok(Database::Postgres { password: Some(p), .. }) = c.database.selected() else { panic!() };
        assert_eq!(p.expose(), "s3cret");

        for (db, problem) in [
            ("  path: ./data\n  url: postgresql://gk@db/gk\n", "not both"),
            ("  cache_capacity_mb: 8\n", "set path"),
            ("  url: mysql://gk@db/gk\n", "not a PostgreSQL URL"),
            ("  url: postgresql://gk:pw@db/gk\n  password: other\n", "has a password already"),
            ("  url: postgresql://gk@db/gk\n  password: a\n  password_file: /nonexistent\n", "not both"),
            ("  url: postgresql://gk@db/gk\n  password_file: /nonexistent/pw\n", "reading /nonexistent/pw"),
            ("  url: postgresql://gk@db/gk\n  ca_file: ca.pem\n", "only used with TLS"),
            ("  path: ./data\n  password: x\n", "are for url"),
        ] {
            let problems = check(&with(db, &[]));
            assert!(problems.iter().any(|p| p.contains(problem)), "{db}: {problems:?}");
            assert!(problems.iter().all(|p| !p.contains("pw@")), "{problems:?}");
        }
    }
}
