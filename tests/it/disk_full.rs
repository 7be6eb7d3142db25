//! A full disk against a real Synapse and the real sled store: Gatekeeper's
//! files are limited in size (RLIMIT_FSIZE) while a stranger writes, so its
//! database meets the limit mid-traffic. It must refuse what it cannot store
//! (the homeserver keeps it), stop with a clear error instead of limping on
//! with a database that cannot write any more, and once there is room
//! again (the service manager starts it), take everything in once.

use std::time::Duration;

use crate::support::gate::{LONG, opt_in, reply_to, start, wait_membership};
use crate::support::{World, eventually, free_port};

/// sled writes its log in segments of this size, and opening it may start
/// a new one: the limit leaves room for that and for three more.
const SEGMENT: u64 = 512 * 1024;
const HEADROOM: u64 = 3 * SEGMENT;
const MAX_MESSAGES: usize = 400;

/// The largest file that grows. The intake journal's segments do not:
/// they are made whole when the database is first opened, and a limit on
/// file sizes leaves writes within them alone.
fn largest_file(dir: &std::path::Path) -> u64 {
    let mut largest = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy().starts_with("journal.") {
            continue;
        }
        let meta = entry.metadata().unwrap();
        largest = largest.max(if meta.is_dir() { largest_file(&entry.path()) } else { meta.len() });
    }
    largest
}

#[tokio::test]
async fn a_full_disk_refuses_stops_cleanly_and_loses_nothing() {
    let mut w = World::new("@.*:localhost").await;
    let port = free_port();
    w.gatekeeper.append_config(&format!("metrics:\n  listen: 127.0.0.1:{port}\n"));
    let metrics = format!("http://127.0.0.1:{port}");
    start(&mut w).await;
    let alice = w.synapse.register("alice").await;
    let _control = opt_in(&mut w, &alice).await;
    let stranger = w.synapse.register("stranger").await;
    let held = stranger.create_dm(&alice.user_id).await;
    wait_membership(&stranger, &held, &alice.user_id, "join").await;
    stranger.send_text(&held, "message 0").await;
    reply_to(&stranger, &held, &alice.user_id).await;

    // Restarted with little room left on its "disk".
    w.gatekeeper.stop();
    let limit = largest_file(&w.gatekeeper.dir.join("data")).div_ceil(SEGMENT) * SEGMENT + HEADROOM;
    w.gatekeeper.start_with_file_size_limit(limit);
    w.gatekeeper.wait_for_log("homeserver ping ok", LONG).await;

    // The stranger writes on until the disk is full and Gatekeeper stops.
    let filler = "a full disk is not the end of the world. ".repeat(200);
    let mut sent = 1;
    let status = loop {
        assert!(sent < MAX_MESSAGES, "the database never hit the {limit}-byte limit; log:\n{}", w.gatekeeper.log());
        stranger.send_text(&held, &format!("message {sent} {filler}")).await;
        sent += 1;
        if let Some(status) = w.gatekeeper.try_exit() {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let log = w.gatekeeper.log();
    assert!(!status.success(), "a full disk must end the run with an error: {status:?}");
    assert!(log.contains("the database cannot write any more"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    let refused = log.matches("could not store transaction; homeserver will retry").count();
    // A few more while it is down: the homeserver queues them.
    for _ in 0..3 {
        stranger.send_text(&held, &format!("message {sent} {filler}")).await;
        sent += 1;
    }
    println!(
        "file size limit {limit} bytes: Gatekeeper refused {refused} transaction(s) and stopped after {} messages",
        sent - 3
    );

    // Room again: started as a service manager would. Everything the
    // homeserver was refused comes again and is kept, once.
    w.gatekeeper.start(&[]);
    w.gatekeeper.wait_for_log("homeserver ping ok", LONG).await;
    let want = format!("gatekeeper_deferred_messages {sent}\n");
    eventually(&format!("all {sent} messages to be kept"), LONG, || {
        let url = format!("{metrics}/metrics");
        let want = want.clone();
        async move { reqwest::get(&url).await.ok()?.text().await.ok().filter(|t| t.contains(&want)).map(|_| ()) }
    })
    .await;
    w.gatekeeper.stop();
    let inspected = w.gatekeeper.inspect();
    let owners = inspected["owners"].as_array().expect("owners in inspect");
    assert_eq!(owners[0]["captured_messages"].as_u64(), Some(sent as u64), "{inspected:#}");
    assert_eq!(inspected["quarantined"].as_array().map(Vec::len), Some(0), "{inspected:#}");
    assert_eq!(inspected["failed_effects"].as_array().map(Vec::len), Some(0), "{inspected:#}");
    assert_eq!(stranger.notices_from(&held, &alice.user_id).await.len(), 1, "one etiquette reply, not one per start");
}
