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
    /// The answer's body was longer than the call allows (see
    /// [`MAX_BODY`]); nothing of it is read further.
    #[error("the homeserver's answer is larger than {}", size(*limit))]
    TooLarge { limit: usize },
}

/// The most bytes of one answer's body read for any call: far above any
/// answer Gatekeeper asks for (a page of 100 events, the members of a room
/// of tens of thousands), but a room's state and account data are written
/// by others (a hostile room admin, the owner's other clients), and an
/// answer read whole without a limit would be memory anyone could fill.
pub const MAX_BODY: usize = 32 * 1024 * 1024;

/// `bytes` as the owner reads it: "8 MiB", or bytes under one MiB.
pub fn size(bytes: usize) -> String {
    const MIB: usize = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) { format!("{} MiB", bytes / MIB) } else { format!("{bytes} bytes") }
}

impl ClientError {
    /// Whether the same request may succeed later. Token errors count as
    /// temporary: they mean a misconfiguration the operator will fix, and
    /// dropping work because of one would lose it.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Network(_) | ClientError::Protocol(_) => true,
            // The same request would read the same too-large answer again.
            ClientError::TooLarge { .. } => false,
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
            .send_with(
                get_supported_versions::Request::new(),
                SendAccessToken::None,
                AppserviceUserIdentity::default(),
                MAX_BODY,
            )
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

    /// Sends `request` as `as_user` (the bot when `None`), reading at most
    /// [`MAX_BODY`] bytes of the answer.
    pub async fn send<R>(&self, request: R, as_user: Option<&UserId>) -> Result<R::IncomingResponse, ClientError>
    where
        R: OutgoingRequest + OutgoingRequestAppserviceExt,
        for<'a> R::Authentication: ruma::api::auth_scheme::AuthScheme<Input<'a> = SendAccessToken<'a>>,
        R::PathBuilder: PathInput,
    {
        self.send_capped(request, as_user, MAX_BODY).await
    }

