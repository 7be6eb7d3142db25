//! Two Gatekeepers on one PostgreSQL database, and the load balancer in
//! front of them: a loopback proxy that the homeserver's registration
//! points at, which sends each request to whichever backend serves it (the
//! standby answers 503) until one answers.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[allow(unused_imports)]
use super::{Gatekeeper, free_port};

/// Points `gk` at a PostgreSQL database instead of its sled directory.
pub fn use_postgres(gk: &Gatekeeper, url: &str) {
    let text = std::fs::read_to_string(&gk.config).unwrap();
    let sled = "database:\n  path: data\n  cache_capacity_mb: 8\n";
    assert!(text.contains(sled), "{text}");
    std::fs::write(&gk.config, text.replacen(sled, &format!("database:\n  url: {url}\n"), 1)).unwrap();
}

/// A second Gatekeeper in `dir` with `gk`'s configuration and registration
/// (the same tokens, the same database), listening on `port` (see
/// [`free_port`]: known before, for the proxy).
pub fn twin(gk: &Gatekeeper, dir: &Path, port: u16) -> Gatekeeper {
    std::fs::create_dir_all(dir).unwrap();
    let own = gk.url.strip_prefix("http://").expect("an http URL");
    let text = std::fs::read_to_string(&gk.config).unwrap();
    let listen = format!("listen: {own}\n");
    assert!(text.contains(&listen), "{text}");
    let config = dir.join("config.yaml");
    std::fs::write(&config, text.replacen(&listen, &format!("listen: 127.0.0.1:{port}\n"), 1)).unwrap();
    let registration = dir.join("registration.yaml");
    std::fs::copy(&gk.registration, &registration).unwrap();
    Gatekeeper {
        dir: dir.to_owned(),
        config,
        registration,
        url: format!("http://127.0.0.1:{port}"),
        mode: gk.mode,
        default_log_level: gk.default_log_level,
        child: None,
        runs: 0,
        traced: false,
    }
}

impl Gatekeeper {
    /// Every run's log so far, in order.
    pub fn all_logs(&self) -> Vec<String> {
        (1..=self.runs)
            .map(|run| std::fs::read_to_string(self.dir.join(format!("gatekeeper-{run}.log"))).unwrap_or_default())
            .collect()
    }

    /// Whether the process has ended by itself (without reaping it).
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none())
    }
}

/// The proxy: each request goes to the backend that answered last, then
/// to the others in turn, until one answers with anything but 503 (a
/// standby) or a connection error (a backend down), for at most 30 s.
pub struct Proxy {
    pub url: String,
    /// Which backend answered each transaction, by index, in order.
    pub answered: Arc<Mutex<Vec<(String, usize)>>>,
    task: tokio::task::JoinHandle<()>,
}

struct Backends {
    urls: Vec<String>,
    http: reqwest::Client,
    last: Mutex<usize>,
    answered: Arc<Mutex<Vec<(String, usize)>>>,
}

impl Proxy {
    pub async fn start(backends: &[&str]) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let answered = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(Backends {
            urls: backends.iter().map(|b| b.trim_end_matches('/').to_owned()).collect(),
            // A backend killed in the middle of a request fails it quickly;
            // one that hangs is given up on.
            http: reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap(),
            last: Mutex::new(0),
            answered: answered.clone(),
        });
        let router = axum::Router::new().fallback(forward).with_state(state);
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Proxy { url, answered, task }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(State(b): State<Arc<Backends>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let path = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let start = Instant::now();
    let mut turn = *b.last.lock().unwrap();
    let mut tried = 0;
    while start.elapsed() < Duration::from_secs(30) {
        let i = turn % b.urls.len();
        let mut outgoing = b.http.request(parts.method.clone(), format!("{}{path}", b.urls[i])).body(body.clone());
        for (name, value) in &parts.headers {
            if name != axum::http::header::HOST && name != axum::http::header::CONTENT_LENGTH {
                outgoing = outgoing.header(name, value);
            }
        }
        if let Ok(answer) = outgoing.send().await
            && answer.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE
        {
            *b.last.lock().unwrap() = i;
            if path.contains("/transactions/") && answer.status().is_success() {
                b.answered.lock().unwrap().push((path.clone(), i));
            }
            let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
            let content_type = answer.headers().get(reqwest::header::CONTENT_TYPE).cloned();
            let bytes = answer.bytes().await.unwrap_or_default();
            let mut response = (status, Body::from(bytes)).into_response();
            if let Some(ct) = content_type {
                response.headers_mut().insert(axum::http::header::CONTENT_TYPE, ct);
            }
            return response;
        }
        turn += 1;
        tried += 1;
        // Every backend refused: the standby has not taken over yet.
        if tried % b.urls.len() == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    (StatusCode::SERVICE_UNAVAILABLE, "no backend answered").into_response()
}
