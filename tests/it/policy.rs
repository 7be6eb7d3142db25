//! Shared ban lists against a real Synapse, with a real push gateway: a
//! third user's policy room bans a glob of accounts; once the owner
//! follows it, a banned stranger's invitation is declined without a reply
//! or a push, a rule added later reaches a stranger already pending, and
//! someone the owner allowed still rings though the list names them.

use serde_json::{Value, json};

use crate::support::gate::{Bell, LONG, ask, opt_in, start, wait_membership};
use crate::support::matrix::enc;
use crate::support::{Client, Mode, PushGateway, World, eventually};

/// A public policy room `#bans:localhost` made by `moderator`.
async fn policy_room(moderator: &Client) -> String {
    let (status, body) = moderator
        .call(
            reqwest::Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(json!({"preset": "public_chat", "room_alias_name": "bans", "name": "Shared bans"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["room_id"].as_str().unwrap().to_owned()
}

async fn ban_rule(moderator: &Client, room: &str, key: &str, entity: &str) {
    let path = format!("/_matrix/client/v3/rooms/{}/state/m.policy.rule.user/{}", enc(room), enc(key));
    let content = json!({"entity": entity, "recommendation": "m.ban", "reason": "spam"});
    let (status, body): (u16, Value) = moderator.call(reqwest::Method::PUT, &path, Some(content)).await;
    assert_eq!(status, 200, "{body}");
}

both_modes!(a_strangers_invite_a_followed_ban_list_names_is_declined_silently_and_an_allowed_one_still_rings);
async fn a_strangers_invite_a_followed_ban_list_names_is_declined_silently_and_an_allowed_one_still_rings(mode: Mode) {
    let mut w = World::with_mode(mode, "@.*:localhost").await;
    let push = PushGateway::start().await;
    start(&mut w).await;
    let alice = w.synapse.register("alice").await;
    push.register(&alice).await;
    let control = opt_in(&mut w, &alice).await;

    // Someone alice trusts whose name the list's glob will also catch.
    let friend = w.synapse.register("spamfriend").await;
    ask(&w, &alice, &control, "allow @spamfriend:localhost").await;
    // A stranger who is waiting already, whom no rule names yet.
    let later = w.synapse.register("later").await;
    let waiting = later.create_dm(&alice.user_id).await;
    wait_membership(&later, &waiting, &alice.user_id, "join").await;

    let moderator = w.synapse.register("moderator").await;
    let list = policy_room(&moderator).await;
    ban_rule(&moderator, &list, "r1", "@spam*:localhost").await;

    ask(&w, &alice, &control, "subscribe #bans:localhost").await;
    let followed = eventually("the list to be followed", LONG, || {
        let (o, c, v) = (alice.clone(), control.clone(), w.voice(&alice.user_id));
        async move { o.notices_from(&c, &v).await.into_iter().find(|n| n.contains("Following the ban list")) }
    })
    .await;
    assert!(followed.contains("1 ban rule"), "{followed}");
    let joiner = if mode == Mode::Appservice { "Gatekeeper's bot joined" } else { "Your account joined" };
    assert!(followed.contains(joiner), "{followed}");

    // A banned stranger's invitation: declined, no reply, no push.
    let spammer = w.synapse.register("spammer1").await;
    let banned = spammer.create_dm(&alice.user_id).await;
    wait_membership(&spammer, &banned, &alice.user_id, "leave").await;
    // The one the owner allowed still rings, though the glob names them.
    let friends = friend.create_dm(&alice.user_id).await;
    eventually("the allowed friend's invite to push", LONG, || {
        let n = push.pushes_in(&alice.user_id, &friends);
        async move { (n >= 1).then_some(()) }
    })
    .await;

    // A rule added later reaches the stranger already waiting.
    ban_rule(&moderator, &list, "r2", "@later:localhost").await;
    wait_membership(&later, &waiting, &alice.user_id, "leave").await;

    let bell = Bell::hang(&w, &alice).await;
    bell.ring(&push, &alice).await;
    assert_eq!(push.pushes_in(&alice.user_id, &banned), 0, "{:#?}", push.pushes_to(&alice.user_id));
    assert!(spammer.notices_from(&banned, &alice.user_id).await.is_empty(), "no reply to a banned sender");
    assert_eq!(friend.membership_of(&friends, &alice.user_id).await.as_deref(), Some("invite"));

    let shown = ask(&w, &alice, &control, "show banned").await;
    assert!(shown.contains("@spammer1:localhost") && shown.contains("@later:localhost"), "{shown}");
    let subscriptions = ask(&w, &alice, &control, "subscriptions").await;
    assert!(subscriptions.contains("#bans:localhost") && subscriptions.contains("2 ban rules"), "{subscriptions}");
}

/// The `m.policy.rule.user` rules of `room` as `reader` reads them: entity
/// and reason of each rule with content.
async fn user_rules(reader: &Client, room: &str) -> Vec<(String, String)> {
    let path = format!("/_matrix/client/v3/rooms/{}/state", enc(room));
    let (status, state) = reader.call(reqwest::Method::GET, &path, None).await;
    assert_eq!(status, 200, "{state}");
    let mut rules: Vec<(String, String)> = state
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.policy.rule.user" && e["content"]["recommendation"] == "m.ban")
        .map(|e| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (text(&e["content"]["entity"]), text(&e["content"]["reason"]))
        })
        .collect();
    rules.sort();
    rules
}

both_modes!(shared_blocks_are_a_policy_room_anyone_can_read_and_follow_each_block);
async fn shared_blocks_are_a_policy_room_anyone_can_read_and_follow_each_block(mode: Mode) {
    let mut w = World::with_mode(mode, "@.*:localhost").await;
    start(&mut w).await;
    let alice = w.synapse.register("alice").await;
    let control = opt_in(&mut w, &alice).await;
    ask(&w, &alice, &control, "block @early:localhost").await;

    ask(&w, &alice, &control, "share blocks").await;
    let shared = eventually("the shared list", LONG, || {
        let (o, c, v) = (alice.clone(), control.clone(), w.voice(&alice.user_id));
        async move { o.notices_from(&c, &v).await.into_iter().find(|n| n.contains("published as a ban list")) }
    })
    .await;
    let room = shared.split_whitespace().find(|w| w.starts_with('!')).unwrap().to_owned();
    ask(&w, &alice, &control, "block @spammer:localhost because sent me spam").await;

    // Someone else joins (the room is public) and reads the rules.
    let reader = w.synapse.register("reader").await;
    reader.join(&room).await;
    eventually("both blocks as rules", LONG, || {
        let (r, room) = (reader.clone(), room.clone());
        async move {
            let rules = user_rules(&r, &room).await;
            (rules
                == [
                    ("@early:localhost".to_owned(), String::new()),
                    ("@spammer:localhost".to_owned(), "sent me spam".to_owned()),
                ])
            .then_some(())
        }
    })
    .await;
    // An unblock withdraws the rule.
    ask(&w, &alice, &control, "unblock @early:localhost").await;
    eventually("the unblocked rule withdrawn", LONG, || {
        let (r, room) = (reader.clone(), room.clone());
        async move {
            let rules = user_rules(&r, &room).await;
            (rules == [("@spammer:localhost".to_owned(), "sent me spam".to_owned())]).then_some(())
        }
    })
    .await;
}

both_modes!(an_operators_list_applies_to_every_owner_until_the_configuration_drops_it);
/// The operator's `policy.lists`: followed for every owner from the start,
/// a rule added later reaches an owner's waiting stranger through the
/// timer's pending check, and a list dropped from the configuration stops
/// applying at the next start.
async fn an_operators_list_applies_to_every_owner_until_the_configuration_drops_it(mode: Mode) {
    let mut w = World::with_mode(mode, "@.*:localhost").await;
    let push = PushGateway::start().await;
    let moderator = w.synapse.register("moderator").await;
    let list = policy_room(&moderator).await;
    ban_rule(&moderator, &list, "r1", "@spam*:localhost").await;
    let policy = "policy:\n  lists: ['#bans:localhost']\n";
    w.gatekeeper.append_config(&format!("{policy}gate:\n  housekeeping_interval: 1s\n"));
    start(&mut w).await;
    let alice = w.synapse.register("alice").await;
    push.register(&alice).await;
    let control = opt_in(&mut w, &alice).await;
    let listed = eventually("the operator's list to be read", LONG, || {
        let (w, alice, control) = (&w, alice.clone(), control.clone());
        async move {
            let said = ask(w, &alice, &control, "subscriptions").await;
            said.contains("followed for everyone by the operator").then_some(said)
        }
    })
    .await;
    assert!(listed.contains("1 ban rule"), "{listed}");

    // A stranger waiting before the rule that names them exists.
    let later = w.synapse.register("later").await;
    let waiting = later.create_dm(&alice.user_id).await;
    wait_membership(&later, &waiting, &alice.user_id, "join").await;
    // Banned by the operator's list: declined, no reply.
    let spammer = w.synapse.register("spammer1").await;
    let banned = spammer.create_dm(&alice.user_id).await;
    wait_membership(&spammer, &banned, &alice.user_id, "leave").await;
    // Added later, in a bulk of rules: the waiting stranger is declined.
    for n in 0..5 {
        ban_rule(&moderator, &list, &format!("bulk{n}"), &format!("@nobody{n}:localhost")).await;
    }
    ban_rule(&moderator, &list, "r2", "@later:localhost").await;
    wait_membership(&later, &waiting, &alice.user_id, "leave").await;
    assert!(spammer.notices_from(&banned, &alice.user_id).await.is_empty(), "no reply to a banned sender");

    // Dropped from the configuration: the next start stops applying it.
    w.gatekeeper.stop();
    let config = std::fs::read_to_string(&w.gatekeeper.config).unwrap();
    std::fs::write(&w.gatekeeper.config, config.replacen(policy, "", 1)).unwrap();
    start(&mut w).await;
    eventually("the dropped list to stop applying", LONG, || {
        let (w, alice, control) = (&w, alice.clone(), control.clone());
        async move { (!ask(w, &alice, &control, "subscriptions").await.contains("#bans:localhost")).then_some(()) }
    })
    .await;
    let spammer2 = w.synapse.register("spammer2").await;
    let held = spammer2.create_dm(&alice.user_id).await;
    wait_membership(&spammer2, &held, &alice.user_id, "join").await;
    let bell = Bell::hang(&w, &alice).await;
    bell.ring(&push, &alice).await;
    assert_eq!(push.pushes_in(&alice.user_id, &banned), 0, "{:#?}", push.pushes_to(&alice.user_id));
    assert_eq!(push.pushes_in(&alice.user_id, &held), 0, "held as any stranger: {:#?}", push.pushes_to(&alice.user_id));
}
