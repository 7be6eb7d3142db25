//! Homeserver faults for Gatekeeper's own calls, in both modes: a proxy
//! answers 429 and 500, loses answers to requests it did pass on, and
//! delays others. Every effect is retried with backoff and completes;
//! nothing is lost and nothing is done twice.

use crate::support::faults::FaultProxy;
use crate::support::gate::{LONG, ask, opt_in, start};
use crate::support::{Mode, PushGateway, World, eventually, free_port};

const STRANGERS: usize = 4;

both_modes!(homeserver_faults_are_retried_and_nothing_is_lost_or_done_twice);
async fn homeserver_faults_are_retried_and_nothing_is_lost_or_done_twice(mode: Mode) {
    let mut w = World::with_mode(mode, "@.*:localhost").await;
    let port = free_port();
    w.gatekeeper.append_config(&format!("metrics:\n  listen: 127.0.0.1:{port}\n"));
    let push = PushGateway::start().await;
    start(&mut w).await;
    let alice = w.synapse.register("alice").await;
    push.register(&alice).await;
    let control = opt_in(&mut w, &alice).await;

    // From now on every call Gatekeeper makes goes through the faults.
    let proxy = FaultProxy::start(&w.synapse.url).await;
    w.gatekeeper.stop();
    w.gatekeeper.redirect_homeserver(&w.synapse.url, &proxy.url);
    start(&mut w).await;

    let mut strangers = Vec::new();
    for i in 0..STRANGERS {
        let s = w.synapse.register(&format!("stranger{i}")).await;
        let room = s.create_dm(&alice.user_id).await;
        s.send_text(&room, &format!("first line from {i}")).await;
        s.send_text(&room, &format!("second line from {i}")).await;
        strangers.push((s, room));
    }
    eventually("every stranger to be answered", LONG * 3, || {
        let (strangers, a) = (&strangers, alice.user_id.clone());
        async move {
            for (s, room) in strangers {
                s.notices_from(room, &a).await.into_iter().next()?;
            }
            Some(())
        }
    })
    .await;
    let pending = eventually("all messages in pending", LONG * 3, || {
        let (w, a, c) = (&w, alice.clone(), control.clone());
        async move { Some(ask(w, &a, &c, "pending").await).filter(|p| p.contains(&format!("{STRANGERS} people"))) }
    })
    .await;
    assert_eq!(pending.matches("2 messages").count(), STRANGERS, "{pending}");
    for (s, room) in &strangers {
        assert_eq!(s.notices_from(room, &alice.user_id).await.len(), 1, "one reply, however often it was retried");
        assert_eq!(push.pushes_in(&alice.user_id, room), 0);
    }
    let counts = proxy.counts();
    assert!(counts.rate_limited > 0 && counts.failed_before > 0 && counts.lost_answers > 0 && counts.delayed > 0);
    let scrape = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap().text().await.unwrap();
    let value = |name: &str| -> f64 {
        scrape.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(-1.0)
    };
    assert!(value("gatekeeper_action_retries_total") > 0.0, "{scrape}");
    assert_eq!(value("gatekeeper_action_failures_total"), 0.0, "{scrape}");
    println!("faults ({mode:?}): {counts:?}; retries {}", value("gatekeeper_action_retries_total"));

    w.gatekeeper.stop();
    let report = w.gatekeeper.inspect();
    assert_eq!(report["stats"]["effects_failed"], 0, "{report}");
    assert_eq!(report["owners"][0]["captured_messages"], 2 * STRANGERS, "{report}");
}
