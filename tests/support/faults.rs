//! A fault-injecting proxy between Gatekeeper and the homeserver: it passes
//! requests on, except that on a fixed rhythm it answers 429 or 500 without
//! passing the request on, passes it on and then answers 500 as if the
//! answer were lost, or answers only after a delay. Or, started with
//! [`FaultProxy::passing`], it passes everything but the joins of rooms it
//! is told to fail, which it answers with 502 forever (a room whose server
//! does not answer). Only Gatekeeper's own calls go through it.
//!
//! [`Swallower`] stands the other way, between the homeserver and
//! Gatekeeper's appservice API: it passes everything on, except one
//! transaction it is told to swallow, which it answers 200 itself, so the
//! homeserver believes it delivered what Gatekeeper never saw (a stranded
//! transaction, as Synapse's appservice sender can leave one).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Clone, Debug, Default)]
pub struct FaultCounts {
    pub passed: usize,
    pub rate_limited: usize,
    pub failed_before: usize,
    pub lost_answers: usize,
    pub delayed: usize,
    /// Joins of a failing room answered with 502.
    pub refused_joins: usize,
    /// Sends passed on whose answers were never given.
    pub unanswered_sends: usize,
}

struct Proxy {
    upstream: String,
    http: reqwest::Client,
    seen: AtomicUsize,
    counts: std::sync::Mutex<FaultCounts>,
    /// Faults on the fixed rhythm (`start`), or none (`passing`).
    rhythm: bool,
    /// Rooms whose joins fail with 502.
    failing_joins: std::sync::Mutex<Vec<String>>,
    /// Rooms whose sends are passed on but never answered.
    unanswered_sends: std::sync::Mutex<Vec<String>>,
    /// Requests (method and path) whose last try met a fault: their next
    /// try passes. Without this the fixed rhythm can line up with an
    /// effect that makes several calls so that one of them always fails,
    /// and the retries never end; with it, every retry gets further.
    faulted: std::sync::Mutex<std::collections::HashSet<String>>,
}

pub struct FaultProxy {
    pub url: String,
    proxy: Arc<Proxy>,
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> FaultProxy {
        Self::spawn(upstream, true).await
    }

    /// A proxy that passes everything, until told to fail a room's joins.
    pub async fn passing(upstream: &str) -> FaultProxy {
        Self::spawn(upstream, false).await
    }

    /// From now on every join of `room` (by ID, either join endpoint) is
    /// answered 502 without reaching the homeserver, as Synapse answers
    /// when the room's server does not answer its `make_join`.
    pub fn fail_joins_of(&self, room: &str) {
        self.proxy.failing_joins.lock().unwrap().push(room.to_owned());
    }

    /// From now on every message sent into `room` reaches the homeserver,
    /// but its answer never comes back: the sender cannot know it was sent
    /// (a process killed then dies between sending and recording it).
    pub fn never_answer_sends_in(&self, room: &str) {
        self.proxy.unanswered_sends.lock().unwrap().push(room.to_owned());
    }

