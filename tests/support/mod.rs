//! The integration-test harness: a real Synapse (installed from PyPI into a
//! cached venv on first use), the real `gatekeeper` binary, and a small
//! Matrix client to play people with. Everything listens on 127.0.0.1 and is
//! stopped by PID.

#![allow(dead_code)]

pub mod browser;
pub mod exactly_once;
pub mod failover;
pub mod faults;
pub mod gate;
pub mod install;
pub mod matrix;
pub mod ports;
pub mod postgres;
pub mod push;
pub mod rng;
pub mod smtp;
pub mod strace;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use matrix::Client;
#[allow(unused_imports)]
pub use push::PushGateway;

pub const SYNAPSE_VERSION: &str = "1.163.2";
pub const SERVER_NAME: &str = "localhost";
const SHARED_SECRET: &str = "gatekeeper-tests-shared-secret";

pub use ports::free_port;

/// Wall-clock time of day, to line test steps up with process logs.
pub fn wall() -> String {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() % 86_400_000;
    format!("{:02}:{:02}:{:02}.{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
}

/// Polls `f` until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            if std::env::var_os("GK_TEST_TIMING").is_some() {
                eprintln!("[{:>6.1?}] {what} (at {})", start.elapsed(), wall());
            }
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The end of a log file, for a failure message.
pub fn tail_of(path: &Path, chars: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("(unreadable: {e})"));
    let skip = text.chars().count().saturating_sub(chars);
    text.chars().skip(skip).collect()
}

/// The tails of `logs`, each under its name.
pub fn tails(logs: &[PathBuf]) -> String {
    logs.iter().map(|log| format!("--- {} (tail) ---\n{}\n", log.display(), tail_of(log, 4000))).collect()
}

/// A server the harness started that ended before it served.
#[derive(Debug)]
pub struct Exited {
    pub status: std::process::ExitStatus,
    /// The tails of its logs.
    pub logs: String,
}

/// Waits until `serving` says the server `child` answers. A server that
/// ends first is reported at once, with its logs, instead of being waited
/// for until `timeout` (a server that could not bind its port says so in
/// the first second); one still not serving after `timeout` panics with
/// its logs.
pub async fn wait_until_serving<F, Fut>(
    what: &str,
    child: &mut Child,
    logs: &[PathBuf],
    timeout: Duration,
    mut serving: F,
) -> Result<(), Exited>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Err(Exited { status, logs: tails(logs) });
        }
        if serving().await {
            if std::env::var_os("GK_TEST_TIMING").is_some() {
                eprintln!("[{:>6.1?}] {what} (at {})", start.elapsed(), wall());
            }
            return Ok(());
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for: {what}\n{}", tails(logs));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How the process `pid`, a child of this one, ended, if it has; without
/// reaping it, so that its `Child` still reports its status.
pub fn ended_without_reaping(pid: u32) -> Option<String> {
    // SAFETY: `info` is a plain C struct that waitid fills in; WNOWAIT
    // leaves the child to be reaped by whoever holds its `Child`.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        if libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) != 0 || info.si_pid() == 0 {
            return None;
        }
        Some(match info.si_code {
            libc::CLD_EXITED => format!("exit code {}", info.si_status()),
            _ => format!("signal {}", info.si_status()),
        })
    }
}

fn target_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp for integration tests; the demo
    // (an example) runs from the repository root.
    match option_env!("CARGO_TARGET_TMPDIR") {
        Some(tmp) => PathBuf::from(tmp).parent().unwrap().to_path_buf(),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
    }
}

