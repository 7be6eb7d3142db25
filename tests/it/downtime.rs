//! Downtime against a real Synapse: Gatekeeper is stopped while a stranger
//! keeps writing and the homeserver's retries back off. Started again, its
//! start-up ping makes the homeserver send at once (not when the backoff
//! runs out), and everything is processed once, in order.

use std::time::{Duration, Instant};

use crate::support::gate::{LONG, ask, opt_in, reply_to, start, wait_membership};
use crate::support::{World, eventually};

const WRITTEN_WHILE_DOWN: usize = 6;

#[tokio::test]
async fn after_downtime_the_ping_cuts_the_backoff_short_and_all_is_processed_once_in_order() {
    let mut w = World::new("@.*:localhost").await;
    start(&mut w).await;
    let alice = w.synapse.register("alice").await;
    let control = opt_in(&mut w, &alice).await;
    let stranger = w.synapse.register("stranger").await;
    let held = stranger.create_dm(&alice.user_id).await;
    wait_membership(&stranger, &held, &alice.user_id, "join").await;
    stranger.send_text(&held, "line 0").await;
    reply_to(&stranger, &held, &alice.user_id).await;

    // Down for long enough that the homeserver's retry interval has grown
    // to half a minute or more (2, 4, 8, 16, 32 s ...).
    w.gatekeeper.stop();
    let down = Instant::now();
    for i in 1..=WRITTEN_WHILE_DOWN {
        stranger.send_text(&held, &format!("line {i}")).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let downtime = down.elapsed();

    w.gatekeeper.start(&[]);
    let restarted = Instant::now();
    w.gatekeeper.wait_for_log("homeserver ping ok", LONG).await;
    let shown = eventually("every line written while down to be kept", LONG, || {
        let (w, a, c) = (&w, alice.clone(), control.clone());
        async move { Some(ask(w, &a, &c, "show @stranger:localhost").await).filter(|s| s.contains("line 6")) }
    })
    .await;
    let caught_up = restarted.elapsed();
    // The homeserver's next retry was at least 16 s away when Gatekeeper came
    // back; without the ping it would have waited for it.
    assert!(caught_up < Duration::from_secs(16), "caught up only after {caught_up:?} (down {downtime:?})");
    println!("downtime {downtime:.0?}: all {WRITTEN_WHILE_DOWN} lines kept {caught_up:.1?} after the restart");

    // Once each, in the order written (as messages: "— line 1"; the
    // subject above them quotes one too).
    let positions: Vec<usize> =
        (0..=WRITTEN_WHILE_DOWN).map(|i| shown.find(&format!("— line {i}")).expect("every line shown")).collect();
    assert!(positions.windows(2).all(|p| p[0] < p[1]), "{shown}");
    for i in 0..=WRITTEN_WHILE_DOWN {
        assert_eq!(shown.matches(&format!("— line {i}")).count(), 1, "{shown}");
    }
    assert_eq!(stranger.notices_from(&held, &alice.user_id).await.len(), 1);
}
