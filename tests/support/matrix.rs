//! A deliberately small Matrix client for playing people in tests: raw
//! client-server API calls, so that what is tested is Gatekeeper, not an SDK.

use std::time::Duration;

use serde_json::{Value, json};

#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub user_id: String,
    token: String,
    http: reqwest::Client,
}

/// Percent-encodes a path segment (room IDs, user IDs, tokens). The harness
/// keeps its own rather than borrow Gatekeeper's, which it is testing.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

static TXN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Client {
    pub fn new(base: &str, user_id: &str, token: &str) -> Self {
        Client {
            base: base.to_owned(),
            user_id: user_id.to_owned(),
            token: token.to_owned(),
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
        }
    }

    /// Any request; returns status and JSON body.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method.clone(), path, body).await;
        assert!((200..300).contains(&status), "{method} {path} as {}: {status} {v}", self.user_id);
        v
    }

    /// Creates a DM with `invitee` the way clients do (`is_direct`).
    pub async fn create_dm(&self, invitee: &str) -> String {
        let v = self
            .ok(
                reqwest::Method::POST,
                "/_matrix/client/v3/createRoom",
                Some(json!({"preset": "trusted_private_chat", "is_direct": true, "invite": [invitee]})),
            )
            .await;
        v["room_id"].as_str().unwrap().to_owned()
    }

    pub async fn create_group(&self, invitees: &[&str]) -> String {
        let v = self
            .ok(
                reqwest::Method::POST,
                "/_matrix/client/v3/createRoom",
                Some(json!({"preset": "private_chat", "name": "A group", "invite": invitees})),
            )
            .await;
        v["room_id"].as_str().unwrap().to_owned()
    }

    pub async fn send_text(&self, room: &str, body: &str) -> String {
        let txn = TXN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/t{txn}", enc(room));
        let v = self.ok(reqwest::Method::PUT, &path, Some(json!({"msgtype": "m.text", "body": body}))).await;
        v["event_id"].as_str().unwrap().to_owned()
    }

    /// Sends any message content; returns the event ID.
    pub async fn send(&self, room: &str, content: Value) -> String {
        let txn = TXN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/t{txn}", enc(room));
        let v = self.ok(reqwest::Method::PUT, &path, Some(content)).await;
        v["event_id"].as_str().unwrap().to_owned()
    }

    pub async fn redact(&self, room: &str, event: &str) {
        let txn = TXN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = format!("/_matrix/client/v3/rooms/{}/redact/{}/r{txn}", enc(room), enc(event));
        self.ok(reqwest::Method::PUT, &path, Some(json!({"reason": "oops"}))).await;
    }

    pub async fn invite(&self, room: &str, user: &str) {
        let path = format!("/_matrix/client/v3/rooms/{}/invite", enc(room));
        self.ok(reqwest::Method::POST, &path, Some(json!({"user_id": user}))).await;
    }

    pub async fn join(&self, room: &str) {
        self.ok(reqwest::Method::POST, &format!("/_matrix/client/v3/join/{}", enc(room)), Some(json!({}))).await;
    }

    pub async fn set_displayname(&self, name: &str) {
        let path = format!("/_matrix/client/v3/profile/{}/displayname", enc(&self.user_id));
        self.ok(reqwest::Method::PUT, &path, Some(json!({"displayname": name}))).await;
    }

    /// The IDs of this user's own override push rules.
    /// A joined room with this name, if any.
    pub async fn room_named(&self, name: &str) -> Option<String> {
        let (_, joined) = self.call(reqwest::Method::GET, "/_matrix/client/v3/joined_rooms", None).await;
        for room in joined["joined_rooms"].as_array()?.iter().filter_map(Value::as_str) {
            let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.name/", enc(room));
            let (status, content) = self.call(reqwest::Method::GET, &path, None).await;
            if status == 200 && content["name"] == name {
                return Some(room.to_owned());
            }
        }
        None
    }

    /// The ID of this account's device with this display name.
    pub async fn device_named(&self, name: &str) -> Option<String> {
        let (_, v) = self.call(reqwest::Method::GET, "/_matrix/client/v3/devices", None).await;
        v["devices"].as_array()?.iter().find(|d| d["display_name"] == name)?["device_id"].as_str().map(str::to_owned)
    }

    /// The IDs of this account's devices.
    pub async fn devices(&self) -> Vec<String> {
        let (_, v) = self.call(reqwest::Method::GET, "/_matrix/client/v3/devices", None).await;
        v["devices"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["device_id"].as_str().map(str::to_owned))
            .collect()
    }

    pub async fn override_rule_ids(&self) -> Vec<String> {
        let v = self.ok(reqwest::Method::GET, "/_matrix/client/v3/pushrules/", None).await;
        v["global"]["override"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|r| r["default"] != true)
            .filter_map(|r| r["rule_id"].as_str().map(str::to_owned))
            .collect()
    }

    pub async fn tags(&self, room: &str) -> Value {
        let path = format!("/_matrix/client/v3/user/{}/rooms/{}/tags", enc(&self.user_id), enc(room));
        self.ok(reqwest::Method::GET, &path, None).await["tags"].clone()
    }

    pub async fn leave(&self, room: &str) {
        self.ok(reqwest::Method::POST, &format!("/_matrix/client/v3/rooms/{}/leave", enc(room)), Some(json!({}))).await;
    }

    /// The room's whole timeline, oldest first (as far as this user may
    /// read it): a control room outgrows one page in a long scenario.
    pub async fn messages(&self, room: &str) -> Vec<Value> {
        let mut events = Vec::new();
        let mut from = String::new();
        loop {
            let path = format!("/_matrix/client/v3/rooms/{}/messages?dir=f&limit=100{from}", enc(room));
            let (status, v) = self.call(reqwest::Method::GET, &path, None).await;
            let chunk = v["chunk"].as_array().cloned().unwrap_or_default();
            if status != 200 || chunk.is_empty() {
                return events;
            }
            events.extend(chunk);
            match v["end"].as_str() {
                Some(end) => from = format!("&from={}", enc(end)),
                None => return events,
            }
        }
    }

    /// The `m.notice` bodies `sender` sent in `room`.
    pub async fn notices_from(&self, room: &str, sender: &str) -> Vec<String> {
        self.messages(room)
            .await
            .into_iter()
            .filter(|e| e["type"] == "m.room.message" && e["sender"] == sender && e["content"]["msgtype"] == "m.notice")
            .map(|e| e["content"]["body"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// `user`'s membership in `room` as this client sees it.
    pub async fn membership_of(&self, room: &str, user: &str) -> Option<String> {
        let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", enc(room), enc(user));
        let (status, v) = self.call(reqwest::Method::GET, &path, None).await;
        (status == 200).then(|| v["membership"].as_str().unwrap_or_default().to_owned())
    }

    pub async fn displayname(&self, user: &str) -> Option<String> {
        let path = format!("/_matrix/client/v3/profile/{}/displayname", enc(user));
        let (status, v) = self.call(reqwest::Method::GET, &path, None).await;
        (status == 200).then(|| v["displayname"].as_str().unwrap_or_default().to_owned())
    }
}
