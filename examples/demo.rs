//! The README's demo: a throw-away Synapse with Gatekeeper registered, an
//! owner who opts in, and directions for trying it by hand.
//! Run it with `scripts/demo` (which builds the binary first).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use support::{Synapse, World, eventually};

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

    println!("▶ @owner:localhost opts in by inviting {} to a direct chat …", w.bot());
    let owner = w.synapse.register("owner").await;
    let room = owner.create_dm(&w.bot()).await;
    let greeting = eventually("the greeting", WAIT, || {
        let (o, room, bot) = (owner.clone(), room.clone(), w.bot());
        async move { o.notices_from(&room, &bot).await.into_iter().next() }
    })
    .await;
    println!("\n  Gatekeeper says:\n{}\n", indent(&greeting));

    println!("▶ The owner types `help` …");
    owner.send_text(&room, "help").await;
    let help = eventually("the help answer", WAIT, || {
        let (o, room, bot) = (owner.clone(), room.clone(), w.bot());
        async move { o.notices_from(&room, &bot).await.get(1).cloned() }
    })
    .await;
    println!("\n  Gatekeeper says:\n{}\n", indent(&help));

    let stranger = w.synapse.register("stranger").await;
    println!("Try it yourself with any Matrix client (e.g. Element: choose \"custom homeserver\"):");
    println!("  homeserver  {}", w.synapse.url);
    println!("  owner       @owner:localhost     password {}", Synapse::password("owner"));
    println!("  stranger    {}  password {}", stranger.user_id, Synapse::password("stranger"));
    println!("Gatekeeper's log: {}", w.gatekeeper.dir.join("gatekeeper-1.log").display());
    if keep_running {
        println!("\nPress Ctrl-C to stop Synapse and Gatekeeper and delete the demo's data.");
        let _ = tokio::signal::ctrl_c().await;
    }
    println!("Stopping …");
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    │ {l}")).collect::<Vec<_>>().join("\n")
}
