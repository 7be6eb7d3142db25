//! Client mode's session: logging in as a dedicated device of the owner's
//! account, keeping that session on disk, restoring it at start, and
//! logging out (which removes the device).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use matrix_sdk::authentication::matrix::MatrixSession;
use matrix_sdk::{Client, SessionMeta, SessionTokens};
use ruma::api::client::account::whoami;
use ruma::{OwnedDeviceId, OwnedUserId};
use serde::{Deserialize, Serialize};

use crate::config::{ClientConfig, Config};
use crate::matrix::HsClient;
use crate::secret::Secret;

/// How `login` proves who the owner is.
pub enum Credentials {
    Password(Secret),
    /// A token of a device nobody else uses (its keys become Gatekeeper's).
    AccessToken(Secret),
}

/// What is kept between runs, next to matrix-sdk's own store.
#[derive(Serialize, Deserialize)]
#[serde(tag = "v")]
enum SessionFile {
    #[serde(rename = "1")]
    V1 {
        homeserver: String,
        user_id: OwnedUserId,
        device_id: OwnedDeviceId,
        access_token: Secret,
        /// Encrypts matrix-sdk's store (keys, room state) at rest.
        store_passphrase: Secret,
    },
}

/// A restored session: the SDK client, signed in as Gatekeeper's device.
pub struct Session {
    pub sdk: Client,
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub access_token: Secret,
}

fn session_path(client: &ClientConfig) -> PathBuf {
    client.store.join("session.json")
}

fn sdk_path(client: &ClientConfig) -> PathBuf {
    client.store.join("sdk")
}

