//! The crash loop against a real Synapse: Gatekeeper is killed with -9 at
//! a random moment, 50 times, while strangers invite and write (with edits
//! and redactions), an allowed friend writes and the owner types commands.
//! At the end every stranger message is captured exactly once, each
//! stranger got exactly one reply, the friend was never held, and the store
//! opens cleanly. `GK_CRASH_SEED=<n>` replays a run.

use std::time::{Duration, Instant};

use crate::support::exactly_once::ExactlyOnce;
use crate::support::gate::{LONG, opt_in, start};
use crate::support::rng::Rng;
use crate::support::{Client, PushGateway, World, eventually, free_port};
use serde_json::json;

const ITERATIONS: usize = 50;

struct Stranger {
    client: Client,
    room: String,
    /// Messages sent and not redacted.
    kept: Vec<String>,
}

#[tokio::test]
async fn fifty_kill_9s_lose_nothing_and_duplicate_nothing() {
    let (mut rng, seed) = Rng::from_env("GK_CRASH_SEED");
    println!("crash loop seed: {seed} (GK_CRASH_SEED={seed} replays it)");

    let mut w = World::new("@.*:localhost").await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    // The hourly reply cap is lifted so that every stranger must get exactly one.
    w.gatekeeper
        .append_config(&format!("metrics:\n  listen: 127.0.0.1:{port}\ngate:\n  max_replies_per_hour: 100000\n"));
    let push = PushGateway::start().await;
    start(&mut w).await;
    let alice = w.synapse.register("alice").await;
    push.register(&alice).await;
    // A friend from before opting in: allowed from the start.
    let friend = w.synapse.register("friend").await;
    let friends = friend.create_dm(&alice.user_id).await;
    alice.join(&friends).await;
    alice.send_text(&friends, "Hi friend").await;
    let control = opt_in(&mut w, &alice).await;
    eventually("the friend to be allowed", LONG, || {
        let a = alice.clone();
        async move { a.override_rule_ids().await.iter().any(|r| r.starts_with("gk.allow.")).then_some(()) }
    })
    .await;

    let mut strangers: Vec<Stranger> = Vec::new();
    let mut friend_messages = 0;
    let mut commands = 0;
    let started = Instant::now();
    w.gatekeeper.stop();
    for iteration in 0..ITERATIONS {
        w.gatekeeper.start(&[]);
        let kill_at = Duration::from_millis(rng.below(2500) as u64);
        let begun = Instant::now();
        while begun.elapsed() < kill_at {
            match rng.below(10) {
                0..=2 => {
                    let client = w.synapse.register(&format!("s{iteration}x{}", strangers.len())).await;
                    let room = client.create_dm(&alice.user_id).await;
                    let first = format!("hello from stranger {}", strangers.len());
                    client.send_text(&room, &first).await;
                    strangers.push(Stranger { client, room, kept: vec![first] });
                }
                3..=5 if !strangers.is_empty() => {
                    let pick = rng.below(strangers.len());
                    let s = &mut strangers[pick];
                    let body = format!("message {} of {}", s.kept.len(), s.client.user_id);
                    let id = s.client.send_text(&s.room, &body).await;
                    match rng.below(4) {
                        // An edit replaces the text; still one message.
                        0 => {
                            let edit = json!({"msgtype": "m.text", "body": format!("* {body} (edited)"),
                                "m.new_content": {"msgtype": "m.text", "body": format!("{body} (edited)")},
                                "m.relates_to": {"rel_type": "m.replace", "event_id": id}});
                            s.client.send(&s.room, edit).await;
                            s.kept.push(body);
                        }
                        // A redaction takes it back.
                        1 => s.client.redact(&s.room, &id).await,
                        _ => s.kept.push(body),
                    }
                }
                6..=7 => {
                    friend.send_text(&friends, &format!("friend message {friend_messages}")).await;
                    friend_messages += 1;
                }
                _ => {
                    alice.send_text(&control, if commands % 2 == 0 { "pending" } else { "settings" }).await;
                    commands += 1;
                }
            }
        }
        w.gatekeeper.kill9();
    }
    let expected: usize = strangers.iter().map(|s| s.kept.len()).sum();
    println!(
        "crash loop: {ITERATIONS} kill -9s in {:.0?}; {} strangers, {expected} messages kept, \
         {friend_messages} friend messages, {commands} commands",
        started.elapsed(),
        strangers.len()
    );

    // A last clean run works everything off.
    w.gatekeeper.start(&[]);
    w.gatekeeper.wait_for_log("homeserver ping ok", LONG).await;
    let check = ExactlyOnce {
        metrics: format!("{base}/metrics"),
        owner: &alice.user_id,
        strangers: strangers.iter().map(|s| (&s.client, s.room.as_str())).collect(),
        expected,
    };
    let replies = check.settled_and_answered_once(Duration::from_secs(300)).await;
    // The friend was never held: their chat is untagged and every message rang.
    assert!(alice.tags(&friends).await.get("m.lowpriority").is_none());
    assert!(push.pushes_in(&alice.user_id, &friends) >= friend_messages, "friend's messages must ring");

    w.gatekeeper.stop();
    check.check_store(&w.gatekeeper.inspect());
    println!("crash loop: captured {expected}/{expected} exactly once; replies per stranger {replies:?}; store clean");
}