/// The venv with Synapse, created on first use and reused afterwards.
pub fn synapse_venv() -> PathBuf {
    let venv = target_dir().join(format!("synapse-venv-{SYNAPSE_VERSION}"));
    let done = venv.join(".installed");
    install::ensure_installed(
        &format!("Synapse {SYNAPSE_VERSION} into {}", venv.display()),
        || done.exists().then(|| venv.clone()),
        || {
            // A venv half made by an interrupted run is made again.
            let _ = std::fs::remove_dir_all(&venv);
            install::run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
            install::run(
                Command::new(venv.join("bin/python"))
                    .args(["-m", "pip"])
                    .args(["install", "--quiet", "--disable-pip-version-check"])
                    .arg(format!("matrix-synapse=={SYNAPSE_VERSION}")),
            )?;
            std::fs::write(&done, SYNAPSE_VERSION).map_err(|e| format!("writing {}: {e}", done.display()))
        },
    )
}

pub struct Synapse {
    pub url: String,
    pub dir: PathBuf,
    /// Ports a start found taken ("Address already in use") and moved on
    /// from, in order: empty when the first one served.
    pub busy_ports: Vec<u16>,
    child: Option<Child>,
}

/// Starts Synapse makes before giving up on finding a port nobody holds.
const SYNAPSE_STARTS: usize = 5;

impl Synapse {
    /// Starts a fresh Synapse in `dir` that knows the given appservice
    /// registrations and may push to loopback.
    pub async fn start(dir: &Path, registrations: &[&Path]) -> Synapse {
        Self::start_with(dir, registrations, "").await
    }

    /// [`Self::start`] with more configuration: `extra` is YAML added to
    /// the end of `homeserver.yaml` (`experimental_features: …`).
    pub async fn start_with(dir: &Path, registrations: &[&Path], extra: &str) -> Synapse {
        Self::start_on(dir, registrations, extra, free_port()).await
    }

