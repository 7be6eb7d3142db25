//! The client-server API for both connectors: ruma request types sent with
//! the as_token and identity assertion (`?user_id=`) for the user acted
//! for, or in client mode with the owner's own access token, where the user
//! acted for is always the token's owner.

use std::borrow::Cow;
use std::time::Duration;

use ruma::UserId;
use ruma::api::auth_scheme::SendAccessToken;
use ruma::api::client::discovery::get_supported_versions;
use ruma::api::path_builder::{PathBuilder, SinglePath, VersionHistory};
use ruma::api::{
    AppserviceUserIdentity, IncomingResponse, OutgoingRequest, OutgoingRequestAppserviceExt, SupportedVersions,
};

use crate::pipeline::Shutdown;
use crate::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the homeserver: {0}")]
    Network(String),
    #[error("homeserver answered {status} {errcode}: {message}")]
    Http { status: u16, errcode: String, message: String },
    #[error("unexpected answer from the homeserver: {0}")]
    Protocol(String),
}

impl ClientError {
    /// Whether the same request may succeed later. Token errors count as
    /// temporary: they mean a misconfiguration the operator will fix, and
    /// dropping work because of one would lose it.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Network(_) | ClientError::Protocol(_) => true,
            ClientError::Http { status, errcode, .. } => {
                *status == 429
                    || *status >= 500
                    || matches!(errcode.as_str(), "M_UNKNOWN_TOKEN" | "M_MISSING_TOKEN" | "M_LIMIT_EXCEEDED")
            }
        }
    }

    pub fn errcode(&self) -> Option<&str> {
        match self {
            ClientError::Http { errcode, .. } => Some(errcode),
            _ => None,
        }
    }
}

/// Lets one generic `send` fill in each endpoint family's path input.
pub trait PathInput: PathBuilder {
    fn input(versions: &SupportedVersions) -> Self::Input<'_>;
}

impl PathInput for VersionHistory {
    fn input(versions: &SupportedVersions) -> Self::Input<'_> {
        Cow::Borrowed(versions)
    }
}

impl PathInput for SinglePath {
    fn input(_: &SupportedVersions) {}
}

#[derive(Clone)]
enum Auth {
    /// The as_token, acting for any namespaced user by identity assertion.
    Appservice(Secret),
    /// One user's own access token: `as_user` is ignored.
    User(Secret),
}

#[derive(Clone)]
pub struct HsClient {
    http: reqwest::Client,
    base: String,
    auth: Auth,
    versions: SupportedVersions,
    /// Gatekeeper's own device in client mode: what it sent encrypted in
    /// the owner's name is not the owner speaking.
    own_device: Option<ruma::OwnedDeviceId>,
}

impl HsClient {
    pub fn new(base: &str, as_token: Secret) -> anyhow::Result<Self> {
        Self::with_auth(base, Auth::Appservice(as_token))
    }

    /// Acts as the one user `access_token` belongs to (client mode).
    pub fn for_user(base: &str, access_token: Secret) -> anyhow::Result<Self> {
        Self::with_auth(base, Auth::User(access_token))
    }

    /// This client is Gatekeeper's device `device` of the owner's account.
    pub fn on_device(self, device: ruma::OwnedDeviceId) -> Self {
        Self { own_device: Some(device), ..self }
    }

    pub fn own_device(&self) -> Option<&ruma::DeviceId> {
        self.own_device.as_deref()
    }

    fn with_auth(base: &str, auth: Auth) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // Joins over federation can take a while; anything slower is stuck.
            .timeout(Duration::from_secs(90))
            .user_agent(concat!("gatekeeper/", env!("CARGO_PKG_VERSION")))
            .build()?;
        // Until /versions is read, assume a server of the spec's v1.x era.
        let versions = SupportedVersions::from_parts(&["v1.11".to_owned()], &Default::default());
        Ok(Self { http, base: base.trim_end_matches('/').to_owned(), auth, versions, own_device: None })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Reads `GET /_matrix/client/versions`; also the reachability check.
    pub async fn discover_versions(&mut self) -> Result<Vec<String>, ClientError> {
        // Without a token: a wrong as_token must show up as the ping's
        // advice, not as a homeserver that never seems to come up.
        let response = self
            .send_with(get_supported_versions::Request::new(), SendAccessToken::None, AppserviceUserIdentity::default())
            .await?;
        self.versions = response.as_supported_versions();
        Ok(response.versions)
    }

