//! Deciding about senders against a real Synapse, pushes counted by a real
//! push gateway: allow releases, deny leaves, block declines (now and on
//! arrival), a server-wide allow rings, a temporary allow expires, and only
//! the owner in the control room is obeyed.

use std::time::Duration;

use crate::support::gate::{Bell, LONG, ask, barrier, opt_in, reply_to, start, wait_membership};
use crate::support::{Backend, Mode, PushGateway, World, eventually};

both_modes!(allow_releases_deny_leaves_and_only_the_owner_in_the_control_room_is_obeyed, and_on_postgres);
async fn allow_releases_deny_leaves_and_only_the_owner_in_the_control_room_is_obeyed(mode: Mode, backend: Backend) {
    let mut w = World::with_mode_on(mode, backend, "@.*:localhost").await;
    let push = PushGateway::start().await;
    start(&mut w).await;
    let alice = w.synapse.register("alice").await;
    push.register(&alice).await;
    let control = opt_in(&mut w, &alice).await;

    let carol = w.synapse.register("carol").await;
    let carols = carol.create_dm(&alice.user_id).await;
    wait_membership(&carol, &carols, &alice.user_id, "join").await;
    carol.send_text(&carols, "Hi Alice, it's Carol from the conference").await;
    let dave = w.synapse.register("dave").await;
    let daves = dave.create_dm(&alice.user_id).await;
    wait_membership(&dave, &daves, &alice.user_id, "join").await;
    dave.send_text(&daves, "Buy my course").await;

    let pending = eventually("both strangers in pending", LONG, || {
        let (w, a, c) = (&w, alice.clone(), control.clone());
        async move { Some(ask(w, &a, &c, "pending").await).filter(|p| p.contains("2 people")) }
    })
    .await;
    let number = |who: &str| pending.lines().find(|l| l.contains(who)).unwrap().split('.').next().unwrap().to_owned();
    let (carol_n, dave_n) = (number("@carol:localhost"), number("@dave:localhost"));

    // Someone else in the control room, and the owner outside it: ignored.
    let mallory = w.synapse.register("mallory").await;
    alice.invite(&control, &mallory.user_id).await;
    mallory.join(&control).await;
    mallory.send_text(&control, &format!("allow {dave_n}")).await;
    let elsewhere = alice.create_group(&[]).await;
    alice.send_text(&elsewhere, &format!("allow {dave_n}")).await;
    barrier(&w, &alice, &control).await;
    assert_eq!(alice.tags(&daves).await["m.lowpriority"], serde_json::json!({}), "still held");

    let answer = ask(&w, &alice, &control, &format!("allow {carol_n}")).await;
    assert!(answer.contains("Allowed @carol:localhost; released 1 room."), "{answer}");
    eventually("carol's room to be released", LONG, || {
        let (a, r) = (alice.clone(), carols.clone());
        async move { a.tags(&r).await.get("m.lowpriority").is_none().then_some(()) }
    })
    .await;
    carol.send_text(&carols, "Are you free for a call?").await;
    eventually("carol's next message to push", LONG, || {
        let n = push.pushes_in(&alice.user_id, &carols);
        async move { (n >= 1).then_some(()) }
    })
    .await;

    let answer = ask(&w, &alice, &control, &format!("deny {dave_n}")).await;
    assert!(answer.contains("left 1 room and dropped 1 message"), "{answer}");
    wait_membership(&dave, &daves, &alice.user_id, "leave").await;
    assert_eq!(push.pushes_in(&alice.user_id, &daves), 0);
    let listed = ask(&w, &alice, &control, "allowed").await;
    assert!(listed.contains("@carol:localhost") && !listed.contains("@dave"), "{listed}");
    assert!(ask(&w, &alice, &control, "pending").await.contains("Nobody is waiting"));

    // Answering a stranger in the held chat is consent: they ring from then on.
    let frank = w.synapse.register("frank").await;
    let franks = frank.create_dm(&alice.user_id).await;
    wait_membership(&frank, &franks, &alice.user_id, "join").await;
    frank.send_text(&franks, "Hello Alice, we met at the meetup").await;
    reply_to(&frank, &franks, &alice.user_id).await;
    alice.send_text(&franks, "Hi Frank! Good to hear from you.").await;
    eventually("the control room to say frank is allowed", LONG, || {
        let (a, c, bot) = (alice.clone(), control.clone(), w.voice(&alice.user_id));
        async move { a.notices_from(&c, &bot).await.into_iter().find(|n| n.starts_with("You answered @frank:localhost")) }
    })
    .await;
    frank.send_text(&franks, "Great, talk soon").await;
    eventually("frank's next message to push", LONG, || {
        let n = push.pushes_in(&alice.user_id, &franks);
        async move { (n >= 1).then_some(()) }
    })
    .await;
}

