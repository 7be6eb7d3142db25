//! `gatekeeper migrate`, the real binary end to end: a Gatekeeper that ran
//! on sled against a real Synapse is copied to PostgreSQL, runs there on
//! what was copied (its owner, her control room, the replay markers), and
//! is copied back; while it runs on either, migrate refuses.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::json;

use crate::support::postgres::Postgres;
use crate::support::{World, eventually, gatekeeper_bin};

const LONG: Duration = Duration::from_secs(60);

fn migrate(from: &str, to: &str) -> Output {
    Command::new(gatekeeper_bin()).args(["migrate", "--from", from, "--to", to]).output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The count migrate printed for one kind of record.
fn count(out: &Output, label: &str) -> u64 {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("{stdout}"));
    line.split_whitespace().last().unwrap().parse().unwrap()
}

async fn put_transaction(url: &str, token: &str, id: &str) {
    let body = json!({"events": [{
        "type": "m.room.message", "event_id": "$migrate-probe", "room_id": "!elsewhere:localhost",
        "sender": "@nobody:localhost", "origin_server_ts": 1,
        "content": {"msgtype": "m.text", "body": "a message nobody protected wrote"},
    }]});
    let resp = reqwest::Client::new()
        .put(format!("{url}/_matrix/app/v1/transactions/{id}"))
        .bearer_auth(token)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

fn use_database(config: &Path, database: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    // Every line indented under `database:` belongs to it.
    let mut lines: Vec<&str> = text.lines().collect();
    let at = lines.iter().position(|l| *l == "database:").unwrap();
    while lines.get(at + 1).is_some_and(|l| l.starts_with("  ")) {
        lines.remove(at + 1);
    }
    let section = format!("  {database}");
    lines.insert(at + 1, &section);
    std::fs::write(config, lines.join("\n") + "\n").unwrap();
}

#[tokio::test]
async fn a_gatekeeper_moves_from_sled_to_postgresql_and_back() {
    let mut w = World::new("@(alice|owner.*):localhost").await;
    w.gatekeeper.start(&[]);
    w.gatekeeper.wait_for_log("homeserver ping ok", LONG).await;
    let alice = w.synapse.register("alice").await;
    let room = alice.create_dm(&w.bot()).await;
    eventually("the bot's greeting", LONG, || {
        let (a, room, bot) = (alice.clone(), room.clone(), w.bot());
        async move { a.notices_from(&room, &bot).await.into_iter().next() }
    })
    .await;
    put_transaction(&w.gatekeeper.url, &w.gatekeeper.hs_token(), "migrate-probe").await;

    let sled = w.gatekeeper.dir.join("data");
    let sled = sled.to_str().unwrap();
    let url = Postgres::shared().create_database();
    // Running: refused, and nothing written.
    let refused = migrate(sled, &url);
    assert!(!refused.status.success());
    assert!(text(&refused).contains("a Gatekeeper is running on it"), "{}", text(&refused));

    w.gatekeeper.stop();
    let before = w.gatekeeper.inspect()["stats"].clone();
    let there = migrate(sled, &url);
    assert!(there.status.success(), "{}", text(&there));
    assert_eq!(count(&there, "owners"), 1, "{}", text(&there));
    assert!(count(&there, "transaction IDs") >= 2, "{}", text(&there));
    assert!(!text(&there).contains("password"), "{}", text(&there));
    // Copying again into what now holds the copy: refused.
    let again = migrate(sled, &url);
    assert!(text(&again).contains("is not empty"), "{}", text(&again));

    // Gatekeeper on PostgreSQL: alice is still an owner in her control
    // room, and a transaction it acknowledged on sled is a replay.
    use_database(&w.gatekeeper.config, &format!("url: {url}"));
    w.gatekeeper.start(&[]);
    w.gatekeeper.wait_for_log("homeserver ping ok", LONG).await;
    alice.send_text(&room, "help").await;
    let notices = eventually("the help answer", LONG, || {
        let (a, room, bot) = (alice.clone(), room.clone(), w.bot());
        async move { Some(a.notices_from(&room, &bot).await).filter(|n| n.len() >= 2) }
    })
    .await;
    assert!(notices.iter().any(|n| n.contains("help [command]")), "{notices:?}");
    put_transaction(&w.gatekeeper.url, &w.gatekeeper.hs_token(), "migrate-probe").await;
    let back_dir = w.gatekeeper.dir.join("back");
    let back = back_dir.to_str().unwrap();
    let refused = migrate(&url, back);
    assert!(text(&refused).contains("a Gatekeeper is running on it"), "{}", text(&refused));
    assert!(!back_dir.exists());
    w.gatekeeper.stop();
    let after = w.gatekeeper.inspect()["stats"].clone();
    assert_eq!(after["owners"], 1, "{after}");
    let replays = |s: &serde_json::Value| s["replayed_transactions"].as_u64().unwrap();
    assert!(replays(&after) > replays(&before), "the copied replay marker: {before} then {after}");
    assert!(after["transactions"].as_u64() >= before["transactions"].as_u64());

    // And back to sled, where it starts again.
    let home = migrate(&url, back);
    assert!(home.status.success(), "{}", text(&home));
    assert_eq!(count(&home, "owners"), 1);
    use_database(&w.gatekeeper.config, &format!("path: {back}"));
    assert_eq!(w.gatekeeper.inspect()["stats"], after);
}