    /// Waits (with backoff, logging) until `/versions` answers; `false`
    /// when the shutdown came first.
    pub async fn wait_for_homeserver(&mut self, shutdown: &mut Shutdown) -> bool {
        let mut delay = Duration::from_millis(250);
        loop {
            match self.discover_versions().await {
                Ok(v) => {
                    tracing::info!(homeserver = self.base(), versions = ?v.last(), "homeserver reachable");
                    return true;
                }
                Err(e) => {
                    tracing::warn!(homeserver = self.base(), error = %e, retry_in = ?delay, "waiting for the homeserver")
                }
            }
            if shutdown.sleep(delay).await {
                return false;
            }
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }

    /// Sends `request` as `as_user` (the bot when `None`).
    pub async fn send<R>(&self, request: R, as_user: Option<&UserId>) -> Result<R::IncomingResponse, ClientError>
    where
        R: OutgoingRequest + OutgoingRequestAppserviceExt,
        for<'a> R::Authentication: ruma::api::auth_scheme::AuthScheme<Input<'a> = SendAccessToken<'a>>,
        R::PathBuilder: PathInput,
    {
        // `Always`, not `Appservice`/`IfRequired`: the token goes with every
        // request, also where the endpoint may be read without one (profile
        // look-ups), as a homeserver that requires authentication for
        // profiles would otherwise refuse them.
        let (token, identity) = match &self.auth {
            Auth::Appservice(t) => {
                (SendAccessToken::Always(t.expose()), as_user.map(AppserviceUserIdentity::new).unwrap_or_default())
            }
            Auth::User(t) => (SendAccessToken::Always(t.expose()), AppserviceUserIdentity::default()),
        };
        self.send_with(request, token, identity).await
    }

    async fn send_with<R>(
        &self,
        request: R,
        token: SendAccessToken<'_>,
        identity: AppserviceUserIdentity<'_>,
    ) -> Result<R::IncomingResponse, ClientError>
    where
        R: OutgoingRequest + OutgoingRequestAppserviceExt,
        for<'a> R::Authentication: ruma::api::auth_scheme::AuthScheme<Input<'a> = SendAccessToken<'a>>,
        R::PathBuilder: PathInput,
    {
        let http_request: http::Request<Vec<u8>> = request
            .try_into_http_request_with_identity(
                &self.base,
                token,
                identity,
                <R::PathBuilder as PathInput>::input(&self.versions),
            )
            .map_err(|e| ClientError::Protocol(format!("building the request: {e}")))?;
        let (status, body) = self.execute(http_request).await?;
        // Errors are read here, not by ruma, so that every endpoint's error
        // is classified the same way (`ClientError::is_transient`).
        if !(200..300).contains(&status) {
            return Err(http_error(status, &body));
        }
        let response =
            http::Response::builder().status(status).body(body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        R::IncomingResponse::try_from_http_response(response).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// A client-server call by path, for endpoints read and written as
    /// plain JSON (state and account data of any type, reports): `path`
    /// starts at `/_matrix/`, its parameters already encoded (see
    /// [`encode`]). As `as_user` (the bot when `None`), like [`Self::send`].
    pub async fn json(
        &self,
        method: http::Method,
        path: &str,
        as_user: Option<&UserId>,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, ClientError> {
        let (token, assert) = match &self.auth {
            Auth::Appservice(t) => (t.expose(), as_user),
            Auth::User(t) => (t.expose(), None),
        };
        let mut uri = format!("{}{path}", self.base);
        if let Some(user) = assert {
            uri.push_str(if path.contains('?') { "&" } else { "?" });
            uri.push_str(&format!("user_id={}", encode(user.as_str())));
        }
        let bytes = match body {
            Some(value) => serde_json::to_vec(value).map_err(|e| ClientError::Protocol(e.to_string()))?,
            None => Vec::new(),
        };
        let mut builder = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        if body.is_some() {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        let request = builder.body(bytes).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let (status, body) = self.execute(request).await?;
        if !(200..300).contains(&status) {
            return Err(http_error(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(format!("not JSON: {e}")))
    }

    async fn execute(&self, request: http::Request<Vec<u8>>) -> Result<(u16, Vec<u8>), ClientError> {
        let request = reqwest::Request::try_from(request).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let resp = self.http.execute(request).await.map_err(|e| ClientError::Network(error_chain(&e)))?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| ClientError::Network(error_chain(&e)))?;
        Ok((status, body.to_vec()))
    }
}

fn http_error(status: u16, body: &[u8]) -> ClientError {
    #[derive(serde::Deserialize)]
    struct MatrixError {
        errcode: Option<String>,
        error: Option<String>,
    }
    let parsed: Option<MatrixError> = serde_json::from_slice(body).ok();
    ClientError::Http {
        status,
        errcode: parsed.as_ref().and_then(|e| e.errcode.clone()).unwrap_or_else(|| "M_UNKNOWN".into()),
        message: parsed
            .and_then(|e| e.error)
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()),
    }
}

/// reqwest's top-level message hides the cause ("error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A path segment or query value percent-encoded: everything but the
/// unreserved characters (IDs may hold `/`, `+`, `#` and the like).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
