//! What a room is to Gatekeeper is each owner's own: two owners invited into
//! one stranger's room both hold it; and opting in again after `stop` does
//! not turn the strangers whose rooms the owner is still in into contacts.

use crate::support::gate::{Bell, LONG, ask, opt_in, start, wait_membership};
use crate::support::{Mode, PushGateway, World, eventually};

#[tokio::test]
async fn two_owners_invited_into_one_strangers_room_both_hold_it_and_list_it() {
    let mut w = World::with_mode(Mode::Appservice, "@.*:localhost").await;
    let push = PushGateway::start().await;
    start(&mut w).await;
    let alice = w.synapse.register("alice").await;
    let bob = w.synapse.register("bob").await;
    push.register(&alice).await;
    push.register(&bob).await;
    let alices = opt_in(&mut w, &alice).await;
    let bobs = opt_in(&mut w, &bob).await;
    let (alice_bell, bob_bell) = (Bell::hang(&w, &alice).await, Bell::hang_as(&w, &bob, "bobs-bell").await);

    let stranger = w.synapse.register("stranger").await;
    let room = stranger.create_group(&[&alice.user_id, &bob.user_id]).await;
    wait_membership(&stranger, &room, &alice.user_id, "join").await;
    wait_membership(&stranger, &room, &bob.user_id, "join").await;
    stranger.send_text(&room, "A word for you both").await;

    for (owner, control) in [(&alice, &alices), (&bob, &bobs)] {
        let pending = eventually(&format!("{} to list the stranger's message", owner.user_id), LONG, || {
            let (w, o, c) = (&w, owner.clone(), control.clone());
            async move { Some(ask(w, &o, &c, "pending").await).filter(|p| p.contains("1 message")) }
        })
        .await;
        assert!(pending.contains(&stranger.user_id), "{pending}");
    }
    alice_bell.ring(&push, &alice).await;
    bob_bell.ring(&push, &bob).await;
    assert_eq!(push.pushes_in(&alice.user_id, &room), 0);
    assert_eq!(push.pushes_in(&bob.user_id, &room), 0);

    // Bob lets the stranger in; alice still holds the room.
    let allowed = ask(&w, &bob, &bobs, &format!("allow {}", stranger.user_id)).await;
    assert!(allowed.contains(&stranger.user_id), "{allowed}");
    let pending = ask(&w, &alice, &alices, "pending").await;
    assert!(pending.contains(&stranger.user_id) && pending.contains("1 message"), "{pending}");
    let overrides = alice.override_rule_ids().await;
    assert!(overrides.iter().any(|r| r.starts_with("gk.held.")), "alice's silence stays: {overrides:?}");
}

#[tokio::test]
async fn opting_in_again_after_stop_keeps_strangers_pending_and_friends_allowed() {
    let mut w = World::with_mode(Mode::Appservice, "@.*:localhost").await;
    let push = PushGateway::start().await;
    start(&mut w).await;
    let alice = w.synapse.register("alice").await;
    push.register(&alice).await;
    // A friend alice talks with: she answered them.
    let friend = w.synapse.register("friend").await;
    let friends = friend.create_dm(&alice.user_id).await;
    alice.join(&friends).await;
    alice.send_text(&friends, "good to hear from you").await;

    let control = opt_in(&mut w, &alice).await;
    let stranger = w.synapse.register("stranger").await;
    let held = stranger.create_dm(&alice.user_id).await;
    wait_membership(&stranger, &held, &alice.user_id, "join").await;
    stranger.send_text(&held, "Please read this").await;
    eventually("the stranger to be pending", LONG, || {
        let (w, a, c) = (&w, alice.clone(), control.clone());
        async move { Some(ask(w, &a, &c, "pending").await).filter(|p| p.contains("1 message")) }
    })
    .await;

    let bye = ask(&w, &alice, &control, "stop").await;
    assert!(bye.contains("off"), "{bye}");
    eventually("every gk rule to be removed", LONG, || {
        let a = alice.clone();
        async move { a.override_rule_ids().await.iter().all(|r| !r.starts_with("gk.")).then_some(()) }
    })
    .await;
    // Still in the stranger's room (released, not left): opting in again
    // reads it as a stranger's, not as an existing chat.
    assert_eq!(alice.membership_of(&held, &alice.user_id).await.as_deref(), Some("join"));

    let control = opt_in(&mut w, &alice).await;
    let pending = eventually("the stranger to be pending again, with what they wrote", LONG, || {
        let (w, a, c) = (&w, alice.clone(), control.clone());
        async move { Some(ask(w, &a, &c, "pending").await).filter(|p| p.contains("1 message")) }
    })
    .await;
    assert!(pending.contains(&stranger.user_id), "{pending}");
    let allowed = eventually("the friend to be imported", LONG, || {
        let (w, a, c, f) = (&w, alice.clone(), control.clone(), friend.user_id.clone());
        async move { Some(ask(w, &a, &c, "allowed").await).filter(|l| l.contains(&f)) }
    })
    .await;
    assert!(!allowed.contains(&stranger.user_id), "{allowed}");

    // Silenced again: the stranger's next message does not ring.
    let bell = Bell::hang(&w, &alice).await;
    stranger.send_text(&held, "Hello again?").await;
    bell.ring(&push, &alice).await;
    assert_eq!(push.pushes_in(&alice.user_id, &held), 0);
}