fn fresh_passphrase() -> anyhow::Result<Secret> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness available: {e}"))?;
    Ok(Secret::new(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

/// matrix-sdk's store, in `client.store` (which also holds the session
/// file). SQLite makes its files with the process umask, so the whole
/// directory is made readable by Gatekeeper's user only once it is open.
async fn sdk_client(homeserver: &str, client: &ClientConfig, passphrase: &Secret) -> anyhow::Result<Client> {
    let store = sdk_path(client);
    let sdk = Client::builder()
        .homeserver_url(homeserver)
        .sqlite_store(&store, Some(passphrase.expose()))
        .build()
        .await
        .with_context(|| format!("opening matrix-sdk's store at {}", store.display()))?;
    crate::store::private::make_private(&client.store)
        .with_context(|| format!("making {} private", client.store.display()))?;
    Ok(sdk)
}

/// Written whole to a temporary file, then renamed: a crash leaves the old
/// file or the new one, never half of one. Readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn create_private_dir(path: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path).with_context(|| format!("creating {}", path.display()))
}

/// Signs in as a new device named `client.device_name` and keeps the session.
///
/// A login that fails leaves nothing behind that could block the next one:
/// matrix-sdk's store is encrypted with a passphrase that is kept only in
/// the session file, so a store without a session file (a failed login, or
/// one that crashed before the session was written) can never be opened
/// again. Such a store is removed, before the login and after a failed
/// one. A store with a session file is never touched: `login` refuses to
/// run while one exists.
pub async fn login(config: &Config, credentials: Credentials) -> anyhow::Result<Session> {
    let client_config = config.client()?;
    let path = session_path(client_config);
    if path.exists() {
        bail!("already logged in ({} exists); run `gatekeeper logout` first to replace the device", path.display());
    }
    let wanted: OwnedUserId = client_config.user_id.as_str().try_into().context("client.user_id")?;
    // Before the login: a session must never sit on a half-reset store.
    super::start_over(config)?;
    create_private_dir(&client_config.store)?;
    remove_orphaned_store(client_config)?;
    match sign_in(config, client_config, credentials, wanted, &path).await {
        Ok(session) => Ok(session),
        Err(e) => {
            if !path.exists() {
                remove_orphaned_store(client_config)?;
            }
            Err(e)
        }
    }
}

/// matrix-sdk's store when no session file says how to open it.
fn remove_orphaned_store(client: &ClientConfig) -> anyhow::Result<()> {
    let sdk = sdk_path(client);
    if session_path(client).exists() || !sdk.exists() {
        return Ok(());
    }
    std::fs::remove_dir_all(&sdk).with_context(|| format!("removing {} (left by a failed login)", sdk.display()))
}

async fn sign_in(
    config: &Config,
    client_config: &ClientConfig,
    credentials: Credentials,
    wanted: OwnedUserId,
    path: &Path,
) -> anyhow::Result<Session> {
    let passphrase = fresh_passphrase()?;
    let homeserver = config.homeserver.url.trim_end_matches('/').to_owned();
    let sdk = sdk_client(&homeserver, client_config, &passphrase).await?;
    match credentials {
        Credentials::Password(password) => {
            sdk.matrix_auth()
                .login_username(wanted.as_str(), password.expose())
                .initial_device_display_name(&client_config.device_name)
                .send()
                .await
                .context("logging in")?;
        }
        Credentials::AccessToken(token) => {
            let hs = HsClient::for_user(&homeserver, token.clone())?;
            let who = hs.send(whoami::v3::Request::new(), None).await.context("checking the access token")?;
            let user_id = who.user_id;
            let device_id: OwnedDeviceId =
                who.device_id.context("the access token belongs to no device; log in with a password instead")?;
            let session = MatrixSession {
                meta: SessionMeta { user_id, device_id },
                tokens: SessionTokens { access_token: token.expose().to_owned(), refresh_token: None },
            };
            sdk.restore_session(session).await.context("using the access token")?;
        }
    }
    let Some(session) = sdk.matrix_auth().session() else { bail!("the homeserver gave no session") };
    if session.meta.user_id != wanted {
        bail!("logged in as {}, but client.user_id is {wanted}", session.meta.user_id);
    }
    let file = SessionFile::V1 {
        homeserver,
        user_id: session.meta.user_id.clone(),
        device_id: session.meta.device_id.clone(),
        access_token: Secret::new(session.tokens.access_token.clone()),
        store_passphrase: passphrase,
    };
    write_private(path, &serde_json::to_vec_pretty(&file)?)?;
    if let Err(e) = super::sync::publish_keys(&sdk).await {
        tracing::warn!(error = %e, "the device's keys are not published yet; they will be at its first start");
    }
    Ok(Session {
        sdk,
        user_id: session.meta.user_id,
        device_id: session.meta.device_id,
        access_token: Secret::new(session.tokens.access_token),
    })
}

/// The stored session, signed in again without a new login.
pub async fn restore(config: &Config) -> anyhow::Result<Session> {
    let client_config = config.client()?;
    let path = session_path(client_config);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("not logged in: run `gatekeeper login --config …` first (no {})", path.display())
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let SessionFile::V1 { homeserver, user_id, device_id, access_token, store_passphrase } =
        serde_json::from_slice(&bytes).with_context(|| format!("{} is not a Gatekeeper session", path.display()))?;
    if user_id.as_str() != client_config.user_id {
        bail!("the stored session is for {user_id}, but client.user_id is {}; log out first", client_config.user_id);
    }
    // The configuration says where the homeserver is now (a new proxy or
    // address); the session only remembers where it was made.
    let now = config.homeserver.url.trim_end_matches('/');
    if homeserver != now {
        tracing::info!(logged_in_at = %homeserver, using = %now, "the homeserver URL changed since the login");
    }
    let sdk = sdk_client(now, client_config, &store_passphrase).await?;
    let session = MatrixSession {
        meta: SessionMeta { user_id: user_id.clone(), device_id: device_id.clone() },
        tokens: SessionTokens { access_token: access_token.expose().to_owned(), refresh_token: None },
    };
    sdk.restore_session(session).await.context("restoring the session")?;
    Ok(Session { sdk, user_id, device_id, access_token })
}

/// Ends the session on the homeserver (which deletes the device and its
/// keys), then forgets it here. A session the homeserver already ended
/// (the owner removed the device) is forgotten all the same.
pub async fn logout(config: &Config, session: Session) -> anyhow::Result<()> {
    let client_config = config.client()?;
    match session.sdk.matrix_auth().logout().await {
        Ok(_) => {}
        Err(e) if matches!(e.client_api_error_kind(), Some(ruma::api::error::ErrorKind::UnknownToken(_))) => {}
        Err(e) => return Err(e).context("logging out"),
    }
    drop(session);
    std::fs::remove_file(session_path(client_config)).context("removing the session file")?;
    let sdk = sdk_path(client_config);
    if sdk.exists() {
        std::fs::remove_dir_all(&sdk).with_context(|| format!("removing {}", sdk.display()))?;
    }
    Ok(())
}
