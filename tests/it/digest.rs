//! The daily digest against a real Synapse: it arrives on schedule in the
//! control room, once (also across a restart), its numbers work for
//! decisions, and `digest` sends one on demand.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::gate::{LONG, ask, opt_in, start, wait_membership};
use crate::support::{Backend, Mode, World, eventually};

both_modes!(the_digest_arrives_on_schedule_once_and_its_numbers_work, and_on_postgres);
async fn the_digest_arrives_on_schedule_once_and_its_numbers_work(mode: Mode, backend: Backend) {
    let mut w = World::with_mode_on(mode, backend, "@.*:localhost").await;
    w.gatekeeper.append_config("gate:\n  housekeeping_interval: 1s\n");
    start(&mut w).await;
    let alice = w.synapse.register("alice").await;
    let control = opt_in(&mut w, &alice).await;

    let stranger = w.synapse.register("stranger").await;
    let held = stranger.create_dm(&alice.user_id).await;
    wait_membership(&stranger, &held, &alice.user_id, "join").await;
    stranger.send_text(&held, "Hello <Alice>, a question about your paper").await;
    eventually("the message to be captured", LONG, || {
        let (w, a, c) = (&w, alice.clone(), control.clone());
        async move { Some(ask(w, &a, &c, "pending").await).filter(|p| p.contains("1 message")) }
    })
    .await;

    // Schedule the digest for the next minute (UTC is the default zone).
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let next_minute = (now / 60 + 1) * 60;
    let (h, m) = ((next_minute % 86_400) / 3600, (next_minute % 3600) / 60);
    let answer = ask(&w, &alice, &control, &format!("set digest-time {h:02}:{m:02}")).await;
    assert!(answer.contains("digest time"), "{answer}");

    let digest = eventually("the scheduled digest", Duration::from_secs(120), || {
        let (a, c, bot) = (alice.clone(), control.clone(), w.voice(&alice.user_id));
        async move { a.notices_from(&c, &bot).await.into_iter().find(|n| n.contains("wrote to you")) }
    })
    .await;
    assert!(digest.starts_with("1 person wrote to you"), "{digest}");
    assert!(digest.contains("1. @stranger:localhost — 1 message"), "{digest}");
    assert!(digest.contains("Hello <Alice>, a question about your paper"), "{digest}");
    let events = alice.messages(&control).await;
    let html = events
        .iter()
        .find_map(|e| e["content"]["formatted_body"].as_str().filter(|h| h.contains("wrote to you")))
        .unwrap()
        .to_owned();
    assert!(html.contains("Hello &lt;Alice&gt;"), "{html}");

    // Restarting does not send it again. No event orders the housekeeping
    // timer's ticks, but a tick decides everything due at once: the tick
    // that ends a one-second allow given after the restart would also carry
    // a digest the restart wrongly thought due, before the answer that no
    // longer lists the allow.
    w.gatekeeper.stop();
    start(&mut w).await;
    ask(&w, &alice, &control, "allow @nobody:localhost for 1s").await;
    eventually("a tick after the restart to end the allow", Duration::from_secs(30), || {
        let (w, a, c) = (&w, alice.clone(), control.clone());
        async move { Some(ask(w, &a, &c, "allowed").await).filter(|l| !l.contains("@nobody")) }
    })
    .await;
    let digests = alice
        .notices_from(&control, &w.voice(&alice.user_id))
        .await
        .into_iter()
        .filter(|n| n.contains("wrote to you"))
        .count();
    assert_eq!(digests, 1);

    // The digest's numbers are what `allow` understands.
    let answer = ask(&w, &alice, &control, "allow 1").await;
    assert!(answer.contains("Allowed @stranger:localhost"), "{answer}");
    let answer = ask(&w, &alice, &control, "digest").await;
    assert!(answer.contains("Nothing new"), "{answer}");
}