both_modes!(block_declines_at_once_and_on_arrival_servers_can_be_allowed_and_allows_expire, and_on_postgres);
async fn block_declines_at_once_and_on_arrival_servers_can_be_allowed_and_allows_expire(mode: Mode, backend: Backend) {
    let mut w = World::with_mode_on(mode, backend, "@.*:localhost").await;
    w.gatekeeper.append_config("gate:\n  housekeeping_interval: 1s\n");
    let push = PushGateway::start().await;
    start(&mut w).await;
    let alice = w.synapse.register("alice").await;
    push.register(&alice).await;
    let control = opt_in(&mut w, &alice).await;
    let bell = Bell::hang(&w, &alice).await;

    let spammer = w.synapse.register("spammer").await;
    let mut rooms = Vec::new();
    for _ in 0..3 {
        let room = spammer.create_dm(&alice.user_id).await;
        wait_membership(&spammer, &room, &alice.user_id, "join").await;
        rooms.push(room);
    }
    let answer = ask(&w, &alice, &control, "block @spammer:localhost").await;
    assert!(answer.contains("Blocked @spammer:localhost: left 3 rooms"), "{answer}");
    for room in &rooms {
        wait_membership(&spammer, room, &alice.user_id, "leave").await;
        assert!(spammer.notices_from(room, &alice.user_id).await.is_empty(), "never a reply to a blocked sender");
    }
    let fourth = spammer.create_dm(&alice.user_id).await;
    wait_membership(&spammer, &fourth, &alice.user_id, "leave").await;
    bell.ring(&push, &alice).await;
    // Only Gatekeeper's own (quiet) answers in the control room reached her.
    let interruptions: Vec<_> = push
        .pushes_to(&alice.user_id)
        .into_iter()
        .filter(|n| n["room_id"] != control.as_str() && n["room_id"] != bell.room.as_str())
        .collect();
    assert!(interruptions.is_empty(), "{interruptions:#?}");
    let answers: Vec<_> =
        push.pushes_to(&alice.user_id).into_iter().filter(|n| n["room_id"] == control.as_str()).collect();
    match mode {
        Mode::Appservice => assert!(!answers.is_empty()),
        // The answers come from alice's own account, which never pushes to her.
        Mode::Client => assert!(answers.is_empty(), "{answers:#?}"),
    }
    assert!(answers.iter().all(|n| n["devices"][0]["tweaks"].get("sound").is_none()), "quiet: {answers:#?}");

    // Everyone on a server may ring; the blocked user stays blocked.
    ask(&w, &alice, &control, "allow *:localhost").await;
    let newcomer = w.synapse.register("newcomer").await;
    let newcomers = newcomer.create_dm(&alice.user_id).await;
    eventually("the newcomer's invite to push", LONG, || {
        let n = push.pushes_in(&alice.user_id, &newcomers);
        async move { (n >= 1).then_some(()) }
    })
    .await;
    let fifth = spammer.create_dm(&alice.user_id).await;
    wait_membership(&spammer, &fifth, &alice.user_id, "leave").await;
    ask(&w, &alice, &control, "unblock *:localhost").await;
    let answer = ask(&w, &alice, &control, "block *:localhost").await;
    assert!(answer.contains("Blocked *:localhost"), "{answer}");
    ask(&w, &alice, &control, "unblock *:localhost").await;

    // A temporary allow ends by itself: the sender is held again.
    let erin = w.synapse.register("erin").await;
    let answer = ask(&w, &alice, &control, "allow @erin:localhost for 3s").await;
    assert!(answer.contains("until"), "{answer}");
    eventually("erin's allow to expire", Duration::from_secs(30), || {
        let (w, a, c) = (&w, alice.clone(), control.clone());
        async move { Some(ask(w, &a, &c, "allowed").await).filter(|l| !l.contains("@erin")) }
    })
    .await;
    let erins = erin.create_dm(&alice.user_id).await;
    wait_membership(&erin, &erins, &alice.user_id, "join").await;
    erin.send_text(&erins, "hello again").await;
    reply_to(&erin, &erins, &alice.user_id).await;
    bell.ring(&push, &alice).await;
    assert_eq!(push.pushes_in(&alice.user_id, &erins), 0);
}
