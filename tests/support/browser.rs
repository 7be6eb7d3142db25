//! A real headless browser (Debian's chromium, installed by the harness if
//! missing), driven over the DevTools protocol: open a page, click, read.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::{free_port, install, stop_by_pid, wait_until_serving};

const CANDIDATES: [&str; 3] = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"];

/// The browser binary, installed from Debian's packages on first use.
pub fn chromium() -> PathBuf {
    install::ensure_installed(
        "Debian's chromium for the browser test",
        || CANDIDATES.iter().map(PathBuf::from).find(|p| p.exists()),
        || install::apt_install(&["chromium"]),
    )
}

pub struct Browser {
    port: u16,
    child: Option<Child>,
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Page {
    socket: Socket,
    next_id: u64,
}

impl Browser {
    pub async fn start(profile: &Path) -> Browser {
        let port = free_port();
        std::fs::create_dir_all(profile).unwrap();
        let log = profile.join("chromium.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                &format!("--remote-debugging-port={port}"),
                "--remote-debugging-address=127.0.0.1",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut browser = Browser { port, child: Some(child) };
        let listening = wait_until_serving(
            "chromium's DevTools endpoint",
            browser.child.as_mut().unwrap(),
            std::slice::from_ref(&log),
            Duration::from_secs(60),
            || async move {
                reqwest::get(format!("http://127.0.0.1:{port}/json/version"))
                    .await
                    .is_ok_and(|r| r.status().is_success())
            },
        )
        .await;
        if let Err(exited) = listening {
            browser.child = None;
            panic!("chromium exited before it listened ({}):\n{}", exited.status, exited.logs);
        }
        browser
    }

    pub async fn open(&self, url: &str) -> Page {
        let http = reqwest::Client::new();
        let target: Value = serde_json::from_slice(
            &http
                .put(format!("http://127.0.0.1:{}/json/new?{url}", self.port))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
        )
        .unwrap();
        let ws = target["webSocketDebuggerUrl"].as_str().expect("a debugger URL").to_owned();
        let (socket, _) = tokio_tungstenite::connect_async(ws).await.unwrap();
        Page { socket, next_id: 1 }
    }
}

impl Page {
    /// Evaluates JavaScript in the page and returns its value.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let call = json!({"id": id, "method": "Runtime.evaluate", "params": {"expression": expression, "returnByValue": true}});
        self.socket.send(Message::text(call.to_string())).await.unwrap();
        loop {
            let msg =
                tokio::time::timeout(Duration::from_secs(30), self.socket.next()).await.unwrap().unwrap().unwrap();
            if let Message::Text(text) = msg {
                let v: Value = serde_json::from_str(&text).unwrap();
                if v["id"] == id {
                    return v["result"]["result"]["value"].clone();
                }
            }
        }
    }

    /// Polls the page's text until it contains `needle` (a new tab starts on
    /// about:blank, already "complete", before the real page loads).
    pub async fn wait_for_text(&mut self, needle: &str, timeout: Duration) -> String {
        let start = std::time::Instant::now();
        loop {
            let text = self.text().await;
            if text.contains(needle) {
                return text;
            }
            assert!(start.elapsed() < timeout, "page never showed {needle:?}; it shows: {text:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The page's visible text, once the document has loaded.
    pub async fn text(&mut self) -> String {
        for _ in 0..100 {
            if self.eval("document.readyState").await == "complete" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.eval("document.body ? document.body.innerText : ''").await.as_str().unwrap_or_default().to_owned()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_by_pid(child, Duration::from_secs(5));
        }
    }
}