    /// [`Self::start_with`] trying `first_port` first. A port that turns
    /// out taken when Synapse binds it (see [`ports`]: another process may
    /// have started a server on it since it was chosen) is not a failure of
    /// the test: Synapse is started again on another one.
    pub async fn start_on(dir: &Path, registrations: &[&Path], extra: &str, first_port: u16) -> Synapse {
        let venv = synapse_venv();
        std::fs::create_dir_all(dir).unwrap();
        let d = dir.display();
        std::fs::write(
            dir.join("log.yaml"),
            format!(
                "version: 1\nformatters:\n  f:\n    format: '%(asctime)s %(levelname)s %(name)s %(message)s'\n\
                 handlers:\n  file:\n    class: logging.FileHandler\n    filename: \"{d}/homeserver.log\"\n    formatter: f\n\
                 root:\n  level: INFO\n  handlers: [file]\ndisable_existing_loggers: false\n"
            ),
        )
        .unwrap();
        let mut port = first_port;
        Self::write_config(dir, registrations, extra, port);
        let python = venv.join("bin/python");
        let status = Command::new(&python)
            .args(["-m", "synapse.app.homeserver", "--config-path"])
            .arg(dir.join("homeserver.yaml"))
            .arg("--generate-keys")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "synapse --generate-keys failed");
        let logs = [dir.join("homeserver.log"), dir.join("stdout.log")];
        let mut busy_ports = Vec::new();
        loop {
            let out = File::create(&logs[1]).unwrap();
            let child = Command::new(&python)
                .args(["-m", "synapse.app.homeserver", "--config-path"])
                .arg(dir.join("homeserver.yaml"))
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap();
            let url = format!("http://127.0.0.1:{port}");
            // Held by the value from here on, so that a failed wait stops it.
            let mut synapse =
                Synapse { url: url.clone(), dir: dir.to_owned(), busy_ports: Vec::new(), child: Some(child) };
            let http = reqwest::Client::new();
            let versions = format!("{url}/_matrix/client/versions");
            // Its own log line first: on a port taken by another test's
            // Synapse, that one would answer /versions.
            let listening = format!("Synapse now listening on TCP port {port}\n");
            let homeserver_log = logs[0].clone();
            let served = wait_until_serving(
                "Synapse to answer /versions",
                synapse.child.as_mut().unwrap(),
                &logs,
                Duration::from_secs(60),
                || {
                    let (http, versions) = (http.clone(), versions.clone());
                    let ours = std::fs::read_to_string(&homeserver_log).unwrap_or_default().contains(&listening);
                    async move {
                        ours && http.get(&versions).send().await.ok().is_some_and(|r| r.status().is_success())
                    }
                },
            )
            .await;
            match served {
                Ok(()) => {
                    synapse.busy_ports = busy_ports;
                    return synapse;
                }
                Err(exited) => {
                    synapse.child = None;
                    let taken = exited.logs.contains("Address already in use");
                    assert!(
                        taken && busy_ports.len() + 1 < SYNAPSE_STARTS,
                        "Synapse exited before it served ({}, port {port}{}):\n{}",
                        exited.status,
                        if taken { format!(", after ports {busy_ports:?} were taken too") } else { String::new() },
                        exited.logs
                    );
                    // This start's logs stay, under the port's name.
                    for log in &logs {
                        let _ = std::fs::rename(log, log.with_extension(format!("{port}-taken.log")));
                    }
                    busy_ports.push(port);
                    port = free_port();
                    Self::write_config(dir, registrations, extra, port);
                }
            }
        }
    }

    fn write_config(dir: &Path, registrations: &[&Path], extra: &str, port: u16) {
        let d = dir.display();
        let regs: Vec<String> = registrations.iter().map(|r| format!("\"{}\"", r.display())).collect();
        let rc = "{per_second: 1000, burst_count: 1000}";
        let config = format!(
            r#"server_name: "{SERVER_NAME}"
pid_file: "{d}/homeserver.pid"
listeners:
  - port: {port}
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: "{d}/homeserver.db"
log_config: "{d}/log.yaml"
media_store_path: "{d}/media"
signing_key_path: "{d}/signing.key"
trusted_key_servers: []
suppress_key_server_warning: true
report_stats: false
enable_registration: false
registration_shared_secret: "{SHARED_SECRET}"
macaroon_secret_key: "tests-macaroon"
form_secret: "tests-form"
presence:
  enabled: false
app_service_config_files: [{regs}]
ip_range_whitelist: ["127.0.0.0/8"]
# Test passwords need no strong hashing; registrations stay fast.
bcrypt_rounds: 4
rc_message: {rc}
rc_registration: {rc}
rc_login:
  address: {rc}
  account: {rc}
  failed_attempts: {rc}
rc_joins:
  local: {rc}
  remote: {rc}
rc_joins_per_room: {rc}
rc_invites:
  per_room: {rc}
  per_user: {rc}
  per_issuer: {rc}
rc_room_creation: {rc}
rc_3pid_validation: {rc}
rc_admin_redaction: {rc}
rc_presence:
  per_user: {rc}
rc_delayed_event_mgmt: {rc}
rc_reports: {rc}
rc_user_directory: {rc}
rc_profile: {rc}
{extra}
"#,
            regs = regs.join(", ")
        );
        std::fs::write(dir.join("homeserver.yaml"), config).unwrap();
    }

    /// Registers a user through the shared-secret admin API and returns a
    /// logged-in client for it.
    pub fn password(localpart: &str) -> String {
        format!("pw-{localpart}")
    }

    pub async fn register(&self, localpart: &str) -> Client {
        self.register_as(localpart, false).await
    }

    /// A server admin: for reading Synapse's admin API.
    pub async fn register_admin(&self, localpart: &str) -> Client {
        self.register_as(localpart, true).await
    }

    async fn register_as(&self, localpart: &str, admin: bool) -> Client {
        use hmac::{Hmac, Mac};
        let http = reqwest::Client::new();
        let url = format!("{}/_synapse/admin/v1/register", self.url);
        let nonce: serde_json::Value =
            serde_json::from_slice(&http.get(&url).send().await.unwrap().bytes().await.unwrap()).unwrap();
        let nonce = nonce["nonce"].as_str().unwrap().to_owned();
        let password = Self::password(localpart);
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(SHARED_SECRET.as_bytes()).unwrap();
        let role = if admin { "admin" } else { "notadmin" };
        for (i, part) in [nonce.as_str(), localpart, password.as_str(), role].iter().enumerate() {
            if i > 0 {
                mac.update(b"\x00");
            }
            mac.update(part.as_bytes());
        }
        let digest: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let body = serde_json::json!({
            "nonce": nonce, "username": localpart, "password": password, "admin": admin, "mac": digest,
        });
        let resp = http.post(&url).body(body.to_string()).send().await.unwrap();
        let status = resp.status();
        let v: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        assert!(status.is_success(), "registering {localpart}: {v}");
        Client::new(&self.url, v["user_id"].as_str().unwrap(), v["access_token"].as_str().unwrap())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("homeserver.log")).unwrap_or_default()
    }
}

