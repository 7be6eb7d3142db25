//! A spam wave against a real Synapse: 500 invites from 500 new users in a
//! burst. They are all of the owner's own server, which never counts as a
//! wave server, and each invites one owner: not a wave by either rule. The
//! owner's phone gets no push, replies stay within the hourly cap (the rest
//! are owed, to go out hour by hour, oldest first), every invite is held
//! with its message, memory stays bounded, and `pending` lists all of them
//! in pages that each fit one event. Then one user invites three owners: a
//! wave, so the third gets no reply and the digest groups them.

use std::time::{Duration, Instant};

use crate::support::gate::{Bell, ask, opt_in, reply_to, start};
use crate::support::{PushGateway, World, eventually, free_port};

const STRANGERS: usize = 500;
const REPLY_CAP: usize = 20;
const PATIENCE: Duration = Duration::from_secs(600);

async fn scrape(base: &str) -> String {
    reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap()
}

fn sample(scrape: &str, name: &str) -> f64 {
    scrape.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0.0)
}

#[tokio::test]
async fn a_wave_of_500_stranger_invites_is_held_silently_with_replies_capped() {
    let mut w = World::new("@.*:localhost").await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    w.gatekeeper
        .append_config(&format!("metrics:\n  listen: 127.0.0.1:{port}\ngate:\n  max_replies_per_hour: {REPLY_CAP}\n"));
    let push = PushGateway::start().await;
    start(&mut w).await;
    let alice = w.synapse.register("alice").await;
    push.register(&alice).await;
    let control = opt_in(&mut w, &alice).await;
    let bell = Bell::hang(&w, &alice).await;

    let mut strangers = Vec::with_capacity(STRANGERS);
    for i in 0..STRANGERS {
        strangers.push(w.synapse.register(&format!("spam{i:03}")).await);
    }
    let started = Instant::now();
    let mut burst = tokio::task::JoinSet::new();
    for chunk in strangers.chunks(STRANGERS / 16) {
        let (chunk, alice_id) = (chunk.to_vec(), alice.user_id.clone());
        burst.spawn(async move {
            for s in chunk {
                let room = s.create_dm(&alice_id).await;
                s.send_text(&room, "Amazing offer, just for you!").await;
            }
        });
    }
    while let Some(done) = burst.join_next().await {
        done.unwrap();
    }
    let sent_in = started.elapsed();

    let settled = eventually("every invite held and every effect done", PATIENCE, || {
        let base = base.clone();
        async move {
            let s = scrape(&base).await;
            let done = sample(&s, "gatekeeper_held_invites_total") as usize == STRANGERS
                && sample(&s, "gatekeeper_deferred_messages") as usize == STRANGERS
                && sample(&s, "gatekeeper_inbox_pending") == 0.0
                && sample(&s, "gatekeeper_outbox_pending") == 0.0;
            done.then_some(s)
        }
    })
    .await;
    let handled_in = started.elapsed();
    let peak_kib = w.gatekeeper.peak_rss_kib().expect("Gatekeeper's memory");
    // Memory in 4 KiB pages, as the page cache setting sizes it (allocator.rs).
    assert_eq!(w.gatekeeper.huge_pages(), Some(false));
    bell.ring(&push, &alice).await;

    let interruptions: Vec<_> = push
        .pushes_to(&alice.user_id)
        .into_iter()
        .filter(|n| n["room_id"] != control.as_str() && n["room_id"] != bell.room.as_str())
        .collect();
    assert!(interruptions.is_empty(), "{} pushes, e.g. {:#?}", interruptions.len(), interruptions.first());
    assert_eq!(sample(&settled, "gatekeeper_replies_sent_total") as usize, REPLY_CAP);
    assert_eq!(sample(&settled, "gatekeeper_replies_suppressed_total") as usize, STRANGERS - REPLY_CAP);
    // The owners' own server is never a wave server.
    assert_eq!(sample(&settled, "gatekeeper_wave_invites_total"), 0.0);
    assert_eq!(sample(&settled, "gatekeeper_replies_suppressed_wave_total"), 0.0);
    assert_eq!(sample(&settled, "gatekeeper_action_failures_total"), 0.0);

    // `pending` lists all 500 in pages, each one event, none set aside
    // (one notice for everyone was ~100 KB, beyond the 64 KiB limit).
    let first = ask(&w, &alice, &control, "pending").await;
    let pages: usize = first
        .strip_prefix("Page 1 of ")
        .and_then(|r| r.split(',').next()?.parse().ok())
        .unwrap_or_else(|| panic!("not paged: {first}"));
    let mut listed = std::collections::BTreeMap::new();
    for page in 1..=pages {
        let body = if page == 1 { first.clone() } else { ask(&w, &alice, &control, &format!("pending {page}")).await };
        assert!(body.starts_with(&format!("Page {page} of {pages}, {STRANGERS} people waiting")), "{body}");
        for line in body.lines() {
            if let Some((n, rest)) = line.split_once(". @") {
                let who = rest.split(' ').next().unwrap().to_owned();
                assert!(listed.insert(n.parse::<usize>().unwrap(), who).is_none(), "number {n} twice");
            }
        }
    }
    assert_eq!(listed.len(), STRANGERS, "every stranger on some page");
    assert_eq!(listed.keys().copied().collect::<Vec<_>>(), (1..=STRANGERS).collect::<Vec<_>>());
    assert_eq!(listed.values().collect::<std::collections::BTreeSet<_>>().len(), STRANGERS);
    let after = scrape(&base).await;
    assert_eq!(sample(&after, "gatekeeper_action_failures_total"), 0.0, "a page was set aside");

    // One user invites three owners within the hour and writes to each:
    // the first two are answered, the third is a wave and is not.
    let wave_started = Instant::now();
    let owners = [w.synapse.register("bob").await, w.synapse.register("carol").await, w.synapse.register("dave").await];
    let mut controls = Vec::new();
    for o in &owners {
        controls.push(opt_in(&mut w, o).await);
    }
    let multi = w.synapse.register("multi").await;
    let mut rooms = Vec::new();
    for o in &owners {
        let room = multi.create_dm(&o.user_id).await;
        multi.send_text(&room, "Hello! Quick question for you.").await;
        rooms.push(room);
    }
    reply_to(&multi, &rooms[0], &owners[0].user_id).await;
    reply_to(&multi, &rooms[1], &owners[1].user_id).await;
    // The barrier: the engine said "no reply, a wave" for the third room.
    eventually("the third invite seen as a wave, its reply suppressed", PATIENCE, || {
        let base = base.clone();
        async move {
            let s = scrape(&base).await;
            (sample(&s, "gatekeeper_wave_invites_total") == 1.0
                && sample(&s, "gatekeeper_replies_suppressed_wave_total") == 1.0
                && sample(&s, "gatekeeper_outbox_pending") == 0.0)
                .then_some(())
        }
    })
    .await;
    assert!(multi.notices_from(&rooms[2], &owners[2].user_id).await.is_empty(), "the wave sender was answered");
    let digest = ask(&w, &owners[2], &controls[2], "digest").await;
    assert!(digest.contains("1 account invited several people within an hour (1 message)"), "{digest}");
    assert!(digest.contains(&format!("`block {}` blocks one.", multi.user_id)), "{digest}");
    let wave_took = wave_started.elapsed();

    w.gatekeeper.stop();
    let report = w.gatekeeper.inspect();
    let owner = report["owners"].as_array().unwrap().iter().find(|o| o["user_id"] == alice.user_id.as_str()).unwrap();
    assert_eq!(owner["held_rooms"], STRANGERS, "{report}");
    assert_eq!(owner["captured_messages"], STRANGERS, "{report}");
    assert_eq!(owner["replied_rooms"], REPLY_CAP, "{report}");
    assert_eq!(owner["owed_replies"], STRANGERS - REPLY_CAP, "{report}");
    assert_eq!(owner["wave_rooms"], 0, "{report}");
    let dave = report["owners"].as_array().unwrap().iter().find(|o| o["user_id"] == owners[2].user_id.as_str());
    assert_eq!(dave.unwrap()["wave_rooms"], 1, "{report}");
    assert_eq!(report["stats"]["effects_failed"], 0, "{report}");
    assert!(peak_kib < 512 * 1024, "peak RSS {peak_kib} KiB");
    println!(
        "spam wave: {STRANGERS} invites sent in {sent_in:.1?}, all held in {handled_in:.1?}; \
         0 pushes; {REPLY_CAP} replies, {} owed; Gatekeeper peak RSS {} MiB; \
         the three-owner wave took {wave_took:.1?}",
        STRANGERS - REPLY_CAP,
        peak_kib / 1024
    );
}