    async fn spawn(upstream: &str, rhythm: bool) -> FaultProxy {
        let proxy = Arc::new(Proxy {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            seen: AtomicUsize::new(0),
            counts: Default::default(),
            rhythm,
            failing_joins: Default::default(),
            unanswered_sends: Default::default(),
            faulted: Default::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().fallback(handle).with_state(proxy.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FaultProxy { url, proxy }
    }

    pub fn counts(&self) -> FaultCounts {
        self.proxy.counts.lock().unwrap().clone()
    }
}

fn matrix_error(status: StatusCode, errcode: &str) -> Response {
    let body =
        serde_json::json!({"errcode": errcode, "error": "injected by the test's fault proxy", "retry_after_ms": 200});
    (status, [("content-type", "application/json")], body.to_string()).into_response()
}

/// `/_matrix/client/v3/rooms/{room}/join` or `/_matrix/client/v3/join/{room}`
/// for one of `rooms`, the path percent-decoded.
fn is_join_of(path: &str, rooms: &[String]) -> bool {
    let path = decoded(path);
    let join = path.ends_with("/join") || path.contains("/join/");
    join && rooms.iter().any(|room| path.contains(room.as_str()))
}

/// `/_matrix/client/v3/rooms/{room}/send/…` for one of `rooms`.
fn is_send_in(path: &str, rooms: &[String]) -> bool {
    let path = decoded(path);
    rooms.iter().any(|room| path.contains(&format!("/rooms/{room}/send/")))
}

fn decoded(path: &str) -> String {
    path.replace("%21", "!").replace("%3A", ":").replace("%3a", ":")
}

async fn handle(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let n = proxy.seen.fetch_add(1, Ordering::SeqCst);
    if is_join_of(request.uri().path(), &proxy.failing_joins.lock().unwrap()) {
        proxy.counts.lock().unwrap().refused_joins += 1;
        let body = serde_json::json!({"errcode": "M_UNKNOWN", "error": "Failed to make_join (injected by the test)"});
        return (StatusCode::BAD_GATEWAY, [("content-type", "application/json")], body.to_string()).into_response();
    }
    if request.method() == axum::http::Method::PUT
        && is_send_in(request.uri().path(), &proxy.unanswered_sends.lock().unwrap())
    {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, 64 * 1024 * 1024).await.unwrap();
        forward(&proxy.http, &proxy.upstream, &parts, &body).await;
        proxy.counts.lock().unwrap().unanswered_sends += 1;
        return std::future::pending().await;
    }
    // The version check at start-up passes, so that every later call meets faults.
    let versions = request.uri().path() == "/_matrix/client/versions";
    // One request in eight: 3 of 8 fail, 1 of 8 is slow; never the same
    // request twice in a row.
    let key = format!("{} {}", request.method(), request.uri().path());
    let again = proxy.faulted.lock().unwrap().remove(&key);
    let fault = if versions || !proxy.rhythm || again { 0 } else { n % 8 };
    if matches!(fault, 1 | 3 | 5) {
        proxy.faulted.lock().unwrap().insert(key);
    }
    match fault {
        1 => {
            proxy.counts.lock().unwrap().rate_limited += 1;
            return matrix_error(StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED");
        }
        3 => {
            proxy.counts.lock().unwrap().failed_before += 1;
            return matrix_error(StatusCode::INTERNAL_SERVER_ERROR, "M_UNKNOWN");
        }
        7 => {
            proxy.counts.lock().unwrap().delayed += 1;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        _ => {}
    }
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024 * 1024).await.unwrap();
    let answer = forward(&proxy.http, &proxy.upstream, &parts, &body).await;
    if fault == 5 {
        // Done upstream, but the answer "lost": a retry must not do it twice.
        proxy.counts.lock().unwrap().lost_answers += 1;
        return matrix_error(StatusCode::BAD_GATEWAY, "M_UNKNOWN");
    }
    proxy.counts.lock().unwrap().passed += 1;
    answer
}

/// Passes a request on to `upstream` and brings its answer back as it was
/// (a connection that fails is a 502).
async fn forward(http: &reqwest::Client, upstream: &str, parts: &axum::http::request::Parts, body: &[u8]) -> Response {
    let url = format!("{}{}", upstream, parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let mut forward = http.request(parts.method.clone(), url).body(body.to_vec());
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            forward = forward.header(name, value);
        }
    }
    let upstream = match forward.send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = upstream.status();
    let content_type = upstream.headers().get("content-type").cloned();
    let bytes = upstream.bytes().await.unwrap_or_default();
    let mut response = Response::builder().status(status.as_u16());
    if let Some(ct) = content_type {
        response = response.header("content-type", ct);
    }
    response.body(Body::from(bytes)).unwrap()
}

/// A proxy in front of Gatekeeper's appservice API that swallows chosen
/// transactions.
pub struct Swallower {
    pub url: String,
    state: Arc<SwallowState>,
}

struct SwallowState {
    upstream: String,
    http: reqwest::Client,
    /// Swallow the next transaction whose body contains this.
    armed: std::sync::Mutex<Option<String>>,
    swallowed: std::sync::Mutex<Vec<String>>,
}

impl Swallower {
    pub async fn start(upstream: &str) -> Swallower {
        let state = Arc::new(SwallowState {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            armed: Default::default(),
            swallowed: Default::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().fallback(swallow_or_pass).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Swallower { url, state }
    }

    /// The next transaction that contains `needle` is answered 200 here and
    /// never reaches Gatekeeper.
    pub fn swallow_next(&self, needle: &str) {
        *self.state.armed.lock().unwrap() = Some(needle.to_owned());
    }

    /// The paths of the transactions swallowed so far.
    pub fn swallowed(&self) -> Vec<String> {
        self.state.swallowed.lock().unwrap().clone()
    }
}

async fn swallow_or_pass(State(state): State<Arc<SwallowState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024 * 1024).await.unwrap();
    let path = parts.uri.path().to_owned();
    if parts.method == axum::http::Method::PUT && path.contains("/transactions/") {
        let mut armed = state.armed.lock().unwrap();
        let hit = armed.as_deref().is_some_and(|needle| String::from_utf8_lossy(&body).contains(needle));
        if hit {
            *armed = None;
            state.swallowed.lock().unwrap().push(path);
            return (StatusCode::OK, [("content-type", "application/json")], "{}").into_response();
        }
    }
    forward(&state.http, &state.upstream, &parts, &body).await
}
