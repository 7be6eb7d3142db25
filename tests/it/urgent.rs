//! The urgent way through and `undo`, against a real Synapse with pushes
//! counted by a real push gateway: an `urgent:` message rings the owner
//! once (appservice mode: the notice with sound; in client mode the
//! owner's own account never rings her) and a second one does not; `undo`
//! after `deny` brings the messages back, and after `block` the sender's
//! next invite is held, not declined.

use crate::support::gate::{Bell, LONG, ask, opt_in, reply_to, start, wait_membership};
use crate::support::{Mode, PushGateway, World, eventually};

both_modes!(an_urgent_message_rings_once_and_a_second_one_does_not);
async fn an_urgent_message_rings_once_and_a_second_one_does_not(mode: Mode) {
    let mut w = World::with_mode(mode, "@.*:localhost").await;
    let push = PushGateway::start().await;
    start(&mut w).await;
    let alice = w.synapse.register("alice").await;
    push.register(&alice).await;
    let control = opt_in(&mut w, &alice).await;
    let bell = Bell::hang(&w, &alice).await;
    let answer = ask(&w, &alice, &control, "set urgent on").await;
    assert!(answer.contains("Urgent messages are on"), "{answer}");

    let bob = w.synapse.register("bob").await;
    let bobs = bob.create_dm(&alice.user_id).await;
    wait_membership(&bob, &bobs, &alice.user_id, "join").await;
    bob.send_text(&bobs, "Hello Alice").await;
    let reply = reply_to(&bob, &bobs, &alice.user_id).await;
    assert!(reply.contains("\"urgent:\""), "the reply tells of the way through: {reply}");

    bob.send_text(&bobs, "  URGENT: The server is down\nPlease call me").await;
    let told = |what: &'static str| {
        let (b, r, a) = (bob.clone(), bobs.clone(), alice.user_id.clone());
        eventually(what, LONG, move || {
            let (b, r, a) = (b.clone(), r.clone(), a.clone());
            async move { b.notices_from(&r, &a).await.into_iter().find(|n| n.contains(what)) }
        })
    };
    told("passed on to").await;
    let note = eventually("the urgent notice in the control room", LONG, || {
        let (a, c, v) = (alice.clone(), control.clone(), w.voice(&alice.user_id));
        async move { a.notices_from(&c, &v).await.into_iter().find(|n| n.contains("Urgent message from")) }
    })
    .await;
    assert!(note.contains("@bob:localhost"), "{note}");
    assert!(note.contains("Subject: The server is down"), "{note}");
    assert!(note.contains("Please call me"), "{note}");

    bob.send_text(&bobs, "urgent: still down!").await;
    told("could not be passed on").await;
    bell.ring(&push, &alice).await;
    let rung: Vec<_> = push
        .pushes_to(&alice.user_id)
        .into_iter()
        .filter(|n| n["room_id"] == control.as_str())
        .filter(|n| n["devices"][0]["tweaks"].get("sound").is_some())
        .collect();
    match mode {
        Mode::Appservice => assert_eq!(rung.len(), 1, "exactly one ringing push: {rung:#?}"),
        // Gatekeeper speaks from alice's own account, which never rings her.
        Mode::Client => assert!(rung.is_empty(), "{rung:#?}"),
    }
    assert_eq!(push.pushes_in(&alice.user_id, &bobs), 0, "bob's room stays held");
    let pending = ask(&w, &alice, &control, "pending").await;
    assert!(pending.contains("@bob:localhost — 3 messages"), "all kept for the digest: {pending}");
}

both_modes!(undo_brings_back_what_deny_dropped_and_after_block_the_next_invite_is_held);
async fn undo_brings_back_what_deny_dropped_and_after_block_the_next_invite_is_held(mode: Mode) {
    let mut w = World::with_mode(mode, "@.*:localhost").await;
    start(&mut w).await;
    let alice = w.synapse.register("alice").await;
    let control = opt_in(&mut w, &alice).await;

    let carol = w.synapse.register("carol").await;
    let carols = carol.create_dm(&alice.user_id).await;
    wait_membership(&carol, &carols, &alice.user_id, "join").await;
    carol.send_text(&carols, "Hi Alice, it's Carol from the conference").await;
    eventually("carol in pending", LONG, || {
        let (w, a, c) = (&w, alice.clone(), control.clone());
        async move { Some(ask(w, &a, &c, "pending").await).filter(|p| p.contains("@carol:localhost — 1 message")) }
    })
    .await;
    let answer = ask(&w, &alice, &control, "deny @carol:localhost").await;
    assert!(answer.contains("left 1 room and dropped 1 message"), "{answer}");
    wait_membership(&carol, &carols, &alice.user_id, "leave").await;
    assert!(ask(&w, &alice, &control, "pending").await.contains("Nobody is waiting"));

    let answer = ask(&w, &alice, &control, "undo").await;
    assert!(answer.contains("Took back denying @carol:localhost"), "{answer}");
    let pending = ask(&w, &alice, &control, "pending").await;
    assert!(pending.contains("@carol:localhost — 1 message"), "{pending}");
    let shown = ask(&w, &alice, &control, "show @carol:localhost").await;
    assert!(shown.contains("it's Carol from the conference"), "{shown}");

    let dave = w.synapse.register("dave").await;
    let daves = dave.create_dm(&alice.user_id).await;
    wait_membership(&dave, &daves, &alice.user_id, "join").await;
    let answer = ask(&w, &alice, &control, "block @dave:localhost").await;
    assert!(answer.contains("Blocked @dave:localhost"), "{answer}");
    wait_membership(&dave, &daves, &alice.user_id, "leave").await;
    let answer = ask(&w, &alice, &control, "undo").await;
    assert!(answer.contains("Took back blocking @dave:localhost"), "{answer}");
    // Held (joined quietly, tagged low priority), not declined.
    let again = dave.create_dm(&alice.user_id).await;
    wait_membership(&dave, &again, &alice.user_id, "join").await;
    eventually("dave's new room to be held", LONG, || {
        let (a, r) = (alice.clone(), again.clone());
        async move { a.tags(&r).await.get("m.lowpriority").map(|_| ()) }
    })
    .await;
    assert!(ask(&w, &alice, &control, "undo").await.contains("Nothing to undo"));
}