    /// [`Self::send`], reading at most `limit` bytes of the answer: an
    /// answer longer than that is [`ClientError::TooLarge`], for good.
    pub async fn send_capped<R>(
        &self,
        request: R,
        as_user: Option<&UserId>,
        limit: usize,
    ) -> Result<R::IncomingResponse, ClientError>
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
        self.send_with(request, token, identity, limit).await
    }

    async fn send_with<R>(
        &self,
        request: R,
        token: SendAccessToken<'_>,
        identity: AppserviceUserIdentity<'_>,
        limit: usize,
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
        let (status, body) = self.execute(http_request, limit).await?;
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
    /// [`encode`]). As `as_user` (the bot when `None`), like [`Self::send`],
    /// and like it reading at most [`MAX_BODY`] bytes.
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
        let (status, body) = self.execute(request, MAX_BODY).await?;
        if !(200..300).contains(&status) {
            return Err(http_error(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(format!("not JSON: {e}")))
    }

    /// Sends `request` and reads its answer's body, at most `limit` bytes
    /// of it: read chunk by chunk, and given up (the connection dropped) as
    /// soon as it is longer, whatever length the answer announced or did
    /// not announce.
    async fn execute(&self, request: http::Request<Vec<u8>>, limit: usize) -> Result<(u16, Vec<u8>), ClientError> {
        let request = reqwest::Request::try_from(request).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut resp = self.http.execute(request).await.map_err(|e| ClientError::Network(error_chain(&e)))?;
        let status = resp.status().as_u16();
        let announced = resp.content_length();
        if announced.is_some_and(|n| n > limit as u64) {
            return Err(ClientError::TooLarge { limit });
        }
        // The announced length (within the limit) saves the regrowing.
        let mut body = Vec::with_capacity(announced.unwrap_or(0) as usize);
        while let Some(chunk) = resp.chunk().await.map_err(|e| ClientError::Network(error_chain(&e)))? {
            if body.len() + chunk.len() > limit {
                return Err(ClientError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
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

/// A homeserver stand-in for unit tests: answers each request with what
/// `route` makes of its request line (`GET /path HTTP/1.1`), and closes.
#[cfg(test)]
pub(crate) mod stub {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    pub enum Answer {
        /// This body, its length announced.
        Body(Vec<u8>),
        /// This chunk over and over (chunked transfer, no length
        /// announced), never ending: only a client that stops reading
        /// gets to the end of the call.
        Endless(Vec<u8>),
        /// A body of this many bytes announced, and none sent.
        Announced(u64),
    }

    /// Serves on 127.0.0.1 until the test ends; the base URL to use.
    pub async fn serve(route: impl Fn(&str) -> Answer + Send + Sync + 'static) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let route = Arc::new(route);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let route = route.clone();
                tokio::spawn(async move {
                    // A failed write is the client having hung up: the point.
                    let _ = answer(socket, &*route).await;
                });
            }
        });
        base
    }

    async fn answer(mut socket: TcpStream, route: &(impl Fn(&str) -> Answer + ?Sized)) -> std::io::Result<()> {
        // The head, then as much body as it announces (read, so that the
        // close is not a reset the client could see before the answer).
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8];
            if socket.read(&mut byte).await? == 0 {
                return Ok(());
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let length = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|n| n.trim().to_owned()))
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0);
        socket.read_exact(&mut vec![0u8; length]).await?;
        let line = head.lines().next().unwrap_or_default().to_owned();
        let start = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n";
        match route(&line) {
            Answer::Body(body) => {
                socket.write_all(format!("{start}Content-Length: {}\r\n\r\n", body.len()).as_bytes()).await?;
                socket.write_all(&body).await?;
            }
            Answer::Endless(chunk) => {
                socket.write_all(format!("{start}Transfer-Encoding: chunked\r\n\r\n").as_bytes()).await?;
                let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
                loop {
                    socket.write_all(&framed).await?;
                }
            }
            Answer::Announced(length) => {
                socket.write_all(format!("{start}Content-Length: {length}\r\n\r\n").as_bytes()).await?;
                // Never sent: a client waiting for it fails its test by timeout.
                tokio::time::sleep(std::time::Duration::from_secs(600)).await;
            }
        }
        socket.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ruma::api::client::state::get_state_events;
    use ruma::room_id;
    use serde_json::json;

    use super::stub::{Answer, serve};
    use super::*;

    /// A room's state of one event padded to about `bytes` bytes.
    fn state_of(bytes: usize) -> Vec<u8> {
        let pad = "x".repeat(bytes.saturating_sub(60));
        serde_json::to_vec(&json!([{"type": "m.room.topic", "state_key": "", "content": {"topic": pad}}])).unwrap()
    }

    #[tokio::test]
    async fn an_answer_longer_than_the_limit_is_not_read_and_a_shorter_one_is() {
        let base = serve(|line| match line.split(['/', ' ']).find(|s| s.starts_with('!')) {
            Some(room) if room.starts_with("!small") => Answer::Body(state_of(900)),
            Some(room) if room.starts_with("!large") => Answer::Body(state_of(2_000)),
            Some(room) if room.starts_with("!endless") => Answer::Endless(vec![b' '; 16 * 1024]),
            Some(_) => Answer::Announced(1 << 40),
            None => Answer::Body(br#"{"ok": true}"#.to_vec()),
        })
        .await;
        let client = HsClient::new(&base, Secret::new("as_token")).unwrap();
        let state = |room: &str| {
            let room = ruma::RoomId::parse(room).unwrap();
            let client = client.clone();
            async move {
                let call = client.send_capped(get_state_events::v3::Request::new(room), None, 1024);
                // The bound: a call that read on (or waited for the
                // announced body) would never end.
                tokio::time::timeout(Duration::from_secs(30), call).await.expect("the call ends")
            }
        };

        let small = state("!small:x.org").await.expect("an answer under the limit is read");
        assert_eq!(small.room_state.len(), 1);
        for room in ["!large:x.org", "!endless:x.org", "!announced:x.org"] {
            let e = state(room).await.expect_err(room);
            assert!(matches!(e, ClientError::TooLarge { limit: 1024 }), "{room}: {e:?}");
            assert!(!e.is_transient(), "never retried: the same answer would come again");
            assert_eq!(e.to_string(), "the homeserver's answer is larger than 1024 bytes");
        }
        // The limit is the call's own: the same answer is read under the default one.
        let large = client.send(get_state_events::v3::Request::new(room_id!("!large:x.org").to_owned()), None).await;
        assert_eq!(large.expect("under MAX_BODY").room_state.len(), 1);
        let plain = client.json(http::Method::GET, "/_matrix/client/v3/plain", None, None).await.unwrap();
        assert_eq!(plain, json!({"ok": true}));
    }

    #[test]
    fn sizes_read_as_the_owner_reads_them() {
        assert_eq!(size(8 * 1024 * 1024), "8 MiB");
        assert_eq!(size(MAX_BODY), "32 MiB");
        assert_eq!(size(1024), "1024 bytes");
    }
}
