//! The `gatekeeper` command line: the binary's edge, where errors become
//! messages and exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use gatekeeper::config::{self, Config};
use gatekeeper::registration::Registration;

// BENCHMARKS.md: with glibc's allocator a third of a batch's processing time
// went to malloc's own bookkeeping; mimalloc doubled strangers' throughput.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "gatekeeper", version, about = "Keeps strangers' instant messages from interrupting you on Matrix")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write an appservice registration with fresh tokens for the homeserver.
    GenerateRegistration {
        #[arg(long, short, env = "GATEKEEPER_CONFIG")]
        config: PathBuf,
        /// Where to write it (e.g. registration.yaml).
        #[arg(long, short)]
        output: PathBuf,
        /// Replace an existing file (the homeserver must then get the new one).
        #[arg(long)]
        force: bool,
    },
    /// Client mode: sign in as a new device ("Gatekeeper") of the owner's
    /// account. The password comes from GATEKEEPER_PASSWORD or a prompt; an
    /// existing device's token from GATEKEEPER_ACCESS_TOKEN instead.
    Login {
        #[arg(long, short, env = "GATEKEEPER_CONFIG")]
        config: PathBuf,
    },
    /// Client mode: remove Gatekeeper's push rules from the account, then log
    /// out (which deletes the device and its keys) and forget the session.
    Logout {
        #[arg(long, short, env = "GATEKEEPER_CONFIG")]
        config: PathBuf,
    },
    /// Run Gatekeeper (the appservice, or with `mode: client` the device).
    Run {
        #[arg(long, short, env = "GATEKEEPER_CONFIG")]
        config: PathBuf,
        /// Accept and store transactions, but act on nothing (maintenance).
        #[arg(long)]
        hold_processing: bool,
    },
    /// Validate the configuration and the registration; exit 0 if fine, 1 if not.
    CheckConfig {
        #[arg(long, short, env = "GATEKEEPER_CONFIG")]
        config: PathBuf,
    },
    /// Copy everything from one database into a new, empty one (sled to
    /// PostgreSQL or back), then read the copy back and check it. Gatekeeper
    /// must be stopped on both. A PostgreSQL password comes in the URL or
    /// from GATEKEEPER__DATABASE__PASSWORD.
    Migrate {
        /// The database to copy: a sled directory, or a postgresql:// URL.
        #[arg(long)]
        from: String,
        /// Where to copy it: a postgresql:// URL of an empty database, or a
        /// sled directory that does not exist yet.
        #[arg(long)]
        to: String,
        /// The CA that signed the PostgreSQL server's certificate (for a
        /// URL with sslmode=require), as database.ca_file.
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
    /// Print what the database holds, as JSON (Gatekeeper must be stopped).
    Inspect {
        #[arg(long, short, env = "GATEKEEPER_CONFIG")]
        config: PathBuf,
        /// How many quarantined events and failed effects to list.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

/// The secret `login` signs in with: from the environment, or asked for.
fn credentials(config: &Config) -> anyhow::Result<gatekeeper::client::Credentials> {
    use gatekeeper::client::Credentials;
    use gatekeeper::secret::Secret;
    if let Ok(token) = std::env::var("GATEKEEPER_ACCESS_TOKEN") {
        return Ok(Credentials::AccessToken(Secret::new(token)));
    }
    if let Ok(password) = std::env::var("GATEKEEPER_PASSWORD") {
        return Ok(Credentials::Password(Secret::new(password)));
    }
    let prompt = format!("Password for {}: ", config.client()?.user_id);
    let password = rpassword::prompt_password(prompt).context("reading the password (or set GATEKEEPER_PASSWORD)")?;
    Ok(Credentials::Password(Secret::new(password)))
}

fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    Ok(Config::load(path, std::env::vars())?)
}

fn main() -> ExitCode {
    gatekeeper::allocator::settle();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gatekeeper: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whatever Gatekeeper writes while it runs (the database, matrix-sdk's
/// store, the session) is its user's only: files are created 0600 and
/// directories 0700 whatever umask it was started with. The stores also
/// make themselves private when opened; this covers the files they make
/// later. Not for `generate-registration`: the homeserver, often another
/// user, must read the registration.
fn private_files() {
    // SAFETY: umask only sets the process's file mode mask; no memory is touched.
    unsafe {
        libc::umask(0o077);
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if matches!(
        cli.command,
        Command::Run { .. }
            | Command::Login { .. }
            | Command::Logout { .. }
            | Command::Inspect { .. }
            | Command::Migrate { .. }
    ) {
        private_files();
    }
    match cli.command {
        Command::GenerateRegistration { config, output, force } => {
            let config = load(&config)?;
            let problems = config::check(&config);
            if !problems.is_empty() {
                anyhow::bail!("fix the configuration first:\n  - {}", problems.join("\n  - "));
            }
            Registration::generate(&config)?.write_new(&output, force)?;
            println!(
                "Wrote {}. Give it to the homeserver (Synapse: add it to app_service_config_files and restart), \
                 and point appservice.registration at it.",
                output.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { config: path } => {
            let config = match load(&path) {
                Ok(c) => c,
                Err(e) => {
                    println!("{e:#}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            let mut problems = config::check(&config);
            // Which store, and for PostgreSQL whether it answers.
            match config.database.selected() {
                Ok(config::Database::Sled(path)) => println!("database: sled at {}", path.display()),
                Ok(config::Database::Postgres { url, password, ca_file }) => {
                    let password = password.as_ref().map(|p| p.expose());
                    match gatekeeper::store::PgStore::probe(url.expose(), password, ca_file.as_deref()) {
                        Ok(state) => println!("database: PostgreSQL (database.url), {state}"),
                        Err(e) => problems.push(format!("database.url: PostgreSQL: {e}")),
                    }
                }
                // Listed by the check already.
                Err(_) => {}
            }
            if let Ok(asv) = config.appservice()
                && config.mode == config::Mode::Appservice
            {
                match Registration::load(&asv.registration) {
                    Ok(reg) => problems.extend(reg.mismatches(&config)),
                    Err(e) => problems.push(format!("{e:#} (create it with `gatekeeper generate-registration`)")),
                }
            }
            // Warnings, not problems: a homeserver running as another user
            // may need to read the registration through its group.
            for warning in config::exposed_files(&path, &config) {
                println!("{warning}");
            }
            if let Some(warning) = config::database_in_clear(&config.database) {
                println!("{warning}");
            }
            if problems.is_empty() {
                println!("{}: OK", path.display());
                Ok(ExitCode::SUCCESS)
            } else {
                for p in &problems {
                    println!("{}: {p}", path.display());
                }
                Ok(ExitCode::FAILURE)
            }
        }
        Command::Run { config, hold_processing } => {
            let config = load(&config)?;
            gatekeeper::logging::init(&config.logging);
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(gatekeeper::app::run(config, gatekeeper::app::RunOptions { hold_processing }))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Login { config } => {
            let config = load(&config)?;
            let problems = config::check(&config);
            if !problems.is_empty() {
                anyhow::bail!("fix the configuration first:\n  - {}", problems.join("\n  - "));
            }
            let credentials = credentials(&config)?;
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            // The session is dropped within the runtime: having synced, its
            // store's connection pool needs one to close.
            let _within = runtime.enter();
            let session = runtime.block_on(gatekeeper::client::login(&config, credentials))?;
            println!(
                "Logged in as {} on device {} (\"{}\"). Start it with `gatekeeper run`.\n\
                 To trust it, verify the device from another of your clients (Settings > Sessions).",
                session.user_id,
                session.device_id,
                config.client()?.device_name
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Logout { config } => {
            let config = load(&config)?;
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(async {
                let session = gatekeeper::client::restore(&config).await?;
                let device = session.device_id.clone();
                // The push rules silence the held rooms of whichever
                // Gatekeeper is active: left in place unless it is this one.
                let active = match tokio::task::block_in_place(|| gatekeeper::client::another_is_active(&config)) {
                    Ok(true) => {
                        println!("Another Gatekeeper is active on this account: its push rules stay.");
                        true
                    }
                    Ok(false) => false,
                    Err(e) => {
                        eprintln!(
                            "gatekeeper: could not tell whether another Gatekeeper is active ({e:#}); the push \
                             rules stay (remove the ones starting with gk. in your client once none runs)"
                        );
                        true
                    }
                };
                let removed =
                    if active { Ok(0) } else { gatekeeper::client::remove_push_rules(&config, &session).await };
                match removed {
                    Ok(0) if active => {}
                    Ok(removed) => println!("Removed {removed} push rules."),
                    // The session may be over already (the device was removed).
                    Err(e) => eprintln!(
                        "gatekeeper: could not remove the push rules ({e:#}); remove the ones starting \
                         with gk. in your client's notification settings"
                    ),
                }
                gatekeeper::client::logout(&config, session).await?;
                println!("Logged out; device {device} is gone.");
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { from, to, ca_file } => {
            use gatekeeper::store::copy::{Location, migrate};
            // As database.password: for a URL that carries none.
            let password = std::env::var("GATEKEEPER__DATABASE__PASSWORD").ok().map(gatekeeper::secret::Secret::new);
            let from = Location::parse(&from, password.as_ref(), ca_file.as_deref());
            let to = Location::parse(&to, password.as_ref(), ca_file.as_deref());
            let report = migrate(&from, &to)?;
            println!("{report}");
            println!(
                "Point Gatekeeper's configuration at the copy (database.url or database.path) before starting it; \
                 the original is left as it was."
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect { config, limit } => {
            let config = load(&config)?;
            let store = gatekeeper::store::open(&config.database)?;
            let report = gatekeeper::inspect::report(&*store, limit)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
