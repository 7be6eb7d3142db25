//! One stranger's room that can never be joined (a proxy answers its joins
//! with 502 forever, as Synapse does when the room's server does not answer
//! `make_join`) holds up only itself, in both modes: meanwhile another
//! stranger is held and answered, the owner's `pending` is answered and a
//! `digest` comes. After the retry bound (30 s here) the stuck room is listed
//! as unreadable and can still be decided on.

use std::time::{Duration, Instant};

use crate::support::faults::FaultProxy;
use crate::support::gate::{LONG, ask, opt_in, reply_to, start, wait_membership};
use crate::support::{Mode, World, eventually};

/// The test's `gate.effect_retry_for`.
const RETRY_FOR: Duration = Duration::from_secs(30);

both_modes!(a_room_that_cannot_be_joined_holds_up_only_itself_then_is_listed_as_unreadable);
async fn a_room_that_cannot_be_joined_holds_up_only_itself_then_is_listed_as_unreadable(mode: Mode) {
    let mut w = World::with_mode(mode, "@.*:localhost").await;
    w.gatekeeper.append_config(&format!("gate:\n  effect_retry_for: {}s\n", RETRY_FOR.as_secs()));
    start(&mut w).await;
    let alice = w.synapse.register("alice").await;
    let control = opt_in(&mut w, &alice).await;

    // From now on Gatekeeper's own calls go through the proxy.
    let proxy = FaultProxy::passing(&w.synapse.url).await;
    w.gatekeeper.stop();
    w.gatekeeper.redirect_homeserver(&w.synapse.url, &proxy.url);
    start(&mut w).await;

    // The stuck stranger's room: its joins fail before the invite is sent.
    let stuck = w.synapse.register("stuck").await;
    let stuck_room = stuck.create_group(&[]).await;
    proxy.fail_joins_of(&stuck_room);
    stuck.invite(&stuck_room, &alice.user_id).await;
    eventually("the owner's join of the stuck room to be refused", LONG, || {
        let p = &proxy;
        async move { (p.counts().refused_joins > 0).then_some(()) }
    })
    .await;
    let first_refusal = Instant::now();

    // Meanwhile, everyone else is served, while the join is still retried.
    let second = w.synapse.register("second").await;
    let dm = second.create_dm(&alice.user_id).await;
    wait_membership(&second, &dm, &alice.user_id, "join").await;
    second.send_text(&dm, "Hello, a question about your talk").await;
    let reply = reply_to(&second, &dm, &alice.user_id).await;
    assert!(!reply.is_empty());
    let pending = eventually("pending to list the second stranger's message", LONG, || {
        let (w, a, c) = (&w, alice.clone(), control.clone());
        async move { Some(ask(w, &a, &c, "pending").await).filter(|p| p.contains("1 message")) }
    })
    .await;
    assert!(pending.contains("@second:localhost"), "{pending}");
    assert!(!pending.contains("could not be read"), "the stuck join was given up already: {pending}");
    let digest = ask(&w, &alice, &control, "digest").await;
    assert!(digest.contains("wrote to you") && digest.contains("@second:localhost"), "{digest}");
    let served_in = first_refusal.elapsed();
    assert!(served_in < RETRY_FOR, "served only after {served_in:?}: it waited for the stuck room");
    let refused = proxy.counts().refused_joins;

    // After the bound the stuck room is set aside and listed as unreadable.
    // (Asked seldom: the harness reads only the control room's first 100 events.)
    w.gatekeeper.wait_for_log("retry time ran out", RETRY_FOR + LONG).await;
    let pending = eventually("pending to list the stuck room as unreadable", LONG, || {
        let (w, a, c) = (&w, alice.clone(), control.clone());
        async move {
            let p = ask(w, &a, &c, "pending").await;
            if !p.contains("could not be read") {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Some(p).filter(|p| p.contains("could not be read"))
        }
    })
    .await;
    assert!(first_refusal.elapsed() >= RETRY_FOR, "given up too soon");
    assert!(pending.contains("@stuck:localhost"), "{pending}");
    assert!(pending.contains("could not be read: their server does not answer"), "{pending}");
    assert!(pending.contains("@second:localhost"), "{pending}");
    let tries = proxy.counts().refused_joins;
    assert!(tries > refused && tries < 12, "retried with backoff, then not again: {tries}");

    // Still the owner's to decide: deny declines the invite.
    let answer = ask(&w, &alice, &control, "deny @stuck:localhost").await;
    assert!(answer.contains("@stuck:localhost"), "{answer}");
    wait_membership(&stuck, &stuck_room, &alice.user_id, "leave").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(proxy.counts().refused_joins, tries, "the join was not tried again");

    w.gatekeeper.stop();
    let report = w.gatekeeper.inspect();
    let failed = report["failed_effects"].to_string();
    assert!(failed.contains(&format!("still failing after {}s", RETRY_FOR.as_secs())), "{report}");
    assert_eq!(report["stats"]["outbox_pending"], 0, "{report}");
}
