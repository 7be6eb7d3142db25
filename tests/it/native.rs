//! Matrix-native defences against a real Synapse, in both modes: the
//! commands published as MSC4332's state event (equal to the command
//! list) and addressed by `!gatekeeper` or a mention; `report` reaching
//! Synapse's admin report list; and the owner's blocks mirrored into
//! MSC4155's invite filter, so that the homeserver itself turns a blocked
//! user away while Gatekeeper is stopped, with the owner's own entries
//! kept and Gatekeeper's taken out again at `stop`.

use serde_json::{Value, json};

use crate::support::gate::{Bell, LONG, ask, barrier, opt_in, start, wait_membership};
use crate::support::matrix::enc;
use crate::support::{Client, Mode, PushGateway, World, eventually};

const COMMANDS: &str = "org.matrix.msc4332.commands";
const FILTER: &str = "org.matrix.msc4155.invite_permission_config";

/// The control room's notices from Gatekeeper that contain `what`.
async fn told(w: &World, owner: &Client, control: &str, what: &str) -> String {
    eventually(&format!("a notice saying {what:?}"), LONG, || {
        let (o, c, v, what) = (owner.clone(), control.to_owned(), w.voice(&owner.user_id), what.to_owned());
        async move { o.notices_from(&c, &v).await.into_iter().find(|n| n.contains(&what)) }
    })
    .await
}

/// The owner's MSC4155 filter as the homeserver has it.
async fn filter_of(owner: &Client) -> Option<Value> {
    let path = format!("/_matrix/client/v3/user/{}/account_data/{FILTER}", enc(&owner.user_id));
    let (status, v) = owner.call(reqwest::Method::GET, &path, None).await;
    (status == 200).then_some(v)
}

async fn set_account_data(owner: &Client, kind: &str, content: Value) {
    let path = format!("/_matrix/client/v3/user/{}/account_data/{kind}", enc(&owner.user_id));
    let (status, v) = owner.call(reqwest::Method::PUT, &path, Some(content)).await;
    assert_eq!(status, 200, "{v}");
}

