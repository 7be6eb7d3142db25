//! The gate against a real Synapse, with a real push gateway counting every
//! interruption: strangers are held without a single push and answered once;
//! allowed senders and users who never opted in ring as before.

use serde_json::json;

use crate::support::gate::{Bell, LONG, ask, barrier, opt_in, start, wait_membership};
use crate::support::{Backend, Mode, PushGateway, World, eventually};

both_modes!(a_strangers_dm_is_held_without_a_push_answered_once_and_captured, and_on_postgres);
async fn a_strangers_dm_is_held_without_a_push_answered_once_and_captured(mode: Mode, backend: Backend) {
    let mut w = World::with_mode_on(mode, backend, "@.*:localhost").await;
    let push = PushGateway::start().await;
    start(&mut w).await;

    let alice = w.synapse.register("alice").await;
    alice.set_displayname("Alice").await;
    push.register(&alice).await;
    // A friend alice already talks to (she answered), before she opts in.
    let friend = w.synapse.register("friend").await;
    let old_dm = friend.create_dm(&alice.user_id).await;
    alice.join(&old_dm).await;
    alice.send_text(&old_dm, "Nice to hear from you").await;

    let control = opt_in(&mut w, &alice).await;
    eventually("the friend to be imported as allowed", LONG, || {
        let a = alice.clone();
        async move { a.override_rule_ids().await.iter().any(|r| r.starts_with("gk.allow.")).then_some(()) }
    })
    .await;

    // The stranger writes: plain, a display-name mention, an m.mentions
    // mention and an @room, with an edit and a redaction in between.
    let stranger = w.synapse.register("stranger").await;
    let held = stranger.create_dm(&alice.user_id).await;
    wait_membership(&stranger, &held, &alice.user_id, "join").await;
    stranger.send_text(&held, "Hello, I have a question").await;
    stranger.send_text(&held, "Alice, are you there?").await;
    stranger
        .send(&held, json!({"msgtype": "m.text", "body": "hey", "m.mentions": {"user_ids": [alice.user_id]}}))
        .await;
    let oops = stranger.send_text(&held, "something I regret").await;
    stranger.redact(&held, &oops).await;
    stranger.send(&held, json!({"msgtype": "m.text", "body": "@room ping", "m.mentions": {"room": true}})).await;
    let typo = stranger.send_text(&held, "Bye for nwo").await;
    stranger
        .send(
            &held,
            json!({"msgtype": "m.text", "body": "* Bye for now",
            "m.new_content": {"msgtype": "m.text", "body": "Bye for now"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": typo}}),
        )
        .await;

    // Five kept: the redacted one is gone, the edit replaced its original.
    let pending = eventually("pending to show five messages, the last one edited", LONG, || {
        let (w, a, c) = (&w, alice.clone(), control.clone());
        async move {
            Some(ask(w, &a, &c, "pending").await).filter(|p| p.contains("5 messages") && p.contains("“Bye for now”"))
        }
    })
    .await;
    assert!(pending.contains("@stranger:localhost"), "{pending}");

    // Exactly one etiquette reply, sent as alice, as a notice without mentions.
    let replies = stranger.notices_from(&held, &alice.user_id).await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert!(replies[0].contains("Alice will read it"), "{}", replies[0]);
    let reply_event =
        stranger.messages(&held).await.into_iter().find(|e| e["content"]["msgtype"] == "m.notice").unwrap();
    assert_eq!(reply_event["content"]["m.mentions"], json!({}));
    assert_eq!(alice.tags(&held).await["m.lowpriority"], json!({}));

    // The allowed friend still rings: a message, and a new invite. The
    // message's push is also the barrier for the stranger's: pushes reach
    // alice in the order their events were stored (see `Bell::ring`).
    let dinner = friend.send_text(&old_dm, "dinner tonight?").await;
    push.wait_for(&alice.user_id, &dinner).await;
    assert_eq!(push.pushes_in(&alice.user_id, &held), 0, "{:#?}", push.pushes_to(&alice.user_id));
    let friends_new = friend.create_dm(&alice.user_id).await;
    eventually("the friend's invite to push", LONG, || {
        let n = push.pushes_in(&alice.user_id, &friends_new);
        async move { (n >= 1).then_some(()) }
    })
    .await;

    // A restart replies to nothing again, and still holds.
    w.gatekeeper.stop();
    start(&mut w).await;
    stranger.send_text(&held, "one more thing").await;
    // The answer that counts the new message was decided after it, so a
    // reply to it would already be in the room.
    eventually("the new message to be captured", LONG, || {
        let (w, a, c) = (&w, alice.clone(), control.clone());
        async move { Some(ask(w, &a, &c, "pending").await).filter(|p| p.contains("6 messages")) }
    })
    .await;
    assert_eq!(stranger.notices_from(&held, &alice.user_id).await.len(), 1);
    let later = friend.send_text(&old_dm, "see you there").await;
    push.wait_for(&alice.user_id, &later).await;
    assert_eq!(push.pushes_in(&alice.user_id, &held), 0);

    w.gatekeeper.stop();
    // What inspect reads is where Gatekeeper kept it: on PostgreSQL, no sled
    // directory was ever made.
    assert_eq!(w.gatekeeper.dir.join("data").exists(), backend == Backend::Sled);
    let report = w.gatekeeper.inspect();
    assert_eq!(report["stats"]["deferred_messages"], 6, "{report}");
    assert_eq!(report["stats"]["effects_failed"], 0, "{report}");
}

both_modes!(a_direct_invite_to_a_room_with_others_is_held_as_a_group_and_gets_no_reply);
async fn a_direct_invite_to_a_room_with_others_is_held_as_a_group_and_gets_no_reply(mode: Mode) {
    let mut w = World::with_mode(mode, "@.*:localhost").await;
    let push = PushGateway::start().await;
    start(&mut w).await;
    let alice = w.synapse.register("alice").await;
    alice.set_displayname("Alice").await;
    push.register(&alice).await;
    let control = opt_in(&mut w, &alice).await;

    // `is_direct` is the stranger's claim: the room has a third member.
    let stranger = w.synapse.register("stranger").await;
    let crowd = w.synapse.register("crowd").await;
    let (status, created) = stranger
        .call(
            reqwest::Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(json!({"preset": "trusted_private_chat", "is_direct": true,
                        "invite": [alice.user_id, crowd.user_id]})),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let room = created["room_id"].as_str().unwrap().to_owned();
    crowd.join(&room).await;
    wait_membership(&stranger, &room, &alice.user_id, "join").await;
    stranger.send_text(&room, "hi, read this now").await;

    let pending = eventually("pending to list it as a group invitation", LONG, || {
        let (w, a, c) = (&w, alice.clone(), control.clone());
        async move {
            Some(ask(w, &a, &c, "pending").await).filter(|p| p.contains("3 members") && p.contains("read this now"))
        }
    })
    .await;
    assert!(pending.contains("@stranger:localhost"), "{pending}");
    barrier(&w, &alice, &control).await;
    // Nothing was said in alice's name in a room of three.
    assert!(stranger.notices_from(&room, &alice.user_id).await.is_empty(), "no reply where others listen");
    assert_eq!(push.pushes_in(&alice.user_id, &room), 0);
}

both_modes!(group_invites_are_held_others_untouched_and_stop_restores_everything);
async fn group_invites_are_held_others_untouched_and_stop_restores_everything(mode: Mode) {
    let mut w = World::with_mode(mode, "@.*:localhost").await;
    let push = PushGateway::start().await;
    start(&mut w).await;

    let alice = w.synapse.register("alice").await;
    let bob = w.synapse.register("bob").await;
    push.register(&alice).await;
    push.register(&bob).await;
    let control = opt_in(&mut w, &alice).await;
    let bell = Bell::hang(&w, &alice).await;

    let promoter = w.synapse.register("promoter").await;
    let group = promoter.create_group(&[&alice.user_id]).await;
    wait_membership(&promoter, &group, &alice.user_id, "join").await;
    promoter.send_text(&group, "Great deals, Alice!").await;
    // Bob never opted in: his invite rings as always.
    let bobs = promoter.create_dm(&bob.user_id).await;
    eventually("bob's invite to push", LONG, || {
        let n = push.pushes_in(&bob.user_id, &bobs);
        async move { (n >= 1).then_some(()) }
    })
    .await;

    // Pending shows the message once it is decided, with any reply to it.
    let pending =
        eventually("the group invite and its message in pending", LONG, || {
            let (w, a, c) = (&w, alice.clone(), control.clone());
            async move {
                Some(ask(w, &a, &c, "pending").await).filter(|p| p.contains("members") && p.contains("Great deals"))
            }
        })
        .await;
    assert!(pending.contains("invited you to A group (2 members)"), "{pending}");
    assert!(promoter.notices_from(&group, &alice.user_id).await.is_empty(), "no etiquette reply in groups");
    bell.ring(&push, &alice).await;
    assert_eq!(push.pushes_in(&alice.user_id, &group), 0);
    // Bob's invite came before the barrier: anything done about it is done.
    barrier(&w, &alice, &control).await;
    assert_eq!(
        promoter.membership_of(&bobs, &bob.user_id).await.as_deref(),
        Some("invite"),
        "bob's rooms are not touched"
    );

    let answer = ask(&w, &alice, &control, "stop").await;
    assert!(answer.contains("off"), "{answer}");
    eventually("every gk rule to be removed", LONG, || {
        let a = alice.clone();
        async move { a.override_rule_ids().await.iter().all(|r| !r.starts_with("gk.")).then_some(()) }
    })
    .await;
    eventually("the low-priority tag to be removed", LONG, || {
        let (a, g) = (alice.clone(), group.clone());
        async move { a.tags(&g).await.get("m.lowpriority").is_none().then_some(()) }
    })
    .await;
    // Released: the group's next message reaches alice normally.
    promoter.send_text(&group, "still there?").await;
    eventually("a push from the released room", LONG, || {
        let n = push.pushes_in(&alice.user_id, &group);
        async move { (n >= 1).then_some(()) }
    })
    .await;
    w.gatekeeper.stop();
    assert_eq!(w.gatekeeper.inspect()["stats"]["owners"], 0);
}

both_modes!(what_a_stranger_wrote_while_gatekeeper_was_down_is_read_back_after_the_join);
async fn what_a_stranger_wrote_while_gatekeeper_was_down_is_read_back_after_the_join(mode: Mode) {
    // Only alice is in the users namespace: the homeserver does not send
    // Gatekeeper the stranger's messages from before alice is in the room.
    let mut w = World::with_mode(mode, "@alice:localhost").await;
    let push = PushGateway::start().await;
    start(&mut w).await;
    let alice = w.synapse.register("alice").await;
    push.register(&alice).await;
    let control = opt_in(&mut w, &alice).await;
    let bell = Bell::hang(&w, &alice).await;

    w.gatekeeper.stop();
    let stranger = w.synapse.register("stranger").await;
    let held = stranger.create_dm(&alice.user_id).await;
    stranger.send_text(&held, "Written while nobody was looking").await;
    stranger.send_text(&held, "And a second line").await;
    w.gatekeeper.start(&[]);

    let pending = eventually("both earlier messages to be captured", LONG, || {
        let (w, a, c) = (&w, alice.clone(), control.clone());
        async move { Some(ask(w, &a, &c, "pending").await).filter(|p| p.contains("2 messages")) }
    })
    .await;
    assert!(pending.contains("And a second line"), "{pending}");
    bell.ring(&push, &alice).await;
    assert_eq!(push.pushes_in(&alice.user_id, &held), 0, "the invite was held while Gatekeeper was down too");
    // The reply follows the backfilled messages, once: it was decided with
    // them, before the answer that counts them.
    assert_eq!(stranger.notices_from(&held, &alice.user_id).await.len(), 1);
}
