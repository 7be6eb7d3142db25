//! The README's demo: a throw-away Synapse with Gatekeeper registered, an
//! owner who opts in, and directions for trying it by hand.
//! Run it with `scripts/demo` (which builds the binary first).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use serde_json::json;
use support::{Client, PushGateway, Synapse, World, eventually};

const WAIT: Duration = Duration::from_secs(120);

#[tokio::main]
async fn main() {
    let keep_running = !std::env::args().any(|a| a == "--exit");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/demo");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let tmp = tempfile::Builder::new().prefix("run-").tempdir_in(&root).unwrap();

    println!("▶ Starting a throw-away Synapse (installed from PyPI into target/ on first run) …");
    let mut w = World::new_in(tmp, "@.*:localhost").await;
    println!("  Synapse:    {}", w.synapse.url);
    println!("▶ Starting Gatekeeper with the registration it generated …");
    w.gatekeeper.start_with_log_filter(&[], "info");
    w.gatekeeper.wait_for_log("homeserver ping ok", WAIT).await;
    println!("  Gatekeeper: {} (ping from the homeserver ok)", w.gatekeeper.url);

    let push = PushGateway::start().await;
    let owner = w.synapse.register("owner").await;
    owner.set_displayname("Olivia").await;
    push.register(&owner).await;
    println!("▶ @owner:localhost (Olivia) opts in by inviting {} to a direct chat …", w.bot());
    let room = owner.create_dm(&w.bot()).await;
    let greeting = next_notice(&owner, &room, &w.bot(), 0).await;
    println!("\n  Gatekeeper says:\n{}\n", indent(&greeting));
    eventually("the invite-silencing rule", WAIT, || {
        let o = owner.clone();
        async move { o.override_rule_ids().await.contains(&"gk.hold.invites".to_owned()).then_some(()) }
    })
    .await;

    println!("▶ @stranger:localhost, whom Olivia has never met, opens a direct chat and writes …");
    let stranger = w.synapse.register("stranger").await;
    let held = stranger.create_dm(&owner.user_id).await;
    eventually("Gatekeeper to hold the room", WAIT, || {
        let (s, h, o) = (stranger.clone(), held.clone(), owner.user_id.clone());
        async move { (s.membership_of(&h, &o).await.as_deref() == Some("join")).then_some(()) }
    })
    .await;
    stranger.send_text(&held, "Hi Olivia! Quick question about your talk last week.").await;
    stranger
        .send(
            &held,
            json!({"msgtype": "m.text", "body": "Olivia? Are you there?", "m.mentions": {"user_ids": [owner.user_id]}}),
        )
        .await;
    let reply = next_notice(&stranger, &held, &owner.user_id, 0).await;
    println!("\n  The stranger gets one automatic note, from Olivia's account:\n{}\n", indent(&reply));
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "  Olivia's phone: {} notification(s) from the stranger's room; the room is tagged low priority: {}",
        push.pushes_in(&owner.user_id, &held),
        owner.tags(&held).await.get("m.lowpriority").is_some()
    );

    println!("\n▶ Olivia types `pending` in her Gatekeeper chat …");
    let asked = owner.notices_from(&room, &w.bot()).await.len();
    owner.send_text(&room, "pending").await;
    let pending = next_notice(&owner, &room, &w.bot(), asked).await;
    println!("\n  Gatekeeper says:\n{}\n", indent(&pending));

    println!("▶ The daily digest comes at 08:00 Olivia's time; she asks for it now with `digest` …");
    let asked = owner.notices_from(&room, &w.bot()).await.len();
    owner.send_text(&room, "digest").await;
    let digest = next_notice(&owner, &room, &w.bot(), asked).await;
    println!("\n  Gatekeeper says:\n{}\n", indent(&digest));

    println!("Try it yourself with any Matrix client (e.g. Element: choose \"custom homeserver\"):");
    println!("  homeserver  {}", w.synapse.url);
    println!(
        "  owner       @owner:localhost     password {}   (commands: help, pending, reply, stop)",
        Synapse::password("owner")
    );
    println!("  stranger    {}  password {}", stranger.user_id, Synapse::password("stranger"));
    println!("Gatekeeper's log: {}", w.gatekeeper.dir.join("gatekeeper-1.log").display());
    if keep_running {
        println!("\nPress Ctrl-C to stop Synapse and Gatekeeper and delete the demo's data.");
        let _ = tokio::signal::ctrl_c().await;
    }
    println!("Stopping …");
}

/// The `index`-th notice `sender` sent in `room`, once it exists.
async fn next_notice(reader: &Client, room: &str, sender: &str, index: usize) -> String {
    eventually("a notice", WAIT, || {
        let (r, room, sender) = (reader.clone(), room.to_owned(), sender.to_owned());
        async move { r.notices_from(&room, &sender).await.get(index).cloned() }
    })
    .await
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    │ {l}")).collect::<Vec<_>>().join("\n")
}