impl Synapse {
    /// Stops the homeserver (for tests of what Gatekeeper does without it).
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_by_pid(child, Duration::from_secs(10));
        }
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // What it did about its appservices: a transaction it could not
            // send, a recovery, one it never sent.
            let log = self.log();
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("appservice") || l.contains("AS ID") || l.contains("recover"))
                .collect();
            let last = &lines[lines.len().saturating_sub(40)..];
            eprintln!("--- synapse's log on appservices, last {} lines ---\n{}", last.len(), last.join("\n"));
        }
        if let Some(child) = self.child.take() {
            stop_by_pid(child, Duration::from_secs(10));
        }
    }
}

/// SIGTERM, then SIGKILL if the process has not ended within `grace`.
pub fn stop_by_pid(mut child: Child, grace: Duration) {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            if std::env::var_os("GK_TEST_TIMING").is_some() {
                eprintln!("[{:>6.1?}] process {} stopped", start.elapsed(), child.id());
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("process {} did not stop within {grace:?} of SIGTERM; killed", child.id());
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs a scenario `async fn name(mode: Mode)` once per connector, as the
/// tests `name::appservice` and `name::client`.
#[macro_export]
macro_rules! both_modes {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test]
            async fn appservice() {
                super::$scenario($crate::support::Mode::Appservice).await
            }
            #[tokio::test]
            async fn client() {
                super::$scenario($crate::support::Mode::Client).await
            }
        }
    };
    // A scenario `async fn name(mode: Mode, backend: Backend)`: in both
    // modes on sled, and again in both on PostgreSQL, as `name::appservice`,
    // `name::client`, `name::appservice_on_postgres`, `name::client_on_postgres`.
    ($scenario:ident, and_on_postgres) => {
        mod $scenario {
            use $crate::support::{Backend, Mode};
            #[tokio::test]
            async fn appservice() {
                super::$scenario(Mode::Appservice, Backend::Sled).await
            }
            #[tokio::test]
            async fn client() {
                super::$scenario(Mode::Client, Backend::Sled).await
            }
            #[tokio::test]
            async fn appservice_on_postgres() {
                super::$scenario(Mode::Appservice, Backend::Postgres).await
            }
            #[tokio::test]
            async fn client_on_postgres() {
                super::$scenario(Mode::Client, Backend::Postgres).await
            }
        }
    };
}

/// Where a scenario's Gatekeeper keeps its own store. Client mode's
/// matrix-sdk store (crypto, sync state) stays its SQLite directory on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `database.path`: the embedded default every scenario runs on.
    Sled,
    /// `database.url`: a fresh database of its own on the test process's
    /// PostgreSQL ([`postgres::Postgres::shared`]).
    Postgres,
}

/// How Gatekeeper is deployed in a scenario: one suite, two connectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// On the homeserver; owners opt in by inviting the bot.
    Appservice,
    /// A device of the owner's own account (the owner is always `alice`).
    Client,
}

/// The owner a client-mode Gatekeeper is set up for.
pub const CLIENT_OWNER: &str = "alice";

/// A Gatekeeper deployment under test: its directory, config and process.
pub struct Gatekeeper {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub registration: PathBuf,
    pub url: String,
    pub mode: Mode,
    /// Runs log at the configured level (no `RUST_LOG`), as an operator's would.
    pub default_log_level: bool,
    child: Option<Child>,
    runs: u32,
    /// Started under strace: the child is strace, Gatekeeper its child.
    traced: bool,
}

