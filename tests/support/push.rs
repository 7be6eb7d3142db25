//! A push gateway for tests: records every notification Synapse posts to
//! `/_matrix/push/v1/notify`, so tests can count interruptions.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};

use super::{Client, eventually};

#[derive(Clone, Default)]
pub struct PushGateway {
    pub url: String,
    seen: Arc<Mutex<Vec<Value>>>,
}

async fn notify(State(seen): State<Arc<Mutex<Vec<Value>>>>, body: axum::body::Bytes) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
        seen.lock().unwrap().push(v["notification"].clone());
    }
    json!({"rejected": []}).to_string()
}

impl PushGateway {
    pub async fn start() -> PushGateway {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/_matrix/push/v1/notify", listener.local_addr().unwrap());
        let app = Router::new().route("/_matrix/push/v1/notify", post(notify)).with_state(seen.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        PushGateway { url, seen }
    }

    /// Gives `client` an HTTP pusher pointing here; its pushkey is its user ID.
    pub async fn register(&self, client: &Client) {
        let body = json!({
            "kind": "http", "app_id": "org.gatekeeper.tests", "pushkey": client.user_id,
            "app_display_name": "tests", "device_display_name": "tests", "lang": "en",
            "data": {"url": self.url},
        });
        let (status, v) = client.call(reqwest::Method::POST, "/_matrix/client/v3/pushers/set", Some(body)).await;
        assert_eq!(status, 200, "pushers/set: {v}");
    }

    /// Notifications about an event that reached `user`'s devices.
    pub fn pushes_to(&self, user: &str) -> Vec<Value> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|n| n["event_id"].is_string())
            .filter(|n| n["devices"].as_array().is_some_and(|d| d.iter().any(|d| d["pushkey"] == user)))
            .cloned()
            .collect()
    }

    pub fn pushes_in(&self, user: &str, room: &str) -> usize {
        self.pushes_to(user).iter().filter(|n| n["room_id"] == room).count()
    }

    /// Waits for the push of `event_id` to reach `user`.
    pub async fn wait_for(&self, user: &str, event_id: &str) {
        eventually(&format!("the push of {event_id} to {user}"), std::time::Duration::from_secs(60), || {
            let arrived = self.pushes_to(user).iter().any(|n| n["event_id"] == event_id);
            async move { arrived.then_some(()) }
        })
        .await;
    }
}