fn blocked_users(filter: &Option<Value>) -> Vec<String> {
    filter
        .as_ref()
        .and_then(|f| f["blocked_users"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

both_modes!(the_published_commands_are_the_command_list_and_answer_to_every_address);
async fn the_published_commands_are_the_command_list_and_answer_to_every_address(mode: Mode) {
    let mut w = World::with_mode(mode, "@.*:localhost").await;
    let push = PushGateway::start().await;
    start(&mut w).await;
    let alice = w.synapse.register("alice").await;
    push.register(&alice).await;
    let control = opt_in(&mut w, &alice).await;
    let bell = Bell::hang(&w, &alice).await;
    let voice = w.voice(&alice.user_id);
    let path = format!("/_matrix/client/v3/rooms/{}/state/{COMMANDS}/{}", enc(&control), enc(&voice));
    let published = eventually("the published commands", LONG, || {
        let (a, p) = (alice.clone(), path.clone());
        async move {
            let (status, v) = a.call(reqwest::Method::GET, &p, None).await;
            (status == 200).then_some(v)
        }
    })
    .await;
    assert_eq!(published, gatekeeper_engine::commands::discover::content());
    let syntaxes: Vec<&str> =
        published["commands"].as_array().unwrap().iter().map(|c| c["syntax"].as_str().unwrap()).collect();
    for spec in gatekeeper_engine::commands::ALL {
        assert!(syntaxes.iter().any(|s| s.split(' ').nth(1) == Some(spec.name)), "{} is not published", spec.name);
    }
    assert!(syntaxes.contains(&"gk allow {target} for {duration}"), "{syntaxes:?}");

    // Commands answer to the conventional prefix and to a mention.
    let answer = ask(&w, &alice, &control, "!gatekeeper blocked").await;
    assert!(answer.contains("Nobody is blocked"), "{answer}");
    if mode == Mode::Appservice {
        let answer = ask(&w, &alice, &control, "Gatekeeper: allowed").await;
        assert!(answer.contains("Nobody is allowed") || answer.contains("entr"), "{answer}");
        let mention = json!({
            "msgtype": "m.text",
            "body": format!("{} settings", w.bot()),
            "m.mentions": {"user_ids": [w.bot()]},
        });
        let before = alice.notices_from(&control, &voice).await.len();
        alice.send(&control, mention).await;
        let answer = eventually("the answer to a mention", LONG, || {
            let (a, c, v) = (alice.clone(), control.clone(), voice.clone());
            async move { a.notices_from(&c, &v).await.get(before).cloned() }
        })
        .await;
        assert!(!answer.contains("I don't know the command"), "{answer}");
        assert!(answer.contains("digest"), "the settings: {answer}");
    }

    // A control room where the bot may not send state (a plain private
    // chat): the owner's account lets it send this one event type.
    if mode == Mode::Appservice {
        let dave = w.synapse.register("dave").await;
        let body = json!({"preset": "private_chat", "is_direct": true, "invite": [w.bot()]});
        let (status, v) = dave.call(reqwest::Method::POST, "/_matrix/client/v3/createRoom", Some(body)).await;
        assert_eq!(status, 200, "{v}");
        let daves = v["room_id"].as_str().unwrap().to_owned();
        let path = format!("/_matrix/client/v3/rooms/{}/state/{COMMANDS}/{}", enc(&daves), enc(&w.bot()));
        let published = eventually("the commands in a private chat", LONG, || {
            let (d, p) = (dave.clone(), path.clone());
            async move {
                let (status, v) = d.call(reqwest::Method::GET, &p, None).await;
                (status == 200).then_some(v)
            }
        })
        .await;
        assert_eq!(published, gatekeeper_engine::commands::discover::content());
        let levels_path = format!("/_matrix/client/v3/rooms/{}/state/m.room.power_levels/", enc(&daves));
        let (_, levels) = dave.call(reqwest::Method::GET, &levels_path, None).await;
        assert_eq!(levels["events"][COMMANDS], 0, "only this event type was opened: {levels}");
        assert!(levels["users"].get(w.bot().as_str()).is_none(), "the bot was given no power: {levels}");
    }

    // Published again after a restart: the same event, not a second one.
    let events_before = alice.messages(&control).await.len();
    w.gatekeeper.stop();
    start(&mut w).await;
    barrier(&w, &alice, &control).await;
    let (_, again) = alice.call(reqwest::Method::GET, &path, None).await;
    assert_eq!(again, published);
    let state_events =
        alice.messages(&control).await.into_iter().skip(events_before).filter(|e| e["type"] == COMMANDS).count();
    assert_eq!(state_events, 0, "an unchanged command list is not sent again");
    // The event is no news to the owner: it never notifies her.
    bell.ring(&push, &alice).await;
    let pushed: Vec<Value> = push.pushes_to(&alice.user_id).into_iter().filter(|n| n["type"] == COMMANDS).collect();
    assert!(pushed.is_empty(), "{pushed:#?}");
}

both_modes!(report_reaches_the_homeservers_admins_and_blocks_the_sender);
async fn report_reaches_the_homeservers_admins_and_blocks_the_sender(mode: Mode) {
    let mut w = World::with_mode(mode, "@.*:localhost").await;
    start(&mut w).await;
    let alice = w.synapse.register("alice").await;
    let admin = w.synapse.register_admin("admin").await;
    let control = opt_in(&mut w, &alice).await;
    let bob = w.synapse.register("bob").await;
    let bobs = bob.create_dm(&alice.user_id).await;
    wait_membership(&bob, &bobs, &alice.user_id, "join").await;
    bob.send_text(&bobs, "Buy cheap watches").await;
    eventually("bob's message held", LONG, || {
        let (w, a, c) = (&w, alice.clone(), control.clone());
        async move { ask(w, &a, &c, "pending").await.contains("cheap watches").then_some(()) }
    })
    .await;

    let answer = ask(&w, &alice, &control, "report 1 sells fake watches").await;
    assert!(answer.contains("Reporting @bob:localhost"), "{answer}");
    assert!(answer.contains("Blocked @bob:localhost"), "{answer}");
    let outcome = told(&w, &alice, &control, "Reported @bob:localhost").await;
    assert!(outcome.contains("a user report"), "Synapse has the user report: {outcome}");

    let reports = eventually("the report in Synapse's admin list", LONG, || {
        let a = admin.clone();
        async move {
            let (status, v) = a.call(reqwest::Method::GET, "/_synapse/admin/v1/user_reports", None).await;
            assert_eq!(status, 200, "{v}");
            (v["total"].as_u64() > Some(0)).then_some(v)
        }
    })
    .await;
    let report = &reports["user_reports"][0];
    assert_eq!(report["target_user_id"], "@bob:localhost", "{reports}");
    assert_eq!(report["user_id"], alice.user_id.as_str(), "reported as the owner: {reports}");
    assert_eq!(report["reason"], "sells fake watches", "{reports}");
    let blocked = ask(&w, &alice, &control, "blocked").await;
    assert!(blocked.contains("@bob:localhost"), "{blocked}");
}

const MSC4155: &str = "experimental_features:\n  msc4155_enabled: true\n";

both_modes!(a_user_blocked_through_gatekeeper_is_turned_away_by_the_homeserver_while_it_is_stopped);
async fn a_user_blocked_through_gatekeeper_is_turned_away_by_the_homeserver_while_it_is_stopped(mode: Mode) {
    let mut w = World::with_mode_and(mode, "@.*:localhost", MSC4155).await;
    start(&mut w).await;
    let alice = w.synapse.register("alice").await;
    let bob = w.synapse.register("bob").await;
    let carol = w.synapse.register("carol").await;
    // An entry alice set by hand before opting in: Gatekeeper's block from
    // then on, and still hers after `stop`.
    set_account_data(&alice, FILTER, json!({"blocked_users": ["@mallory:localhost"], "ignored_users": []})).await;
    let control = opt_in(&mut w, &alice).await;
    eventually("the filter's block imported", LONG, || {
        let (w, a, c) = (&w, alice.clone(), control.clone());
        async move { ask(w, &a, &c, "blocked").await.contains("@mallory:localhost").then_some(()) }
    })
    .await;

    let answer = ask(&w, &alice, &control, "block @bob:localhost").await;
    assert!(answer.contains("Blocked @bob:localhost"), "{answer}");
    eventually("bob in alice's invite filter", LONG, || {
        let a = alice.clone();
        async move { blocked_users(&filter_of(&a).await).contains(&"@bob:localhost".to_owned()).then_some(()) }
    })
    .await;
    let filter = filter_of(&alice).await;
    assert_eq!(blocked_users(&filter), ["@mallory:localhost", "@bob:localhost"]);
    assert_eq!(filter.unwrap()["ignored_users"], json!([]), "the rest of the filter is kept");

    // Gatekeeper down: the homeserver itself turns bob away, not carol.
    w.gatekeeper.stop();
    let create = |invitee: &str| json!({"preset": "trusted_private_chat", "is_direct": true, "invite": [invitee]});
    let (status, refused) =
        bob.call(reqwest::Method::POST, "/_matrix/client/v3/createRoom", Some(create(&alice.user_id))).await;
    assert_eq!((status, refused["errcode"].as_str()), (403, Some("M_INVITE_BLOCKED")), "{refused}");
    let (status, v) =
        carol.call(reqwest::Method::POST, "/_matrix/client/v3/createRoom", Some(create(&alice.user_id))).await;
    assert_eq!(status, 200, "carol is not blocked: {v}");

    // The owner's apps block every invite: told at the next start.
    set_account_data(&alice, "m.invite_permission_config", json!({"default_action": "block"})).await;
    start(&mut w).await;
    let note = told(&w, &alice, &control, "blocks every invitation").await;
    assert!(note.contains("never reach me"), "{note}");

    // `stop` takes Gatekeeper's entry out and leaves alice's own.
    let answer = ask(&w, &alice, &control, "stop").await;
    assert!(!answer.is_empty());
    eventually("bob out of alice's invite filter", LONG, || {
        let a = alice.clone();
        async move { (blocked_users(&filter_of(&a).await) == ["@mallory:localhost"]).then_some(()) }
    })
    .await;
}