/// The homeserver URL written before the homeserver exists (it needs our
/// registration first).
pub const PLACEHOLDER_HS: &str = "http://127.0.0.1:1";

pub fn gatekeeper_bin() -> PathBuf {
    // A benchmark may point at a release build.
    if let Some(bin) = std::env::var_os("GK_BIN") {
        return PathBuf::from(bin);
    }
    match option_env!("CARGO_BIN_EXE_gatekeeper") {
        Some(bin) => PathBuf::from(bin),
        None => target_dir().join("debug/gatekeeper"),
    }
}

impl Gatekeeper {
    /// Writes a config for a homeserver at `hs_url` (which may not exist yet)
    /// and a registration made by `gatekeeper generate-registration`.
    pub fn prepare(dir: &Path, hs_url: &str, users: &str) -> Gatekeeper {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let config = dir.join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "homeserver:\n  url: {hs_url}\n  server_name: {SERVER_NAME}\n\
                 appservice:\n  listen: 127.0.0.1:{port}\n  url: {url}\n  users: '{users}'\n  registration: registration.yaml\n\
                 database:\n  path: data\n  cache_capacity_mb: 8\n"
            ),
        )
        .unwrap();
        let registration = dir.join("registration.yaml");
        let out = Command::new(gatekeeper_bin())
            .args(["generate-registration", "--config"])
            .arg(&config)
            .arg("--output")
            .arg(&registration)
            .output()
            .unwrap();
        assert!(out.status.success(), "generate-registration: {}", String::from_utf8_lossy(&out.stderr));
        Gatekeeper {
            dir: dir.to_owned(),
            config,
            registration,
            url,
            mode: Mode::Appservice,
            default_log_level: false,
            child: None,
            runs: 0,
            traced: false,
        }
    }

    /// Writes a client-mode config for `@alice` on a homeserver at `hs_url`.
    /// The control room is left unencrypted so that the harness's plain
    /// client can type commands and read answers as the owner.
    pub fn prepare_client(dir: &Path, hs_url: &str) -> Gatekeeper {
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "mode: client\nhomeserver:\n  url: {hs_url}\n\
                 client:\n  user_id: '@{CLIENT_OWNER}:{SERVER_NAME}'\n  store: client\n  encrypt_control_room: false\n\
                 database:\n  path: data\n  cache_capacity_mb: 8\n"
            ),
        )
        .unwrap();
        let registration = dir.join("no-registration-in-client-mode");
        Gatekeeper {
            dir: dir.to_owned(),
            config,
            registration,
            url: String::new(),
            mode: Mode::Client,
            default_log_level: false,
            child: None,
            runs: 0,
            traced: false,
        }
    }

    /// Moves the store from sled to a fresh, empty PostgreSQL database of
    /// its own (`database.url`) on the test process's cluster, before the
    /// first start. The URL.
    pub fn use_postgres(&self) -> String {
        let url = postgres::Postgres::shared().create_database();
        let text = std::fs::read_to_string(&self.config).unwrap();
        let sled = "database:\n  path: data\n  cache_capacity_mb: 8\n";
        assert!(text.contains(sled), "the harness's sled section is not in the config:\n{text}");
        std::fs::write(&self.config, text.replacen(sled, &format!("database:\n  url: {url}\n"), 1)).unwrap();
        url
    }

    /// `gatekeeper login` with `password` from the environment: its output.
    pub fn login_with(&self, password: &str) -> std::process::Output {
        Command::new(gatekeeper_bin())
            .args(["login", "--config"])
            .arg(&self.config)
            .env("GATEKEEPER_PASSWORD", password)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    }

    /// `gatekeeper login` with the owner's password from the environment.
    pub fn login(&self) {
        let out = self.login_with(&Synapse::password(CLIENT_OWNER));
        assert!(
            out.status.success(),
            "login: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn logged_in(&self) -> bool {
        self.dir.join("client/session.json").exists()
    }

    /// `gatekeeper logout`; its output.
    pub fn logout(&self) -> String {
        let out = Command::new(gatekeeper_bin()).args(["logout", "--config"]).arg(&self.config).output().unwrap();
        assert!(out.status.success(), "logout: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The log line that says a start is complete, per mode.
    pub fn ready_line(&self) -> &'static str {
        match self.mode {
            Mode::Appservice => "homeserver ping ok",
            Mode::Client => "Gatekeeper is guarding this account",
        }
    }

    /// Adds YAML to the end of the config (a section the harness leaves out).
    pub fn append_config(&self, yaml: &str) {
        let mut text = std::fs::read_to_string(&self.config).unwrap();
        text.push_str(yaml);
        std::fs::write(&self.config, text).unwrap();
    }

    /// Points an already configured Gatekeeper at another URL for its own
    /// calls (a proxy in front of the homeserver).
    pub fn redirect_homeserver(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        std::fs::write(&self.config, text.replacen(&format!("url: {from}\n"), &format!("url: {to}\n"), 1)).unwrap();
    }

    /// Makes the homeserver call Gatekeeper at `url` (a proxy in front of
    /// the appservice API) instead of directly: in the registration and in
    /// `appservice.url`, which must agree. Before the homeserver starts.
    pub fn route_appservice_through(&mut self, url: &str) {
        let config = std::fs::read_to_string(&self.config).unwrap();
        let config = config.replacen(&format!("url: {}\n", self.url), &format!("url: {url}\n"), 1);
        std::fs::write(&self.config, config).unwrap();
        let registration = std::fs::read_to_string(&self.registration).unwrap();
        assert!(registration.contains(&self.url), "{registration}");
        std::fs::write(&self.registration, registration.replace(&self.url, url)).unwrap();
    }

    /// Adds `line` (`key: value`) to the config's `appservice` section.
    pub fn set_appservice_option(&self, line: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let anchor = "  registration: registration.yaml\n";
        assert!(text.contains(anchor), "{text}");
        std::fs::write(&self.config, text.replacen(anchor, &format!("{anchor}  {line}\n"), 1)).unwrap();
    }

    /// Points the config at the homeserver once its URL is known.
    pub fn set_homeserver(&self, hs_url: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let text = text.replacen(&format!("url: {PLACEHOLDER_HS}\n"), &format!("url: {hs_url}\n"), 1);
        std::fs::write(&self.config, text).unwrap();
    }

    pub fn start(&mut self, extra_args: &[&str]) {
        if self.default_log_level {
            let mut command = self.command(extra_args, "");
            command.env_remove("RUST_LOG");
            return self.spawn(command);
        }
        self.start_with_log_filter(extra_args, "gatekeeper=debug,info");
    }

    pub fn start_with_log_filter(&mut self, extra_args: &[&str], filter: &str) {
        let command = self.command(extra_args, filter);
        self.spawn(command);
    }

    /// Starts Gatekeeper with every file it writes limited to `bytes`
    /// (`RLIMIT_FSIZE`), so that its database meets a full disk: a write
    /// past the limit fails with EFBIG (SIGXFSZ is ignored, as it would
    /// otherwise kill the process instead).
    pub fn start_with_file_size_limit(&mut self, bytes: u64) {
        use std::os::unix::process::CommandExt;
        let mut command = self.command(&[], "info");
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(move || {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let limit = libc::rlimit { rlim_cur: bytes, rlim_max: libc::RLIM_INFINITY };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self.spawn(command);
    }

    /// Starts Gatekeeper under `strace -f -y`, tracing `syscalls` into
    /// `trace`. [`Gatekeeper::traced_pid`] is Gatekeeper's own process.
    pub fn start_traced(&mut self, strace: &Path, trace: &Path, syscalls: &str) {
        let inner = self.command(&[], "gatekeeper=debug,info");
        let mut command = Command::new(strace);
        command.args(["-f", "-y", "-s", "128", "-e", &format!("trace={syscalls}"), "-o"]).arg(trace).arg("--");
        command.arg(inner.get_program()).args(inner.get_args());
        for (key, value) in inner.get_envs() {
            match value {
                Some(v) => command.env(key, v),
                None => command.env_remove(key),
            };
        }
        self.spawn(command);
        self.traced = true;
    }

    /// The process strace started (see [`Gatekeeper::start_traced`]).
    pub fn traced_pid(&self) -> Option<u32> {
        if !self.traced {
            return None;
        }
        let pid = self.pid()?;
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        children.split_whitespace().next()?.parse().ok()
    }

    fn command(&self, extra_args: &[&str], filter: &str) -> Command {
        let mut command = Command::new(gatekeeper_bin());
        command
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .args(extra_args)
            .env("RUST_LOG", filter)
            .env("NO_COLOR", "1");
        command
    }

    fn spawn(&mut self, mut command: Command) {
        assert!(self.child.is_none(), "already running");
        self.traced = false;
        self.runs += 1;
        let log = File::create(self.dir.join(format!("gatekeeper-{}.log", self.runs))).unwrap();
        let child = command.stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap();
        self.child = Some(child);
    }

    /// The log of the current (or last) run.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("gatekeeper-{}.log", self.runs))).unwrap_or_default()
    }

    /// The path of the current (or last) run's log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("gatekeeper-{}.log", self.runs))
    }

    /// Waits for `needle` in the current run's log. A process that ends
    /// without having written it (it could not bind its port, its config
    /// is refused) fails the wait at once, with its log, rather than after
    /// `timeout`.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            // Read again after the end is seen: the log is complete then.
            if let Some(ended) = self.pid().and_then(ended_without_reaping)
                && !self.log().contains(needle)
            {
                panic!(
                    "gatekeeper ended ({ended}) without logging {needle:?}; log tail:\n{}",
                    tail_of(&self.log_path(), 4000)
                );
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for gatekeeper log line {needle:?}; log tail:\n{}",
                    tail_of(&self.log_path(), 4000)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for the process to end by itself; its exit status.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().expect("not running").try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(start.elapsed() < timeout, "gatekeeper still running after {timeout:?}; log:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The exit status, if the process has ended by itself.
    pub fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut().expect("not running").try_wait().unwrap()?;
        self.child = None;
        Some(status)
    }

    /// The running process's ID.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The process's peak resident memory so far, in KiB (Linux).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()
    }

    /// Whether the kernel gives the process transparent huge pages (Linux).
    pub fn huge_pages(&self) -> Option<bool> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        Some(status.lines().find_map(|l| l.strip_prefix("THP_enabled:"))?.trim() != "0")
    }

    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("not running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    pub fn stop(&mut self) {
        if std::env::var_os("GK_TEST_TIMING").is_some() {
            eprintln!("--- gatekeeper log ---\n{}", self.log());
        }
        self.stop_traced();
        let child = self.child.take().expect("not running");
        stop_by_pid(child, Duration::from_secs(15));
    }

    /// Gatekeeper under strace stops first (strace would only detach from it).
    fn stop_traced(&mut self) {
        if let Some(pid) = self.traced_pid() {
            let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
            let start = Instant::now();
            while std::path::Path::new(&format!("/proc/{pid}")).exists() && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// `gatekeeper inspect` (the process must be stopped).
    pub fn inspect(&self) -> serde_json::Value {
        let out = Command::new(gatekeeper_bin()).arg("inspect").arg("--config").arg(&self.config).output().unwrap();
        assert!(out.status.success(), "inspect: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn hs_token(&self) -> String {
        token_from(&self.registration, "hs_token")
    }

    pub fn as_token(&self) -> String {
        token_from(&self.registration, "as_token")
    }
}

fn token_from(registration: &Path, key: &str) -> String {
    let text = std::fs::read_to_string(registration).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_owned())
        .unwrap_or_else(|| panic!("{key} not in registration"))
}

impl Drop for Gatekeeper {
    fn drop(&mut self) {
        if std::thread::panicking() && self.runs > 0 {
            // The failing test's output then says what Gatekeeper did.
            eprintln!("--- end of gatekeeper's log (run {}) ---\n{}", self.runs, tail_of(&self.log_path(), 6000));
        }
        self.stop_traced();
        if let Some(child) = self.child.take() {
            stop_by_pid(child, Duration::from_secs(5));
        }
    }
}

/// A Synapse and a Gatekeeper registered with it, in one temp directory.
/// Every file or directory under `dir` that users other than its owner may
/// read, with its mode.
pub fn open_to_others(dir: &Path) -> Vec<(PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut open = Vec::new();
    let meta = std::fs::symlink_metadata(dir).unwrap();
    if meta.permissions().mode() & 0o077 != 0 {
        open.push((dir.to_owned(), meta.permissions().mode() & 0o777));
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if !std::fs::symlink_metadata(&path).unwrap().file_type().is_symlink() {
                open.extend(open_to_others(&path));
            }
        }
    }
    open
}

pub struct World {
    // Dropped in this order: processes stop before their directory goes.
    pub gatekeeper: Gatekeeper,
    pub synapse: Synapse,
    pub tmp: tempfile::TempDir,
}

impl World {
    pub async fn new(users: &str) -> World {
        Self::new_in(tempfile::tempdir().unwrap(), users).await
    }

    /// A Synapse and Gatekeeper deployed in `mode`; client mode guards `alice`.
    pub async fn with_mode(mode: Mode, users: &str) -> World {
        Self::with_mode_and(mode, users, "").await
    }

    /// [`Self::with_mode`] with Gatekeeper's own store on `backend`.
    pub async fn with_mode_on(mode: Mode, backend: Backend, users: &str) -> World {
        let w = Self::with_mode(mode, users).await;
        if backend == Backend::Postgres {
            w.gatekeeper.use_postgres();
        }
        w
    }

    /// [`Self::with_mode`] with more Synapse configuration (YAML).
    pub async fn with_mode_and(mode: Mode, users: &str, synapse_extra: &str) -> World {
        match mode {
            Mode::Appservice => {
                let tmp = tempfile::tempdir().unwrap();
                let gatekeeper = Gatekeeper::prepare(&tmp.path().join("gatekeeper"), PLACEHOLDER_HS, users);
                let dir = tmp.path().join("synapse");
                let synapse = Synapse::start_with(&dir, &[&gatekeeper.registration], synapse_extra).await;
                gatekeeper.set_homeserver(&synapse.url);
                World { gatekeeper, synapse, tmp }
            }
            Mode::Client => {
                let tmp = tempfile::tempdir().unwrap();
                let synapse = Synapse::start_with(&tmp.path().join("synapse"), &[], synapse_extra).await;
                let gatekeeper = Gatekeeper::prepare_client(&tmp.path().join("gatekeeper"), &synapse.url);
                World { gatekeeper, synapse, tmp }
            }
        }
    }

    /// Who Gatekeeper's notices come from: the bot, or in client mode the
    /// owner's own account.
    pub fn voice(&self, owner: &str) -> String {
        match self.gatekeeper.mode {
            Mode::Appservice => self.bot(),
            Mode::Client => owner.to_owned(),
        }
    }

    pub async fn new_in(tmp: tempfile::TempDir, users: &str) -> World {
        let gatekeeper = Gatekeeper::prepare(&tmp.path().join("gatekeeper"), PLACEHOLDER_HS, users);
        let synapse = Synapse::start(&tmp.path().join("synapse"), &[&gatekeeper.registration]).await;
        gatekeeper.set_homeserver(&synapse.url);
        World { gatekeeper, synapse, tmp }
    }

    pub fn bot(&self) -> String {
        format!("@gatekeeper:{SERVER_NAME}")
    }
}
