//! A spam wave against a real Synapse: 500 invites from 500 new users in a
//! burst. The owner's phone gets no push, replies stay within the hourly
//! cap, every invite is held with its message, memory stays bounded, and
//! `pending` lists all of them in pages that each fit one event.

use std::time::{Duration, Instant};

use crate::support::gate::{Bell, ask, opt_in, start};
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
    bell.ring(&push, &alice).await;

    let interruptions: Vec<_> = push
        .pushes_to(&alice.user_id)
        .into_iter()
        .filter(|n| n["room_id"] != control.as_str() && n["room_id"] != bell.room.as_str())
        .collect();
    assert!(interruptions.is_empty(), "{} pushes, e.g. {:#?}", interruptions.len(), interruptions.first());
    assert_eq!(sample(&settled, "gatekeeper_replies_sent_total") as usize, REPLY_CAP);
    assert_eq!(sample(&settled, "gatekeeper_replies_suppressed_total") as usize, STRANGERS - REPLY_CAP);
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

    w.gatekeeper.stop();
    let report = w.gatekeeper.inspect();
    let owner = &report["owners"][0];
    assert_eq!(owner["held_rooms"], STRANGERS, "{report}");
    assert_eq!(owner["captured_messages"], STRANGERS, "{report}");
    assert_eq!(owner["replied_rooms"], REPLY_CAP, "{report}");
    assert_eq!(report["stats"]["effects_failed"], 0, "{report}");
    assert!(peak_kib < 512 * 1024, "peak RSS {peak_kib} KiB");
    println!(
        "spam wave: {STRANGERS} invites sent in {sent_in:.1?}, all held in {handled_in:.1?}; \
         0 pushes; {REPLY_CAP} replies, {} suppressed; Gatekeeper peak RSS {} MiB",
        STRANGERS - REPLY_CAP,
        peak_kib / 1024
    );
}
