//! End-to-end latency against a real Synapse, on loopback: how long after a
//! stranger's invite and first message the etiquette reply is there, and
//! how long the same DM takes to land in the owner's account with
//! Gatekeeper in the path (held: joined for the owner, message readable)
//! and without it (an owner who did not opt in: the invite in their sync).
//! Run: `cargo build --release && GK_BIN=target/release/gatekeeper cargo run --example e2e_latency`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::gate::opt_in;
use support::{Client, World};

const ROUNDS: usize = 200;
const WAIT: Duration = Duration::from_secs(60);

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Polls every 5 ms until `done` says so.
async fn until<F, Fut>(what: &str, mut done: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < WAIT, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

async fn sync_token(c: &Client) -> String {
    let (_, v) = c.call(reqwest::Method::GET, "/_matrix/client/v3/sync?timeout=0", None).await;
    v["next_batch"].as_str().unwrap().to_owned()
}

/// Long-polls `c`'s sync from `since` until `room` shows up as an invite.
async fn invite_arrives(c: &Client, mut since: String, room: &str) {
    loop {
        let path = format!("/_matrix/client/v3/sync?timeout=10000&since={since}");
        let (_, v): (u16, Value) = c.call(reqwest::Method::GET, &path, None).await;
        if v["rooms"]["invite"].get(room).is_some() {
            return;
        }
        since = v["next_batch"].as_str().unwrap().to_owned();
    }
}

#[tokio::main]
async fn main() {
    let mut w = World::new("@alice:localhost").await;
    // Every one of the strangers must be answered: no hourly cap.
    w.gatekeeper.append_config("gate:\n  max_replies_per_hour: 100000\n");
    w.gatekeeper.start_with_log_filter(&[], "gatekeeper=info,warn");
    w.gatekeeper.wait_for_log("homeserver ping ok", WAIT).await;
    let alice = w.synapse.register("alice").await;
    let bob = w.synapse.register("bob").await;
    opt_in(&mut w, &alice).await;
    let mut strangers = Vec::new();
    for i in 0..ROUNDS {
        strangers.push(w.synapse.register(&format!("stranger{i}")).await);
    }

    let (mut reply, mut held_lands, mut plain_lands) = (Vec::new(), Vec::new(), Vec::new());
    for s in &strangers {
        // With Gatekeeper: invite + first message; the reply, and the owner's
        // account able to read the message.
        let start = Instant::now();
        let room = s.create_dm(&alice.user_id).await;
        s.send_text(&room, "hello").await;
        until("the message readable by alice", || {
            let (a, r) = (alice.clone(), room.clone());
            async move { a.messages(&r).await.iter().any(|e| e["content"]["body"] == "hello") }
        })
        .await;
        held_lands.push(start.elapsed());
        until("the reply", || {
            let (s, r, a) = (s.clone(), room.clone(), alice.user_id.clone());
            async move { !s.notices_from(&r, &a).await.is_empty() }
        })
        .await;
        reply.push(start.elapsed());

        // Without: bob never opted in; the DM lands as an invite in his sync.
        let since = sync_token(&bob).await;
        let start = Instant::now();
        let room = s.create_dm(&bob.user_id).await;
        s.send_text(&room, "hello").await;
        invite_arrives(&bob, since, &room).await;
        plain_lands.push(start.elapsed());
    }
    for v in [&mut reply, &mut held_lands, &mut plain_lands] {
        v.sort();
    }
    println!("{ROUNDS} strangers, one at a time, loopback Synapse, Gatekeeper {}", support::gatekeeper_bin().display());
    println!(
        "invite + message -> etiquette reply seen by the stranger: p50 {:.0?}  p99 {:.0?}",
        pct(&reply, 0.5),
        pct(&reply, 0.99)
    );
    println!(
        "DM lands, with Gatekeeper (held: joined, message readable by the owner): p50 {:.0?}  p99 {:.0?}",
        pct(&held_lands, 0.5),
        pct(&held_lands, 0.99)
    );
    println!(
        "DM lands, without Gatekeeper (invite in the owner's sync):            p50 {:.0?}  p99 {:.0?}",
        pct(&plain_lands, 0.5),
        pct(&plain_lands, 0.99)
    );
}
